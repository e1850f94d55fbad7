"""The main job: one end-to-end session on a Renode target (flash, power on, boot banner, echo, power off).

    uv run python examples/session.py                        # real `renode` on PATH, the project's firmware
    uv run python examples/session.py --board fe310 --format bin
    uv run python examples/session.py --firmware zephyr.elf --expect "Hello World"   # your own image
    uv run python examples/session.py --stand-in             # dry run against the test stand-in

By default it builds the project's test firmware (firmware/, Debian's cross compilers; installed with
apt-get when missing and running as root), which prints a boot banner and echoes lines.
Exit code 0 when the whole session worked, 1 when a step failed, 2 when something is missing.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
STANDIN = ROOT / "tests" / "standin" / "renode"
sys.path.insert(0, str(ROOT))  # firmware/build.py


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stand-in", action="store_true", help="dry run against the project's Renode stand-in")
    parser.add_argument("--board", choices=["stm32f4", "fe310"], default="stm32f4", help="the project firmware's board")
    parser.add_argument("--format", choices=["elf", "hex", "bin"], default="elf", help="which image of it to flash")
    parser.add_argument("--firmware", type=Path, help="flash this image instead of the project's firmware")
    parser.add_argument("--platform", help="platform .repl (default: the board's)")
    parser.add_argument("--uart", help="console UART (default: the board's)")
    parser.add_argument("--load-address", help="load address of a raw --firmware image")
    parser.add_argument("--expect", help="regex the boot output must contain (default: the project firmware's banner)")
    return parser.parse_args()


def find_renode(stand_in: bool) -> str | None:
    if stand_in:
        print(f"DRY RUN: using the test stand-in {STANDIN}, not real Renode")
        return str(STANDIN)
    found = shutil.which("renode")
    if found is None:
        print(
            "renode not found on PATH: install Renode 1.14 or newer (see the README, 'Installing Renode') and put "
            "`renode` on PATH, or add --stand-in for a dry run against the test stand-in",
            file=sys.stderr,
        )
    return found


def main() -> int:
    args = parse_args()
    renode_path = find_renode(args.stand_in)
    if renode_path is None:
        return 2

    from jumpstarter.common.utils import serve

    from firmware import build as firmware_build
    from jumpstarter_driver_renode.driver import Renode

    platform = args.platform or firmware_build.PLATFORM[args.board]
    uart = args.uart or firmware_build.CONSOLE[args.board]
    with tempfile.TemporaryDirectory() as tmp:
        if args.firmware is not None:
            image, load_address = args.firmware, args.load_address
            expect = (args.expect or r"\S+").encode()
            echo = False
        else:
            try:
                image = firmware_build.build(args.board, Path(tmp), "session")[args.format]
            except firmware_build.FirmwareBuildError as exc:
                print(f"cannot build the project firmware: {exc}", file=sys.stderr)
                return 2
            load_address = hex(firmware_build.LOAD_ADDRESS[args.board])
            expect = (args.expect or re.escape(firmware_build.banner(args.board, "session").strip())).encode()
            echo = True
        driver = Renode(platform=platform, uart=uart, renode_path=renode_path)
        try:
            with serve(driver) as board:
                t0 = time.monotonic()
                kind = board.flasher.flash(image, load_address=load_address)
                t1 = time.monotonic()
                board.power.on()
                t2 = time.monotonic()
                with board.console.pexpect() as console:
                    console.expect(expect, timeout=60)
                    print("boot output:", (console.before + console.after).decode(errors="replace").strip())
                    t3 = time.monotonic()
                    if echo:
                        console.send(b"hello from jumpstarter\r")
                        console.expect(rb"echo: hello from jumpstarter", timeout=30)
                        print("console echo:", console.after.decode())
                t4 = time.monotonic()
                board.power.off()
                t5 = time.monotonic()
        except Exception as exc:
            print(f"session FAILED: {exc}", file=sys.stderr)
            return 1
        finally:
            driver.close()
    print(
        f"session OK: flash ({kind}) {t1 - t0:.3f}s, power on {t2 - t1:.3f}s, boot output {t3 - t2:.3f}s, "
        f"console {t4 - t3:.3f}s, power off {t5 - t4:.3f}s, total {t5 - t0:.3f}s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
