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
