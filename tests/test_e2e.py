"""End to end through serve() and the real client: flash, power, console, reset, monitor, errors."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from conftest import boot_line, firmware_for, renode_processes, target, write
from images import EM_RISCV, elf32, intel_hex
from jumpstarter.client.core import DriverError


def test_flash_power_console_off(backend, tmp_path):
    """The issue's session: flash, power on, read the boot output (attached late), talk, power off."""
    image = firmware_for(backend)
    with target(backend) as (client, driver):
        assert client.flasher.flash(write(tmp_path, "fw.elf", image)) == "elf"
        client.power.on()
        time.sleep(0) if backend.standin else None
        with client.console.pexpect() as console:
            if backend.standin:
                console.expect(re.escape(boot_line(image)), timeout=10)
                console.send(b"hello renode\r")
                console.expect(rb"echo: hello renode", timeout=10)
            else:
                console.expect(rb"\S", timeout=30)
        client.power.off()
        assert driver._instance is None


def test_boot_output_printed_before_any_console_is_kept(standin, tmp_path):
    """Bytes the firmware prints between `on` and the first attach reach that console (no lost output)."""
    image = firmware_for(standin)
    with target(standin) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        channel = driver._channels["console"]
        deadline = time.monotonic() + 10
        while boot_line(image) not in channel._backlog and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for a condition, polled: the firmware prints asynchronously
        assert boot_line(image) in channel._backlog
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(image)), timeout=5)


def test_hot_reflash_reloads_and_resets(standin, tmp_path):
    first, second = firmware_for(standin, b"one"), firmware_for(standin, b"two")
    with target(standin) as (client, _):
        client.flasher.flash(write(tmp_path, "a.elf", first))
        client.power.on()
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(first)), timeout=10)
            client.flasher.flash(write(tmp_path, "b.elf", second))
            console.expect(re.escape(boot_line(second)), timeout=10)


def test_reset_restarts_firmware_without_restarting_renode(standin, tmp_path):
    image = firmware_for(standin)
    with target(standin) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        pid = driver._instance.process.pid
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(image)), timeout=10)
            client.reset()
            console.expect(re.escape(boot_line(image)), timeout=10)
        assert driver._instance.process.pid == pid


def test_raw_binary_needs_a_load_address(standin, tmp_path):
    data = bytes(range(256)) * 4
    path = write(tmp_path, "fw.bin", data)
    with target(standin) as (client, _):
        with pytest.raises(DriverError, match=r"raw binary.*load address"):
            client.flasher.flash(path)
        assert client.flasher.flash(path, load_address="0x08000000") == "bin"
        client.power.on()
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(data, loader="LoadBinary")), timeout=10)


def test_raw_binary_uses_configured_load_address(standin, tmp_path):
    data = b"\x01\x02\x03\x04" * 64
    with target(standin, load_address="0x08000000") as (client, _):
        assert client.flasher.flash(write(tmp_path, "fw.bin", data)) == "bin"
        client.power.on()
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(data, loader="LoadBinary")), timeout=10)


def test_intel_hex_is_detected_and_loaded(standin, tmp_path):
    hex_image = intel_hex(b"\x00\xbf" * 40)
    with target(standin) as (client, _):
        assert client.flasher.flash(write(tmp_path, "fw.hex", hex_image)) == "hex"
        client.power.on()
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(hex_image, loader="LoadHEX")), timeout=10)


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"\x7fELF\x01\x01\x01" + bytes(20), "truncated"),
        (b":10000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF01\n", "bad checksum"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "gzip"),
    ],
)
def test_bad_images_are_refused_before_renode_sees_them(standin, tmp_path, content, message):
    with target(standin) as (client, driver):
        with pytest.raises(DriverError, match=message):
            client.flasher.flash(write(tmp_path, "bad", content))
        assert driver._firmware is None
        assert list((driver.workdir / "firmware").iterdir()) == []  # nothing half-stored


def test_elf_for_another_architecture_loads_but_never_boots(standin, tmp_path):
    """Renode does not check an ELF's machine against the CPU: the load succeeds, the CPU aborts."""
    with target(standin) as (client, driver):
        client.flasher.flash(write(tmp_path, "rv.elf", elf32(b"\x13\x00\x00\x00" * 8, machine=EM_RISCV)))
        client.power.on()
        log = driver.workdir / "renode.log"
        deadline = time.monotonic() + 10
        while "CPU abort" not in (log.read_text() if log.exists() else "") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert "CPU abort" in log.read_text()
        assert b"Booting" not in driver._channels["console"]._backlog


def test_missing_platform_fails_power_on_with_renodes_text(backend):
    with target(backend, platform="platforms/boards/no-such-board.repl") as (client, driver):
        with pytest.raises(DriverError, match=r"no-such-board\.repl"):
            client.power.on()
        assert driver._instance is None
        assert renode_processes() == []


def test_unknown_uart_fails_power_on_naming_it(backend):
    with target(backend, uart="sysbus.usart9") as (client, _driver):
        with pytest.raises(DriverError, match=r"sysbus\.usart9"):
            client.power.on()
        assert renode_processes() == []


def test_renode_missing_says_what_to_install(standin, tmp_path):
    with target(standin, renode_path=str(tmp_path / "no-renode")) as (client, _):
        with pytest.raises(DriverError, match=r"Renode not found.*install Renode"):
            client.power.on()


def test_renode_crash_after_boot_fails_next_call_fast(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_CRASH_AFTER_START", "0.2")
    with target(standin, allow_raw_monitor=True) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        client.power.on()
        process = driver._instance.process.process
        deadline = time.monotonic() + 10
        while process.returncode is None and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(DriverError, match=r"Renode (exited|was killed|closed)"):
            client.reset()
        assert time.monotonic() - started < 2
        client.power.off()
        client.power.on()  # and it comes back
        assert renode_processes() != []
    assert renode_processes() == []


def test_silent_monitor_times_out_then_fails_fast(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_HANG_ON", "machine")
    with target(standin, command_timeout=1.0, startup_timeout=2.0) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        with pytest.raises(DriverError, match="did not answer"):
            client.power.on()  # `machine LoadPlatformDescription` never answers
        assert renode_processes() == []


def test_power_is_idempotent(backend, tmp_path):
    with target(backend) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(backend)))
        client.power.off()
        client.power.on()
        pid = driver._instance.process.pid
        client.power.on()
        assert driver._instance.process.pid == pid
        client.power.off()
        client.power.off()
        assert renode_processes() == []


def test_power_read_and_dump_are_not_supported(backend, tmp_path):
    with target(backend) as (client, _):
        with pytest.raises(DriverError, match="no power measurement"):
            list(client.power.read())
        with pytest.raises(DriverError, match="not supported"):
            client.flasher.dump(tmp_path / "out.bin")


def test_raw_monitor_refused_by_default(backend, tmp_path):
    with target(backend) as (client, _):
        client.power.on()
        with pytest.raises(DriverError, match="allow_raw_monitor"):
            client.monitor_cmd("version")


def test_raw_monitor_when_allowed_refuses_control_characters(backend):
    with target(backend, allow_raw_monitor=True) as (client, _):
        client.power.on()
        assert "Renode, version" in client.monitor_cmd("version")
        for bad in ["version\nquit", "version\rquit", "help\tx", "\x1b[A", "\x04", "x\x00"]:
            with pytest.raises(DriverError, match="control characters"):
                client.monitor_cmd(bad)
        with pytest.raises(DriverError, match="No such command or device: bogus"):
            client.monitor_cmd("bogus")
        assert client.monitor_cmd("version")  # still in sync after the refusals and the error


def test_close_leaves_nothing_behind(backend, tmp_path):
    with target(backend, uarts={"debug": "sysbus.usart3"}) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(backend)))
        client.power.on()
        workdir = driver.workdir
        links = [workdir / "uart-console", workdir / "uart-debug"]
        assert all(link.is_symlink() for link in links)
        assert renode_processes() != []
    assert renode_processes() == []
    assert not Path(workdir).exists()


def test_client_properties(backend):
    with target(backend) as (client, _):
        assert client.platform == backend.platform
        assert client.uart == backend.uart
        assert client.machine_name == "machine-0"
