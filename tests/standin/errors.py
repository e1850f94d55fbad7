"""Exceptions shared by the stand-in's modules: how `quit` and monitor command failures travel."""


class Quit(Exception):
    """Raised to leave the process the way `quit` does."""


class CommandError(Exception):
    """A RecoverableException-like failure: lines are written with WriteError."""

    def __init__(self, *lines):
        super().__init__(lines[0] if lines else "")
        self.lines = lines


class SignatureMismatch(Exception):
    def __init__(self, methods):
        super().__init__("mismatch")
        self.methods = methods
