"""Platform descriptions (.repl), minimal: `using "..."` and `name: Type @ parent ...`."""

import os
import re

from errors import CommandError
from tokens import resolve_at_path

REPL_ENTRY = re.compile(r"^([A-Za-z_]\w*)\s*:\s*([A-Za-z_][\w.]*)?\s*(?:@\s*(.+?))?\s*(\{.*\})?\s*$")


def repl_error(path, lineno, col, line, message, code="E00"):
    # renode src/Renode/PlatformDescription/CreationDriver.cs (ParsingError): Error Exx / At f:l:c:
    return CommandError(
        "Error %s: %s" % (code, message), "At %s:%d:%d:" % (path, lineno, col), line, " " * (col - 1) + "^"
    )


def parse_repl(path, seen=None, extra=None):  # noqa: C901 - one branch per kind of .repl line
    """Returns (peripherals {name: (type, registration)}, cpu type or None).

    `extra`, if given, collects {"memories": {name: size}, "svds": [url], "gpios": [[source, pin, target,
    pin]], "masters": {name: master}} across `using`d files (`master: can1`: an STMCAN's master); MappedMemory sizes, the `ApplySVD @url` lines of `init:` sections, and the
    single GPIO links of the entries (`-> gpioPortA@0` under `UserButton:`: the button's only output, pin
    None; `12 -> UserLED@0` under `gpioPortD:`: the port's pin 12). Ranges (`[0-15] -> exti@[0-15]`) and
    named outputs (`IRQ -> plic@3`) are not collected.
    """
    seen = seen or set()
    last, in_init = None, False
    if not os.path.isfile(path):
        raise CommandError("Could not find file '%s'." % path)
    seen.add(os.path.abspath(path))
    periphs, cpu = {}, None
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().split("\n")
    for i, raw in enumerate(lines, 1):
        line = re.sub(r"(^|\s)//.*$", "", raw).rstrip()  # not the `//` of a URL
        if not line.strip():
            continue
        if line[0].isspace():  # attribute / IRQ lines of the preceding entry
            stripped = line.strip()
            if in_init and not re.match(r"^[A-Za-z_]\w*\s*:", stripped):  # a monitor command of `init:`
                svd = re.match(r"^ApplySVD\s+@(\S+)", stripped)
                if svd and extra is not None:
                    extra["svds"].append(svd.group(1))
                continue
            in_init = re.match(r"^init(\s+add)?\s*:\s*$", stripped) is not None
            link = re.match(r"^(\d+)?\s*->\s*([A-Za-z_]\w*)\s*@\s*(\d+)$", stripped)
            if link and extra is not None and last:
                source_pin = int(link.group(1)) if link.group(1) is not None else None
                extra.setdefault("gpios", []).append([last, source_pin, link.group(2), int(link.group(3))])
            size = re.match(r"^size\s*:\s*(0x[0-9a-fA-F]+|\d+)$", stripped)
            if size and extra is not None and last in periphs and periphs[last][0].endswith("MappedMemory"):
                extra["memories"][last] = int(size.group(1), 0)
            master = re.match(r"^master\s*:\s*([A-Za-z_]\w*)$", stripped)
            if master and extra is not None and last:
                extra.setdefault("masters", {})[last] = master.group(1)
            if not (
                re.match(r"^([A-Za-z_]\w*\s*|\d+\s*)?->", stripped)
                or re.match(r"^[A-Za-z_]\w*\s*:", stripped)
                or stripped.startswith("[")
                or stripped in ("{", "}")
            ):
                col = len(line) - len(line.lstrip()) + 1
                raise repl_error(
                    path,
                    i,
                    col,
                    raw,
                    "Syntax error, unexpected '%s'; expected attribute, interrupt or end of entry" % stripped[:1],
                )
            continue
        m = re.match(r'^using\s+"([^"]+)"(?:\s+prefixed\s+"[^"]*")?\s*;?$', line)
        if m:
            target = m.group(1)
            if target.startswith("./") or target.startswith("../"):
                target = os.path.join(os.path.dirname(path), target)
            else:  # renode PlatformDescriptionMachineExtensions.cs: searched on the monitor path
                target = resolve_at_path(target)
            if not os.path.isfile(target):
                raise repl_error(path, i, 7, raw, "Could not find file '%s'." % m.group(1), "E03")
            if os.path.abspath(target) not in seen:
                sub, subcpu = parse_repl(target, seen, extra)
                periphs.update(sub)
                cpu = cpu or subcpu
            continue
        m = REPL_ENTRY.match(line)
        if not m:
            col = 1
            while col <= len(line) and (line[col - 1].isalnum() or line[col - 1] == "_"):
                col += 1
            raise repl_error(
                path,
                i,
                col,
                raw,
                "Syntax error, unexpected '%s'; expected ':'" % (line[col - 1 : col] or "end of input"),
            )
        name, typ, reg = m.group(1), m.group(2), m.group(3)
        last, in_init = name, False
        if typ:
            periphs[name] = (typ, (reg or "").strip())
            if typ.startswith("CPU."):
                cpu = typ
    return periphs, cpu


def cpu_arch(cpu_type):
    """ELF e_machine expected for the platform's CPU (40 = ARM, 243 = RISC-V)."""
    if not cpu_type:
        return None
    t = cpu_type.lower()
    if "riscv" in t:
        return 243
    if "cortexm" in t or "arm" in t:
        return 40
    return None
