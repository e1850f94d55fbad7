"""Jumpstarter driver for Renode virtual boards.

Exporter configs name `jumpstarter_driver_renode.driver.Renode`; clients get `RenodeClient`.
"""

from .errors import (
    ExpectError,
    ExpectFailed,
    ExpectTimeout,
    FirmwareError,
    RenodeCommandError,
    RenodeError,
    RenodeExitedError,
    RenodeStartError,
    RenodeStateError,
    RenodeTimeoutError,
    UnsafeInputError,
)
from .lifecycle import TargetState

__all__ = [
    "ExpectError",
    "ExpectFailed",
    "ExpectTimeout",
    "FirmwareError",
    "RenodeCommandError",
    "RenodeError",
    "RenodeExitedError",
    "RenodeStartError",
    "RenodeStateError",
    "RenodeTimeoutError",
    "TargetState",
    "UnsafeInputError",
]
