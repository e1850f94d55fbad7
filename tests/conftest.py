"""Fixtures: Renode targets served through Jumpstarter, backed by the stand-in or by real Renode."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pexpect
import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent))  # the project's firmware/ (a namespace package)

from images import EM_ARM, elf32
from jumpstarter.common.utils import serve

from firmware import build as firmware_build
from jumpstarter_driver_renode.driver import Renode

STANDIN = Path(__file__).parent / "standin" / "renode"
# Renodes inherit this, so leak checks see only this test run's processes, not a parallel run's.
RUN_TAG = f"JUMPSTARTER_RENODE_TEST_RUN={uuid.uuid4().hex}"
os.environ["JUMPSTARTER_RENODE_TEST_RUN"] = RUN_TAG.split("=", 1)[1]
REAL_RENODE = shutil.which("renode")


@dataclass(frozen=True)
class Backend:
    name: str
    renode_path: str
    platform: str
    uart: str

    @property
    def standin(self) -> bool:
        return self.name == "standin"

    def timeout(self, standin: float, real: float) -> float:
        """How long to wait for something: real Renode (Mono) starts and runs far slower than the stand-in."""
        return standin if self.standin else real


@dataclass(frozen=True)
class ProjectFirmware:
    """The project's own test firmware (firmware/), built from source for one board."""

    board: str
    build_id: str
    elf: Path
    hex: Path
    bin: Path

    @property
    def banner(self) -> bytes:
        """The boot line it prints, without the line end."""
        return firmware_build.banner(self.board, self.build_id).rstrip("\r\n").encode()

    @property
    def load_address(self) -> str:
        return hex(firmware_build.LOAD_ADDRESS[self.board])

    @property
    def platform(self) -> str:
        return firmware_build.PLATFORM[self.board]

    @property
    def console(self) -> str:
        return firmware_build.CONSOLE[self.board]

    def image(self, kind: str) -> Path:
        return {"elf": self.elf, "hex": self.hex, "bin": self.bin}[kind]


@pytest.fixture(scope="session")
def firmware(tmp_path_factory):
    """`firmware(board="stm32f4", build_id="test", variant="")`: the project's firmware, built once per session
    (variants: firmware/build.py VARIANTS)."""
    out = tmp_path_factory.mktemp("firmware")
    built: dict[tuple[str, str], ProjectFirmware] = {}

    def get(board: str = "stm32f4", build_id: str = "test", variant: str = "") -> ProjectFirmware:
        if (board, build_id, variant) not in built:
            paths = firmware_build.build(board, out, build_id, variant)
            built[board, build_id, variant] = ProjectFirmware(board, build_id, paths["elf"], paths["hex"], paths["bin"])
        return built[board, build_id, variant]

    return get


BACKENDS = {
    "standin": Backend("standin", str(STANDIN), "platforms/boards/stm32f4_discovery-kit.repl", "sysbus.usart2"),
    "real": Backend("real", REAL_RENODE or "renode", "platforms/boards/stm32f4_discovery-kit.repl", "sysbus.usart2"),
}


@pytest.fixture(params=["standin", "real"])
def backend(request) -> Backend:
    if request.param == "real" and REAL_RENODE is None:
        pytest.skip("real Renode not on PATH (install it to run these tests against it)")
    return BACKENDS[request.param]


@pytest.fixture
def standin() -> Backend:
    return BACKENDS["standin"]


@pytest.fixture(autouse=True)
def _clean_standin_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith("STANDIN_"):
            monkeypatch.delenv(key)


def boot_line(image: bytes, loader: str = "LoadELF", uart: str = "usart2") -> bytes:
    """What the stand-in's firmware prints first: proof of exactly which bytes were loaded."""
    return f"Booting stand-in firmware sha256={hashlib.sha256(image).hexdigest()} loader={loader} uart={uart}".encode()


def firmware_for(backend: Backend, tag: bytes = b"") -> bytes:
    """A synthetic ARM ELF for the stand-in's fault-injection tests: the stand-in boots it and prints its hash
    (`boot_line`). Tests that run on real Renode flash the project's firmware instead (`firmware` fixture)."""
    assert backend.standin, "synthetic images only boot on the stand-in; use the `firmware` fixture"
    return elf32(b"\x00\xbf" * 32 + tag, machine=EM_ARM)


def expect_banner(console, fw: ProjectFirmware, backend: Backend) -> None:
    """The firmware's boot banner on a pexpect console."""
    console.expect(re.escape(fw.banner) + rb"\r\n", timeout=backend.timeout(10, 60))


def expect_echo(console, backend: Backend, text: bytes) -> None:
    """A line sent to the firmware comes back as `echo: <line>`."""
    console.send(text + b"\r")
    console.expect(rb"echo: " + re.escape(text) + rb"\r\n", timeout=backend.timeout(10, 60))


def run_until_output(client, console, pattern: bytes, step: float = 0.05, limit: float = 5.0) -> float:
    """Run virtual time in small steps until `pattern` shows on the console; the virtual time then.

    Input typed while paused reaches the firmware asynchronously (PTY, Renode's reader thread), so a
    test cannot know which run_for it lands in; it can only step until the answer is there.
    """
    while client.virtual_time() < limit:
        client.run_for(step)
        try:
            console.expect(pattern, timeout=0.2)
            return client.virtual_time()
        except pexpect.TIMEOUT:
            continue
    raise AssertionError(f"{pattern!r} did not appear within {limit}s of virtual time: {console.before!r}")


def board_config(backend: Backend, **extra) -> dict:
    """The exporter config of the test board on `backend` (the STM32F4 Discovery), with `extra` on top."""
    return {
        "platform": backend.platform,
        "uart": backend.uart,
        "renode_path": backend.renode_path,
        "startup_timeout": backend.timeout(20, 120),
        "command_timeout": backend.timeout(10, 60),
        **extra,
    }


@contextmanager
def target(backend: Backend, **config) -> Iterator:
    """A Renode driver served through Jumpstarter; yields (client, driver)."""
    defaults = board_config(backend)
    if "machines" in config:  # a multi-machine target sets these per machine
        del defaults["platform"], defaults["uart"]
    config = {**defaults, **config}
    if any(key.startswith("STANDIN_") for key in os.environ):
        # Each stand-in reads its fault knobs when it starts: a warm spare started before the test changes
        # them would not follow. Fault tests run cold unless they ask for a spare (test_warm_start.py does).
        config.setdefault("warm_start", False)
    driver = Renode(**config)
    try:
        with serve(driver) as client:
            yield client, driver
    finally:
        driver.close()


def gdb_stop_replies(gdb) -> list[bytes]:
    """Ask a GDB stream for the stop reason (`?`); the stop packets received: the one connecting caused
    (SIGTRAP, S05) and the answer to `?` (always S00 in Renode 1.16), in either order."""
    gdb.send(b"$?#3f")
    reply = b""
    while len(re.findall(rb"#[0-9a-fA-F]{2}", reply)) < 2:  # each packet ends with two checksum digits
        reply += gdb.receive()
    return sorted(re.findall(rb"\$S[0-9a-f]{2}#[0-9a-f]{2}", reply))


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def no_renode_left(timeout: float = 5.0, spare_of: Renode | None = None) -> bool:
    """Whether every Renode of this run is gone within `timeout`: close() kills without waiting (it runs on
    the event loop), and a big Mono process takes a moment to exit after SIGKILL.

    `spare_of`: a target still in use may keep its warm spares (Renodes that serve no board).
    """
    deadline = time.monotonic() + timeout
    while [pid for pid in renode_processes() if not _in_group(pid, spare_groups(spare_of))]:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)  # polling /proc: a process's exit has no notification we can wait on here
    return True


def spare_groups(driver: Renode | None) -> set[int]:
    """The process groups of a target's live spares (a Renode and the helpers it runs with)."""
    return set() if driver is None else {s.pid for s in driver.target.spares if s.pid is not None}


def _in_group(pid: int, groups: set[int]) -> bool:
    """Whether `pid` belongs to one of the process groups `groups` (a Renode and its helpers, e.g. a GDB relay)."""
    try:
        return os.getpgid(pid) in groups
    except ProcessLookupError:
        return True  # gone meanwhile


def renode_processes() -> list[int]:
    """PIDs of live (non-zombie) Renodes this test run started (their --config is in a driver workdir)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            ours = RUN_TAG.encode() in (entry / "environ").read_bytes()
        except OSError:
            continue
        if ours and "--config /" in cmdline and "jumpstarter-renode-" in cmdline and state != "Z":
            pids.append(int(entry.name))
    return pids
