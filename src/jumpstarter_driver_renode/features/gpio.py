"""Buttons and LEDs of the board: children that speak Jumpstarter's digital I/O interfaces.

A button child answers like `jumpstarter_driver_gpiod`'s DigitalOutput (`on` = pressed, `off` =
released, `read_pin`) plus `press(seconds)`; an LED child like its DigitalInput (`read_pin`,
`wait_for_active`, `wait_for_inactive`, `wait_for_edge`). The work happens in Renode, through the
helper `inside_renode/gpio.py`: an LED wait listens to the LED's own change event on the emulation's
thread, so no blink is missed, and its timeout is in virtual seconds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jumpstarter.driver import Driver, export

from ..bounded import BoundedErrors
from ..commands import MAX_VIRTUAL_SECONDS, check_number, check_peripheral
from ..errors import ErrorKind, RenodeCommandError, RenodeError, RenodeStartError
from ..session import wait_limit
from ..spec import BoardSpec, MachineSpec
from .base import Board, Feature, Root
from .expect import check_timeout

EDGES = ("rising", "falling")
DEFAULT_WAIT = 3600.0  # virtual seconds, when a wait gives no timeout (gpiod's clients pass None)


def check(peripheral: str, kind: str) -> str:
    return f'jumpstarter_gpio_check "{check_peripheral(peripheral)}" "{kind}"'


def button(peripheral: str, action: str) -> str:
    assert action in ("press", "release", "read")
    return f'jumpstarter_button "{check_peripheral(peripheral)}" "{action}"'


def button_hold(peripheral: str, seconds: float, host_timeout: float) -> str:
    return f'jumpstarter_button_hold "{check_peripheral(peripheral)}" "{round(seconds * 1e9)}" "{round(host_timeout * 1000)}"'


def led(peripheral: str) -> str:
    return f'jumpstarter_led "{check_peripheral(peripheral)}"'


def led_wait(peripheral: str, edge: str, timeout: float, host_timeout: float) -> str:
    assert edge in ("active", "inactive", "rising", "falling", "any")
    return (
        f'jumpstarter_led_wait "{check_peripheral(peripheral)}" "{edge}" "{round(timeout * 1e9)}" '
        f'"{round(host_timeout * 1000)}"'
    )


@dataclass(frozen=True)
class GpioReply:
    outcome: str  # press/release/read, released, level, edge, timeout, host-timeout
    state: bool
    time: float  # virtual seconds: when it happened (or the wait ended)
    now: float


_REPLY_RE = re.compile(r"jumpstarter-gpio (\S+) ([01]) (\d+) (\d+)")


def parse_reply(output: str) -> GpioReply:
    m = _REPLY_RE.search(output)
    if m is None:
        raise RenodeError(f"unexpected reply from Renode's GPIO helper: {output!r}")
    return GpioReply(m[1], m[2] == "1", int(m[3]) / 1e9, int(m[4]) / 1e9)


def _wait_timeout(timeout: float | None) -> float:
    return DEFAULT_WAIT if timeout is None else check_timeout(timeout)


class Gpio(Feature):
    """Every configured button and LED exists and is of its kind, or power-on fails naming it."""

    helpers = ("gpio.py",)

    @staticmethod
    def children(root: Root, machine: MachineSpec, spec: BoardSpec) -> dict[str, Driver]:
        buttons = {
            name: RenodeButton(parent=root, machine=machine.name, peripheral=peripheral)
            for name, peripheral in machine.buttons.items()
        }
        leds = {
            name: RenodeLed(parent=root, machine=machine.name, peripheral=peripheral, label=name)
            for name, peripheral in machine.leds.items()
        }
        return buttons | leds

    async def prepare(self, board: Board) -> None:
        for machine in board.spec.machines:
            for kind, peripherals in (("button", machine.buttons), ("led", machine.leds)):
                for name, peripheral in peripherals.items():
                    try:
                        await board.session.on(machine.name, check(peripheral, kind))
                    except RenodeCommandError as exc:
                        if exc.kind is not ErrorKind.HELPER:
                            raise
                        what = f"{'button' if kind == 'button' else 'LED'} `{name}`"
                        if board.spec.several:
                            what += f" of machine `{machine.name}`"
                        raise RenodeStartError(f"{what}: {exc.detail}") from exc


@dataclass(kw_only=True)
class _GpioChild(BoundedErrors, Driver):
    parent: Root
    machine: str
    peripheral: str

    async def _run(self, line: str, action: str, waits: bool = False) -> GpioReply:
        parent = self.parent
        async with parent.target.instance(action) as board:
            if waits:
                limit = wait_limit(parent.command_timeout, parent.expect_host_timeout)
                return parse_reply(await board.session.on_wait(self.machine, line, limit))
            return parse_reply(await board.session.on(self.machine, line, parent.command_timeout))


@dataclass(kw_only=True)
class RenodeButton(_GpioChild):
    """A button of the board (`buttons: {name: peripheral}`): on = pressed, off = released."""

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.gpio_client.RenodeButtonClient"

    @export
    async def on(self) -> None:
        """Press the button (held until `off`)."""
        await self._run(button(self.peripheral, "press"), "press a button")

    @export
    async def off(self) -> None:
        """Release the button."""
        await self._run(button(self.peripheral, "release"), "release a button")

    @export
    async def read_pin(self) -> int:
        """1 while pressed, 0 while released."""
        return int((await self._run(button(self.peripheral, "read"), "read a button")).state)

    @export
    async def press(self, seconds: float = 0.1) -> float:
        """Press, let the board run `seconds` of virtual time, release; returns the virtual time of the release.

        A paused board runs for the press and stays paused at the release; a running one keeps running.
        """
        seconds = check_number(seconds, "seconds (virtual)", 0, MAX_VIRTUAL_SECONDS, above=True)
        line = button_hold(self.peripheral, seconds, self.parent.expect_host_timeout)
        reply = await self._run(line, "press a button", waits=True)
        if reply.outcome == "host-timeout":
            raise TimeoutError(_host_limit(reply))
        return reply.time


@dataclass(kw_only=True)
class RenodeLed(_GpioChild):
    """An LED of the board (`leds: {name: peripheral}`): read it, or wait for it in virtual time."""

    label: str  # its name in the config (Driver.name is taken)

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.gpio_client.RenodeLedClient"

    @export
    async def read_pin(self) -> int:
        """1 while lit, 0 while dark."""
        return int((await self._run(led(self.peripheral), "read an LED")).state)

    async def _wait(self, edge: str, timeout: float | None, what: str) -> float:
        seconds = _wait_timeout(timeout)
        line = led_wait(self.peripheral, edge, seconds, self.parent.expect_host_timeout)
        reply = await self._run(line, "wait for an LED", waits=True)
        if reply.outcome == "timeout":
            raise TimeoutError(
                f"LED {self.label} ({self.peripheral}) did not {what} within {seconds:g} s of virtual time "
                f"(now {reply.now:.6f} s, it is {'lit' if reply.state else 'dark'})"
            )
        if reply.outcome == "host-timeout":
            raise TimeoutError(_host_limit(reply))
        return reply.time

    @export
    async def wait_for_active(self, timeout: float | None = None) -> float:
        """Return once the LED is lit (at once if it is), letting the board run at most `timeout` virtual
        seconds; returns the virtual time. Raises TimeoutError."""
        return await self._wait("active", timeout, "light up")

    @export
    async def wait_for_inactive(self, timeout: float | None = None) -> float:
        """Return once the LED is dark (at once if it is); as `wait_for_active`."""
        return await self._wait("inactive", timeout, "go dark")

    @export
    async def wait_for_edge(self, edge_type: str, timeout: float | None = None) -> float:
        """Return at the next `rising` (dark to lit) or `falling` edge; as `wait_for_active`."""
        if edge_type not in EDGES:
            raise ValueError(f"edge_type must be one of {', '.join(EDGES)}: {edge_type!r}")
        return await self._wait(edge_type, timeout, f"show a {edge_type} edge")


def _host_limit(reply: GpioReply) -> str:
    return (
        f"the exporter's host time limit (expect_host_timeout) passed at virtual time {reply.now:.6f} s: "
        "the emulation runs slower than that allows"
    )
