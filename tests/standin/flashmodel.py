"""Memory contents, the STM32F4 flash controller, and the project's flash-using firmware, as the stand-in
plays them.

Memory follows infra `Main/Peripherals/Memory/MappedMemory.cs` (measured on 1.16.1): segments (a 16th of
the memory, rounded up to 64 KiB, between 64 KiB and 16 MiB: 128 KiB for a 2 MiB flash, 16 MiB for the
FE310's 512 MiB XIP window, as measured) allocated when first touched and filled with `ResetByte` (0 by default); `ZeroAll` refills the touched
ones; `Reset` (a machine reset) leaves the contents alone; `sysbus WhatIsAt` names the memory holding
an address as `<machine>.<name> registered at <0xSTART, 0xEND>`.

The flash controller follows infra `Peripherals/MTD/STM32F4_FlashController.cs`: FLASH_KEYR (0x04)
unlocks FLASH_CR (0x10) with 0x45670123, 0xCDEF89AB; a write to a locked CR is ignored with a warning;
STRT with SER erases a sector of its (partly wrong) table; PG is ignored (CPU stores reach the flash
directly). A `sysbus SetHookBeforePeripheralWrite` hook sees each 32-bit write first and may change the
value (SystemBusGenerated.cs WriteHookWrapper).

Firmware in memory: the CPU runs whatever bytes are there. The stand-in cannot execute code, so it
recognises the project's builds by the strings in their images (firmware/README.md): the banner, the
`counter` build's marker, the bootloader's marker.
"""

from __future__ import annotations

import re

MIN_SEGMENT, MAX_SEGMENT = 64 * 1024, 16 * 1024 * 1024
BOOTLOADER_MARKER = re.compile(rb"jumpstarter-renode-fw bootloader app=0x([0-9A-Fa-f]{8})")
COUNTER_MARKER = b"jumpstarter-renode-fw feature=boot-counter"
SCAN = 0x20000  # how far from its vector table an image's strings are looked for

# STM32F4_FlashController.cs
KEYS = (0x45670123, 0xCDEF89AB)
CR, KEYR = 0x10, 0x04
PG, SER, STRT, LOCK = 1 << 0, 1 << 1, 1 << 16, 1 << 31
SECTORS = {  # the model's table: sectors 4 and 5 are 16 and 64 KiB there (RM0090: 64 and 128 KiB)
    **{n: (n * 0x4000, 0x4000) for n in range(4)},
    4: (0x10000, 0x4000),
    5: (0x20000, 0x10000),
    **{n: (0x40000 + (n - 6) * 0x20000, 0x20000) for n in range(6, 12)},
}
COUNTER_SLOTS = ((10, 0x080C0000), (11, 0x080E0000))
COMMIT = 0x600DF00D


class Memory:
    """The platform's memories: regions by start address, with their contents by segment."""

    def __init__(self, regions=()):
        self.regions = list(regions)  # [(start, size)]
        self.names = {}  # start -> peripheral name (`flash`)
        self.reset_byte = {}  # start -> ResetByte
        self.segments = {}  # (start, index) -> bytearray(SEGMENT)

    def add(self, name, start, size):
        self.regions.append((start, size))
        self.names[start] = name

    def region(self, address):
        for start, size in self.regions:
            if start <= address < start + size:
                return start, size
        return None

    def is_memory(self, address):
        return self.region(address) is not None

    def segment_size(self, start):
        """MappedMemory's automatic segment size (RecommendedNumberOfSegments = 16)."""
        proposed = min(MAX_SEGMENT, max(MIN_SEGMENT, dict(self.regions)[start] // 16))
        return -(-proposed // MIN_SEGMENT) * MIN_SEGMENT

    def touch(self, start, index):
        key = (start, index)
        if key not in self.segments:
            self.segments[key] = bytearray([self.reset_byte.get(start, 0)]) * self.segment_size(start)
        return self.segments[key]

    def touched(self, start, index):
        return (start, index) in self.segments

    def zero_all(self, start):
        for (region, _), data in self.segments.items():
            if region == start:
                data[:] = bytes([self.reset_byte.get(start, 0)]) * len(data)

    def write(self, address, data):
        where = self.region(address)
        if where is None:
            return
        start, size = where
        data = bytes(data[: max(0, start + size - address)])
        step = self.segment_size(start)
        offset = address - start
        while data:
            index, inner = divmod(offset, step)
            chunk = data[: step - inner]
            self.touch(start, index)[inner : inner + len(chunk)] = chunk
            data, offset = data[len(chunk) :], offset + len(chunk)

    def read(self, address, count):
        where = self.region(address)
        if where is None:
            return bytes(count)
        start, _ = where
        step = self.segment_size(start)
        out = bytearray()
        offset = address - start
        while len(out) < count:
            index, inner = divmod(offset, step)
            n = min(count - len(out), step - inner)
            data = self.segments.get((start, index))
            out += data[inner : inner + n] if data is not None else bytes([self.reset_byte.get(start, 0)]) * n
            offset += n
        return bytes(out)

    def read_u32(self, address):
        return int.from_bytes(self.read(address, 4), "little")

    def holds(self, address):
        """Whether code was ever written where the CPU starts (a segment never touched holds none)."""
        where = self.region(address)
        return where is not None and self.touched(where[0], (address - where[0]) // self.segment_size(where[0]))

    def state(self):
        return {
            "regions": self.regions,
            "names": list(self.names.items()),
            "reset": list(self.reset_byte.items()),
            "segments": [[s, i, d.hex()] for (s, i), d in self.segments.items()],
        }

    @classmethod
    def from_state(cls, st):
        mem = cls([tuple(r) for r in st["regions"]])
        mem.names = {s: n for s, n in st["names"]}
        mem.reset_byte = {s: b for s, b in st["reset"]}
        mem.segments = {(s, i): bytearray.fromhex(d) for s, i, d in st["segments"]}
        return mem


class FlashController:
    """One STM32F4_FlashController: its lock and CR, the machine's write hook on it, and the flash it erases."""

    def __init__(self, machine, name, flash_start):
        self.machine, self.name, self.flash_start = machine, name, flash_start
        self.locked, self.keys, self.cr = True, [], 0

    def reset(self):
        self.locked, self.keys, self.cr = True, [], 0

    def write(self, offset, value):
        """A 32-bit write from the CPU: the hook first (it may change the value), then the model."""
        hook = self.machine.write_hooks.get(self.name)
        if hook is not None:
            value = int(hook(value, offset)) & 0xFFFFFFFF
        if offset == KEYR:
            self.keys = [*self.keys, value][-2:]
            if tuple(self.keys) == KEYS:
                self.locked = False
        elif offset == CR:
            if self.locked:
                self.machine.log_as(
                    self.name, "WARNING", "Attempted to write 0x%08X to a locked Control register. Ignoring..." % value
                )
                return
            if value & LOCK:
                self.locked = True
            self.cr = value
            if value & STRT and value & SER:
                sector = (value >> 3) & 0xF
                offset_, size = SECTORS.get(sector, (None, 0))
                if offset_ is not None:
                    self.machine.memory.write(self.flash_start + offset_, b"\xff" * size)


def firmware_at(memory, vector_table):
    """(kind, detail) of the project build whose image starts at `vector_table`, from its strings, or None:
    ("bootloader", application address), ("project", image bytes)."""
    image = memory.read(vector_table, SCAN)
    loader = BOOTLOADER_MARKER.search(image)
    if loader is not None:
        return "bootloader", int(loader.group(1), 16)
    return "project", image


def counter_update(machine, console):
    """The `counter` build's boot (firmware/stm32f4/boot_counter.h), one CPU write at a time: a generator
    that yields after every flash controller write, so a precise pause stops it right there."""
    memory = machine.memory
    found, best, current = False, 0, 0
    for slot, (_, address) in enumerate(COUNTER_SLOTS):
        words = [memory.read_u32(address + 4 * i) for i in range(3)]
        if words == [0xFFFFFFFF] * 3:
            continue
        if words[2] == COMMIT and words[1] == (~words[0] & 0xFFFFFFFF):
            if not found or words[0] > current:
                found, best, current = True, slot, words[0]
        else:
            machine.emit_to(console, "flash: torn record in slot %d ignored\r\n" % slot)
    count = current + 1
    sector, address = COUNTER_SLOTS[1 - best if found else 0]
    controller = machine.flash_controller()
    if controller.locked:
        for key in KEYS:
            controller.write(KEYR, key)
            yield
    setup = 0x200 | SER | (sector << 3)
    for value in (setup, setup | STRT, 0x200):
        controller.write(CR, value)
        yield
    for i, word in enumerate((count, ~count & 0xFFFFFFFF, COMMIT)):
        controller.write(CR, 0x200 | PG)
        yield
        memory.write(address + 4 * i, word.to_bytes(4, "little"))
        controller.write(CR, 0x200)
        yield
    controller.write(CR, LOCK)
    yield
    machine.emit_to(console, "boots=%d\r\n" % count)
