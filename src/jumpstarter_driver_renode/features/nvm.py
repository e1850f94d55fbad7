"""Non-volatile memory: each machine's flash keeps what the firmware wrote across resets, power cycles and
new Renode processes, reads 0xFF where nothing was ever written, and can lose power at an exact flash
operation.

Which memories: the machine's `non_volatile` list from the config, else the memory its boot image is
flashed into (`sysbus WhatIsAt` at the image's first address). At power-on each one is blanked or gets
its saved contents back (before the images flashed since are written over them, by the flasher); at
power off, with the board paused, its touched segments are saved (inside_renode/flash.py, flashstore.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .. import commands
from ..errors import RenodeCommandError, RenodeError
from ..flashstore import MachineFlash
from ..session import wait_limit
from ..spec import Firmware, MachineSpec
from .base import Board, Feature

_WHAT_IS_AT_RE = re.compile(r"^(\S+) registered at", re.MULTILINE)
_CUT_RE = re.compile(r"jumpstarter-cut (cut|timeout|host-timeout) (\d+) (\d+) (\d+)")


def memory_at(output: str, machine: str) -> str | None:
    """The peripheral path `sysbus WhatIsAt` names (`<machine>.flash registered at <...>`), or None."""
    m = _WHAT_IS_AT_RE.search(output)
    if m is None:
        return None
    name = m[1].removeprefix(f"{machine}.")
    return name if name.startswith("sysbus.") else f"sysbus.{name}"


def blank_command(memory: str) -> str:
    return f'jumpstarter_nvm_blank "{commands.check_peripheral(memory, "non-volatile memory")}"'


def load_command(memory: str, path) -> str:
    return f'jumpstarter_nvm_load "{commands.check_peripheral(memory)}" {commands.string_token(str(path), "path")}'


def save_command(memory: str, path) -> str:
    return f'jumpstarter_nvm_save "{commands.check_peripheral(memory)}" {commands.string_token(str(path), "path")}'


@dataclass(frozen=True)
class CutReply:
    outcome: str  # cut, timeout or host-timeout
    operations: int  # flash operations counted during the call
    time: float  # virtual seconds: the cut, or the end of the wait
    now: float


def parse_cut(output: str) -> CutReply:
    m = _CUT_RE.search(output)
    if m is None:
        raise RenodeError(f"unexpected reply from Renode's power-cut helper: {output!r}")
    return CutReply(m[1], int(m[2]), int(m[3]) / 1e9, int(m[4]) / 1e9)


class NonVolatile(Feature):
    helpers = ("flash.py",)

    async def finish(self, board: Board) -> None:
        assert board.flash is not None
        for machine in board.spec.machines:
            flash = board.flash.machine(machine.name)
            flash.memories = await self._memories(board, machine, flash)
            for memory in flash.memories:
                saved = board.flash.saved(machine.name, memory)
                line = blank_command(memory) if saved is None else load_command(memory, saved)
                await board.session.on(machine.name, line, timeout=board.spec.startup_timeout)

    async def _memories(self, board: Board, machine: MachineSpec, flash: MachineFlash) -> tuple[str, ...]:
        if machine.non_volatile is not None:
            return machine.non_volatile
        if flash.memories or not flash.images:
            return flash.memories
        first = (flash.boot or flash.images[0]).entry
        if first is None:
            return ()
        output = await board.session.on(machine.name, f"sysbus WhatIsAt 0x{first.vector_table:X}")
        memory = memory_at(output, board.session.names[machine.name])
        try:  # a memory, or nothing that persists: the helper refuses anything else
            if memory is not None:
                await board.session.on(machine.name, blank_command(memory))
                return (memory,)
        except RenodeCommandError as exc:
            board.log.warning("%s: %s holds the image but is no memory (%s)", machine.name, memory, exc)
        board.log.warning(
            "%s: no memory found at 0x%X, where the image starts: its flash will not persist (set `non_volatile`)",
            machine.name,
            first.vector_table,
        )
        return ()

    async def reflash(self, board: Board, machine: str, firmware: Firmware | None) -> None:
        """An erase blanks the memories now; a first image on a board powered on without one finds its memory
        (and blanks it) before the flasher writes the image."""
        assert board.flash is not None
        flash = board.flash.machine(machine)
        if firmware is not None and flash.memories:
            return
        async with board.session.paused():
            if firmware is not None:
                spec = next(m for m in board.spec.machines if m.name == machine)
                flash.memories = await self._memories(board, spec, flash)
            for memory in flash.memories:
                await board.session.on(machine, blank_command(memory))

    async def power_off(self, board: Board) -> None:
        """Save each memory (as it was at a power cut, if one happened) where the next power-on finds it: every
        memory of a machine written first, then all put in place together. An image outside them stays
        pending (written again at every power-on, as RAM would need)."""
        if board.flash is None:
            return
        for machine in board.spec.machines:
            flash = board.flash.machine(machine.name)
            if not flash.memories:
                continue  # nothing persists: its images are written again at every power-on
            written = {memory: board.flash.temporary(machine.name, memory) for memory in flash.memories}
            for memory, path in written.items():
                await board.session.on(machine.name, save_command(memory, path))
            held = [image for image in flash.pending if await self._holds(board, machine.name, flash, image)]
            board.flash.keep(machine.name, written, held)

    async def _holds(self, board: Board, machine: str, flash: MachineFlash, image: Firmware) -> bool:
        """Whether the image starts in one of the machine's non-volatile memories."""
        if image.entry is None:
            return False
        output = await board.session.on(machine, f"sysbus WhatIsAt 0x{image.entry.vector_table:X}")
        return memory_at(output, board.session.names[machine]) in flash.memories

    async def cut_power(
        self, board: Board, machine: str, operation: int, timeout: float, host_timeout: float
    ) -> CutReply:
        """Run until the machine's `operation`th flash operation from now and stop right before it takes
        effect (the caller then powers the target off)."""
        assert board.flash is not None
        memories = board.flash.machine(machine).memories
        if not memories:
            raise RenodeError(f"{machine} has no non-volatile memory: there is no flash to cut power on")
        line = (
            f'jumpstarter_power_cut "{operation}" "{",".join(memories)}" "{round(timeout * 1e9)}" '
            f'"{round(host_timeout * 1000)}"'
        )
        limit = wait_limit(board.spec.command_timeout, host_timeout)
        return parse_cut(await board.session.on_wait(machine, line, limit))
