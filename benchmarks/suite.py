"""One side of the benchmark, in one process; prints its results as one JSON line.

    python benchmarks/suite.py ours     # in the project env: this repository's driver
    python benchmarks/suite.py theirs   # in a venv with jumpstarter-driver-renode==0.9.0 from PyPI

Both import `jumpstarter_driver_renode`: which driver that is depends only on the interpreter's env.
run.py starts both and sets the stand-in's environment (STANDIN_*; PATH for the PyPI driver, which
looks `renode` up on PATH).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PLATFORM, STANDIN, UART, not_run
from real import real
from scenarios import Side, _short, run_all

PROMPT = b"(monitor)"
TELNET_GREETING = bytes([0xFF, 0xFB, 0x00, 0xFF, 0xFD, 0x01, 0xFF, 0xFD, 0x03])  # what telnet clients send first


def _read_until(read, marker: bytes, limit: float) -> None:
    deadline = time.monotonic() + limit
    buf = b""
    while marker not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {marker!r} within {limit}s")
        data = read()
        if not data:
            raise EOFError(f"closed before {marker!r}: {buf[-200:]!r}")
        buf += data


class Ours(Side):
    name = "ours"

    def __init__(self, renode: str):
        from jumpstarter_driver_renode import process

        self.renode = renode
        self.process = process

    def driver(self, **config):
        from jumpstarter_driver_renode.driver import Renode

        config.setdefault("startup_timeout", 30)
        config.setdefault("command_timeout", 30)
        return Renode(platform=PLATFORM, uart=UART, renode_path=self.renode, allow_raw_monitor=True, **config)

    def standin_alone(self) -> float:
        """The driver's exact argv (process.renode_argv inside die_with_parent), env and pipes."""
        with tempfile.TemporaryDirectory(prefix="bench-renode-alone-") as tmp:
            workdir = Path(tmp)
            argv = self.process.die_with_parent(self.process.renode_argv(self.renode, workdir / "renode.config"))
            start = time.perf_counter()
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
                cwd=workdir,
                env=self.process.renode_env(workdir),
                start_new_session=True,
            )
            try:
                _read_until(lambda: os.read(proc.stdout.fileno(), 65536), PROMPT, 30)
                elapsed = time.perf_counter() - start
                proc.stdin.write(b"quit\n")
                proc.stdin.close()
                proc.wait(10)
            finally:
                proc.kill()
                proc.wait()
                proc.stdout.close()
            return elapsed

    def direct_monitor(self, driver):
        return driver.target.renode.session.execute

    def running(self, driver) -> bool:
        return driver.target.renode is not None


class Theirs(Side):
    name = "theirs"

    def driver(self, **config):
        from jumpstarter_driver_renode.driver import Renode

        return Renode(platform=PLATFORM, uart=UART, allow_raw_monitor=True, **config)

    def standin_alone(self) -> float:
        """The flags RenodePower.on passes (`--disable-xwt --plain --port P`), renode from PATH, as it does."""
        renode = shutil.which("renode")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        start = time.perf_counter()
        argv = [renode, "--disable-xwt", "--plain", "--port", str(port)]
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            sock = _connect_when_listening(port, proc, 30)
            with sock:
                sock.sendall(TELNET_GREETING)  # Renode 1.13-1.15 writes nothing until it has 9 bytes
                _read_until(lambda: sock.recv(65536), PROMPT, 30)
                elapsed = time.perf_counter() - start
                sock.sendall(b"quit\n")
            proc.wait(10)
        finally:
            proc.kill()
            proc.wait()
        return elapsed

    def direct_monitor(self, driver):
        return driver.children["power"]._monitor.execute

    def running(self, driver) -> bool:
        return driver.children["power"].is_running


def _connect_when_listening(port: int, proc: subprocess.Popen, limit: float) -> socket.socket:
    """Poll the port until the stand-in listens (the condition), 1 ms between attempts."""
    deadline = time.monotonic() + limit
    while True:
        try:
            return socket.create_connection(("127.0.0.1", port))
        except ConnectionRefusedError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise
            time.sleep(0.001)


def run_real(side: Side, results: dict, firmware: Path | None) -> None:
    """Real Renode with the project firmware: ours warm (the default) and cold, theirs as it is."""
    images = {"firmware": firmware}
    configs = [("", {})] if side.name == "theirs" else [("", {}), (" [cold]", {"warm_start": False})]
    for label, config in configs:
        try:
            real(side, results, images, label, **config)
        except Exception as exc:  # one broken run must not hide the other
            results[f"real{label}: error"] = not_run(_short(exc))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("side", choices=["ours", "theirs"])
    parser.add_argument("--renode", default=str(STANDIN), help="our side: the renode executable")
    parser.add_argument(
        "--only", default="", help="comma-separated steps (power,monitor,console,reset,flash,scale,probe,real)"
    )
    parser.add_argument("--firmware", type=Path, help="`real` step: the project firmware's ELF")
    args = parser.parse_args()
    os.environ["TERM"] = "dumb"  # no rich progress bar on flash (both sides alike)
    side = Ours(args.renode) if args.side == "ours" else Theirs()
    only = set(filter(None, args.only.split(",")))
    results = run_all(side, only - {"real"}) if only != {"real"} else {}
    if "real" in only:
        run_real(side, results, args.firmware)
    print("RESULTS " + json.dumps(results), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
