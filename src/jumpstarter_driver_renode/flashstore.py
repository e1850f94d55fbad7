"""A target's non-volatile memory between Renode processes: what outlives a power cycle.

Per machine: the images flashed since the last erase (oldest first), the contents of each non-volatile
memory as saved at the last power off (one file each, in the target's directory), and the images those
contents do not hold yet (pending). A power-on puts the saved contents back and writes the pending
images over them, as a flashing tool writes only an image's own bytes; the next power off saves the
memories again. Host-side state only: features/nvm.py moves it in and out of Renode.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from .spec import Firmware


@dataclass
class MachineFlash:
    images: list[Firmware] = field(default_factory=list)  # flashed since the last erase, oldest first
    pending: list[Firmware] = field(default_factory=list)  # those the saved contents do not hold: written at power-on
    memories: tuple[str, ...] = ()  # its non-volatile memories (peripheral paths), once known

    @property
    def boot(self) -> Firmware | None:
        """The image the machine boots: the one at the lowest address (a bootloader before its
        application), the latest of those if several start there."""
        booting = [image for image in self.images if image.entry is not None]
        if not booting:
            return None
        lowest = min(image.entry.vector_table for image in booting)
        return [image for image in booting if image.entry.vector_table == lowest][-1]


class FlashStore:
    def __init__(self, folder: Callable[[], Path]):
        self._folder = folder  # the target's directory for it (created when something is saved)
        self._machines: dict[str, MachineFlash] = {}

    @property
    def folder(self) -> Path:
        return self._folder()

    def machine(self, name: str) -> MachineFlash:
        return self._machines.setdefault(name, MachineFlash())

    def boot_images(self) -> dict[str, Firmware]:
        """machine -> the image it boots, for machines that have one."""
        return {name: m.boot for name, m in self._machines.items() if m.boot is not None}

    def add(self, machine: str, image: Firmware) -> None:
        """An image flashed: written over the contents at the next power-on (and now, if the board runs)."""
        flash = self.machine(machine)
        flash.images.append(image)
        flash.pending.append(image)

    def discard(self, machine: str, image: Firmware | None) -> None:
        """An image that could not be written (a failed re-flash): forgotten, its file removed."""
        if image is None:
            return
        flash = self.machine(machine)
        if image in flash.pending:
            flash.images.remove(image)
            flash.pending.remove(image)
        image.path.unlink(missing_ok=True)

    def contents(self, machine: str, memory: str) -> Path:
        return self.folder / f"{machine}.{memory}.nvm"

    def saved(self, machine: str, memory: str) -> Path | None:
        """The saved contents of a memory, if it was ever saved since the last erase."""
        path = self.contents(machine, memory)
        return path if path.exists() else None

    def keep(self, machine: str, written: dict[str, Path], images: list[Firmware]) -> None:
        """Each memory's contents were written to a temporary file (`temporary()`): they are the saved ones now,
        holding `images`, whose files are no longer needed (their entries stay known)."""
        for memory, path in written.items():
            os.replace(path, self.contents(machine, memory))
        flash = self.machine(machine)
        for image in images:
            image.path.unlink(missing_ok=True)
        flash.pending = [image for image in flash.pending if image not in images]

    def temporary(self, machine: str, memory: str) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True)
        return self.folder / f".{machine}.{memory}.nvm.new"

    def erase(self, machine: str) -> None:
        """Blank: no saved contents, no images."""
        flash = self.machine(machine)
        for image in flash.pending:
            image.path.unlink(missing_ok=True)
        for memory in flash.memories:
            self.contents(machine, memory).unlink(missing_ok=True)
        self._machines[machine] = MachineFlash(memories=flash.memories)
