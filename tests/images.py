"""Firmware images for tests, built byte by byte (no toolchain needed)."""

from __future__ import annotations

import struct

EM_ARM = 40
EM_RISCV = 243


def vector_table(address: int = 0x08000000, stack: int = 0x20020000) -> bytes:
    """A Cortex-M vector table (initial SP, reset vector in Thumb mode just after the table)."""
    return struct.pack("<II", stack, address + 8 | 1)


def elf32(code: bytes, *, machine: int = EM_ARM, address: int = 0x08000000, entry: int | None = None) -> bytes:
    """A minimal little-endian ELF32 executable with one PT_LOAD segment holding `code`.

    An ARM image starts with a vector table, so a Cortex-M starts inside it (Renode reads SP and PC there).
    """
    if machine == EM_ARM:
        code = vector_table(address) + code
    ehsize, phentsize = 52, 32
    offset = ehsize + phentsize
    header = b"\x7fELF" + bytes([1, 1, 1, 0]) + bytes(8)
    header += struct.pack(
        "<HHIIIIIHHHHHH",
        2,  # ET_EXEC
        machine,
        1,
        address if entry is None else entry,
        ehsize,  # program headers right after the ELF header
        0,  # no section headers
        0x5000000 if machine == EM_ARM else 0,
        ehsize,
        phentsize,
        1,
        0,
        0,
        0,
    )
    phdr = struct.pack("<IIIIIIII", 1, offset, address, address, len(code), len(code), 5, 4)
    return header + phdr + code


def intel_hex(data: bytes, address: int = 0x08000000) -> bytes:
    """Intel HEX records for `data` at `address` (extended linear address + data + EOF)."""

    def record(kind: int, addr: int, payload: bytes) -> str:
        body = bytes([len(payload), addr >> 8 & 0xFF, addr & 0xFF, kind]) + payload
        return ":" + (body + bytes([-sum(body) & 0xFF])).hex().upper()

    lines = [record(4, 0, struct.pack(">H", address >> 16))]
    for i in range(0, len(data), 16):
        lines.append(record(0, (address + i) & 0xFFFF, data[i : i + 16]))
    lines.append(record(1, 0, b""))
    return ("\n".join(lines) + "\n").encode()
