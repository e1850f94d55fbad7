"""Reliability: Renode dying, hanging or starting slowly, clients vanishing, load and concurrency.

Every scenario runs end to end through Jumpstarter (serve() and real gRPC clients) against the
Renode stand-in, whose STANDIN_* knobs inject the fault into the Renode process the driver spawns.
In each fault case the call in progress must fail within its timeout with an error that says what
happened, the next `power on` must work, and nothing may be left behind: no process, PTY, pipe,
socket or other fd, no stale file in the target's directory.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack, asynccontextmanager, contextmanager
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from conftest import STANDIN, boot_line, firmware_for, no_renode_left, renode_processes, write
from conftest import target as served_target
from images import elf32, vector_table
from jumpstarter.client import client_from_path
from jumpstarter.client.core import DriverError
from jumpstarter.common import ExporterStatus
from jumpstarter.common.utils import serve
from jumpstarter.exporter import Session
from jumpstarter_driver_composite.driver import Composite

from jumpstarter_driver_renode.driver import Renode

TESTS = Path(__file__).parent

# The 16-target load test: 16 x 20 is the full size (benchmarks/soak.py --targets 16 --cycles 20);
# the suite runs 16 x LOAD_CYCLES to stay within its time budget on a 2-core machine.
LOAD_TARGETS = 16
LOAD_CYCLES = int(os.environ.get("RENODE_LOAD_CYCLES", "3"))


def target(backend, **config):
    """A served target that starts Renode cold at every power-on: each fault is injected into the Renode a power-on starts; warm spares have their own faults in test_warm_start.py."""
    config.setdefault("warm_start", False)
    return served_target(backend, **config)


# -- helpers --------------------------------------------------------------------------------------


def wait_until(condition: Callable[[], object], timeout: float, what: str) -> None:
    """Poll `condition` until it is true; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


def open_fds() -> dict[int, str]:
    fds = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            fds[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass  # the fd listdir itself used, already closed
    return fds


class LeakCheck:
    """Snapshot of this process's fds; `verify` waits for them to come back and checks the target."""

    def __init__(self):
        self.before = open_fds()

    def verify(self, driver: Renode, timeout: float = 10.0) -> None:
        def settled():
            return len(open_fds()) <= len(self.before)

        deadline = time.monotonic() + timeout
        while not settled() and time.monotonic() < deadline:
            time.sleep(0.02)
        now = open_fds()
        new = {fd: path for fd, path in now.items() if self.before.get(fd) != path}
        assert len(now) <= len(self.before), f"fds leaked: {new}"
        assert not [p for p in now.values() if "/dev/pts" in p or "ptmx" in p], f"PTY fds left open: {now}"
        wait_until(lambda: renode_processes() == [], 10, "every Renode process to be gone")
        if driver.target.existing_workdir is not None and driver.target.existing_workdir.exists():
            left = sorted(p.name for p in driver.target.existing_workdir.iterdir())
            assert not [n for n in left if n.startswith("uart-")], f"stale PTY links in the workdir: {left}"
            images = driver.target.existing_workdir / "firmware"
            stored = sorted(p.name for p in images.iterdir()) if images.is_dir() else []
            assert len(stored) <= 1, f"firmware copies pile up: {stored}"


def running_pid(driver: Renode) -> int:
    assert driver.target.renode is not None, "the target should be on"
    return driver.target.renode.process.pid


def wait_monitor_received(driver: Renode, command: str, timeout: float = 10.0) -> None:
    """Wait until Renode has echoed `command`: it is now executing it (or stuck in it)."""
    instance = driver.target.renode
    assert instance is not None
    wait_until(lambda: command in instance.session.monitor.pending_text(), timeout, f"Renode to receive `{command}`")


def wait_reaped(pid: int, timeout: float = 10.0) -> None:
    wait_until(lambda: not Path(f"/proc/{pid}").exists(), timeout, f"Renode pid {pid} to be reaped")


class Call(threading.Thread):
    """A client call on its own thread, so the test can break Renode while the call is in progress."""

    def __init__(self, fn: Callable[[], object]):
        super().__init__(daemon=True)
        self.fn = fn
        self.result: object = None
        self.error: BaseException | None = None
        self.finished_at: float | None = None

    def run(self):
        try:
            self.result = self.fn()
        except BaseException as exc:
            self.error = exc
        finally:
            self.finished_at = time.monotonic()

    def outcome(self, timeout: float) -> BaseException | None:
        self.join(timeout)
        assert not self.is_alive(), f"the call did not return within {timeout:g}s"
        return self.error


def expect_boot(console, image: bytes, timeout: float = 10.0, loader: str = "LoadELF") -> None:
    console.expect(re.escape(boot_line(image, loader=loader)), timeout=timeout)


# -- Renode killed with SIGKILL ---------------------------------------------------------------------


def test_sigkill_mid_command_fails_fast_and_next_power_on_works(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_HANG_ON", "version")
    image = firmware_for(standin)
    with target(standin, allow_raw_monitor=True, command_timeout=30) as (client, driver):
        leaks = LeakCheck()
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        call = Call(lambda: client.monitor_cmd("version"))
        call.start()
        wait_monitor_received(driver, "version")
        killed_at = time.monotonic()
        os.kill(running_pid(driver), signal.SIGKILL)
        error = call.outcome(10)
        assert isinstance(error, DriverError)
        assert call.finished_at - killed_at < 5, "the call waited for its 30s timeout instead of seeing the exit"
        assert re.search(r"Renode (closed the monitor|exited|was killed)", str(error)), str(error)
        assert "`version`" in str(error)

        monkeypatch.delenv("STANDIN_HANG_ON")
        client.power.on()  # notices the dead Renode and starts a new one
        assert "Renode, version" in client.monitor_cmd("version")
        with client.console.pexpect() as console:
            expect_boot(console, image)
        client.power.off()
        leaks.verify(driver)


@pytest.mark.parametrize("how", ["sigkill", "exit_at_start"])
def test_error_always_says_how_renode_ended(standin, monkeypatch, how):
    """Repeated deaths must each be reported as what they were: the reaping race must not pick the message."""
    messages = []
    if how == "sigkill":
        monkeypatch.setenv("STANDIN_HANG_ON", "version")
        expected = "Renode was killed by signal SIGKILL"
    else:
        monkeypatch.setenv("STANDIN_EXIT_AT_START", "3")
        expected = "Renode exited with code 3"
    with target(standin, allow_raw_monitor=True, command_timeout=30) as (client, driver):
        for _ in range(8):
            if how == "sigkill":
                client.power.on()
                call = Call(lambda: client.monitor_cmd("version"))
                call.start()
                wait_monitor_received(driver, "version")
                os.kill(running_pid(driver), signal.SIGKILL)
                messages.append(str(call.outcome(10)))
                client.power.off()
            else:
                with pytest.raises(DriverError) as info:
                    client.power.on()
                messages.append(str(info.value))
    wrong = [m for m in messages if expected not in m or "still running" in m]
    assert not wrong, f"{len(wrong)}/8 errors do not say `{expected}`: {wrong[0]}"


@pytest.mark.parametrize("stuck_on", ["pause", "sysbus"])
def test_sigkill_mid_hot_reflash(standin, tmp_path, monkeypatch, stuck_on):
    """Renode dies while a flash reloads the running machine: flash fails, the old image stays in place."""
    monkeypatch.setenv("STANDIN_HANG_ON", stuck_on)
    old, new = firmware_for(standin, b"old"), firmware_for(standin, b"new")
    with target(standin, command_timeout=30) as (client, driver):
        leaks = LeakCheck()
        if stuck_on == "pause":  # boot with `old`, the reflash is stuck at its first step
            client.flasher.flash(write(tmp_path, "old.elf", old))
        client.power.on()  # with `sysbus` stuck: boot without firmware, the reflash is stuck in LoadELF
        call = Call(lambda: client.flasher.flash(write(tmp_path, "new.elf", new)))
        call.start()
        wait_monitor_received(driver, stuck_on)
        killed_at = time.monotonic()
        os.kill(running_pid(driver), signal.SIGKILL)
        error = call.outcome(10)
        assert isinstance(error, DriverError), error
        assert call.finished_at - killed_at < 5
        assert re.search(r"Renode (closed the monitor|exited|was killed)", str(error)), str(error)
        stored = list((driver.workdir / "firmware").iterdir())
        assert len(stored) == (1 if stuck_on == "pause" else 0), f"the failed image was kept: {stored}"

        monkeypatch.delenv("STANDIN_HANG_ON")
        client.power.on()
        with client.console.pexpect() as console:
            if stuck_on == "pause":
                expect_boot(console, old)  # the failed flash did not replace the image
            client.flasher.flash(write(tmp_path, "new.elf", new))
            expect_boot(console, new)
        client.power.off()
        leaks.verify(driver)


def test_sigkill_with_console_attached_console_survives_next_power_on(standin, tmp_path):
    image = firmware_for(standin)
    with target(standin) as (client, driver):
        leaks = LeakCheck()
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        with client.console.pexpect() as console:
            expect_boot(console, image)
            pid = running_pid(driver)
            os.kill(pid, signal.SIGKILL)
            wait_reaped(pid)
            client.power.on()  # same console session, new Renode
            expect_boot(console, image)
            console.send(b"still here\r")
            console.expect(rb"echo: still here", timeout=10)
        client.power.off()
        leaks.verify(driver)


# -- Renode exits by itself -------------------------------------------------------------------------


def test_exit_at_start_is_reported_with_renodes_crash_text(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_EXIT_AT_START", "3")
    with target(standin, startup_timeout=20) as (client, driver):
        leaks = LeakCheck()
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        started = time.monotonic()
        with pytest.raises(DriverError) as info:
            client.power.on()
        assert time.monotonic() - started < 10, "a Renode that exited at once must not cost the startup timeout"
        assert re.search(r"Renode (closed the monitor|exited)", str(info.value)), str(info.value)
        assert "TypeInitializationException" in str(info.value)  # Renode's own crash text is quoted
        assert driver.target.renode is None
        monkeypatch.delenv("STANDIN_EXIT_AT_START")
        client.power.on()
        client.power.off()
        leaks.verify(driver)


def test_bad_platform_path_fails_power_on_and_leaves_nothing(standin):
    with target(standin, platform="platforms/boards/missing-board.repl") as (client, driver):
        leaks = LeakCheck()
        for _ in range(2):  # and again: the failure is repeatable, not a stuck state
            with pytest.raises(DriverError, match=r"missing-board\.repl"):
                client.power.on()
            assert driver.target.renode is None
        leaks.verify(driver)


def test_bad_extra_command_fails_power_on_with_renodes_text(standin):
    with target(standin, extra_commands=["nosuchcommand 1"]) as (client, driver):
        leaks = LeakCheck()
        with pytest.raises(DriverError, match=r"nosuchcommand 1.*No such command or device: nosuchcommand"):
            client.power.on()
        assert driver.target.renode is None
        leaks.verify(driver)


def test_crash_after_boot_next_call_fails_fast_then_power_on_works(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_CRASH_AFTER_START", "0.3")
    image = firmware_for(standin)
    with target(standin, command_timeout=30) as (client, driver):
        leaks = LeakCheck()
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        with client.console.pexpect() as console:
            client.power.on()
            pid = running_pid(driver)
            wait_reaped(pid)
            started = time.monotonic()
            with pytest.raises(DriverError, match=r"Renode exited with code 134"):
                client.reset()
            assert time.monotonic() - started < 3
            monkeypatch.delenv("STANDIN_CRASH_AFTER_START")
            client.power.on()
            expect_boot(console, image)  # the console attached before the crash sees the new boot
        client.power.off()
        leaks.verify(driver)


def test_crash_while_a_command_is_in_progress(standin, monkeypatch):
    monkeypatch.setenv("STANDIN_HANG_ON", "version")
    monkeypatch.setenv("STANDIN_CRASH_AFTER_START", "1.5")
    with target(standin, allow_raw_monitor=True, command_timeout=30) as (client, driver):
        leaks = LeakCheck()
        client.power.on()
        call = Call(lambda: client.monitor_cmd("version"))
        call.start()
        error = call.outcome(15)
        assert isinstance(error, DriverError)
        assert re.search(r"Renode (closed the monitor|exited)", str(error)), str(error)
        monkeypatch.delenv("STANDIN_HANG_ON")
        monkeypatch.delenv("STANDIN_CRASH_AFTER_START")
        client.power.on()
        assert "Renode, version" in client.monitor_cmd("version")
        client.power.off()
        leaks.verify(driver)


# -- the monitor misbehaves -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "knob,expected",
    [
        ("STANDIN_HANG_ON", r"did not answer `version` within 1s"),
        ("STANDIN_HALF_REPLY_ON", r"did not answer `version` within 1s"),
        ("STANDIN_CLOSE_ON", r"closed the monitor while running `version`"),
    ],
)
def test_monitor_fault_during_a_call(standin, monkeypatch, knob, expected):
    monkeypatch.setenv(knob, "version")
    with target(standin, allow_raw_monitor=True, command_timeout=1.0) as (client, driver):
        leaks = LeakCheck()
        client.power.on()
        started = time.monotonic()
        with pytest.raises(DriverError, match=expected):
            client.monitor_cmd("version")
        assert time.monotonic() - started < 5
        # The monitor is out of sync now: later calls say so at once instead of reading stale bytes.
        started = time.monotonic()
        with pytest.raises(DriverError, match="monitor unusable"):
            client.reset()
        assert time.monotonic() - started < 2
        monkeypatch.delenv(knob)
        client.power.on()  # replaces the stuck Renode (which is still alive) with a fresh one
        assert "Renode, version" in client.monitor_cmd("version")
        client.power.off()
        leaks.verify(driver)


@pytest.mark.parametrize(
    "knob,word,expected",
    [
        ("STANDIN_HANG_ON", "logFile", r"did not answer `logFile"),
        ("STANDIN_HALF_REPLY_ON", "mach", r"did not answer `mach create"),
        ("STANDIN_CLOSE_ON", "emulation", r"closed the monitor while running `emulation CreateUartPtyTerminal"),
    ],
)
def test_monitor_fault_during_power_on(standin, tmp_path, monkeypatch, knob, word, expected):
    monkeypatch.setenv(knob, word)
    with target(standin, command_timeout=1.0) as (client, driver):
        leaks = LeakCheck()
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        started = time.monotonic()
        with pytest.raises(DriverError, match=expected):
            client.power.on()
        assert time.monotonic() - started < 8
        assert driver.target.renode is None
        leaks.verify(driver)
        monkeypatch.delenv(knob)
        client.power.on()
        client.power.off()
        leaks.verify(driver)


def test_renode_slower_than_startup_timeout(standin, monkeypatch):
    monkeypatch.setenv("STANDIN_START_DELAY", "30")
    with target(standin, startup_timeout=1.5) as (client, driver):
        leaks = LeakCheck()
        started = time.monotonic()
        with pytest.raises(DriverError, match=r"no monitor prompt within 1.5s"):
            client.power.on()
        assert time.monotonic() - started < 8
        assert driver.target.renode is None
        leaks.verify(driver)
        monkeypatch.delenv("STANDIN_START_DELAY")
        client.power.on()
        client.power.off()
        leaks.verify(driver)


# -- clients that disconnect, and the client after them ---------------------------------------------


@asynccontextmanager
async def _session(driver, portal, stack):
    with Session(root_device=driver) as session:
        async with session.serve_unix_async() as path:
            session.update_status(ExporterStatus.LEASE_READY)
            async with client_from_path(path, portal, stack, allow=[], unsafe=True) as client:
                yield path, client


@contextmanager
def shared_session(**config):
    """One exporter session (as `jmp shell` gives) that other processes can connect to: (path, client, driver)."""
    config.setdefault("platform", "platforms/boards/stm32f4_discovery-kit.repl")
    config.setdefault("uart", "sysbus.usart2")
    config.setdefault("renode_path", str(STANDIN))
    config.setdefault("startup_timeout", 20)
    config.setdefault("command_timeout", 10)
    config.setdefault("warm_start", False)  # "nothing left" is checked mid-session: no background spare here
    driver = Renode(**config)
    try:
        with start_blocking_portal() as portal, ExitStack() as stack:
            with portal.wrap_async_context_manager(_session(driver, portal, stack)) as (path, client):
                yield path, client, driver
    finally:
        driver.close()


CLIENT_PROCESS = r"""
import sys
from contextlib import ExitStack
from anyio.from_thread import start_blocking_portal
from jumpstarter.client import client_from_path
path, action, arg = sys.argv[1:4]
with start_blocking_portal() as portal, ExitStack() as stack:
    with portal.wrap_async_context_manager(client_from_path(path, portal, stack, allow=[], unsafe=True)) as client:
        print("CONNECTED", flush=True)
        if action == "flash":
            client.flasher.flash(arg)
            print("FLASHED", flush=True)
        elif action == "on":
            client.power.on()
            print("ON", flush=True)
        elif action == "console":
            with client.console.pexpect() as console:
                console.expect(arg.encode(), timeout=10)
                print("READING", flush=True)
                sys.stdin.read()
"""


def client_process(path: str, action: str, arg: str) -> subprocess.Popen:
    """A second `j`-like client in its own process, so it can really vanish (SIGKILL)."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLIENT_PROCESS, path, action, arg],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    return proc


def read_line(proc: subprocess.Popen, timeout: float) -> str:
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert box, f"no line from pid {proc.pid} within {timeout:g}s"
    return box[0].strip()


def kill_client(proc: subprocess.Popen) -> None:
    proc.kill()
    proc.wait(10)
    proc.stdin.close()
    proc.stdout.close()


def test_client_killed_mid_power_on_leaves_no_renode_behind(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_START_DELAY", "3")  # power-on is still waiting for the prompt when we kill
    with shared_session() as (path, client, driver):
        proc = client_process(path, "on", "")
        try:
            assert read_line(proc, 30) == "CONNECTED"
            wait_until(lambda: renode_processes() != [], 10, "Renode to be started by the power-on call")
            kill_client(proc)
        finally:
            if proc.poll() is None:
                kill_client(proc)
        # The call was cancelled with its client: the half-started Renode is stopped, nothing stays.
        wait_until(lambda: renode_processes() == [], 15, "the half-started Renode to be stopped")
        assert driver.target.renode is None
        client.power.on()  # the target still works for the next client
        client.power.off()
        assert no_renode_left()


def test_client_killed_mid_flash_then_another_client_flashes(standin, tmp_path):
    fifo = tmp_path / "image.fifo"  # the upload stalls mid-way while we hold the pipe open
    os.mkfifo(fifo)
    image = firmware_for(standin)
    with shared_session() as (path, client, driver):
        leaks = LeakCheck()
        proc = client_process(path, "flash", str(fifo))
        try:
            assert read_line(proc, 30) == "CONNECTED"
            writer = os.open(fifo, os.O_WRONLY)
            try:
                # An ELF whose one segment is 4 MiB long; only its first MiB is ever sent.
                os.write(writer, elf32(b"\x00\xbf" * (2 << 20))[: 1 << 20])
                images = driver.workdir / "firmware"
                wait_until(
                    lambda: images.is_dir() and any(p.stat().st_size > 0 for p in images.iterdir()),
                    10,
                    "part of the image to reach the exporter",
                )
                kill_client(proc)
                wait_until(lambda: not list(images.iterdir()), 10, "the half-uploaded image to be deleted")
            finally:
                os.close(writer)
        finally:
            if proc.poll() is None:
                kill_client(proc)
        assert driver.target.firmware == {}, "a half-uploaded image must not become the firmware"
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        with client.console.pexpect() as console:
            expect_boot(console, image)
        client.power.off()
        leaks.verify(driver)


def test_client_killed_mid_console_then_another_client_uses_it(standin, tmp_path):
    image = firmware_for(standin)
    with shared_session() as (path, client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        leaks = LeakCheck()
        channel = driver.target.channels["console"]
        proc = client_process(path, "console", "Booting stand-in firmware")
        try:
            assert read_line(proc, 30) == "CONNECTED"
            assert read_line(proc, 30) == "READING"
            assert len(channel._subscribers) == 1
            kill_client(proc)
        finally:
            if proc.poll() is None:
                kill_client(proc)
        wait_until(lambda: not channel._subscribers, 10, "the dead client's console to be dropped")
        with client.console.pexpect() as console:
            console.send(b"after the crash\r")
            console.expect(rb"echo: after the crash", timeout=10)
            client.reset()
            expect_boot(console, image)
        client.power.off()
        leaks.verify(driver)


def test_session_ends_while_a_client_still_holds_the_console(standin, tmp_path):
    """The lease ends under a connected `j console`: the session closes promptly and Renode is stopped."""
    image = firmware_for(standin)
    with ExitStack() as cleanup:
        with shared_session() as (path, client, driver):
            client.flasher.flash(write(tmp_path, "fw.elf", image))
            client.power.on()
            workdir = driver.workdir
            proc = client_process(path, "console", "Booting stand-in firmware")
            cleanup.callback(lambda: proc.poll() is None and kill_client(proc))
            assert read_line(proc, 30) == "CONNECTED"
            assert read_line(proc, 30) == "READING"
            closing = time.monotonic()
        assert time.monotonic() - closing < 15, "closing the session waited on the connected console"
        wait_until(lambda: renode_processes() == [], 10, "Renode to stop with the session")
        assert not workdir.exists(), "the target's directory outlived the session"


EXPORTER_PROCESS = r"""
import os, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import conftest
from conftest import BACKENDS, firmware_for, target, write
# Tag this exporter's Renode with the parent test run's tag, so the parent's renode_processes() sees it.
os.environ["JUMPSTARTER_RENODE_TEST_RUN"] = sys.argv[3]
conftest.RUN_TAG = "JUMPSTARTER_RENODE_TEST_RUN=" + sys.argv[3]
standin = BACKENDS["standin"]
with target(standin) as (client, driver):
    client.flasher.flash(write(Path(sys.argv[2]), "fw.elf", firmware_for(standin)))
    client.power.on()
    print(driver.target.renode.process.pid, flush=True)
    sys.stdin.read()
"""


def test_exporter_killed_takes_renode_with_it(standin, tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", EXPORTER_PROCESS, str(TESTS), str(tmp_path), os.environ["JUMPSTARTER_RENODE_TEST_RUN"]],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (line := read_line(proc, max(deadline - time.monotonic(), 0.1))).isdigit():
            pass  # progress output of the flash
        pid = int(line)
        assert pid in renode_processes()
    finally:
        kill_client(proc)  # SIGKILL: no cleanup code runs in the exporter
    wait_until(lambda: pid not in renode_processes(), 5, f"Renode pid {pid} to die with its exporter")


# -- load and concurrency -------------------------------------------------------------------------


def test_concurrent_monitor_calls_are_serialised_and_never_mixed(standin, tmp_path):
    with target(standin, allow_raw_monitor=True) as (client, _driver):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        client.power.on()
        expected_version = client.monitor_cmd("version")
        barrier = threading.Barrier(3, timeout=10)
        results: dict[str, list] = {"version": [], "time": [], "reset": []}

        def loop(kind, fn):
            barrier.wait()
            for _ in range(25):
                results[kind].append(fn())

        calls = [
            Call(lambda: loop("version", lambda: client.monitor_cmd("version"))),
            Call(lambda: loop("time", lambda: client.monitor_cmd("currentTime"))),
            Call(lambda: loop("reset", client.reset)),
        ]
        for call in calls:
            call.start()
        for call in calls:
            assert call.outcome(60) is None, call.error
        assert results["version"] == [expected_version] * 25
        assert len(results["time"]) == 25
        for reply in results["time"]:
            assert re.fullmatch(r"Current virtual time: [\d:.]+\nCurrent real time: [\d:.]+", reply), reply
        assert results["reset"] == [None] * 25
        assert client.monitor_cmd("version") == expected_version


def run_load(targets: int, cycles: int, tmp_path: Path) -> None:
    """`targets` Renode targets in one exporter, each flashed and power-cycled `cycles` times at once."""
    names = [f"board{i:02d}" for i in range(targets)]
    children = {
        name: Renode(
            platform="platforms/boards/stm32f4_discovery-kit.repl",
            uart="sysbus.usart2",
            renode_path=str(STANDIN),
            machine_name=name,
            startup_timeout=60,
            command_timeout=60,
        )
        for name in names
    }
    root = Composite(children=children)
    try:
        with serve(root) as client:

            def cycle_one(name):
                board = client.children[name]
                for n in range(cycles):
                    image = firmware_for_tag(f"{name}-{n}".encode())
                    board.flasher.flash(write(tmp_path, f"{name}.elf", image))
                    board.power.on()
                    with board.console.pexpect() as console:
                        expect_boot(console, image, timeout=60)  # this board runs exactly its image
                    board.power.off()

            calls = [Call(lambda name=name: cycle_one(name)) for name in names]
            for call in calls:
                call.start()
            failures = [(name, call.outcome(600)) for name, call in zip(names, calls, strict=True)]
            failures = [(name, error) for name, error in failures if error is not None]
            assert not failures, failures
    finally:
        root.close()
    wait_until(lambda: renode_processes() == [], 10, "every Renode to be gone")


def firmware_for_tag(tag: bytes) -> bytes:
    from images import EM_ARM, elf32

    return elf32(b"\x00\xbf" * 32 + tag, machine=EM_ARM)


def test_sixteen_targets_flashed_and_power_cycled_concurrently(standin, tmp_path):
    run_load(1, 1, tmp_path)  # warm-up: gRPC opens its process-wide fds on first use
    leaks = LeakCheck()
    run_load(LOAD_TARGETS, LOAD_CYCLES, tmp_path)
    wait_until(lambda: len(open_fds()) <= len(leaks.before), 10, "fds to return to their count before the load")


# -- resources that must not grow -----------------------------------------------------------------


def test_power_cycles_do_not_pile_up_files(standin, tmp_path):
    with target(standin) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        for _ in range(6):
            client.power.on()
            client.power.off()
        files = sorted(p.name for p in driver.workdir.rglob("*"))
        logs = [name for name in files if name.startswith("renode.log")]
        assert len(logs) <= 2, f"{len(logs)} Renode logs kept after 6 power cycles: {logs}"


def test_huge_raw_image_flashes_in_constant_memory(standin, tmp_path):
    """A 256 MiB raw binary streams to disk: the exporter's memory does not grow with the image."""
    size = 256 * 1024 * 1024
    path = tmp_path / "huge.bin"
    with path.open("wb") as f:  # sparse in the middle, real bytes at both ends; a Cortex-M vector table first
        f.write(vector_table(0x08000000) + os.urandom(4088))
        f.seek(size - 4096)
        f.write(os.urandom(4092) + b"TAIL")
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    with target(standin, startup_timeout=60) as (client, driver):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS counter (VmHWM)
        rss_before = _status_kib("VmRSS")
        assert client.flasher.flash(path, load_address="0x08000000") == "bin"
        growth_mib = (_status_kib("VmHWM") - rss_before) / 1024
        assert growth_mib < 64, f"peak RSS grew by {growth_mib:.0f} MiB while flashing a 256 MiB image"
        stored = list((driver.workdir / "firmware").iterdir())
        assert [p.stat().st_size for p in stored] == [size]
        client.power.on()
        with client.console.pexpect() as console:
            console.expect(f"sha256={digest.hexdigest()} loader=LoadBinary".encode(), timeout=60)
        client.power.off()


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/self/status")
