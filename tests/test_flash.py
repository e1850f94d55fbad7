"""Flash like hardware: what the firmware writes survives resets, its own reboots, power cycles and
re-flashes; blank flash reads 0xFF; erase; several images; power cuts at an exact flash operation.

The project's `counter` firmware keeps a boot counter in flash sectors 10 and 11 and prints `boots=<n>`
once the new count is written (firmware/README.md); `reboot` resets the MCU from the firmware.
"""

from __future__ import annotations

import re

import pytest
from click.testing import CliRunner
from conftest import target
from jumpstarter.client.core import DriverError

from firmware import build as firmware_build
from jumpstarter_driver_renode import TargetState
from jumpstarter_driver_renode.errors import ExpectTimeout

BOOTS = r"boots=(\d+)\r\n"


def boots(console, backend) -> int:
    """The count the next boot line says (the firmware prints it once the count is in flash)."""
    console.expect(BOOTS.encode(), timeout=backend.timeout(10, 60))
    return int(console.match.group(1))


def boot_twice(client, console, backend, image) -> None:
    """Flash, power on (boot 1), reset (boot 2): both slots hold a record."""
    client.flasher.flash(image)
    client.power.on()
    assert boots(console, backend) == 1
    client.reset()
    assert boots(console, backend) == 2


@pytest.mark.parametrize("warm_start", [True, False], ids=["warm", "cold"])
def test_the_boot_counter_persists_across_resets_reboots_power_cycles_and_reflash(backend, firmware, warm_start):
    fw = firmware(variant="counter")
    with target(backend, warm_start=warm_start) as (client, _), client.console.pexpect() as console:
        boot_twice(client, console, backend, fw.elf)
        console.send(b"reboot\r")  # SYSRESETREQ: Renode resets the machine and runs the reset macro
        assert boots(console, backend) == 3
        client.power.off()
        client.power.on()
        assert boots(console, backend) == 4
        client.flasher.flash(fw.elf)  # the same image again, while running: the counter's sectors stay
        assert boots(console, backend) == 5
        client.power.off()
        client.flasher.flash(fw.hex)  # and while off
        client.power.on()
        assert boots(console, backend) == 6


def test_erase_blanks_the_flash(backend, firmware):
    fw = firmware(variant="counter")
    with target(backend) as (client, _), client.console.pexpect() as console:
        boot_twice(client, console, backend, fw.elf)
        client.flasher.erase()  # while on: the board is reset on blank flash and prints nothing
        with pytest.raises(ExpectTimeout):
            client.expect_output(r"[\s\S]", timeout=0.5)
        client.flasher.flash(fw.elf)
        assert boots(console, backend) == 1
        client.power.off()
        client.flasher.erase()  # while off
        client.flasher.flash(fw.elf)
        client.power.on()
        assert boots(console, backend) == 1


def test_a_snapshot_holds_the_flash(backend, firmware):
    fw = firmware(variant="counter")
    with target(backend) as (client, _), client.console.pexpect() as console:
        client.flasher.flash(fw.elf)
        client.power.on()
        assert boots(console, backend) == 1
        client.save_snapshot("one")
        client.reset()
        assert boots(console, backend) == 2
        client.restore_snapshot("one")
        client.reset()
        assert boots(console, backend) == 2  # the flash of the snapshot: one boot counted
        client.power.off()
        client.power.on()
        assert boots(console, backend) == 3


def test_never_written_flash_reads_erased(backend, firmware):
    """Blank flash reads 0xFF, as on the chip (Renode's memory reads 0 unless told otherwise)."""
    fw = firmware()
    with target(backend, allow_raw_monitor=True) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        assert "0xFFFFFFFF" in client.monitor_cmd("sysbus ReadDoubleWord 0x080E0000")


def test_a_bootloader_starts_an_application_flashed_at_another_address(backend, firmware):
    loader = firmware(variant="bootloader")
    app = firmware(variant="app")
    with target(backend) as (client, _):
        client.flasher.flash(loader.elf)
        client.flasher.flash(app.bin, load_address=hex(firmware_build.APP_ADDRESS))
        client.power.on()
        client.expect_output(r"bootloader: starting the application at 0x08020000\r\n", timeout=5)
        client.expect_output(re.escape(app.banner.decode()) + r"\r\n", timeout=5)
        client.write_uart("hello\r")
        client.expect_output(r"echo: hello\r\n", timeout=5)
        client.reset()  # the reset vector is the bootloader's: it starts the application again
        client.expect_output(r"bootloader: starting the application at 0x08020000\r\n", timeout=5)


def test_a_power_cut_at_any_flash_operation_never_corrupts_the_counter(backend, firmware):
    """Cut power at the 1st, 2nd, ... flash operation of a counter update: the next boot always finds an
    intact count (the previous one when the update was cut), and says when it found a torn record."""
    fw = firmware(variant="counter")
    operation, outcomes = 1, []
    with target(backend) as (client, _), client.console.pexpect() as console:
        while True:
            client.power.off()
            client.flasher.erase()
            client.flasher.flash(fw.elf)
            client.power.on()
            assert boots(console, backend) == 1
            client.pause()
            client.reset()  # the next boot writes count 2: erase, then three words
            if not client.flasher.cut_power_at(operation, timeout=0.5):
                assert boots(console, backend) == 2
                break
            client.power.on()
            after = boots(console, backend)
            outcomes.append((after, b"torn record in slot 1 ignored" in console.before))
            operation += 1
    # erase cut: the slot is untouched (blank); each program cut leaves a torn record that is ignored
    assert outcomes == [(2, False), (2, False), (2, True), (2, True)]


def test_the_flasher_cli_cuts_power_and_erases(backend, firmware):
    fw = firmware(variant="counter")
    with target(backend) as (client, driver):
        cli, runner = client.cli(), CliRunner()

        def run(*args):
            result = runner.invoke(cli, list(args), catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.output.strip()

        run("flasher", "flash", str(fw.elf))
        run("power", "on")
        client.expect_output(r"boots=1\r\n", timeout=5)
        run("pause")
        run("reset")
        assert run("flasher", "cut-power-at", "1", "--timeout", "0.5") == "power cut at flash operation 1"
        assert driver.target.state is TargetState.OFF
        assert run("flasher", "erase") == "erased"
        run("power", "on")  # blank flash: nothing boots, nothing writes
        assert run("flasher", "cut-power-at", "1", "--timeout", "0.2") == (
            "fewer than 1 flash operations within 0.2 s: nothing cut"
        )
        assert driver.target.state is TargetState.ON
        bad = runner.invoke(cli, ["flasher", "cut-power-at", "0"])
        assert bad.exit_code != 0 and "operation must be a number at least 1" in str(bad.exception), bad.output


@pytest.mark.parametrize(
    "operation,slot",
    [
        (1, [1, ~1, 0x600DF00D]),  # cut at the erase: it never starts, the old record stays
        (2, [~0, ~0, ~0]),  # erased, no word written yet
        (3, [3, ~0, ~0]),  # the count written, not its complement
        (4, [3, ~3, ~0]),  # everything but the commit word
    ],
)
def test_a_power_cut_leaves_exactly_the_flash_of_that_instant(backend, firmware, operation, slot):
    """The third boot rewrites slot 0 (count 1 -> 3): erase, then three words. Read back before anything runs."""
    fw = firmware(variant="counter")
    with target(backend, autostart=False, allow_raw_monitor=True) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.expect_output(r"boots=1\r\n", timeout=1)  # slot 0 holds 1
        client.reset()
        client.expect_output(r"boots=2\r\n", timeout=1)  # slot 1 holds 2
        client.reset()
        assert client.flasher.cut_power_at(operation, timeout=0.5)
        client.power.on()  # paused at virtual time 0: the firmware has not run
        words = [client.monitor_cmd(f"sysbus ReadDoubleWord 0x{0x080C0000 + 4 * i:08X}").strip() for i in range(3)]
        assert words == [f"0x{word & 0xFFFFFFFF:08X}" for word in slot]


def test_a_non_volatile_memory_that_does_not_exist_fails_power_on_naming_it(backend, firmware):
    with target(backend, non_volatile=["sysbus.nosuch"]) as (client, driver):
        client.flasher.flash(firmware().elf)
        with pytest.raises(DriverError, match=r"sysbus\.nosuch"):
            client.power.on()
        assert driver.target.state is TargetState.OFF


def test_a_non_volatile_entry_that_is_no_memory_fails_power_on_saying_so(backend, firmware):
    with target(backend, non_volatile=["sysbus.usart2"]) as (client, _):
        client.flasher.flash(firmware().elf)
        with pytest.raises(DriverError, match=r"sysbus\.usart2 is a \w+, not a memory"):
            client.power.on()


@pytest.mark.parametrize("board,address", [("stm32f4", 0x08100000), ("fe310", 0x20500000)])
def test_a_word_written_outside_the_image_survives_reset_and_power_cycles(backend, firmware, board, address):
    """Any board: the memory the image is flashed into keeps what was written (measured before: a word outside
    the image survived `reset()` but read 0 after a power cycle; one inside it was rewritten by the reset)."""
    fw = firmware(board)
    with target(backend, platform=fw.platform, uart=fw.console, allow_raw_monitor=True) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        read = f"sysbus ReadDoubleWord 0x{address:08X}"
        assert client.monitor_cmd(read).strip() == "0xFFFFFFFF"  # never written: erased
        client.monitor_cmd(f"sysbus WriteDoubleWord 0x{address:08X} 0x12345678")
        client.reset()
        assert client.monitor_cmd(read).strip() == "0x12345678"
        client.power.off()
        client.power.on()
        assert client.monitor_cmd(read).strip() == "0x12345678"


def test_a_first_image_flashed_into_a_running_board_persists(backend, firmware):
    """Powered on without firmware, then flashed: the flash is found then, blank, and kept from there."""
    fw = firmware(variant="counter")
    with target(backend) as (client, _), client.console.pexpect() as console:
        client.power.on()
        client.flasher.flash(fw.elf)
        assert boots(console, backend) == 1
        client.power.off()
        client.power.on()
        assert boots(console, backend) == 2


def test_an_image_outside_the_flash_is_written_again_at_every_power_on(backend, firmware, tmp_path):
    """A blob flashed into RAM is no flash content: it does not survive in the saved flash, so every power-on
    writes it again, as before flash persisted."""
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes.fromhex("78563412"))
    with target(backend, allow_raw_monitor=True) as (client, _):
        client.flasher.flash(firmware().elf)
        client.flasher.flash(blob, load_address="0x20030000")  # SRAM the firmware does not use
        for _ in range(2):
            client.power.on()
            assert client.monitor_cmd("sysbus ReadDoubleWord 0x20030000").strip() == "0x12345678"
            client.power.off()


@pytest.mark.parametrize("board", ["fe310", "stm32f4"])
def test_a_restore_does_not_restart_the_firmware(backend, firmware, board):
    """The boot entry goes back into the reset macro after a `Load`, not into the running CPU: a RISC-V core's
    PC set at a restore would start the firmware again (its banner again) in the middle of the snapshot."""
    fw = firmware(board)
    with target(backend, platform=fw.platform, uart=fw.console, autostart=False) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.expect_output(re.escape(fw.banner.decode()), timeout=1)
        client.save_snapshot("booted")
        client.restore_snapshot("booted")
        with pytest.raises(ExpectTimeout):
            client.expect_output("BOOT", timeout=0.5)
        client.write_uart("after\r")
        client.expect_output(r"echo: after\r\n", timeout=1)
