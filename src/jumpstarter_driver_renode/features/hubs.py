"""Hubs: UART hubs, CAN hubs and Ethernet switches wiring peripherals of the target's machines.

Created on a spare after the UART terminals, while nothing runs: a hub created in a running emulation
drops everything until the next pause and start (infra ExternalsManager.cs, measured). `Load` brings
hubs and their connections back.
"""

from __future__ import annotations

from .. import commands
from ..errors import ErrorKind, RenodeCommandError, RenodeStartError
from .base import Board, Feature


class Hubs(Feature):
    async def prepare(self, board: Board) -> None:
        session = board.session
        for hub in board.spec.hubs:
            await session.execute(hub.create_command())
            for machine, peripheral in hub.connect:
                try:
                    await session.on(machine, commands.connect_uart(peripheral, hub.name))
                except RenodeCommandError as exc:
                    # Renode answers a name it cannot resolve with the command's signatures.
                    why = "no such peripheral in that machine" if exc.kind is ErrorKind.NO_SUCH_NAME else exc.detail
                    raise RenodeStartError(
                        f"hub `{hub.name}` ({hub.kind}): cannot connect `{machine}:{peripheral}`: {why}"
                    ) from exc
