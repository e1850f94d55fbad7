"""End to end through serve() and the real client: flash, power, console, reset, monitor, errors.

Every test that powers a board on runs on both backends (the stand-in, and real Renode when it is on
PATH) with the project's own firmware (firmware/), built from source into ELF, Intel HEX and raw BIN.
"""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path

import pytest
from conftest import (
    boot_line,
    expect_banner,
    expect_echo,
    firmware_for,
    no_renode_left,
    renode_processes,
    target,
    write,
)
from images import EM_RISCV, elf32, intel_hex
from jumpstarter.client.core import DriverError

from jumpstarter_driver_renode.features.consoles import Consoles

FORMATS = ["elf", "hex", "bin"]


def test_flash_power_console_off(backend, firmware):
    """The main job: flash, power on, read the boot banner (attached late), talk, power off."""
    fw = firmware()
    with target(backend) as (client, driver):
        assert client.flasher.flash(fw.elf) == "elf"
        client.power.on()
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
            expect_echo(console, backend, b"hello renode")
        client.power.off()
        assert driver.target.renode is None
    assert no_renode_left()


def test_boot_output_printed_before_any_console_is_kept(backend, firmware):
    """Bytes the firmware prints between `on` and the first attach reach that console (no lost output)."""
    fw = firmware()
    with target(backend) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        channel = driver.target.channels["console"]
        deadline = time.monotonic() + backend.timeout(10, 60)
        while fw.banner not in channel.unread() and time.monotonic() < deadline:
            time.sleep(0.01)  # waiting for a condition, polled: the firmware prints asynchronously
        assert fw.banner in channel.unread()
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)


@pytest.mark.parametrize("board", ["stm32f4", "fe310"])
@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_boots(backend, firmware, board, kind):
    """ELF, Intel HEX and raw BIN of the same firmware all boot, on a Cortex-M and on a RISC-V board.

    LoadBinary and LoadHEX do not set the CPU's entry (LoadELF does): the driver points a Cortex-M's
    vector table at the image, and other cores' PC at the load address or the HEX start record.
    """
    fw = firmware(board)
    with target(backend, platform=fw.platform, uart=fw.console) as (client, _):
        address = fw.load_address if kind == "bin" else None
        assert client.flasher.flash(fw.image(kind), load_address=address) == kind
        client.power.on()
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
            expect_echo(console, backend, f"{board} {kind}".encode())


@pytest.mark.parametrize("kind", FORMATS)
def test_reset_restarts_firmware_without_restarting_renode(backend, firmware, kind):
    """`reset()` reboots the image in place (the reset macro sets its entry again; the flash is kept)."""
    fw = firmware()
    with target(backend, load_address=fw.load_address) as (client, driver):
        client.flasher.flash(fw.image(kind))
        client.power.on()
        pid = driver.target.renode.process.pid
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
            client.reset()
            expect_banner(console, fw, backend)
            expect_echo(console, backend, b"after reset")
        assert driver.target.renode.process.pid == pid


@pytest.mark.parametrize("kind", FORMATS)
def test_hot_reflash_reloads_and_resets(backend, firmware, kind):
    first, second = firmware(build_id="first"), firmware(build_id="second")
    with target(backend, load_address=first.load_address) as (client, _):
        client.flasher.flash(first.image(kind))
        client.power.on()
        with client.console.pexpect() as console:
            expect_banner(console, first, backend)
            client.flasher.flash(second.image(kind))
            expect_banner(console, second, backend)
            expect_echo(console, backend, b"second image")


def test_raw_binary_needs_a_load_address(backend, firmware):
    fw = firmware()
    with target(backend) as (client, driver):
        with pytest.raises(DriverError, match=r"raw binary.*load address"):
            client.flasher.flash(fw.bin)
        assert driver.target.firmware == {}
        assert client.flasher.flash(fw.bin, load_address=fw.load_address) == "bin"


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"\x7fELF\x01\x01\x01" + bytes(20), "truncated"),
        (b":10000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF01\n", "bad checksum"),
        (b":00000001FF\n", "no data records"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "gzip"),
    ],
)
def test_bad_images_are_refused_before_renode_sees_them(backend, tmp_path, content, message):
    with target(backend) as (client, driver):
        with pytest.raises(DriverError, match=message):
            client.flasher.flash(write(tmp_path, "bad", content))
        assert driver.target.firmware == {}
        assert list((driver.workdir / "firmware").iterdir()) == []  # nothing half-stored


def test_elf_for_another_architecture_loads_but_never_boots(standin, tmp_path):
    """Renode does not check an ELF's machine against the CPU: the load succeeds, the CPU never runs it."""
    with target(standin) as (client, driver):
        client.flasher.flash(write(tmp_path, "rv.elf", elf32(b"\x13\x00\x00\x00" * 8, machine=EM_RISCV)))
        client.power.on()
        assert "PC does not lay in memory" in wait_for_halt(driver)
        assert b"Booting" not in driver.target.channels["console"].unread()


def test_synthetic_hex_without_a_vector_table_halts_like_renode(standin, tmp_path):
    """The stand-in models the CPU's start: an image whose vector table points nowhere halts the CPU."""
    with target(standin) as (client, driver):
        client.flasher.flash(write(tmp_path, "nop.hex", intel_hex(b"\x00\xbf" * 40)))
        client.power.on()
        assert "PC does not lay in memory or PC and SP are equal to zero. CPU was halted." in wait_for_halt(driver)


def wait_for_halt(driver, timeout: float = 10) -> str:
    """The Renode log once it reports the halted CPU (the log is a file: polled)."""
    log = driver.workdir / "renode.log"
    deadline = time.monotonic() + timeout
    while "CPU was halted" not in (text := log.read_text() if log.exists() else "") and time.monotonic() < deadline:
        time.sleep(0.02)
    return text


def test_missing_platform_fails_power_on_with_renodes_text(backend):
    with target(backend, platform="platforms/boards/no-such-board.repl") as (client, driver):
        with pytest.raises(DriverError, match=r"no-such-board\.repl"):
            client.power.on()
        assert driver.target.renode is None
        assert no_renode_left()


def test_unknown_uart_fails_power_on_naming_it(backend):
    with target(backend, uart="sysbus.usart9") as (client, _driver):
        with pytest.raises(DriverError, match=r"sysbus\.usart9"):
            client.power.on()
        assert no_renode_left()


def test_renode_missing_says_what_to_install(standin, tmp_path):
    with target(standin, renode_path=str(tmp_path / "no-renode")) as (client, _):
        with pytest.raises(DriverError, match=r"Renode not found.*install Renode"):
            client.power.on()


def test_renode_crash_after_boot_fails_next_call_fast(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_CRASH_AFTER_START", "0.2")
    with target(standin, allow_raw_monitor=True) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        client.power.on()
        process = driver.target.renode.process.process
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
    assert no_renode_left()


def test_killed_renode_fails_next_call_fast_and_power_on_recovers(backend, firmware):
    """A Renode that dies (here: SIGKILL) fails the next call at once; the next `on` starts a new one."""
    fw = firmware()
    with target(backend, allow_raw_monitor=True) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        process = driver.target.renode.process.process
        os.kill(process.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while process.returncode is None and time.monotonic() < deadline:
            time.sleep(0.02)
        started = time.monotonic()
        with pytest.raises(DriverError, match=r"Renode (exited|was killed|closed)"):
            client.monitor_cmd("version")
        assert time.monotonic() - started < 2
        client.power.on()
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
    assert no_renode_left()


def test_silent_monitor_times_out_then_fails_fast(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_HANG_ON", "machine")
    with target(standin, command_timeout=1.0, startup_timeout=2.0) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        with pytest.raises(DriverError, match="did not answer"):
            client.power.on()  # `machine LoadPlatformDescription` never answers
        assert no_renode_left()


def test_power_is_idempotent(backend, firmware):
    with target(backend) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.off()
        client.power.on()
        pid = driver.target.renode.process.pid
        client.power.on()
        assert driver.target.renode.process.pid == pid
        client.power.off()
        client.power.off()
        assert no_renode_left(spare_of=driver)


def test_parallel_targets_each_boot_their_own_firmware(backend, firmware):
    """Several targets in one exporter: separate Renodes, PTYs and work dirs, no cross-talk."""
    images = [firmware(build_id=f"parallel{n}") for n in range(3)]
    with target(backend) as (c0, d0), target(backend) as (c1, d1), target(backend) as (c2, d2):
        clients = [c0, c1, c2]
        for client, fw in zip(clients, images, strict=True):
            client.flasher.flash(fw.elf)
            client.power.on()
        assert len({d.target.renode.process.pid for d in (d0, d1, d2)}) == 3
        assert len({d.workdir for d in (d0, d1, d2)}) == 3
        for client, fw in zip(clients, images, strict=True):
            with client.console.pexpect() as console:
                expect_banner(console, fw, backend)
                expect_echo(console, backend, fw.build_id.encode())
    assert no_renode_left()


def test_power_read_and_dump_are_not_supported(backend, tmp_path):
    with target(backend) as (client, _):
        with pytest.raises(DriverError, match="no power measurement"):
            list(client.power.read())
        with pytest.raises(DriverError, match="not supported"):
            client.flasher.dump(tmp_path / "out.bin")


def test_raw_monitor_refused_by_default(backend):
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


def test_close_leaves_nothing_behind(backend, firmware):
    with target(backend, uarts={"debug": "sysbus.usart3"}) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        workdir = driver.workdir
        consoles = driver.target.renode.feature(Consoles)
        links = [consoles.links["console"], consoles.links["debug"]]
        assert all(link.is_symlink() for link in links)
        assert renode_processes() != []
    assert no_renode_left()
    assert not Path(workdir).exists()


def test_client_properties(backend):
    with target(backend) as (client, _):
        assert client.platform == backend.platform
        assert client.uart == backend.uart
        assert client.machine_name == "machine-0"


def test_synthetic_images_prove_the_exact_bytes_flashed(standin, tmp_path):
    """The stand-in's generic firmware prints the hash of what was loaded: the bytes arrive unchanged."""
    image = firmware_for(standin, b"exact")
    with target(standin) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(image)), timeout=10)
