"""Beyond the proposal: extra UARTs, snapshots, virtual time, script mode, logs, and the CLI for them."""

from __future__ import annotations

import os
import re
import socket
import time

import pytest
from click.testing import CliRunner
from conftest import boot_line, firmware_for, renode_processes, target, write
from jumpstarter.client.core import DriverError


def test_named_extra_uart_is_its_own_console(standin, tmp_path):
    image = firmware_for(standin)
    with target(standin, uarts={"debug": "sysbus.usart3"}) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        with client.debug.pexpect() as debug, client.console.pexpect() as console:
            debug.expect(re.escape(boot_line(image, uart="usart3")), timeout=10)
            console.expect(re.escape(boot_line(image, uart="usart2")), timeout=10)
            debug.send(b"on the debug port\r")
            debug.expect(rb"echo: on the debug port", timeout=10)


def test_unknown_extra_uart_fails_power_on_naming_it(standin):
    with target(standin, uarts={"debug": "sysbus.usart42"}) as (client, driver):
        with pytest.raises(DriverError, match=r"sysbus\.usart42.*debug"):
            client.power.on()
        assert driver._instance is None
        assert renode_processes() == []


def test_run_for_is_deterministic(standin, tmp_path):
    """Same firmware, same run_for: same console bytes and the same virtual clock."""
    image = firmware_for(standin)
    outputs = []
    for _ in range(2):
        with target(standin, autostart=False) as (client, _driver):
            client.flasher.flash(write(tmp_path, "fw.elf", image))
            client.power.on()
            assert client.virtual_time() == 0.0
            assert client.run_for(2.5) == pytest.approx(2.5)
            assert client.virtual_time() == pytest.approx(2.5)  # paused after run_for: the clock stands
            with client.console.pexpect() as console:
                console.expect(rb"tick 2\r\n", timeout=10)
                outputs.append(console.before + console.after)
    assert outputs[0] == outputs[1]
    assert outputs[0].startswith(boot_line(image))
    assert b"tick 3" not in outputs[0]


def test_pause_stops_virtual_time_and_resume_restarts_it(backend, tmp_path):
    with target(backend) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(backend)))
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
def test_snapshot_restore_keeps_consoles_working(standin, tmp_path, paused):
    image = firmware_for(standin)
    with target(standin, autostart=False) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        client.run_for(1.5)
        client.save_snapshot("booted")
        assert client.list_snapshots() == ["booted"]
        client.run_for(3.0)
        assert client.virtual_time() == pytest.approx(4.5)
        if not paused:
            client.resume()
        client.restore_snapshot("booted")
        if paused:
            assert client.virtual_time() == pytest.approx(1.5)
        else:
            assert client.virtual_time() >= 1.5
        client.resume() if paused else None
        with client.console.pexpect() as console:
            console.send(b"after restore\r")
            console.expect(rb"echo: after restore", timeout=10)


def test_snapshot_names_are_validated(backend):
    with target(backend) as (client, _):
        client.power.on()
        for bad in ["../escape", "a b", "x;quit", 'q"', "$var", "a\nb", ""]:
            with pytest.raises(DriverError, match="snapshot name"):
                client.save_snapshot(bad)
        with pytest.raises(DriverError, match="no snapshot named 'missing'"):
            client.restore_snapshot("missing")


def test_script_mode_defines_the_machine(standin, tmp_path):
    image = firmware_for(standin)
    script = write(
        tmp_path,
        "board.resc",
        b'mach create "scripted"\nmachine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl\n',
    )
    with target(standin, platform=None, script=str(script)) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        assert driver._instance.machine == "scripted"
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(image)), timeout=10)
        client.reset()


def test_platform_and_script_are_exclusive(standin, tmp_path):
    script = write(tmp_path, "board.resc", b"mach create\n")
    with pytest.raises(ValueError, match="exactly one"):
        target(standin, script=str(script)).__enter__()


def test_log_tail_and_follow(backend, tmp_path):
    with target(backend, log_level="debug") as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(backend)))
        client.power.on()
        text = client.log(lines=200)
        assert text.strip()
        assert len(client.log(lines=1).splitlines()) == 1
        follow = client.follow_log()
        first = next(follow)
        assert first == text.splitlines()[0]
        follow.close()
        client.power.off()
        assert client.log(lines=5)  # still there after power off, for post-mortems


def test_errors_quote_the_log_tail(standin, tmp_path, monkeypatch):
    monkeypatch.setenv("STANDIN_CRASH_ON", "start")
    with target(standin) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        with pytest.raises(DriverError, match=r"(?s)Renode was killed by signal|Renode exited with code 134.*stderr"):
            client.power.on()


def test_cli_subcommands(standin, tmp_path):
    fw = write(tmp_path, "fw.bin", b"\x00\xbf" * 100)
    with target(standin, allow_raw_monitor=True, autostart=False) as (client, _):
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


def test_gdb_server_is_reachable_only_through_jumpstarter(backend, tmp_path):
    with target(backend, gdb_port=0) as (client, driver):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(backend)))
        client.power.on()
        with client.gdb.stream() as gdb:
            gdb.send(b"$?#3f")
            reply = b""
            while b"#" not in reply:
                reply += gdb.receive()
        assert reply.lstrip(b"+").startswith(b"$S05#b8")
        pid = driver._instance.process.pid
        # Renode runs in its own network namespace: its GDB port is not on this host's network.
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", 3333), timeout=2).close()
        client.power.off()
        assert renode_processes() == []
