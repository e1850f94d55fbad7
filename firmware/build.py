"""Build the project's bare-metal test firmware for Renode boards.

Stdlib only. Usage from Python::

    from build import build
    paths = build("stm32f4", Path("out"), build_id="ci-42")  # {"elf": ..., "hex": ..., "bin": ...}

or from the shell: ``python firmware/build.py OUT_DIR [BUILD_ID]`` (builds every board).
The firmware's behaviour is described in README.md next to this file.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BOARDS = ("stm32f4", "fe310")

# Where the .bin must be loaded (the .elf and .hex carry their own addresses).
LOAD_ADDRESS = {"stm32f4": 0x08000000, "fe310": 0x20400000}
# Renode peripheral of the console UART, and the platform description to load.
CONSOLE = {"stm32f4": "sysbus.usart2", "fe310": "sysbus.uart0"}
PLATFORM = {
    "stm32f4": "platforms/boards/stm32f4_discovery-kit.repl",
    "fe310": "platforms/cpus/sifive-fe310.repl",
}

BANNER_PREFIX = "BOOT jumpstarter-renode-fw board="

# Other builds of a board's firmware (README.md): variant -> (source, extra compiler flags, flash origin).
VARIANTS = {
    "stm32f4": {
        "counter": ("main.c", ["-DBOOT_COUNTER"], None),  # boot counter in flash, `reboot`
        "can_ecu": ("main.c", ["-DCAN_ECU"], None),  # CAN1: periodic frame, forwarding, UDS on ISO-TP
        "bootloader": ("bootloader.c", [], None),  # starts the application at APP_ADDRESS
        "app": ("main.c", [], 0x08020000),  # the plain firmware, linked for the bootloader
    },
}
APP_ADDRESS = 0x08020000

HERE = Path(__file__).resolve().parent

_BUILD_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")

# board -> (tool prefix, Debian package providing it, architecture flags)
_TOOLCHAIN = {
    "stm32f4": ("arm-none-eabi-", "gcc-arm-none-eabi", ["-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=soft"]),
    "fe310": ("riscv64-unknown-elf-", "gcc-riscv64-unknown-elf", ["-march=rv32imac_zicsr", "-mabi=ilp32"]),
}

_CFLAGS = [
    "-std=gnu11",
    "-Os",
    "-g",
    "-Wall",
    "-Wextra",
    "-ffreestanding",
    "-fno-builtin",
    # keep GCC from turning the startup copy/zero loops into memcpy/memset calls (no libc)
    "-fno-tree-loop-distribute-patterns",
    "-fno-common",
    "-fno-asynchronous-unwind-tables",
    "-ffunction-sections",
    "-fdata-sections",
    "-nostdlib",
    "-Wl,--gc-sections",
    "-Wl,--build-id=none",
]


class FirmwareBuildError(RuntimeError):
    """The firmware could not be built (missing toolchain, compiler error, bad arguments)."""


def banner(board: str, build_id: str = "dev") -> str:
    """The exact line the firmware prints at boot."""
    return f"{BANNER_PREFIX}{board} build={build_id}\r\n"


def _tools(board: str) -> tuple[str, str, list[str]]:
    if board not in _TOOLCHAIN:
        raise FirmwareBuildError(f"unknown board {board!r}: expected one of {', '.join(BOARDS)}")
    return _TOOLCHAIN[board]


def toolchain_missing(board: str) -> str | None:
    """Name of the Debian package to install for `board`'s compiler, or None if it is on PATH."""
    prefix, package, _ = _tools(board)
    if all(shutil.which(prefix + tool) for tool in ("gcc", "objcopy")):
        return None
    return package


def _ensure_toolchain(board: str) -> None:
    package = toolchain_missing(board)
    if package is None:
        return
    prefix = _tools(board)[0]
    is_root = getattr(os, "geteuid", lambda: -1)() == 0
    if not (is_root and shutil.which("apt-get")):
        raise FirmwareBuildError(
            f"{prefix}gcc not found: install the Debian package {package} to build the {board} firmware"
        )
    print(
        f"firmware: installing {package} with apt-get ({prefix}gcc is needed to build the {board} firmware)",
        file=sys.stderr,
    )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=300", package]
    result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:  # stale or missing package lists: refresh once and retry
        subprocess.run(
            ["apt-get", "update", "-q", "-o", "DPkg::Lock::Timeout=300"], env=env, capture_output=True, text=True
        )
        result = subprocess.run(install, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise FirmwareBuildError(
            f"installing {package} failed (exit {result.returncode}):\n{result.stderr.strip() or result.stdout.strip()}"
        )
    if toolchain_missing(board):
        raise FirmwareBuildError(f"installed {package}, but {prefix}gcc or {prefix}objcopy is still not on PATH")


def _inputs(board: str) -> list[Path]:
    return [*sorted((HERE / board).iterdir()), HERE / "common" / "console.h", Path(__file__).resolve()]


def _variant(board: str, variant: str) -> tuple[str, list[str], int | None]:
    if not variant:
        return "main.c", [], None
    try:
        return VARIANTS[board][variant]
    except KeyError:
        known = ", ".join(VARIANTS.get(board, {})) or "none"
        raise FirmwareBuildError(f"unknown variant {variant!r} of {board} (known: {known})") from None


def _run(cmd: list[str]) -> None:
    try:  # run in HERE: with -ffile-prefix-map the ELF's debug info then names no absolute paths
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=HERE)
    except OSError as exc:
        raise FirmwareBuildError(f"cannot run {cmd[0]}: {exc}") from exc
    if result.returncode != 0:
        raise FirmwareBuildError(
            f"{Path(cmd[0]).name} failed (exit {result.returncode}): {' '.join(cmd)}\n{result.stderr.strip()}"
        )


def build(board: str, out_dir: Path, build_id: str = "dev", variant: str = "") -> dict[str, Path]:
    """Build `board`'s firmware into out_dir/<board>[-<variant>]-<build_id>.{elf,hex,bin}; return those paths.

    Does nothing if all three are newer than the sources, linker script and this file.
    """
    prefix, _, arch_flags = _tools(board)
    source, flags, origin = _variant(board, variant)
    if not isinstance(build_id, str) or not _BUILD_ID.fullmatch(build_id):
        raise FirmwareBuildError(f"bad build id {build_id!r}: use 1-32 of A-Z a-z 0-9 _ -")
    out_dir = Path(out_dir).absolute()  # the compiler runs in HERE: a relative path would land there
    name = f"{board}-{variant}" if variant else board
    outputs = {kind: out_dir / f"{name}-{build_id}.{kind}" for kind in ("elf", "hex", "bin")}

    newest_input = max(path.stat().st_mtime_ns for path in _inputs(board))
    try:
        if min(path.stat().st_mtime_ns for path in outputs.values()) > newest_input:
            return outputs
    except FileNotFoundError:
        pass

    _ensure_toolchain(board)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Build in a private directory and move the results in: concurrent builds never see half a file.
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=f".{name}-{build_id}-") as tmp:
        tmp_out = {kind: Path(tmp) / path.name for kind, path in outputs.items()}
        script = HERE / board / "link.ld"
        if origin is not None:  # the same layout, linked to start at `origin` in flash
            text = script.read_text()
            moved = re.sub(r"(FLASH \(rx\)\s*: ORIGIN = )0x[0-9A-Fa-f]+", rf"\g<1>0x{origin:08X}", text)
            if moved == text:
                raise FirmwareBuildError(f"{script} has no FLASH origin to move")
            script = Path(tmp) / "link.ld"
            script.write_text(moved)
        _run(
            [
                prefix + "gcc",
                *arch_flags,
                *_CFLAGS,
                *flags,
                f'-DBUILD_ID="{build_id}"',
                f"-ffile-prefix-map={HERE}=.",
                "-T",
                str(script),
                "-o",
                str(tmp_out["elf"]),
                str(HERE / board / source),
            ]
        )
        _run([prefix + "objcopy", "-O", "ihex", str(tmp_out["elf"]), str(tmp_out["hex"])])
        _run([prefix + "objcopy", "-O", "binary", str(tmp_out["elf"]), str(tmp_out["bin"])])
        for kind in ("bin", "hex", "elf"):
            os.replace(tmp_out[kind], outputs[kind])
    return outputs


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: build.py OUT_DIR [BUILD_ID]", file=sys.stderr)
        return 2
    try:
        for board in BOARDS:
            for kind, path in build(board, Path(argv[0]), *argv[1:]).items():
                print(f"{board} {kind} {path}")
    except FirmwareBuildError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
