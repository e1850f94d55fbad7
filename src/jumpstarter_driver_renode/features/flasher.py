"""Firmware: each machine's image loaded at power-on, its entry point, the `reset` macro that reloads it,
a hot re-flash, and the `flasher` child that receives uploads.

`LoadELF` sets a Cortex-M's vector table (and other cores' PC) from the ELF; `LoadBinary` and `LoadHEX`
only write memory, so for BIN and HEX images the driver sets the boot CPU's entry itself. A reset forgets
it, so the reset macro sets it again (design record, section 7).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from jumpstarter.driver import Driver, FlasherInterface, export

from .. import commands
from ..bounded import BoundedErrors
from ..errors import FirmwareError, RenodeCommandError, RenodeError, RenodeStartError
from ..firmware import detect_format, image_entry
from ..spec import BoardSpec, BootCpu, Firmware, MachineSpec
from .base import Board, Feature, Root

_CPU_RE = re.compile(r"\[CPU: ([^\[\]\s]+)\[\d+\]\]")
_REARM_RE = re.compile(r"jumpstarter-rearm (done|unavailable)")
_images = itertools.count(1)


def parse_cpu_names(output: str, machine: str | None) -> list[str]:
    """CPU names from `sysbus GetCPUs` (`[CPU: <machine>.<name>[<slot>]]` per CPU), machine prefix removed."""
    names = []
    for qualified in _CPU_RE.findall(output):
        prefix = f"{machine}."
        names.append(qualified[len(prefix) :] if machine and qualified.startswith(prefix) else qualified)
    return names


def parse_rearm(output: str) -> bool:
    """Whether the helper re-armed the reset macro (`inside_renode/machine.py`)."""
    m = _REARM_RE.search(output)
    if m is None:
        raise RenodeError(f"unexpected reply from Renode's reset helper: {output!r}")
    return m[1] == "done"


async def receive_image(
    chunks: AsyncIterator[bytes], folder: Path, address: str | int | None, default_address: int | None
) -> Firmware:
    """Write an upload into `folder` and check it; raises FirmwareError (and keeps nothing) if unusable."""
    load_address = commands.parse_address(address) if address is not None else default_address
    folder.mkdir(exist_ok=True)  # noqa: ASYNC240 (a local directory: cheaper than a thread hop)
    path = folder / f"image-{next(_images)}"
    try:
        with path.open("wb") as out:  # page-cache writes of 64 KiB chunks: cheaper than a thread hop
            async for chunk in chunks:
                out.write(chunk)
        kind = detect_format(path)
        if kind == "bin" and load_address is None:
            raise FirmwareError(
                "this image is a raw binary (not ELF or Intel HEX): give its load address, e.g. "
                "`flash fw.bin --load-address 0x08000000`, or set `load_address` in the exporter config"
            )
        address = load_address if kind == "bin" else None
        return Firmware(path, kind, address, image_entry(path, kind, address))
    except BaseException:
        path.unlink(missing_ok=True)
        raise


class Flasher(Feature):
    helpers = ("machine.py",)

    def __init__(self) -> None:
        self.boot_cpus: dict[str, BootCpu] = {}  # machine -> found on its first BIN or HEX load

    @staticmethod
    def children(root: Root, machine: MachineSpec, spec: BoardSpec) -> dict[str, Driver]:
        return {"flasher": RenodeFlasher(parent=root, machine=machine.name)}

    async def finish(self, board: Board) -> None:
        for machine in board.spec.machines:
            if machine.name in board.firmware:
                await self.load(board, machine.name, board.firmware[machine.name])

    async def load(self, board: Board, machine: str, firmware: Firmware) -> None:
        on = board.session.on
        await on(machine, firmware.load_command(), timeout=board.spec.startup_timeout)
        if firmware.entry is not None:
            await on(machine, (await self._boot_cpu(board, machine)).entry_command(firmware.entry))
        # Renode's own board scripts reload the image on every reset through this macro. A reset also
        # forgets a BIN or HEX image's entry, so the macro sets it again.
        await on(machine, commands.reset_macro(await self._load_line(board, machine, firmware)))

    async def reflash(self, board: Board, machine: str, firmware: Firmware) -> None:
        """Load a new image into a machine and reset it; the emulation keeps its run state."""
        async with board.session.paused():  # LoadELF refuses an unpaused machine
            await self.load(board, machine, firmware)
            board.firmware[machine] = firmware
            await board.reset(machine)

    async def after_load(self, board: Board) -> None:
        """After `Load` a reset no longer runs the reset macro, and macros are gone: both set up again."""
        for machine in board.spec.machines:
            if not parse_rearm(await board.session.on(machine.name, "jumpstarter_rearm_reset")):
                board.log.warning(
                    "this Renode cannot re-arm the reset macro after a snapshot load: resets may halt the CPU"
                )
            if machine.name in board.firmware:
                line = await self._load_line(board, machine.name, board.firmware[machine.name])
                await board.session.on(machine.name, commands.reset_macro(line))

    async def catch_up(self, board: Board, firmware: dict[str, Firmware]) -> None:
        """A spare that loaded a snapshot before a re-flash: its reset macros load the target's images."""
        for machine, image in firmware.items():
            if board.firmware.get(machine) != image:
                board.firmware[machine] = image
                await board.session.on(machine, commands.reset_macro(await self._load_line(board, machine, image)))

    async def _load_line(self, board: Board, machine: str, firmware: Firmware) -> str:
        """The image's load command, with its entry for BIN and HEX, as one monitor line."""
        if firmware.entry is None:
            return firmware.load_command()
        cpu = await self._boot_cpu(board, machine)
        return f"{firmware.load_command()}; {cpu.entry_command(firmware.entry)}"

    async def _boot_cpu(self, board: Board, machine: str) -> BootCpu:
        """The platform's first CPU, asked once: names differ between platforms (`cpu` is common, not universal)."""
        if machine not in self.boot_cpus:
            on = board.session.on
            names = parse_cpu_names(await on(machine, "sysbus GetCPUs"), board.session.names[machine])
            if not names:
                raise RenodeStartError("the platform has no CPU (`sysbus GetCPUs` listed none)")
            name = f"sysbus.{names[0]}"
            try:
                await on(machine, f"{name} VectorTableOffset")
                cortex_m = True
            except RenodeCommandError:  # only Cortex-M cores have a vector table offset
                cortex_m = False
            self.boot_cpus[machine] = BootCpu(name, cortex_m)
        return self.boot_cpus[machine]


@dataclass(kw_only=True)
class RenodeFlasher(BoundedErrors, FlasherInterface, Driver):
    parent: Root
    machine: str

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.client.RenodeFlasherClient"

    @export
    async def flash(self, source, target: str | None = None) -> str:
        """Store an image (ELF, Intel HEX or raw binary; `target` = load address for raw binaries).

        Before power-on the image is loaded by `on`; while running it is loaded now and the machine reset.
        """
        async with self.resource(source) as res:  # resources are registered on this child
            return await self.parent.store_firmware(res, target, self.machine)

    @export
    async def dump(self, target, partition: str | None = None):
        raise NotImplementedError("reading firmware back from a Renode target is not supported")
