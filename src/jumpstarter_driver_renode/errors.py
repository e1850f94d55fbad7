"""Typed errors raised by the driver, under one root: `RenodeError`.

Each error says what failed; monitor errors carry Renode's own text and the command that caused it.
Errors about bad input (a client's argument, a config value, a firmware image) are also `ValueError`s,
which Jumpstarter reports to clients as INVALID_ARGUMENT with the message.
"""

from __future__ import annotations

import enum


class RenodeError(Exception):
    """Base class for everything that goes wrong while driving Renode."""


def quoted(command: str, limit: int = 200) -> str:
    """A command as error messages quote it: whole if short, else its start (what follows matters more)."""
    return command if len(command) <= limit else f"{command[:limit]}... ({len(command)} characters)"


class ErrorKind(enum.Enum):
    """What a monitor error means to the driver (recognised once, by `protocol.classify_error`)."""

    DOWNLOAD_FAILED = "download-failed"  # a platform needs a file (an SVD) that Renode could not download
    NO_SUCH_NAME = "no-such-name"  # a peripheral or method name that does not resolve: Renode lists signatures
    HELPER = "helper"  # a driver helper inside Renode refused (`jumpstarter-error <reason>: <text>`)
    OTHER = "other"


class RenodeCommandError(RenodeError):
    """Renode answered a monitor command with an error. `kind` says what it means, `reason` names a helper's
    refusal (e.g. `wrong-kind`), and `detail` is the line worth quoting (a helper's own text, or Renode's
    last line without the "There was an error executing command" header)."""

    def __init__(
        self, command: str, message: str, kind: ErrorKind = ErrorKind.OTHER, detail: str = "", reason: str = ""
    ):
        self.command = command
        self.renode_message = message
        self.kind = kind
        self.detail = detail or message
        self.reason = reason
        super().__init__(f"Renode rejected `{quoted(command)}`: {message}")


class RenodeTimeoutError(RenodeError):
    """Renode did not answer within the configured timeout (the monitor is unusable afterwards)."""


class RenodeExitedError(RenodeError):
    """The Renode process is gone (crashed, killed or quit) or its monitor stream broke."""


class RenodeStartError(RenodeError):
    """Renode could not be started or did not become ready."""


class RenodeStateError(RenodeError):
    """The call is not possible in the target's current lifecycle state (e.g. powered off). Carries the
    state the target was in and the state the call needs (`TargetState` values), like qmp's StateError."""

    def __init__(self, message: str, state: str, required: str = "on"):
        self.state = state
        self.required = required
        super().__init__(message)


class UnsafeInputError(RenodeError, ValueError):
    """A value would change the meaning of a monitor command (control characters, quotes...)."""


class FirmwareError(RenodeError, ValueError):
    """A firmware image cannot be loaded; the message says why."""


class ExpectError(RenodeError, AssertionError):
    """A wait for UART output (`expect_output`) ended without a match. An AssertionError, so pytest
    reports it as a test failure. Carries the pattern, the virtual time reached and the last lines."""

    def __init__(self, message: str, pattern: str, time: float, tail: str):
        self.pattern = pattern
        self.time = time
        self.tail = tail
        super().__init__(message)


class ExpectTimeout(ExpectError):
    """The virtual timeout passed (or the host time limit, `expect_host_timeout`) before the pattern appeared."""


class ExpectFailed(ExpectError):
    """A `fail_on` pattern appeared before the pattern."""

    def __init__(self, message: str, pattern: str, time: float, tail: str, failing: str):
        self.failing = failing
        super().__init__(message, pattern, time, tail)
