"""Beyond the proposal: extra UARTs, snapshots, virtual time, script mode, logs, and the CLI for them."""

from __future__ import annotations

import os
import re
import socket
import time

import pexpect
import pytest
from click.testing import CliRunner
from conftest import (
    expect_banner,
    expect_echo,
    firmware_for,
    gdb_stop_replies,
    no_renode_left,
    run_until_output,
    target,
    write,
)
from jumpstarter.client.core import DriverError

from jumpstarter_driver_renode import ExpectTimeout
from jumpstarter_driver_renode.lifecycle import TargetState


def test_named_extra_uart_is_its_own_console(backend, firmware):
    """Each `uarts` entry is a console child of its own: the firmware's USART2 here, a silent main console."""
    fw = firmware()
    with target(backend, uart="sysbus.usart3", uarts={"app": "sysbus.usart2"}) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        with client.app.pexpect() as app:
            expect_banner(app, fw, backend)
            expect_echo(app, backend, b"on the app port")
        assert fw.banner not in driver.target.channels["console"].unread()


def test_unknown_extra_uart_fails_power_on_naming_it(backend):
    with target(backend, uarts={"debug": "sysbus.usart42"}) as (client, driver):
        with pytest.raises(DriverError, match=r"sysbus\.usart42.*debug"):
            client.power.on()
        assert driver.target.renode is None
        assert no_renode_left()


def test_run_for_is_deterministic(backend, firmware):
    """Virtual time decides what the firmware does, not the host: the same run_for gives the same bytes."""
    fw = firmware()
    boots = []
    for _ in range(2):
        with target(backend, autostart=False) as (client, driver):
            client.flasher.flash(fw.elf)
            client.power.on()
            assert client.virtual_time() == 0.0
            assert client.run_for(0.25) == pytest.approx(0.25, abs=1e-6)
            assert client.virtual_time() == pytest.approx(0.25, abs=1e-6)  # paused after run_for: the clock stands
            channel = driver.target.channels["console"]
            # The run printed the banner and nothing more: the next 0.5 s of virtual time print nothing either
            client.expect_output(re.escape(fw.banner.decode()) + r"\r\n", timeout=0)
            with pytest.raises(ExpectTimeout):
                client.expect_output(r"[\s\S]", timeout=0.5)
            deadline = time.monotonic() + backend.timeout(5, 30)
            while len(channel.unread()) < len(fw.banner) + 2 and time.monotonic() < deadline:
                time.sleep(0.01)  # the UART's bytes reach the backlog asynchronously: wait for them
            boots.append(channel.unread())
            with client.console.pexpect() as console:
                console.send(b"ticks on\r")
                run_until_output(client, console, rb"echo: ticks on\r\n")
                client.run_for(1.0)  # exactly ten 100 ms ticks fall in any 1.0 s of virtual time
                console.expect(rb"tick 10\r\n", timeout=backend.timeout(5, 30))
                assert re.findall(rb"tick (\d+)", console.before + console.after) == [
                    str(n).encode() for n in range(1, 11)
                ]
                with pytest.raises(pexpect.TIMEOUT):
                    console.expect(rb"tick 11", timeout=0.5)  # paused: nothing more comes
    assert boots[0] == boots[1] == fw.banner + b"\r\n"


def test_pause_stops_virtual_time_and_resume_restarts_it(backend, firmware):
    with target(backend) as (client, _):
        client.flasher.flash(firmware().elf)
        client.power.on()
        client.pause()
        paused_at = client.virtual_time()
        assert client.virtual_time() == paused_at
        client.resume()
        deadline = time.monotonic() + 10
        while client.virtual_time() <= paused_at and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.virtual_time() > paused_at


@pytest.mark.parametrize("paused", [False, True])
def test_snapshot_restore_keeps_consoles_working(backend, firmware, paused):
    """After a restore the consoles pass bytes both ways, and what was printed before it is still delivered."""
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.run_for(0.5)
        client.save_snapshot("booted")
        assert client.list_snapshots() == ["booted"]
        client.run_for(0.25)
        assert client.virtual_time() == pytest.approx(0.75, abs=1e-6)
        if not paused:
            client.resume()
        client.restore_snapshot("booted")
        if paused:
            assert client.virtual_time() == pytest.approx(0.5, abs=1e-6)
            client.resume()
        else:
            assert client.virtual_time() >= 0.5
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)  # printed at boot, before the snapshot
            expect_echo(console, backend, b"after restore")


def test_snapshot_of_an_earlier_power_on_restores_with_working_consoles(backend, firmware):
    """A snapshot outlives a power cycle: it holds no PTY, so a later Renode loads it behind its own."""
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.run_for(0.25)
        client.save_snapshot("earlier")
        client.power.off()
        client.power.on()
        client.restore_snapshot("earlier")
        assert client.virtual_time() == pytest.approx(0.25, abs=1e-6)
        client.resume()
        with client.console.pexpect() as console:
            expect_echo(console, backend, b"from an earlier run")


def test_snapshot_restore_brings_back_the_saved_state(backend, firmware):
    """Restore is a step back in time: the firmware's state (here: ticking) is the saved one."""
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.run_for(0.25)
        client.save_snapshot("quiet")
        with client.console.pexpect() as console:
            console.send(b"ticks on\r")
            run_until_output(client, console, rb"echo: ticks on\r\n")
            client.run_for(0.3)  # three 100 ms ticks
            console.expect(rb"tick 3\r\n", timeout=backend.timeout(5, 30))
            client.restore_snapshot("quiet")
            client.run_for(0.5)
            with pytest.raises(pexpect.TIMEOUT):
                console.expect(rb"tick", timeout=1)  # the saved firmware was not ticking
            expect_echo_running(client, console, backend, b"restored")


def test_a_snapshot_that_does_not_load_leaves_the_board_as_it_was(backend, firmware):
    """Renode keeps its emulation when `Load` fails; the driver keeps the consoles and the run state."""
    fw = firmware()
    with target(backend, warm_start=False) as (client, driver):  # in place: no spare loaded it before
        client.flasher.flash(fw.elf)
        client.power.on()
        client.save_snapshot("s")
        (driver.target.workdir / "snapshots" / "s.save").write_bytes(b"not a snapshot")
        with pytest.raises(DriverError, match=r"Load .*s\.save"):
            client.restore_snapshot("s")
        assert driver.target.state is TargetState.ON
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
            expect_echo(console, backend, b"still here")


def expect_echo_running(client, console, backend, text: bytes) -> None:
    """Echo on a paused machine: type, then run virtual time until the answer is there."""
    console.send(text + b"\r")
    run_until_output(client, console, rb"echo: " + re.escape(text) + rb"\r\n")


def test_snapshot_names_are_validated(backend):
    with target(backend) as (client, _):
        client.power.on()
        for bad in ["../escape", "a b", "x;quit", 'q"', "$var", "a\nb", ""]:
            with pytest.raises(DriverError, match="snapshot name"):
                client.save_snapshot(bad)
        with pytest.raises(DriverError, match="no snapshot named 'missing'"):
            client.restore_snapshot("missing")


def test_script_mode_defines_the_machine(backend, firmware, tmp_path):
    fw = firmware()
    script = write(
        tmp_path,
        "board.resc",
        b'mach create "scripted"\nmachine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl\n',
    )
    with target(backend, platform=None, script=str(script)) as (client, driver):
        client.flasher.flash(fw.elf)
        client.power.on()
        assert driver.target.renode.machine == "scripted"
        with client.console.pexpect() as console:
            expect_banner(console, fw, backend)
            client.reset()
            expect_banner(console, fw, backend)


def test_platform_and_script_are_exclusive(standin, tmp_path):
    script = write(tmp_path, "board.resc", b"mach create\n")
    with pytest.raises(ValueError, match="exactly one"):
        target(standin, script=str(script)).__enter__()


def test_log_tail_and_follow(backend, firmware):
    """The log is this power-on's Renode log: the machine's creation then its start, the newest line last;
    following it starts from its first line; it stays readable after power off, for post-mortems."""
    with target(backend, log_level="debug") as (client, _):
        client.flasher.flash(firmware().elf)
        client.power.on()
        lines = client.log(lines=200).splitlines()
        created = next(i for i, line in enumerate(lines) if line.endswith("System bus created."))
        assert any(line.endswith("Machine started.") for line in lines[created:]), lines
        assert client.log(lines=1).splitlines() == lines[-1:]
        follow = client.follow_log()
        assert next(follow) == lines[0]
        follow.close()
        client.power.off()
        assert client.log(lines=200).splitlines()[: len(lines)] == lines


def test_errors_quote_the_log_tail(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_CRASH_ON", "jumpstarter_start")
    with target(standin) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        with pytest.raises(DriverError, match=r"(?s)Renode was killed by signal|Renode exited with code 134.*stderr"):
            client.power.on()


def test_cli_subcommands(backend, firmware):
    fw = firmware().bin
    with target(backend, allow_raw_monitor=True, autostart=False) as (client, _):
        cli = client.cli()
        runner = CliRunner()

        def run(*args):
            result = runner.invoke(cli, list(args), catch_exceptions=False)
            assert result.exit_code == 0, result.output
            return result.output

        assert "(bin)" in run("flasher", "flash", str(fw), "--load-address", "0x08000000")
        run("power", "on")
        assert run("run-for", "1.25").strip() == "1.250000"
        assert run("time").strip() == "1.250000"
        run("snapshot", "save", "t1")
        assert run("snapshot", "list").split() == ["t1"]
        run("snapshot", "restore", "t1")
        run("resume")
        run("pause")
        run("reset")
        assert "Renode, version" in run("monitor", "version")
        assert run("log", "-n", "3").count("\n") <= 3
        run("power", "off")
        bad = runner.invoke(cli, ["snapshot", "save", "x;quit"])
        assert bad.exit_code != 0


@pytest.mark.parametrize("warm_start", [False, True], ids=["in place", "from the spare"])
def test_gdb_server_answers_after_a_snapshot_restore(backend, firmware, warm_start):
    """`Load` brings back no GDB server (Renode rebuilds a machine's GDB stubs empty): the driver starts it again."""
    with target(backend, gdb_port=0, warm_start=warm_start) as (client, _):
        client.flasher.flash(firmware().elf)
        client.power.on()
        client.save_snapshot("s")
        for _ in range(2):  # from the spare: on the other Renode, then on the first one again
            client.restore_snapshot("s")
            with client.gdb.stream() as gdb:
                assert gdb_stop_replies(gdb) == [b"$S00#b3", b"$S05#b8"]


def test_gdb_server_is_reachable_only_through_jumpstarter(backend, firmware):
    with target(backend, gdb_port=0) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        with client.gdb.stream() as gdb:
            assert gdb_stop_replies(gdb) == [b"$S00#b3", b"$S05#b8"]
        pid = driver.target.renode.process.pid
        # Renode runs in its own network namespace: its GDB port is not on this host's network.
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 3333), timeout=2).close()
        client.power.off()
        assert no_renode_left(spare_of=driver)
