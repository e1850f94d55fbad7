"""Waiting for UART output in virtual time: the monitor lines and the reply, as pure functions.

The waiting itself happens inside Renode, in `inside_renode/expect.py`, loaded once per process:
it sees every character a UART prints on the emulation's CPU thread with its virtual time, so the
match time is exact and a paused machine stops right there. Patterns travel as hex: nothing a
client sends can become monitor syntax or Python code.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from .commands import check_name, check_peripheral, path_token
from .errors import RenodeError

MAX_TIMEOUT = 100 * 3600.0  # virtual seconds; like run_for
MAX_PATTERN = 4096
MAX_FAIL_ON = 16


HELPERS = ("expect.py", "gpio.py", "machine.py", "terminals.py")  # expect.py first: the others use what it defines


def helper_script(name: str = "expect.py") -> Path:
    """A script Renode runs for the driver (a file inside this package, `inside_renode/`)."""
    return Path(str(resources.files(__package__) / "inside_renode" / name))


def include_helpers() -> list[str]:
    return [f"include {path_token(helper_script(name))}" for name in HELPERS]


def forget(peripheral: str) -> str:
    """Drop the output recorded so far (after a reset, expect the new boot, not the last one)."""
    return f'jumpstarter_forget "{check_peripheral(peripheral, "uart")}"'


def watch(peripheral: str, terminal: str) -> str:
    """Record what `peripheral` prints from now on (and count what `terminal` delivers to it)."""
    return f'jumpstarter_watch "{check_peripheral(peripheral, "uart")}" "{check_name(terminal, "terminal name")}"'


def check_pattern(pattern: str, what: str = "pattern") -> str:
    """A regex we can hand to Renode's Python: compiles here, not empty, not absurdly long."""
    if not isinstance(pattern, str) or not pattern:
        raise ValueError(f"{what} must be a non-empty regular expression: {pattern!r}")
    if len(pattern) > MAX_PATTERN:
        raise ValueError(f"{what} is longer than {MAX_PATTERN} characters")
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{what} is not a valid regular expression ({exc}): {pattern!r}") from None
    return pattern


def check_timeout(timeout: float) -> float:
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or not 0 <= timeout <= MAX_TIMEOUT:
        raise ValueError(f"timeout must be between 0 and {MAX_TIMEOUT:.0f} virtual seconds: {timeout!r}")
    return float(timeout)


def _hex(text: str) -> str:
    return text.encode("utf-8").hex()


def expect_command(
    peripheral: str, pattern: str, fail_on: list[str], timeout: float, host_timeout: float, delivered: int
) -> str:
    """The monitor line for one wait (arguments already checked)."""
    failing = ",".join(_hex(p) for p in fail_on) or "-"
    return (
        f'jumpstarter_expect "{check_peripheral(peripheral, "uart")}" "{_hex(pattern)}" "{failing}" '
        f'"{round(timeout * 1e9)}" "{round(host_timeout * 1000)}" "{int(delivered)}"'
    )


@dataclass(frozen=True)
class ExpectReply:
    """How a wait ended.

    outcome: `match`, `fail` (a fail_on pattern matched first), `timeout` (virtual) or `host-timeout`.
    time: virtual seconds when the matching output was printed (or the wait ended).
    now: the virtual time when the wait returned (a paused machine stays there).
    """

    outcome: str
    time: float
    now: float
    matched: str
    tail: str
    failing: int | None = None  # which fail_on pattern matched
    delivered: int = 0  # input bytes Renode had received from the console's PTY

    def as_dict(self) -> dict:
        return asdict(self)


_REPLY_RE = re.compile(
    r"jumpstarter-expect (match|fail\d+|timeout|host-timeout) (\d+) (\d+) (-|[0-9a-f]+) (-|[0-9a-f]+) (\d+)"
)


def _unhex(text: str) -> str:
    return "" if text == "-" else bytes.fromhex(text).decode("utf-8", "replace")


def parse_reply(output: str) -> ExpectReply:
    m = _REPLY_RE.search(output)
    if m is None:
        raise RenodeError(f"unexpected reply from Renode's expect helper: {output!r}")
    outcome, failing = m[1], None
    if outcome.startswith("fail"):
        outcome, failing = "fail", int(outcome[4:])
    return ExpectReply(outcome, int(m[2]) / 1e9, int(m[3]) / 1e9, _unhex(m[4]), _unhex(m[5]), failing, int(m[6]))
