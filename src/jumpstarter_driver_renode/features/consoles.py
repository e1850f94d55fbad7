"""UARTs and consoles: a PTY terminal per configured UART, read from power-on by the target's channels
(uart.py), and the console children that speak PySerial's client protocol.

Snapshots hold no PTY terminal (inside_renode/terminals.py): around `Save` and `Load` each terminal is
disconnected and taken out of the emulation, then put into whichever emulation is current.
"""

from __future__ import annotations

import contextlib
import os
import termios
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

from jumpstarter.driver import Driver, exportstream

from .. import commands
from ..errors import RenodeError, RenodeStartError
from ..spec import BoardSpec, MachineSpec, Uart
from ..uart import UartChannel
from .base import Board, Feature, Root


class Consoles(Feature):
    helpers = ("terminals.py",)

    def __init__(self) -> None:
        self.links: dict[str, Path] = {}  # channel key -> the PTY link its channel reads
        self.reading = False  # whether the target's channels read this process's PTYs
        self._parked: list[tuple[Uart, bool]] = []  # during a Save or Load: each terminal, and if taken out

    @staticmethod
    def children(root: Root, machine: MachineSpec, spec: BoardSpec) -> dict[str, Driver]:
        return {
            uart.console: RenodeConsole(channel=root.target.channels[uart.key])
            for uart in spec.uarts
            if uart.machine == machine.name
        }

    async def prepare(self, board: Board) -> None:
        """A PTY terminal per console, connected to its UART (a channel reads it once the board starts)."""
        session = board.session
        for uart in board.spec.uarts:
            link = board.files.uart_link(uart.slug)
            self.links[uart.key] = link
            await session.execute(commands.create_pty_terminal(uart.terminal, link))
            try:
                await session.on(uart.machine, commands.connect_uart(uart.peripheral, uart.terminal))
            except RenodeError as exc:
                raise RenodeStartError(
                    f"cannot connect UART `{uart.peripheral}` (console `{uart.key}`): the platform has no such "
                    f"UART? {exc}"
                ) from exc

    async def finish(self, board: Board) -> None:
        self.attach(board, fresh=True)

    def attach(self, board: Board, fresh: bool) -> None:
        """The target's channels read this process's PTYs from now on (`fresh`: a power-on, backlog cleared)."""
        for uart in board.spec.uarts:
            board.channels[uart.key].attach(self.links[uart.key], fresh)
        self.reading = True

    def release(self, board: Board) -> None:
        self.detach(board)

    def detach(self, board: Board) -> None:
        """Stop reading the UARTs, if this process is the one they read (a spare never is)."""
        if self.reading:
            for uart in board.spec.uarts:
                board.channels[uart.key].detach()
            self.reading = False

    async def drain(self, board: Board) -> None:
        """Deliver what the UARTs printed and the channels have not read yet."""
        if self.reading:
            for uart in board.spec.uarts:
                await board.channels[uart.key].drain()

    def discard_unread(self) -> None:
        """Empty this process's PTYs (a Renode a restore replaced may hold output its consoles did not read)."""
        for link in self.links.values():
            try:
                fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                termios.tcflush(fd, termios.TCIFLUSH)
            except termios.error:
                pass
            finally:
                os.close(fd)

    async def park(self, board: Board, replacing: bool) -> None:
        """Before Save/Load: each terminal is disconnected and taken out of the emulation (`_parked` says how
        far each one got). Before a Load, what the replaced run printed is delivered first, or dropped if no
        channel reads this process (a spare: it must not reach a console when this Renode runs again)."""
        if replacing and self.reading:
            await self.drain(board)
        elif replacing:
            self.discard_unread()
        session = board.session
        for uart in board.spec.uarts:
            await session.on(uart.machine, commands.disconnect_uart(uart.peripheral, uart.terminal))
            self._parked.append((uart, False))
            await session.execute(commands.park_terminal(uart.terminal))
            self._parked[-1] = (uart, True)

    async def unpark(self, board: Board, replaced: bool) -> None:
        """Undo `park` as far as it got, in whichever emulation is current: every terminal is tried, and the
        first failure is raised after."""
        failure: RenodeError | None = None
        parked, self._parked = self._parked, []
        for uart, out in parked:
            try:
                if out:
                    await board.session.execute(commands.unpark_terminal(uart.terminal))
                await board.session.on(uart.machine, commands.connect_uart(uart.peripheral, uart.terminal))
            except RenodeError as exc:
                failure = failure or exc
        if failure is not None:
            raise failure

    async def after_load(self, board: Board) -> None:
        """The same PTYs: the channels only start counting and recording afresh (their backlog stays)."""
        if self.reading:
            self.detach(board)
            self.attach(board, fresh=False)

    async def hand_over(self, board: Board, successor: Board) -> None:
        """The channels move to the successor's PTYs; if they cannot (its links are gone), they stay here."""
        await self.drain(board)
        self.detach(board)
        theirs = successor.feature(Consoles)
        try:
            theirs.attach(successor, fresh=False)
        except BaseException:
            self.attach(board, fresh=False)
            raise

    def teardown(self, board: Board) -> None:
        for link in self.links.values():  # Renode's own links, if it did not remove them: never left behind
            with contextlib.suppress(OSError):
                link.unlink()


@dataclass(kw_only=True)
class RenodeConsole(Driver):
    """A UART of the board as a serial console (use with PySerial's client: pexpect, `start-console`)."""

    channel: UartChannel = field(repr=False)

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.client.RenodeConsoleClient"

    @exportstream
    @asynccontextmanager
    async def connect(self):
        async with self.channel.subscribe() as stream:
            yield stream
