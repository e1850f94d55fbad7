"""Images: ELF validation (ELFSharp) and Intel HEX parsing, with Renode's error texts."""

from errors import CommandError


def elf_info(path, data, sep):
    """Validates like ELFSharp's ELFReader.TryLoad; returns (e_machine, entry, segments)."""

    # infra SystemBus.cs GetELFFromFile (1.14) / ELFUtils.cs (1.16): every error is wrapped
    # as "Error while loading ELF: <message>" (1.14 adds a final '.').
    def fail(msg):
        raise CommandError("Error while loading ELF: %s%s" % (msg, sep))

    # ELFSharp Consts.MinimalELFSize = 16; CheckELFType: magic, then class byte
    if len(data) < 16 or data[:4] != b"\x7fELF":
        fail("Could not load ELF from path: %s" % path)
    cls = data[4]
    is64 = cls != 1
    le = data[5] != 2
    end = "<" if le else ">"
    import struct

    try:
        if is64:
            (e_machine,) = struct.unpack_from(end + "H", data, 18)
            entry, phoff = struct.unpack_from(end + "QQ", data, 24)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 54)
        else:
            (e_machine,) = struct.unpack_from(end + "H", data, 18)
            entry, phoff = struct.unpack_from(end + "II", data, 24)
            phentsize, phnum = struct.unpack_from(end + "HH", data, 42)
        segments = []
        for k in range(phnum):
            off = phoff + k * phentsize
            if is64:
                p_type, _, p_offset, p_vaddr, p_paddr, p_filesz = struct.unpack_from(end + "IIQQQQ", data, off)
            else:
                p_type, p_offset, p_vaddr, p_paddr, p_filesz = struct.unpack_from(end + "IIIII", data, off)  # noqa: RUF059 - moved as is: the ELF program header's fields in order
            if p_type == 1:
                if p_offset + p_filesz > len(data):
                    raise struct.error("segment")
                segments.append((p_paddr, p_filesz, p_offset))
    except struct.error:
        # .NET BinaryReader past the end: EndOfStreamException
        fail("Unable to read beyond the end of the stream.")
    return e_machine, entry, segments


def parse_hex(path):
    """infra src/Emulator/Main/Core/Extensions/FileLoaderExtensions.cs LoadHEX (1.14).
    Note: Renode does NOT verify record checksums; these are its only error texts."""
    chunks, ext_lin, ext_seg, eof = [], 0, 0, False
    with open(path, encoding="utf-8", errors="replace", newline=None) as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        if eof:
            raise CommandError("Unexpected data after the end of file marker at line #%d" % n)
        if len(line) < 11:
            raise CommandError("Line is too short error at line #%d." % n)
        try:
            if line[0] != ":":
                raise ValueError
            length = int(line[1:3], 16)
            address = int(line[3:7], 16)
            rtype = int(line[7:9], 16)
        except ValueError:
            raise CommandError("Parsing error at line #%d: %s. Could not parse header" % (n, line))  # noqa: B904 - the monitor prints this text instead
        if len(line) < 9 + length * 2:
            raise CommandError("Parsing error at line #%d: %s. Line too short" % (n, line))
        if rtype == 0:
            try:
                data = bytes.fromhex(line[9 : 9 + length * 2])
            except ValueError:
                raise CommandError("Parsing error at line #%d: %s. Could not parse bytes" % (n, line))  # noqa: B904 - the monitor prints this text instead
            chunks.append(((ext_lin << 16) | (ext_seg << 4) | address, data))
        elif rtype == 1:
            eof = True
        elif rtype == 2:
            ext_seg = int(line[9:13], 16)
        elif rtype == 4:
            ext_lin = int(line[9:13], 16)
    return chunks
