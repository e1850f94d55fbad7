"""Shared by both benchmark sides (the project env and the PyPI 0.9.0 venv): stdlib only."""

from __future__ import annotations

import math
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
STANDIN = REPO / "tests" / "standin" / "renode"
PLATFORM = "platforms/boards/stm32f4_discovery-kit.repl"
UART = "sysbus.usart2"
MIB = 1024 * 1024

sys.path.insert(0, str(REPO / "tests"))  # tests/images.py: byte-built ELF images, stdlib only

from images import elf32  # noqa: E402


def summary(samples: list[float], unit: str, *, higher_is_better: bool = False, **extra) -> dict:
    """Median and p95 (nearest rank, on the bad side: the slow tail of times, the low tail of rates)."""
    ordered = sorted(samples, reverse=higher_is_better)
    p95 = ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)]
    return {"median": statistics.median(ordered), "p95": p95, "n": len(ordered), "unit": unit, **extra}


def not_run(reason: str) -> dict:
    return {"na": reason}


def ms(seconds: list[float]) -> list[float]:
    return [s * 1000 for s in seconds]


def timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def write_images(folder: Path) -> dict[str, Path]:
    """A tiny boot image and ELF images of 1 MiB and 32 MiB (file size)."""
    images = {"small": folder / "small.elf"}
    images["small"].write_bytes(elf32(b"\x00\xbf" * 32))
    for mib in (1, 32):
        path = folder / f"{mib}mib.elf"
        header = len(elf32(b""))
        path.write_bytes(elf32(os.urandom(mib * MIB - header)))
        images[f"{mib}mib"] = path
    return images
