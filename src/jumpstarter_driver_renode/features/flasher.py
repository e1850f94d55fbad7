"""Firmware: the images written into each machine's flash, the entry it boots from, the `reset` macro that
boots it again, a hot re-flash, erase, power cuts, and the `flasher` child that receives uploads.

Images are written into flash like a flashing tool writes them: only their own bytes (features/nvm.py keeps
the rest). The boot CPU's entry comes from the image at the lowest address (firmware.image_entry): Renode's
loaders leave it alone or only guess it, and a reset forgets it, so the reset macro sets it again (design
record, section 7).
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
from ..commands import MAX_VIRTUAL_SECONDS, check_number
from ..errors import FirmwareError, RenodeCommandError, RenodeError, RenodeStartError, RenodeTimeoutError
from ..firmware import detect_format, image_entry
from ..spec import BoardSpec, BootCpu, Firmware, MachineSpec
from .base import Board, Feature, Root
from .nvm import NonVolatile

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
        """Write the images flashed since the flash was last saved (over its saved contents), then boot."""
        assert board.flash is not None
        for machine in board.spec.machines:
            for image in board.flash.machine(machine.name).pending:
                await board.session.on(machine.name, image.load_command(), timeout=board.spec.startup_timeout)
            await self._boot(board, machine.name)

    async def _boot(self, board: Board, machine: str, now: bool = True) -> None:
        """Point the boot CPU at the boot image's entry at every reset (the `reset` macro, which Renode runs at
        `machine Reset` and at the firmware's own resets), and now unless the CPU is mid-run (a snapshot's):
        a reset starts the firmware from its reset vector, as hardware does, and writes nothing into flash."""
        boot = board.firmware.get(machine)
        if boot is None or boot.entry is None:
            return
        line = (await self._boot_cpu(board, machine)).entry_command(boot.entry)
        if now:
            await board.session.on(machine, line)
        await board.session.on(machine, commands.reset_macro(line))

    async def reflash(self, board: Board, machine: str, firmware: Firmware | None) -> None:
        """Write a new image into the machine's flash (an erase was done by the non-volatile memory feature)
        and reset the machine; the emulation keeps its run state."""
        async with board.session.paused():  # LoadELF refuses an unpaused machine
            if firmware is not None:
                await board.session.on(machine, firmware.load_command(), timeout=board.spec.startup_timeout)
                await self._boot(board, machine)
            await board.reset(machine)

    async def before_reset(self, board: Board, machine: str) -> None:
        """A reset starts a halted CPU again, as on the chip (a Renode CPU that halted, e.g. on blank flash,
        stays halted across `machine Reset`: measured on 1.16.1)."""
        if board.firmware.get(machine) is not None:
            await board.session.on(machine, f"{(await self._boot_cpu(board, machine)).name} IsHalted false")

    async def after_load(self, board: Board) -> None:
        """After `Load` a reset no longer runs the reset macro, and macros are gone: both set up again."""
        for machine in board.spec.machines:
            if not parse_rearm(await board.session.on(machine.name, "jumpstarter_rearm_reset")):
                board.log.warning(
                    "this Renode cannot re-arm the reset macro after a snapshot load: resets may halt the CPU"
                )
            await self._boot(board, machine.name, now=False)  # the snapshot's CPU runs on where it was

    async def catch_up(self, board: Board, firmware: dict[str, Firmware]) -> None:
        """A spare that loaded a snapshot before a re-flash: it boots the target's boot images (its flash is the
        snapshot's)."""
        for machine, image in firmware.items():
            if board.firmware.get(machine) != image:
                board.firmware[machine] = image
                await self._boot(board, machine, now=False)

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
    async def erase(self) -> None:
        """Erase the machine's flash (it reads 0xFF) and forget its images; a running board is reset."""
        await self.parent.erase_flash(self.machine)

    @export
    async def cut_power_at(self, operation: int, timeout: float = 10.0) -> bool:
        """Run until the firmware's `operation`th flash operation from now (a program or an erase, counted by
        Renode's flash controller model) and cut the target's power just before it takes effect: the target
        is off afterwards and its flash holds what it held at that instant. False when fewer operations came
        within `timeout` seconds of virtual time: nothing was cut, and the board keeps its run state (a paused
        one stopped exactly `timeout` later)."""
        number = check_number(operation, "operation", 1, 1_000_000)  # JSON carries it as a float
        if not number.is_integer():
            raise ValueError(f"operation must be a whole number: {operation!r}")
        operation = int(number)
        timeout = check_number(timeout, "timeout (virtual seconds)", 0, MAX_VIRTUAL_SECONDS, above=True)
        host_timeout = self.parent.expect_host_timeout

        async def cut(board: Board) -> bool:
            reply = await board.feature(NonVolatile).cut_power(board, self.machine, operation, timeout, host_timeout)
            if reply.outcome == "host-timeout":
                raise RenodeTimeoutError(f"{host_timeout:g} s passed (host time) before the operation or the timeout")
            return reply.outcome == "cut"

        return await self.parent.target.cut_power(cut)

    @export
    async def dump(self, target, partition: str | None = None):
        raise NotImplementedError("reading firmware back from a Renode target is not supported")
