"""What real Renode 1.16.1 does that once broke the driver, modelled by the stand-in.

Each behaviour is pinned twice: through the driver (it must cope), and on the stand-in alone (the model
must stay faithful, so CI without Renode fails if the driver's workaround goes away). The facts are in
../shared/docs/renode-facts.md, "Measured on real Renode 1.16.1".
"""

from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import STANDIN, expect_banner, expect_echo, target
from jumpstarter.client.core import DriverError

from jumpstarter_driver_renode.features.base import helper_script

SVD_URL = "https://dl.antmicro.com/projects/renode/svd/STM32F40x.svd.gz"


@pytest.fixture
def private_home(tmp_path, monkeypatch) -> Path:
    """A user directory of our own, so the test sees an empty Renode download cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    return home


# -- an offline exporter and Renode's download cache ------------------------------------------------


def test_offline_exporter_powers_on_from_renodes_download_cache(standin, firmware, private_home, monkeypatch):
    """The STM32F4 platform applies an SVD from a URL. Renode keeps downloads in its per-user cache, unless
    RENODE_CI_MODE=YES (which the driver once set): then every power-on downloads again, and offline fails."""
    fw = firmware()
    with target(standin, warm_start=False) as (client, _):  # every power-on starts a Renode with this environment
        client.flasher.flash(fw.elf)
        client.power.on()  # online: Renode downloads the SVD once, into its cache
        assert f"Downloading {SVD_URL}." in client.log(lines=500)
        client.power.off()

        monkeypatch.setenv("STANDIN_OFFLINE", "1")
        monkeypatch.setenv("RENODE_CI_MODE", "YES")  # even where the exporter's environment sets it
        client.power.on()
        assert "Downloading" not in client.log(lines=500)
        with client.console.pexpect() as console:
            expect_banner(console, fw, standin)
            expect_echo(console, standin, b"offline")


def test_offline_exporter_without_the_file_says_what_to_do(standin, private_home, monkeypatch):
    monkeypatch.setenv("STANDIN_OFFLINE", "1")
    with target(standin) as (client, driver):
        with pytest.raises(DriverError, match=rf"(?s)Failed to download {SVD_URL}.*download cache") as info:
            client.power.on()
        assert "local file" in str(info.value)
        assert driver.target.renode is None


# -- the monitor alone: the model, checked against real Renode -----------------------------------------------------------


class Session:
    """The stand-in on pipes, `--console --plain`: one command at a time, like the driver talks to Renode."""

    def __init__(self, backend, tmp_path: Path, env: dict[str, str] | None = None):
        self.tmp = tmp_path
        launcher = [sys.executable, str(STANDIN)] if backend.standin else [backend.renode_path]
        self.proc = subprocess.Popen(
            [
                *launcher,
                "--console",
                "--disable-xwt",
                "--plain",
                "--hide-log",
                "--config",
                str(tmp_path / "renode.config"),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        self.buffer = b""
        self.read_until(b"(monitor) ", timeout=backend.timeout(10, 60))

    def read_until(self, marker: bytes, timeout: float = 60) -> bytes:
        deadline = time.monotonic() + timeout
        while marker not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"no {marker!r} from the stand-in: {self.buffer[-300:]!r}"
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                assert chunk, f"the stand-in exited: {self.buffer[-300:]!r}"
                self.buffer += chunk
        before, _, self.buffer = self.buffer.partition(marker)
        return before

    def run(self, command: str, prompt: bytes = b"(m) ") -> str:
        self.proc.stdin.write(command.encode() + b"\n")
        self.proc.stdin.flush()
        reply = self.read_until(prompt).decode(errors="replace")  # the prompt follows \n\r or \r\r\n
        assert reply.startswith(command), f"no echo of {command!r}: {reply!r}"
        return reply[len(command) :].removeprefix("\n\r")

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait(10)
        self.proc.stdin.close()
        self.proc.stdout.close()


@pytest.fixture
def session(backend, tmp_path):
    """The model tests run on real Renode too: that is what proves the model."""
    s = Session(backend, tmp_path)
    yield s
    s.close()


def board(session: Session, fw) -> Path:
    session.run('mach create "m"', b"(m) ")
    assert session.run(f"machine LoadPlatformDescription @{fw.platform}") == ""
    session.run(f"logFile @{session.tmp}/renode.log true")
    session.run(f'emulation CreateUartPtyTerminal "term" "{session.tmp}/pty" true')
    session.run(f"connector Connect {fw.console} term")
    return session.tmp / "pty"


class Pty:
    def __init__(self, link: Path):
        self.fd = os.open(link, os.O_RDWR | os.O_NOCTTY)
        self.buffer = b""

    def expect(self, data: bytes, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while data not in self.buffer:
            left = deadline - time.monotonic()
            assert left > 0, f"no {data!r} on the UART: {self.buffer!r}"
            if select.select([self.fd], [], [], left)[0]:
                self.buffer += os.read(self.fd, 4096)
        self.buffer = self.buffer.split(data, 1)[1]

    def silent(self, seconds: float) -> bool:
        return not select.select([self.fd], [], [], seconds)[0]


def wait_for_log(path: Path, text: str, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        log = path.read_text() if path.exists() else ""
        if text in log:
            return log
        time.sleep(0.02)  # a file has no change notification: poll for the condition
    raise AssertionError(f"{text!r} not in the log: {log[-500:]!r}")


HALTED = "PC does not lay in memory or PC and SP are equal to zero. CPU was halted."


@pytest.mark.parametrize("entry", [False, True], ids=["alone", "with-vtor"])
@pytest.mark.parametrize("kind", ["bin", "hex"])
def test_binary_and_hex_need_the_vector_table_on_a_cortex_m(session, firmware, kind, entry):
    """LoadBinary/LoadHEX write memory only: without VTOR the CPU reads its vector table at 0 and halts."""
    fw = firmware()
    pty = Pty(board(session, fw))
    session.run(f"sysbus LoadBinary @{fw.bin} {fw.load_address}" if kind == "bin" else f"sysbus LoadHEX @{fw.hex}")
    if entry:
        session.run(f"sysbus.cpu VectorTableOffset {fw.load_address}")
        assert session.run("sysbus.cpu VectorTableOffset").strip() == "0x08000000"
    session.run("start")
    if entry:
        pty.expect(fw.banner)
    else:
        wait_for_log(session.tmp / "renode.log", HALTED)
        assert pty.silent(0.5)
        assert session.run("sysbus.cpu PC").strip() == "0x0"


def test_a_reset_forgets_the_entry_unless_the_reset_macro_loads_the_image_again(session, firmware):
    """Why the driver registers Renode's `reset` macro: a bare `machine Reset` leaves a Cortex-M halted."""
    fw = firmware()
    pty = Pty(board(session, fw))
    session.run(f"sysbus LoadELF @{fw.elf}")
    session.run("start")
    pty.expect(fw.banner)
    log = wait_for_log(session.tmp / "renode.log", "Setting initial values")
    assert "Guessing VectorTableOffset value to be 0x8000000." in log
    session.run("machine Reset")
    wait_for_log(session.tmp / "renode.log", HALTED)
    assert pty.silent(0.5)


def test_the_reset_macro_reboots_the_image(session, firmware):
    fw = firmware()
    pty = Pty(board(session, fw))
    session.run(f"sysbus LoadELF @{fw.elf}")
    session.run(f'macro reset "sysbus LoadELF @{fw.elf}"')
    session.run("start")
    pty.expect(fw.banner)
    session.run("machine Reset")
    pty.expect(fw.banner)


def saved_and_loaded(session, fw) -> Path:
    """A board with the firmware loaded, saved, cleared and loaded back; the UART terminal's link."""
    link = board(session, fw)
    session.run(f"sysbus LoadELF @{fw.elf}")
    session.run(f"Save @{session.tmp}/snap.save")
    session.run("Clear", b"(monitor) ")
    session.run(f"Load @{session.tmp}/snap.save", b"(monitor) ")
    session.run('mach set "m"')
    return link


def test_restored_terminal_is_dead_until_reconnected(session, firmware):
    fw = firmware()
    link = saved_and_loaded(session, fw)
    pty = Pty(link)  # the restored terminal's new PTY, at the same link
    session.run("start")
    os.write(pty.fd, b"hello\r")
    assert pty.silent(0.5), "a restored terminal passed bytes before its UART was reconnected"
    session.run(f"connector Disconnect {fw.console} term")
    session.run(f"connector Connect {fw.console} term")
    os.write(pty.fd, b"again\r")
    pty.expect(b"echo: again\r\n")


def restored_and_started(session, fw) -> Pty:
    """A board saved, cleared, loaded back and started, with the `reset` macro registered again."""
    link = saved_and_loaded(session, fw)
    session.run(f'macro reset "sysbus LoadELF @{fw.elf}"')
    session.run(f"connector Disconnect {fw.console} term")
    session.run(f"connector Connect {fw.console} term")
    pty = Pty(link)
    session.run("start")
    pty.expect(fw.banner + b"\r\n")
    return pty


def test_after_a_snapshot_load_a_reset_skips_the_reset_macro(session, firmware):
    """The monitor hooks its reset handler (which runs the `reset` macro) to machines as they are added;
    a machine loaded from a snapshot never is, so its resets leave a Cortex-M halted at 0."""
    fw = firmware()
    pty = restored_and_started(session, fw)
    session.run("machine Reset")
    assert pty.silent(1.0)
    assert session.run("sysbus.cpu PC").strip() == "0x0"


def test_after_a_snapshot_load_the_driver_rearms_the_reset_macro(session, firmware):
    fw = firmware()
    pty = restored_and_started(session, fw)
    session.run(f"include @{helper_script('machine.py')}")
    assert "jumpstarter-rearm done" in session.run("jumpstarter_rearm_reset")
    session.run("machine Reset")
    pty.expect(fw.banner)


def test_a_parked_terminal_stays_out_of_the_snapshot_and_keeps_its_pty(session, backend, firmware, tmp_path):
    """How snapshots hold no PTY (inside_renode/terminals.py): a terminal taken out of the externals is
    not saved and not disposed. `Load` without `Clear` then keeps it, and a second Renode loads the
    snapshot while the first lives, free to make its own terminal of the same name."""
    fw = firmware()
    pty = Pty(board(session, fw))
    session.run(f"sysbus LoadELF @{fw.elf}")
    for helper in ("expect.py", "terminals.py"):
        session.run(f"include @{helper_script(helper)}")
    session.run("start")
    pty.expect(fw.banner + b"\r\n")
    session.run("pause")
    session.run(f"connector Disconnect {fw.console} term")
    session.run('jumpstarter_park "term"')
    session.run(f"Save @{session.tmp}/snap.save")
    session.run(f"Load @{session.tmp}/snap.save", b"(monitor) ")
    session.run('mach set "m"')
    session.run('jumpstarter_unpark "term"')
    session.run(f"connector Connect {fw.console} term")
    session.run("start")
    os.write(pty.fd, b"same pty\r")
    pty.expect(b"echo: same pty\r\n")

    other_dir = tmp_path / "other"
    other_dir.mkdir()
    other = Session(backend, other_dir)
    try:
        other.run(f"Load @{session.tmp}/snap.save", b"(monitor) ")
        other.run('mach set "m"')
        other.run(f'emulation CreateUartPtyTerminal "term" "{other_dir}/pty" true')
        other.run(f"connector Connect {fw.console} term")
        other_pty = Pty(other_dir / "pty")
        other.run("start")
        os.write(other_pty.fd, b"other\r")
        other_pty.expect(b"echo: other\r\n")
        os.write(pty.fd, b"first\r")  # the first Renode's PTY and link are untouched
        pty.expect(b"echo: first\r\n")
    finally:
        other.close()


def test_reset_after_a_restore_reboots_the_firmware(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.expect_output("BOOT", timeout=1)
        client.save_snapshot("booted")
        client.restore_snapshot("booted")
        client.reset_machine()
        client.expect_output(r"BOOT jumpstarter-renode-fw", timeout=1)
        client.restore_snapshot("booted")
        client.flasher.flash(fw.elf)
        client.expect_output(r"BOOT jumpstarter-renode-fw", timeout=1)


def test_renode_removes_other_renode_folders_from_its_tmpdir(backend, tmp_path, firmware):
    """infra TemporaryFilesManager, made on first use (measured: the first platform load, not at start):
    Renode deletes every `renode-*` folder in its TMPDIR that is not a live Renode's (`renode-<live pid>`)
    or a crash report (`-crash`). A folder of yours named so in /tmp goes: this is why each Renode of the
    driver gets a TMPDIR of its own, and the benchmarks name theirs `bench-renode-`."""
    tmp = tmp_path / "tmp"
    mine = f"renode-{os.getpid()}"
    for name in ("renode-999999999", "renode-bench-x", "renode-1-crash", mine, "bench-renode-x"):
        (tmp / name).mkdir(parents=True)
    session = Session(backend, tmp_path, env={**os.environ, "TMPDIR": str(tmp)})
    try:
        session.run("version", b"(monitor) ")
        assert len(list(tmp.iterdir())) == 5, "nothing is touched before Renode first needs its folder"
        board(session, firmware())
        left = sorted(p.name for p in tmp.iterdir())
        assert left == sorted(["renode-1-crash", mine, "bench-renode-x", f"renode-{session.proc.pid}"])
    finally:
        session.close()
