"""The main job: one end-to-end session on a Renode target (flash, power on, console, power off).

    uv run python examples/session.py --firmware zephyr-hello.elf     # real Renode on PATH
    uv run python examples/session.py --stand-in                      # dry run, test stand-in

Exit code 0 when the whole session worked, 1 when a step failed, 2 when something is missing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
STANDIN = HERE.parent / "tests" / "standin" / "renode"
sys.path.insert(0, str(HERE.parent / "tests"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stand-in", action="store_true", help="dry run against the project's Renode stand-in")
    parser.add_argument("--firmware", type=Path, help="ELF/HEX image to flash (required with real Renode)")
    parser.add_argument("--platform", default="platforms/boards/stm32f4_discovery-kit.repl")
    parser.add_argument("--uart", default="sysbus.usart2")
    parser.add_argument("--expect", default=None, help="regex the boot output must contain (real Renode)")
    args = parser.parse_args()

    if args.stand_in:
        renode_path = str(STANDIN)
        print(f"DRY RUN: using the test stand-in {STANDIN}, not real Renode")
    else:
        renode_path = shutil.which("renode")
        if renode_path is None:
            print(
                "renode not found on PATH: install Renode 1.14 or newer (https://renode.io, Linux portable "
                "package) and put `renode` on PATH, or add --stand-in for a dry run against the test stand-in",
                file=sys.stderr,
            )
            return 2
        if args.firmware is None:
            print(
                "--firmware is required with real Renode (an ELF for the platform that prints on the UART)",
                file=sys.stderr,
            )
            return 2

    from images import elf32  # tests/images.py: a byte-built ELF for the stand-in
    from jumpstarter.common.utils import serve

    from jumpstarter_driver_renode.driver import Renode

    with tempfile.TemporaryDirectory() as tmp:
        firmware = args.firmware
        if firmware is None:
            firmware = Path(tmp) / "demo.elf"
            firmware.write_bytes(elf32(b"\x00\xbf" * 64))
        expect = args.expect or (rb"Booting stand-in firmware sha256=[0-9a-f]{64}" if args.stand_in else rb"\S+")
        driver = Renode(platform=args.platform, uart=args.uart, renode_path=renode_path)
        try:
            with serve(driver) as board:
                t0 = time.monotonic()
                kind = board.flasher.flash(firmware)
                t1 = time.monotonic()
                board.power.on()
                t2 = time.monotonic()
                with board.console.pexpect() as console:
                    console.expect(expect if isinstance(expect, bytes) else expect.encode(), timeout=60)
                    print("boot output:", (console.before + console.after).decode(errors="replace").strip())
                    t3 = time.monotonic()
                    console.send(b"hello from jumpstarter\r")
                    if args.stand_in:
                        console.expect(rb"echo: hello from jumpstarter", timeout=10)
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
