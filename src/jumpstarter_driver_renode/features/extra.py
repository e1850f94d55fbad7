"""`extra_commands`: the exporter's own monitor lines, run at power-on before the firmware loads (the
target's with no machine selected when there are several, each machine's with it selected)."""

from __future__ import annotations

from .base import Board, Feature


class ExtraCommands(Feature):
    async def finish(self, board: Board) -> None:
        spec, session = board.spec, board.session
        if spec.several:
            await session.execute("mach clear")  # the target's own extra commands are about the whole emulation
        for command in spec.extra_commands:
            await session.execute(command, timeout=spec.startup_timeout)
        for machine in spec.machines:
            for command in machine.extra_commands:
                await session.on(machine.name, command, timeout=spec.startup_timeout)
