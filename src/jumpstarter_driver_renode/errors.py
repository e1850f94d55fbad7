"""Typed errors raised by the driver.

Each error says what failed; monitor errors carry Renode's own text and the command that caused it.
They subclass RuntimeError/ValueError so Jumpstarter maps them to sensible gRPC codes and clients
see the message.
"""

from __future__ import annotations


class RenodeError(RuntimeError):
    """Base class for everything that goes wrong while driving Renode."""


class RenodeCommandError(RenodeError):
    """Renode answered a monitor command with an error."""

    def __init__(self, command: str, message: str):
        self.command = command
        self.renode_message = message
        super().__init__(f"Renode rejected `{command}`: {message}")


class RenodeTimeoutError(RenodeError):
    """Renode did not answer within the configured timeout."""


class RenodeExitedError(RenodeError):
    """The Renode process is gone (crashed, killed or quit)."""


class RenodeStartError(RenodeError):
    """Renode could not be started or did not become ready."""


class RenodeNotRunningError(RenodeError):
    """An operation needs a powered-on target."""


class UnsafeInputError(ValueError):
    """A value would change the meaning of a monitor command (control characters, quotes...)."""
