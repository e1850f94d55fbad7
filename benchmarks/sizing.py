"""What one target costs an exporter host: resident memory of its Renodes and CPU of its board, on the
`renode` on PATH (or the stand-in with --stand-in), with and without warm start. Not a test: it prints.

    uv run python benchmarks/sizing.py [--stand-in] [--seconds 10]

Memory is measured once the warm spare has settled (the most a target in use holds); CPU over `--seconds`
of host time while the board runs the project firmware (it sleeps in `wfi` between interrupts) and while
it is paused.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PLATFORM, REPO, STANDIN, UART

sys.path.insert(0, str(REPO))  # firmware/build.py


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int | None) -> float:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, TypeError):
        return 0.0
    return next(int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS"))


def core_share(pid: int, seconds: float) -> float:
    """The share of one core the process used over `seconds` of host time."""
    started, used = time.monotonic(), cpu_seconds(pid)
    time.sleep(seconds)  # a measurement window: the quantity measured is use over time
    return (cpu_seconds(pid) - used) / (time.monotonic() - started)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stand-in", action="store_true", help="measure the stand-in (a dry run)")
    parser.add_argument("--seconds", type=float, default=10.0, help="host seconds of each CPU window")
    args = parser.parse_args()
    renode = str(STANDIN) if args.stand_in else shutil.which("renode")
    if renode is None:
        print("renode not found on PATH (or use --stand-in)", file=sys.stderr)
        return 2
    from jumpstarter.common.utils import serve

    from firmware import build as firmware_build
    from jumpstarter_driver_renode.driver import Renode

    version = subprocess.run([renode, "--version"], capture_output=True, text=True, timeout=60).stdout.split("\n")[0]
    with tempfile.TemporaryDirectory() as tmp:
        image = firmware_build.build("stm32f4", Path(tmp), "sizing")["elf"]
        print(f"{version.strip()}, STM32F4 Discovery, the project firmware (stm32f4 ELF), {args.seconds:g} s windows")
        for warm in (True, False):
            driver = Renode(platform=PLATFORM, uart=UART, renode_path=renode, warm_start=warm)
            try:
                with serve(driver) as board:
                    board.flasher.flash(image)
                    board.power.on()
                    deadline = time.monotonic() + 120
                    while warm and (not driver.target.spares or driver.target.warm.preparing):
                        assert time.monotonic() < deadline, "the spare did not settle"
                        time.sleep(0.1)  # the spare is made ready in the background: poll for it
                    pid = driver.target.pid
                    spares = [s.pid for s in driver.target.spares]
                    board_mib = rss_mib(pid)
                    memory = board_mib + sum(rss_mib(p) for p in spares)
                    running = core_share(pid, args.seconds)
                    board.pause()
                    paused = core_share(pid, args.seconds)
                    board.power.off()
            finally:
                driver.close()
            print(
                f"warm_start: {str(warm).lower():5}  Renodes per target in use: {1 + len(spares)}  "
                f"RSS: {memory:.0f} MiB (the board's Renode {board_mib:.0f})  "
                f"CPU: running {running * 100:.0f}% of a core, paused {paused * 100:.1f}%"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
