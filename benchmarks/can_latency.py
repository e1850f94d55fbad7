"""CAN latency from the host, on the project's STM32F4 `can_ecu` firmware (firmware/README.md), paused board
(`autostart: false`: each receive runs the emulation until the frame comes, as a deterministic test does):

- request -> answer: the host sends a UDS DiagnosticSessionControl request (0x7E0) and receives the ECU's
  answer (0x7E8); host milliseconds from `send` to the frame in hand, and virtual microseconds from the
  board's time at the send to the answer's timestamp;
- VIN: udsoncan over can-isotp reads DID 0xF190 (three frames out, flow control in), host milliseconds;
- periodic frame: one `recv` of the next 0x100 frame (10 ms of virtual time later), host milliseconds.

    uv run python benchmarks/can_latency.py [--rounds 20] [--stand-in]

Real `renode` from PATH unless --stand-in. Rounds run back to back; no round waits for the driver's
background work before its clock starts. Not a test.
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

import can  # noqa: E402
import isotp  # noqa: E402
import udsoncan  # noqa: E402
from jumpstarter.common.utils import serve  # noqa: E402
from udsoncan.client import Client  # noqa: E402
from udsoncan.connections import PythonIsoTpConnection  # noqa: E402

from firmware import build as firmware_build  # noqa: E402
from jumpstarter_driver_renode.driver import Renode  # noqa: E402

STANDIN = HERE.parent / "tests" / "standin" / "renode"
REQUEST = can.Message(arbitration_id=0x7E0, is_extended_id=False, data=bytes([2, 0x10, 0x03, 0, 0, 0, 0, 0]))


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


def line(name: str, values: list[float], unit: str, rounds: int) -> str:
    return (
        f"{name:<34} median {statistics.median(values):9.1f} {unit}   p95 {p95(values):9.1f} {unit}   ({rounds} rounds)"
    )


def measure(renode: str, image: Path, rounds: int) -> dict[str, list[float]]:
    config = {
        "platform": firmware_build.PLATFORM["stm32f4"],
        "uart": "sysbus.usart2",
        "renode_path": renode,
        "autostart": False,
        "hubs": {"vehicle": {"kind": "can", "connect": ["sysbus.can1"]}},
    }
    driver = Renode(**config)
    out: dict[str, list[float]] = {"answer_host": [], "answer_virtual": [], "vin_host": [], "periodic_host": []}
    try:
        with serve(driver) as board:
            board.flasher.flash(str(image))
            board.power.on()
            bus = board.vehicle
            board.run_for(0.02)  # CAN up
            bus.set_filters([{"can_id": 0x7E8, "can_mask": 0x7FF}])
            for _ in range(rounds):
                now = board.virtual_time()
                start = time.perf_counter()
                bus.send(REQUEST)
                answer = bus.recv(1.0)
                out["answer_host"].append((time.perf_counter() - start) * 1000)
                out["answer_virtual"].append((answer.timestamp - now) * 1e6)
            bus.set_filters(None)
            address = isotp.Address(isotp.AddressingMode.Normal_11bits, txid=0x7E0, rxid=0x7E8)
            stack = isotp.CanStack(bus=bus, address=address, params={"blocking_send": True})
            uds_config = dict(udsoncan.configs.default_client_config, use_server_timing=False)
            uds_config["data_identifiers"] = {0xF190: udsoncan.AsciiCodec(17)}
            uds_config["request_timeout"] = uds_config["p2_timeout"] = 30
            with Client(PythonIsoTpConnection(stack), config=uds_config) as uds:
                for _ in range(rounds):
                    start = time.perf_counter()
                    uds.read_data_by_identifier_first(0xF190)
                    out["vin_host"].append((time.perf_counter() - start) * 1000)
            bus.set_filters([{"can_id": 0x100, "can_mask": 0x7FF}])
            for _ in range(rounds):
                start = time.perf_counter()
                bus.recv(1.0)
                out["periodic_host"].append((time.perf_counter() - start) * 1000)
            board.power.off()
    finally:
        driver.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--stand-in", action="store_true")
    args = parser.parse_args()
    renode = str(STANDIN) if args.stand_in else shutil.which("renode")
    if renode is None:
        sys.exit("renode is not on PATH (or pass --stand-in)")
    with tempfile.TemporaryDirectory() as tmp:
        image = firmware_build.build("stm32f4", Path(tmp), "bench", "can_ecu")["elf"]
        out = measure(renode, image, args.rounds)
    which = "stand-in" if args.stand_in else "Renode"
    print(f"{which} {renode}; STM32F4 Discovery, can_ecu firmware, paused board, back to back")
    print(line("UDS request -> answer (host)", out["answer_host"], "ms", args.rounds))
    print(line("UDS request -> answer (virtual)", out["answer_virtual"], "us", args.rounds))
    print(line("udsoncan VIN read, 3 frames (host)", out["vin_host"], "ms", args.rounds))
    print(line("next periodic frame (host)", out["periodic_host"], "ms", args.rounds))


if __name__ == "__main__":
    main()
