"""Soak: power on / flash / console / power off, over and over, against the Renode stand-in.

    uv run python benchmarks/soak.py [--cycles 1000] [--targets 1] [--every 100]

Every cycle flashes a distinct image, powers on, checks through the console that exactly that image
booted and that the UART echoes input, then powers off. Every `--every` cycles (per target) it
prints this process's open fds, its live child processes, its RSS and the files in the targets'
private directories: all of them must stay flat. With `--targets N` the targets run concurrently in
one exporter (the full-size version of the 16 x 3 load test in tests/test_reliability.py:
`--targets 16 --cycles 20`). Exits non-zero on the first failure or if a resource grew.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

TESTS = Path(__file__).resolve().parent.parent / "tests"
sys.path.insert(0, str(TESTS))

from images import EM_ARM, elf32  # noqa: E402
from jumpstarter.common.utils import serve  # noqa: E402
from jumpstarter_driver_composite.driver import Composite  # noqa: E402

from jumpstarter_driver_renode.driver import Renode  # noqa: E402

STANDIN = TESTS / "standin" / "renode"


def fd_count() -> int:
    return len(os.listdir("/proc/self/fd"))


def children() -> list[int]:
    """Live (non-zombie) processes whose parent is this process."""
    me = os.getpid()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(stat[1]) == me and stat[0] != "Z":
            found.append(int(entry.name))
    return found


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def workdir_files(drivers: list[Renode]) -> int:
    total = 0
    for driver in drivers:
        if driver.target.existing_workdir is not None and driver.target.existing_workdir.exists():
            total += sum(1 for _ in driver.target.existing_workdir.rglob("*"))
    return total


def boot_pattern(image: bytes) -> bytes:
    return re.escape(f"Booting stand-in firmware sha256={hashlib.sha256(image).hexdigest()} loader=LoadELF".encode())


def run_cycles(board, name: str, cycles: int, scratch: Path, report, timeout: float) -> None:
    for n in range(1, cycles + 1):
        image = elf32(b"\x00\xbf" * 32 + f"{name}-{n}".encode(), machine=EM_ARM)
        path = scratch / f"{name}.elf"
        path.write_bytes(image)
        board.power.on() if n % 2 else None  # alternate: hot re-flash (odd n) and flash while off (even n)
        board.flasher.flash(path)
        board.power.on()
        with board.console.pexpect() as console:
            console.expect(boot_pattern(image), timeout=timeout)
            console.send(f"ping {n}\r".encode())
            console.expect(f"echo: ping {n}".encode(), timeout=timeout)
        board.power.off()
        report(name, n)


class Monitor:
    """Counts cycles per target and samples the process's resources every `every` cycles."""

    def __init__(self, names: list[str], drivers: list[Renode], every: int, max_minutes: float):
        self.done = dict.fromkeys(names, 0)
        self.drivers = drivers
        self.every = every
        self.max_minutes = max_minutes
        self.samples: list[tuple[int, int, int, float, int]] = []
        self.sampled = 0
        self.lock = threading.Lock()
        self.started = time.monotonic()
        self.stop = threading.Event()

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def __call__(self, name: str, n: int) -> None:
        with self.lock:
            self.done[name] = n
            if self.max_minutes and self.elapsed() > self.max_minutes * 60:
                self.stop.set()
            slowest = min(self.done.values())
            if slowest >= self.sampled + self.every:  # every target has done `every` more cycles
                self.sampled = slowest - slowest % self.every
                self.sample(self.sampled)
        if self.stop.is_set():
            raise TimeoutError("stopping: --max-minutes reached or another target failed")

    def sample(self, n: int) -> None:
        sample = (n, fd_count(), len(children()), rss_mib(), workdir_files(self.drivers))
        self.samples.append(sample)
        print(
            f"cycle {n:5d}  fds {sample[1]:4d}  children {sample[2]:3d}  rss {sample[3]:7.1f} MiB  "
            f"workdir files {sample[4]:5d}  elapsed {self.elapsed():7.1f}s",
            flush=True,
        )

    def growth(self) -> list[str]:
        if len(self.samples) < 2:
            return []
        first, last = self.samples[0], self.samples[-1]
        grew = []
        if last[1] > first[1]:
            grew.append(f"fds {first[1]} -> {last[1]}")
        if last[2] > first[2]:
            grew.append(f"child processes {first[2]} -> {last[2]}")
        if last[3] - first[3] > 20:
            grew.append(f"RSS {first[3]:.1f} -> {last[3]:.1f} MiB")
        if last[4] > first[4]:
            grew.append(f"workdir files {first[4]} -> {last[4]}")
        return grew


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cycles", type=int, default=1000, help="cycles per target (default 1000)")
    parser.add_argument("--targets", type=int, default=1, help="targets cycling concurrently (default 1)")
    parser.add_argument("--every", type=int, default=100, help="print resources every N cycles (default 100)")
    parser.add_argument("--max-minutes", type=float, default=0, help="stop early after this long (0: no limit)")
    args = parser.parse_args()

    names = [f"soak{i:02d}" for i in range(args.targets)]
    drivers = [
        Renode(
            platform="platforms/boards/stm32f4_discovery-kit.repl",
            uart="sysbus.usart2",
            renode_path=str(STANDIN),
            machine_name=name,
            startup_timeout=60,
            command_timeout=60,
        )
        for name in names
    ]
    root = Composite(children=dict(zip(names, drivers, strict=True)))
    monitor = Monitor(names, drivers, args.every, args.max_minutes)
    errors: list[BaseException] = []
    with tempfile.TemporaryDirectory(prefix="bench-renode-soak-") as tmp, serve(root) as client:
        print(f"soak: {args.targets} target(s) x {args.cycles} cycles (flash, on, console, off)", flush=True)
        print(f"start         fds {fd_count():4d}  children {len(children()):3d}  rss {rss_mib():7.1f} MiB", flush=True)

        def worker(name: str) -> None:
            try:
                run_cycles(client.children[name], name, args.cycles, Path(tmp), monitor, timeout=60)
            except TimeoutError:
                pass
            except BaseException as exc:
                errors.append(exc)
                monitor.stop.set()

        threads = [threading.Thread(target=worker, args=(name,)) for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    root.close()

    total = sum(monitor.done.values())
    print(f"done: {total} cycles in {monitor.elapsed():.1f}s ({monitor.elapsed() / max(total, 1) * 1000:.0f} ms/cycle)")
    if errors:
        print(f"FAILED: {errors[0]!r}")
        return 1
    if grew := monitor.growth():
        print("NOT FLAT: " + "; ".join(grew))
        return 2
    print("flat: fds, child processes, RSS and workdir files did not grow")
    return 0


if __name__ == "__main__":
    sys.exit(main())
