"""Typed errors raised by the driver, under one root: `RenodeError`.

Each error says what failed; monitor errors carry Renode's own text and the command that caused it.
Errors about bad input (a client's argument, a config value, a firmware image) are also `ValueError`s,
which Jumpstarter reports to clients as INVALID_ARGUMENT with the message.
"""

from __future__ import annotations


class RenodeError(Exception):
    """Base class for everything that goes wrong while driving Renode."""


class RenodeCommandError(RenodeError):
    """Renode answered a monitor command with an error."""

    def __init__(self, command: str, message: str):
        self.command = command
        self.renode_message = message
        super().__init__(f"Renode rejected `{command}`: {message}")


class RenodeTimeoutError(RenodeError):
    """Renode did not answer within the configured timeout (the monitor is unusable afterwards)."""


class RenodeExitedError(RenodeError):
    """The Renode process is gone (crashed, killed or quit) or its monitor stream broke."""


class RenodeStartError(RenodeError):
    """Renode could not be started or did not become ready."""


class RenodeStateError(RenodeError):
    """The call is not possible in the target's current lifecycle state (e.g. powered off)."""


class UnsafeInputError(RenodeError, ValueError):
    """A value would change the meaning of a monitor command (control characters, quotes...)."""


class FirmwareError(RenodeError, ValueError):
    """A firmware image cannot be loaded; the message says why."""
