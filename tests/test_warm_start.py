"""Warm start: a spare Renode, prepared up to its platform, makes power-on fast; a power cycle still gives a
board that never ran anything. On both backends, with the project's firmware."""

from __future__ import annotations

import os
import re
import signal
import time

import pytest
from conftest import expect_banner, expect_echo, no_renode_left, run_until_output, target
from jumpstarter.client.core import DriverError

from jumpstarter_driver_renode import ExpectTimeout
from jumpstarter_driver_renode.lifecycle import TargetState


def wait_for_spare(driver, backend) -> int:
    """The spare's pid once it is spawned (it is prepared in the background)."""
    deadline = time.monotonic() + backend.timeout(10, 60)
    while driver.target.warm.pid is None:
        assert time.monotonic() < deadline, "no warm spare was started"
        time.sleep(0.01)  # the spare starts on the event loop: poll for it
    return driver.target.warm.pid


def wait_for_settled_spares(driver, backend) -> set[int]:
    """The pids of the target's spares once none of them is on its way any more."""
    deadline = time.monotonic() + backend.timeout(10, 60)
    while driver.target.warm.preparing:
        assert time.monotonic() < deadline, "the spares did not become ready"
        time.sleep(0.01)  # spares are made ready on the event loop: poll for it
    return {spare.pid for spare in driver.target.spares}


def test_power_on_takes_the_prepared_spare_and_power_off_clears_the_board_for_the_next(backend, firmware):
    fw = firmware()
    with target(backend) as (client, driver):
        client.flasher.flash(fw.elf)  # a target in use gets its spare right away
        spare = wait_for_spare(driver, backend)
        client.power.on()
        assert driver.target.pid == spare
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
            expect_echo(console, backend, b"warm")
        next_spare = wait_for_spare(driver, backend)
        assert next_spare != spare
        client.power.off()
        assert driver.target.state is TargetState.OFF
        # The board's Renode is cleared to serve the next power-on too: two spares, nothing else.
        assert {s.pid for s in driver.target.spares} == {spare, next_spare}
        assert no_renode_left(spare_of=driver)
        assert wait_for_settled_spares(driver, backend) == {spare, next_spare}
        client.power.on()
        assert driver.target.pid in {spare, next_spare}
        assert len(driver.target.spares) == 1  # at most two Renodes per target
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
            expect_echo(console, backend, b"warm again")
    assert no_renode_left()


@pytest.mark.parametrize("path", ["board", "snapshot-spare", "cold"])
def test_a_power_cycle_leaves_nothing_of_the_previous_run(backend, firmware, path):
    """Memory, UART bytes, virtual time, macros, the firmware's state: none of it survives off + on, whichever
    Renode serves the power-on: the board's own (cleared), the spare that held a snapshot (cleared), a new one."""
    fw = firmware()
    with target(backend, allow_raw_monitor=True, autostart=False, warm_start=path != "cold") as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.run_for(0.3)
        client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0xdeadbeef")
        client.monitor_cmd('macro leftover "echo still here"')
        client.save_snapshot("old")
        with client.console.pexpect() as console:
            console.send(b"ticks on\r")
            run_until_output(client, console, rb"tick 2\r\n")  # the old run's firmware is ticking
        first_pid = driver.target.pid
        snapshot_spare = wait_for_snapshot_spare(driver, backend, "old") if path != "cold" else None
        client.power.off()
        if path != "cold":
            wait_for_settled_spares(driver, backend)
            os.kill(snapshot_spare if path == "board" else first_pid, signal.SIGKILL)  # leave one way only
        client.power.on()
        assert driver.target.pid == {"board": first_pid, "snapshot-spare": snapshot_spare}.get(path, driver.target.pid)
        if path == "cold":
            assert driver.target.pid != first_pid
        assert client.virtual_time() == 0.0
        assert client.monitor_cmd("sysbus ReadDoubleWord 0x20001000").strip() == "0x00000000"
        with pytest.raises(DriverError, match=r"No such variable: \$leftover"):
            client.monitor_cmd("runMacro $leftover")
        client.expect_output(re.escape(fw.banner.decode()), timeout=1.0)  # the paused board runs until it boots
        with pytest.raises(ExpectTimeout):  # then prints nothing for 0.5 s of virtual time: a firmware that kept
            client.expect_output(r"\S", timeout=0.5)  # its state would tick every 0.1 s
        assert client.output_tail() == fw.banner.decode(), "the new run printed more than a fresh boot"
        assert client.list_snapshots() == ["old"]  # the file stays (it is the user's), its state does not apply
    assert no_renode_left()


def test_a_killed_spare_is_replaced_by_a_cold_start(backend, firmware):
    fw = firmware()
    with target(backend) as (client, driver):
        client.flasher.flash(fw.elf)
        spare = wait_for_spare(driver, backend)
        os.kill(spare, signal.SIGKILL)
        client.power.on()
        assert driver.target.state is TargetState.ON and driver.target.pid != spare
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
    assert no_renode_left()


def test_a_hung_spare_is_abandoned_after_the_startup_timeout(standin, firmware, monkeypatch):
    fw = firmware()
    with target(standin, startup_timeout=2.0, command_timeout=2.0) as (client, driver):
        monkeypatch.setenv("STANDIN_HANG_ON", "machine")  # only the spare sees it: it hangs loading the platform
        client.flasher.flash(fw.elf)
        spare = wait_for_spare(driver, standin)
        monkeypatch.delenv("STANDIN_HANG_ON")
        started = time.monotonic()
        client.power.on()
        assert time.monotonic() - started < 10
        assert driver.target.pid != spare
        with client.console.pexpect() as console:
            expect_banner(console, fw, standin)
        assert not os.path.exists(f"/proc/{spare}") or _zombie(spare)
    assert no_renode_left()


def test_warm_start_off_starts_no_spare(standin, firmware):
    with target(standin, warm_start=False) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        assert driver.target.warm is None and not driver.target.spares
        client.power.off()
        assert no_renode_left()


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return re.split(r"\)\s", f.read(), maxsplit=1)[1].split()[0] == "Z"
    except OSError:
        return True


# -- the spare follows the last snapshot: a restore of it swaps processes ------------------------------


def wait_for_snapshot_spare(driver, backend, name: str) -> int:
    """The spare's pid once it holds snapshot `name`, loaded (it loads in the background)."""
    deadline = time.monotonic() + backend.timeout(10, 60)
    warm = driver.target.warm
    while warm.snapshot is None or warm.snapshot.stem != name or warm.preparing:
        assert time.monotonic() < deadline, f"the spare did not load snapshot {name!r}"
        time.sleep(0.01)  # the spare loads on the event loop: poll for it
    assert warm.pid is not None
    return warm.pid


def read_word(client, address: int) -> str:
    return client.monitor_cmd(f"sysbus ReadDoubleWord {address:#x}").strip()


def test_a_restore_swaps_in_the_spare_holding_the_snapshot(backend, firmware):
    """The spare loaded the snapshot; the restore makes it the board's Renode, and the Renode it replaced
    becomes the next spare. Memory, virtual time and the run state are the snapshot's; consoles go on."""
    fw = firmware()
    with target(backend, allow_raw_monitor=True, autostart=False) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        first = driver.target.pid
        client.run_for(0.3)
        client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0x1234")
        client.save_snapshot("s")
        spare = wait_for_snapshot_spare(driver, backend, "s")
        client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0x5678")
        client.run_for(0.2)
        client.restore_snapshot("s")
        assert driver.target.pid == spare
        assert read_word(client, 0x20001000) == "0x00001234"
        assert client.virtual_time() == pytest.approx(0.3, abs=1e-6)  # paused, as it was saved
        assert wait_for_snapshot_spare(driver, backend, "s") == first
        client.resume()
        with client.console.pexpect() as console:
            expect_echo(console, backend, b"swapped")
            client.restore_snapshot("s")  # running: stays running, on the other Renode again
            assert driver.target.pid == first
            expect_echo(console, backend, b"back")
        assert read_word(client, 0x20001000) == "0x00001234"
        assert client.log(lines=1000)  # the board's log is the running Renode's
    assert no_renode_left()


def test_a_snapshot_saved_again_is_restored_as_last_saved(backend, firmware):
    fw = firmware()
    with target(backend, allow_raw_monitor=True, autostart=False) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0x1")
        client.save_snapshot("s")
        wait_for_snapshot_spare(driver, backend, "s")
        client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0x2")
        client.save_snapshot("s")  # the spare holds the first save: it must not serve this restore
        client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0x3")
        client.restore_snapshot("s")
        assert read_word(client, 0x20001000) == "0x00000002"
        client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0x4")
        wait_for_snapshot_spare(driver, backend, "s")
        client.restore_snapshot("s")
        assert read_word(client, 0x20001000) == "0x00000002"
    assert no_renode_left()


def test_a_killed_snapshot_spare_means_a_restore_in_place(backend, firmware):
    fw = firmware()
    with target(backend, allow_raw_monitor=True) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
            client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0x1234")
            client.save_snapshot("s")
            spare = wait_for_snapshot_spare(driver, backend, "s")
            os.kill(spare, signal.SIGKILL)
            board = driver.target.pid
            client.monitor_cmd("sysbus WriteDoubleWord 0x20001000 0x5678")
            client.restore_snapshot("s")
            assert driver.target.pid == board
            assert read_word(client, 0x20001000) == "0x00001234"
            expect_echo(console, backend, b"in place")
        assert wait_for_snapshot_spare(driver, backend, "s") != spare  # a new spare follows the snapshot
    assert no_renode_left()


def test_power_off_clears_the_snapshot_spare_and_the_next_power_on_is_warm(backend, firmware):
    """A spare that holds a snapshot never powers a board on as it is: power off clears it (and the board's
    Renode), so the next power-on is warm and a fresh board."""
    fw = firmware()
    with target(backend, autostart=False) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.run_for(0.3)
        client.save_snapshot("s")
        spare = wait_for_snapshot_spare(driver, backend, "s")
        board = driver.target.pid
        client.power.off()
        assert driver.target.warm.snapshot is None
        assert wait_for_settled_spares(driver, backend) == {spare, board}
        client.power.on()
        assert driver.target.pid in {spare, board}
        assert client.virtual_time() == 0.0
        client.expect_output(fw.banner.decode(), timeout=1)
    assert no_renode_left()


def test_close_while_the_spare_hangs_loading_a_snapshot_leaves_nothing(standin, firmware, monkeypatch):
    """The spare loads into a Renode that was being prepared for a power-on; the end of the lease kills it
    mid-`Load` (the task chain owns it at every step)."""
    monkeypatch.setenv("STANDIN_HANG_ON", "Load")  # every Renode of this test: the board never loads one
    with target(standin, warm_start=True) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        client.save_snapshot("s")
        assert driver.target.warm.snapshot is not None and driver.target.warm.preparing
    assert no_renode_left()


def test_close_right_after_a_swap_leaves_nothing(backend, firmware):
    """The Renode a restore replaced loads the snapshot in the background; closing the lease kills it too."""
    with target(backend) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        client.save_snapshot("s")
        wait_for_snapshot_spare(driver, backend, "s")
        client.restore_snapshot("s")
    assert no_renode_left()


def test_a_reset_after_a_swap_boots_what_the_snapshot_s_flash_holds(backend, firmware):
    """The spare loaded the snapshot before a re-flash: like an in-place restore, it brings back the flash
    of the save, and a reset boots the image the snapshot's flash holds, not the one flashed since."""
    fw, new = firmware(), firmware(build_id="second")
    with target(backend, autostart=False) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.expect_output(fw.banner.decode(), timeout=1)
        client.save_snapshot("s")
        spare = wait_for_snapshot_spare(driver, backend, "s")
        client.flasher.flash(new.elf)
        client.expect_output(new.banner.decode(), timeout=1)
        client.restore_snapshot("s")
        assert driver.target.pid == spare
        client.reset_machine()
        client.expect_output(fw.banner.decode(), timeout=1, fail_on=[new.banner.decode()])
    assert no_renode_left()
