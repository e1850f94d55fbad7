"""Building monitor commands: pure functions, no I/O.

Everything a config value or a client argument contributes to a monitor line passes through one of
these functions, which either produce a token that cannot break out of its argument or raise
UnsafeInputError. The quoting rules come from Renode's monitor tokenizer: an `@path` token runs to
the next whitespace (spaces escaped as `\\ `), `;` separates commands, `#` starts a comment, `$`
expands variables, and a `"string"` ends at the next unescaped quote.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import UnsafeInputError

# Characters with a meaning to the monitor's tokenizer or line editor that we never pass through
# inside a path or string argument.
_PATH_FORBIDDEN = set(";#$`\"'\\")
_STRING_FORBIDDEN = set("\"'\\$`;")
_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_PERIPHERAL_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def control_characters(text: str) -> list[str]:
    """The control characters in `text` (C0, DEL and C1), as printable escapes."""
    return [repr(c) for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F]


def check_line(text: str, what: str = "monitor command") -> str:
    """Refuse text that the line editor would treat as keys rather than characters.

    `\\r` and `\\n` are Enter, tab completes, Ctrl-D quits Renode, ESC starts an editing sequence.
    """
    bad = control_characters(text)
    if bad:
        raise UnsafeInputError(f"{what} contains control characters ({', '.join(sorted(set(bad)))}): {text!r}")
    if not text.strip():
        raise UnsafeInputError(f"{what} is empty")
    return text


def path_token(path: str | Path) -> str:
    """An `@path` argument for an absolute path, with spaces escaped."""
    text = str(path)
    check_line(text, "path")
    if not text.startswith("/"):
        raise UnsafeInputError(f"path must be absolute (Renode resolves relative paths elsewhere): {text!r}")
    bad = sorted(set(text) & _PATH_FORBIDDEN)
    if bad:
        raise UnsafeInputError(
            f"path contains characters the Renode monitor cannot take safely ({' '.join(bad)}): {text!r}"
        )
    return "@" + text.replace(" ", "\\ ")


def platform_token(platform: str) -> str:
    """The argument for LoadPlatformDescription: absolute, or relative to Renode's install root."""
    if platform.startswith("/"):
        return path_token(platform)
    check_line(platform, "platform")
    if " " in platform or set(platform) & _PATH_FORBIDDEN:
        raise UnsafeInputError(f"platform path contains spaces or monitor metacharacters: {platform!r}")
    return "@" + platform


def string_token(value: str, what: str = "string") -> str:
    """A double-quoted string argument."""
    check_line(value, what)
    bad = sorted(set(value) & _STRING_FORBIDDEN)
    if bad:
        raise UnsafeInputError(
            f"{what} contains characters the Renode monitor cannot take safely ({' '.join(bad)}): {value!r}"
        )
    return f'"{value}"'


def check_name(value: str, what: str) -> str:
    """Names we put in prompts and file names: letters, digits, `_`, `.`, `-`."""
    if not isinstance(value, str) or not _NAME_RE.fullmatch(value):
        raise UnsafeInputError(
            f"{what} must be 1-64 letters, digits, '_', '.' or '-' starting with a letter or digit: {value!r}"
        )
    return value


def check_peripheral(value: str, what: str = "peripheral") -> str:
    """A peripheral path such as `sysbus.usart2`."""
    if not isinstance(value, str) or not _PERIPHERAL_RE.fullmatch(value):
        raise UnsafeInputError(f"{what} must look like sysbus.usart2 (letters, digits, '_', dots): {value!r}")
    return value


def parse_address(value: str | int) -> int:
    """A load address given as an int or as a decimal/0x-hex string (JSON turns big ints into floats)."""
    if isinstance(value, bool):
        raise UnsafeInputError(f"load address must be an integer or a string like '0x08000000': {value!r}")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and re.fullmatch(r"0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20}", value.strip()):
        number = int(value.strip(), 0)
    else:
        raise UnsafeInputError(f"load address must be an integer or a string like '0x08000000': {value!r}")
    if not 0 <= number < 2**64:
        raise UnsafeInputError(f"load address out of range: {value!r}")
    return number


MAX_VIRTUAL_SECONDS = 100 * 3600.0  # the longest wait or run a client may ask for, in virtual seconds


def check_number(value: object, what: str, low: float, high: float, *, above: bool = False) -> float:
    """The one range check for numbers from clients: a real number (never a bool: JSON and Python both
    take `True` for 1) with `low <= value <= high` (`low < value` when `above`)."""
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or value != value  # NaN
        or not (low < value if above else low <= value)
        or not value <= high
    ):
        bound = f"above {low:g}" if above else f"at least {low:g}"
        raise UnsafeInputError(f"{what} must be a number {bound} and at most {high:g}: {value!r}")
    return float(value)


def format_virtual_time(seconds: float) -> str:
    """`hh:mm:ss.ffffff` as Renode's TimeInterval parser accepts it."""
    seconds = check_number(seconds, "virtual time (seconds)", 0, MAX_VIRTUAL_SECONDS, above=True)
    micros = round(seconds * 1_000_000)
    hours, rest = divmod(micros, 3_600_000_000)
    minutes, rest = divmod(rest, 60_000_000)
    secs, frac = divmod(rest, 1_000_000)
    return f'"{hours:02d}:{minutes:02d}:{secs:02d}.{frac:06d}"'


# -- whole commands -------------------------------------------------------------------------------


def mach_create(name: str) -> str:
    return f"mach create {string_token(check_name(name, 'machine_name'))}"


def mach_set(name: str) -> str:
    return f"mach set {string_token(name, 'machine name')}"


def load_platform(platform: str) -> str:
    return f"machine LoadPlatformDescription {platform_token(platform)}"


def include_script(script: str) -> str:
    return f"include {path_token(script)}"


def create_pty_terminal(name: str, link: Path) -> str:
    return f"emulation CreateUartPtyTerminal {string_token(check_name(name, 'terminal name'))} {string_token(str(link), 'PTY path')} true"


def connect_uart(peripheral: str, terminal: str) -> str:
    return f"connector Connect {check_peripheral(peripheral, 'uart')} {check_name(terminal, 'terminal name')}"


def disconnect_uart(peripheral: str, terminal: str) -> str:
    return f"connector Disconnect {check_peripheral(peripheral, 'uart')} {check_name(terminal, 'terminal name')}"


def park_terminal(name: str) -> str:
    """Take a (disconnected) terminal out of the emulation without closing it (inside_renode/terminals.py)."""
    return f'jumpstarter_park "{check_name(name, "terminal name")}"'


def unpark_terminal(name: str) -> str:
    """Put a parked terminal into the current emulation."""
    return f'jumpstarter_unpark "{check_name(name, "terminal name")}"'


def set_vector_table(cpu: str, address: int) -> str:
    """Point a Cortex-M's VTOR at an image's vector table: SP and PC are read from there at reset."""
    return f"{check_peripheral(cpu, 'cpu')} VectorTableOffset {_hex_address(address)}"


def set_pc(cpu: str, address: int) -> str:
    return f"{check_peripheral(cpu, 'cpu')} PC {_hex_address(address)}"


def _hex_address(address: int) -> str:
    if not isinstance(address, int) or isinstance(address, bool) or not 0 <= address < 2**64:
        raise UnsafeInputError(f"address out of range: {address!r}")
    return f"0x{address:X}"


def load_firmware(kind: str, path: Path, address: int | None = None) -> str:
    """The sysbus load command for a firmware image of the given kind (elf, hex or bin)."""
    token = path_token(path)
    if kind == "elf":
        return f"sysbus LoadELF {token}"
    if kind == "hex":
        return f"sysbus LoadHEX {token}"
    if kind == "bin":
        if address is None:
            raise UnsafeInputError("a raw binary needs a load address")
        return f"sysbus LoadBinary {token} {_hex_address(address)}"
    raise UnsafeInputError(f"unknown firmware kind {kind!r}")


def reset_macro(load_command: str) -> str:
    """Register the machine's `reset` macro so a reset reloads the image, as Renode's own scripts do."""
    return f'macro reset "{load_command}"'


def log_file(path: Path) -> str:
    return f"logFile {path_token(path)} true"


LOG_LEVELS = {"noisy": -1, "debug": 0, "info": 1, "warning": 2, "error": 3}


def log_level(level: str) -> str:
    try:
        return f"logLevel {LOG_LEVELS[level.lower()]}"
    except (KeyError, AttributeError):
        raise UnsafeInputError(f"log_level must be one of {', '.join(LOG_LEVELS)}: {level!r}") from None


def run_for(seconds: float) -> str:
    return f"emulation RunFor {format_virtual_time(seconds)}"


def save_snapshot(path: Path) -> str:
    return f"Save {path_token(path)}"


def load_snapshot(path: Path) -> str:
    return f"Load {path_token(path)}"


def start_gdb_server(port: int) -> str:
    """Start the GDB server without letting a debugger connection start the emulation by itself."""
    if not isinstance(port, int) or isinstance(port, bool) or not 1 <= port <= 65535:
        raise UnsafeInputError(f"GDB port must be 1-65535: {port!r}")
    return f"machine StartGdbServer {port} false"
