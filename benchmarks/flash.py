"""What persistent flash costs per power cycle, on the project's STM32F4 `counter` firmware: the save (power
off) and the load (power-on) alone, through the monitor; and power off + power on + the firmware's
`boots=<n>` line, with the flash kept (the default) and with `non_volatile: []` (nothing kept: the image is
written into a fresh Renode at every power-on, the old behaviour).

    uv run python benchmarks/flash.py [--rounds 10] [--work 0 1] [--stand-in]

Real `renode` from PATH unless --stand-in. Warm start on (the default). Each round is timed from the
client's `power.off()` call to the boot line, right after the previous round (plus `--work` seconds of
"test work"): no round waits for the driver's background work before the clock starts. Not a test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from jumpstarter.common.utils import serve  # noqa: E402

from firmware import build as firmware_build  # noqa: E402
from jumpstarter_driver_renode.driver import Renode  # noqa: E402

STANDIN = HERE.parent / "tests" / "standin" / "renode"


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def measure(renode: str, image: Path, rounds: int, work: float, non_volatile) -> list[float]:
    config = {"platform": firmware_build.PLATFORM["stm32f4"], "uart": "sysbus.usart2", "renode_path": renode}
    if non_volatile is not None:
        config["non_volatile"] = non_volatile
    driver = Renode(**config)
    times = []
    try:
        with serve(driver) as board:
            board.flasher.flash(str(image))
            board.power.on()
            board.expect_output(r"boots=\d+\r\n", timeout=5)
            for _ in range(rounds):
                time.sleep(work)
                start = time.perf_counter()
                board.power.off()
                board.power.on()
                board.expect_output(r"boots=\d+\r\n", timeout=5)
                times.append((time.perf_counter() - start) * 1000)
            board.power.off()
    finally:
        driver.close()
    return times


def save_and_load(renode: str, image: Path, rounds: int, folder: Path) -> tuple[list[float], list[float]]:
    """The persistence steps alone: the driver's save and load commands for the flash, timed through the
    monitor (raw monitor on, for this measurement only), on the paused board after its first boot."""
    config = {"platform": firmware_build.PLATFORM["stm32f4"], "uart": "sysbus.usart2", "renode_path": renode}
    driver = Renode(**config, allow_raw_monitor=True)
    saves, loads = [], []
    try:
        with serve(driver) as board:
            board.flasher.flash(str(image))
            board.power.on()
            board.expect_output(r"boots=\d+\r\n", timeout=5)
            board.pause()
            path = folder / "flash.nvm"
            for _ in range(rounds):
                start = time.perf_counter()
                board.monitor_cmd(f'jumpstarter_nvm_save "sysbus.flash" "{path}"')
                saves.append((time.perf_counter() - start) * 1000)
                start = time.perf_counter()
                board.monitor_cmd(f'jumpstarter_nvm_load "sysbus.flash" "{path}"')
                loads.append((time.perf_counter() - start) * 1000)
            board.power.off()
    finally:
        driver.close()
    return saves, loads


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--work", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--stand-in", action="store_true")
    args = parser.parse_args()
    renode = str(STANDIN) if args.stand_in else shutil.which("renode")
    if renode is None:
        print("real renode not on PATH (use --stand-in for the stand-in)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as out:
        image = firmware_build.build("stm32f4", Path(out), "bench", "counter")["elf"]
        what = "stand-in" if args.stand_in else "Renode 1.16.1"
        print(f"{what}, STM32F4 Discovery, counter firmware, {args.rounds} rounds, warm start; median / p95 ms")
        print(f"{'power cycle + boots line':34} {'work s':>6} {'flash kept':>18} {'non_volatile: []':>18}")
        saves, loads = save_and_load(renode, image, args.rounds, Path(out))
        print(f"{'save of the flash (3 segments)':34} {'':6} {statistics.median(saves):8.1f} / {p95(saves):7.1f}")
        print(f"{'load of the flash (3 segments)':34} {'':6} {statistics.median(loads):8.1f} / {p95(loads):7.1f}")
        for work in args.work:
            kept = measure(renode, image, args.rounds, work, None)
            fresh = measure(renode, image, args.rounds, work, [])
            print(
                f"{'':34} {work:6.1f} {statistics.median(kept):8.1f} / {p95(kept):7.1f} "
                f"{statistics.median(fresh):8.1f} / {p95(fresh):7.1f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
