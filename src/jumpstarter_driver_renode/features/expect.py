"""Waiting for UART output in virtual time (`expect_output`): the monitor lines and the reply as pure
functions, and the feature that keeps Renode watching every UART.

The waiting itself happens inside Renode, in `inside_renode/expect.py`, loaded once per process:
it sees every character a UART prints on the emulation's CPU thread with its virtual time, so the
match time is exact and a paused machine stops right there. Patterns travel as hex: nothing a
client sends can become monitor syntax or Python code.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..commands import MAX_VIRTUAL_SECONDS, check_name, check_number, check_peripheral
from ..errors import RenodeError
from ..session import wait_limit
from .base import Board, Feature

MAX_PATTERN = 4096
MAX_FAIL_ON = 16


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


def check_fail_on(fail_on: list[str] | None) -> list[str]:
    if fail_on is None:
        return []
    if not isinstance(fail_on, list) or len(fail_on) > MAX_FAIL_ON:
        raise ValueError(f"fail_on must be a list of at most {MAX_FAIL_ON} regular expressions: {fail_on!r}")
    return [check_pattern(item, "fail_on pattern") for item in fail_on]


def check_timeout(timeout: float) -> float:
    return check_number(timeout, "timeout (virtual seconds)", 0, MAX_VIRTUAL_SECONDS)


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


class Expect(Feature):
    """Renode records every UART's output with its virtual time, for `expect_output`."""

    helpers = ("expect.py",)

    async def prepare(self, board: Board) -> None:
        await self._watch(board)  # after the consoles: a watch counts what the UART's terminal delivers

    async def _watch(self, board: Board) -> None:
        for uart in board.spec.uarts:
            await board.session.on(uart.machine, watch(uart.peripheral, uart.terminal))

    async def park(self, board: Board, replacing: bool) -> None:
        await board.session.execute("jumpstarter_unhook")  # `Save` fails on a Python handler in a terminal

    async def unpark(self, board: Board, replaced: bool) -> None:
        if not replaced:  # the same machines: their watches listen again (a Load's machines get new ones)
            await board.session.execute("jumpstarter_hook")

    async def after_load(self, board: Board) -> None:
        await self._watch(board)

    async def before_reset(self, board: Board, machine: str) -> None:
        """Match what the board prints from now on, not the last boot (before: the new boot prints at once)."""
        for uart in board.spec.uarts:
            if uart.machine == machine:
                await board.session.on(machine, forget(uart.peripheral))


async def wait(
    board: Board, console: str, pattern: str, fail_on: list[str], timeout: float, host_timeout: float
) -> ExpectReply:
    """Let the emulation run until `pattern` is printed on `console` (see `expect_output`); the run state
    stays. Input written to the console before the call reaches the UART before the machine runs."""
    uart = next(uart for uart in board.spec.uarts if uart.key == console)
    written = board.channels[console].written
    line = expect_command(uart.peripheral, pattern, fail_on, timeout, host_timeout, written)
    limit = wait_limit(board.spec.command_timeout, host_timeout)
    reply = parse_reply(await board.session.on_wait(uart.machine, line, limit))
    if reply.delivered < written:
        board.log.warning(
            "%s: Renode had received %d of the %d input bytes written when the wait began: the rest reached "
            "the firmware later than the virtual time of the call",
            console,
            reply.delivered,
            written,
        )
    return reply
