"""Firmware images: the format from the content, and sanity checks before Renode sees them."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from .errors import FirmwareError

ELF_MAGIC = b"\x7fELF"

# Containers we recognise but cannot load: a clear error beats Renode loading them as raw bytes.
_REFUSED = {
    b"\x1f\x8b": "a gzip archive (decompress it first)",
    b"PK\x03\x04": "a zip archive",
    b"UF2\n": "a UF2 image (convert it to ELF, HEX or raw binary)",
    b"\xfd7zXZ": "an xz archive (decompress it first)",
    b"(\xb5/\xfd": "a zstd archive (decompress it first)",
}


def detect_format(path: Path) -> str:
    """`elf`, `hex` or `bin`, from the file's content; raises FirmwareError for unusable images."""
    size = path.stat().st_size
    if size == 0:
        raise FirmwareError("firmware image is empty (0 bytes)")
    with path.open("rb") as f:
        head = f.read(64)
    if head.startswith(ELF_MAGIC):
        check_elf_segments(path, size)
        return "elf"
    for magic, what in _REFUSED.items():
        if head.startswith(magic):
            raise FirmwareError(f"firmware image is {what}")
    if head.lstrip(b"\r\n\t ").startswith(b":") and _looks_like_text(head):
        read_intel_hex(path)
        return "hex"
    return "bin"


def _looks_like_text(head: bytes) -> bool:
    return all(b in b"\r\n" or 0x20 <= b < 0x7F for b in head)


def check_elf_header(head: bytes, size: int) -> tuple[int, int, int, bool, str]:
    """Reject ELF files whose header is truncated or inconsistent (Renode reports those poorly)."""
    if len(head) < 6 or head[4] not in (1, 2) or head[5] not in (1, 2):
        raise FirmwareError(
            "firmware image starts like an ELF file but its header is corrupt (bad class or data encoding)"
        )
    is64 = head[4] == 2
    endian = "<" if head[5] == 1 else ">"
    header_size = 64 if is64 else 52
    if size < header_size or len(head) < header_size:
        raise FirmwareError(f"ELF image is truncated: {size} bytes, shorter than its {header_size}-byte header")
    if is64:
        phoff, _shoff = struct.unpack_from(endian + "QQ", head, 32)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 54)
    else:
        phoff, _shoff = struct.unpack_from(endian + "II", head, 28)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 42)
    if phnum == 0:
        raise FirmwareError("ELF image has no program headers: nothing to load")
    if phoff + phentsize * phnum > size:
        raise FirmwareError(
            f"ELF image is truncated: its program headers end at byte {phoff + phentsize * phnum}, the file has {size}"
        )
    return phoff, phentsize, phnum, is64, endian


def _elf_segments(path: Path, size: int) -> tuple[int, list[tuple[int, int, int, int]]]:
    """The ELF's entry point and its program headers as (type, file offset, physical address, file size)."""
    with path.open("rb") as f:
        head = f.read(64)
        phoff, phentsize, phnum, is64, endian = check_elf_header(head, size)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    entry = struct.unpack_from(endian + ("Q" if is64 else "I"), head, 24)[0]
    segments = []
    for index in range(phnum):
        item = table[index * phentsize : (index + 1) * phentsize]
        if is64:
            kind, _, offset, _, paddr, filesz = struct.unpack_from(endian + "IIQQQQ", item, 0)
        else:
            kind, offset, _, paddr, filesz = struct.unpack_from(endian + "IIIII", item, 0)
        segments.append((kind, offset, paddr, filesz))
    return entry, segments


def check_elf_segments(path: Path, size: int) -> None:
    """Every segment the program headers describe must lie inside the file (a cut-off upload does not)."""
    for index, (_, offset, _, filesz) in enumerate(_elf_segments(path, size)[1]):
        if offset + filesz > size:
            raise FirmwareError(
                f"ELF image is truncated: segment {index} ends at byte {offset + filesz}, the file has {size}"
            )


@dataclass(frozen=True)
class Entry:
    """Where an image starts, as the hardware boots it. The driver sets it on the boot CPU at power-on and in
    the `reset` macro: `sysbus LoadBinary`/`LoadHEX` leave the CPU's entry alone, and a reset forgets what
    `LoadELF` guessed (measured on Renode 1.16.1)."""

    vector_table: int  # the image's first address: a Cortex-M reads its initial SP and reset vector there
    start: int  # other cores: the first instruction


PT_LOAD = 1


def image_entry(path: Path, kind: str, address: int | None) -> Entry | None:
    """The entry of a BIN (its load address), HEX (start record, else first address) or ELF image (lowest
    loaded physical address, and its entry point); None for a BIN without an address."""
    if kind == "bin":
        return None if address is None else Entry(address, address)
    if kind == "hex":
        layout = read_intel_hex(path)
        return Entry(layout.lowest, layout.lowest if layout.start is None else layout.start)
    entry, segments = _elf_segments(path, path.stat().st_size)
    loaded = [paddr for kind, _, paddr, filesz in segments if kind == PT_LOAD and filesz]
    if not loaded:
        raise FirmwareError("ELF image has no loadable segment with data: nothing to load")
    return Entry(min(loaded), entry)


@dataclass(frozen=True)
class HexLayout:
    """Where an Intel HEX image puts its bytes, for setting the CPU's entry (LoadHEX does not)."""

    lowest: int  # the first data address: where a Cortex-M image keeps its vector table
    start: int | None  # the start-address record (type 05 or 03), if the image has one


def read_intel_hex(path: Path) -> HexLayout:
    """Validate every record's syntax and checksum, naming the first bad line; return the layout."""
    last_type = None
    base = 0
    lowest: int | None = None
    start: int | None = None
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            line = raw.strip()
            if not line:
                continue
            record = _hex_record(number, line)
            if last_type == 1:
                raise FirmwareError(f"Intel HEX line {number} follows the end-of-file record")
            last_type = kind = record[3]
            payload = record[4:-1]
            if kind == 0 and payload:
                address = base + int.from_bytes(record[1:3], "big")
                lowest = address if lowest is None else min(lowest, address)
            elif kind == 2 and len(payload) == 2:  # extended segment address
                base = int.from_bytes(payload, "big") << 4
            elif kind == 4 and len(payload) == 2:  # extended linear address
                base = int.from_bytes(payload, "big") << 16
            elif kind == 3 and len(payload) == 4:  # start segment address (CS:IP)
                start = (int.from_bytes(payload[:2], "big") << 4) + int.from_bytes(payload[2:], "big")
            elif kind == 5 and len(payload) == 4:  # start linear address
                start = int.from_bytes(payload, "big")
    if last_type != 1:
        raise FirmwareError("Intel HEX image has no end-of-file record (:00000001FF): truncated?")
    if lowest is None:
        raise FirmwareError("Intel HEX image has no data records: nothing to load")
    return HexLayout(lowest, start)


def _hex_record(number: int, line: bytes) -> bytes:
    if not line.startswith(b":") or len(line) < 11 or len(line) % 2 == 0:
        raise FirmwareError(f"Intel HEX line {number} is malformed: {line[:40]!r}")
    try:
        record = bytes.fromhex(line[1:].decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise FirmwareError(f"Intel HEX line {number} has non-hex characters: {line[:40]!r}") from None
    if record[0] + 5 != len(record):
        raise FirmwareError(
            f"Intel HEX line {number}: length field says {record[0]} data bytes, found {len(record) - 5}"
        )
    if sum(record) & 0xFF:
        raise FirmwareError(f"Intel HEX line {number} has a bad checksum")
    return record
