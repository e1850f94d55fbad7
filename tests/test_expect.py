"""Waiting for UART output in virtual time (`expect_output`): exact, deterministic match times.

Every test runs on both backends with the project's firmware: the banner at boot, `ticks on` makes it
print `tick <n>` every 100 ms of virtual time, and lines come back as `echo: <line>`.
"""

from __future__ import annotations

import multiprocessing
import re
import subprocess
import sys
import threading

import pytest
from conftest import target
from jumpstarter.client.core import DriverError

from jumpstarter_driver_renode import ExpectFailed, ExpectTimeout

TICK = 0.1


def booted(client, fw) -> float:
    """Flash, power on paused, wait for the banner; the virtual time of the banner."""
    client.flasher.flash(fw.elf)
    client.power.on()
    return client.expect_output(re.escape(fw.banner.decode()), timeout=1)


def ticks_on(client) -> float:
    """Type `ticks on` while paused; the time it was typed at (the machine stays paused)."""
    client.write_uart("ticks on\r")
    return client.virtual_time()


def tick_times(backend, fw, ticks=(1, 3)) -> list[float]:
    """One fresh session: banner time, then the times of the given ticks after `ticks on`."""
    with target(backend, autostart=False) as (client, _):
        times = [booted(client, fw)]
        ticks_on(client)
        times += [client.expect_output(rf"tick {n}\r\n", timeout=1) for n in ticks]
        return times


def test_match_time_is_virtual_and_machine_stays_paused_there(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        banner = booted(client, fw)
        assert 0 <= banner < 0.01
        typed = ticks_on(client)
        t3 = client.expect_output(r"tick 3\r\n", timeout=1)
        assert t3 == pytest.approx(typed + 3 * TICK, abs=0.002)
        stopped = client.virtual_time()
        assert t3 <= stopped < t3 + 0.001  # paused right at the match
        assert client.virtual_time() == stopped  # and stays paused
        # The next wait starts after the previous match: tick 3 is not matched twice.
        assert client.expect_output(r"tick \d+", timeout=1) == pytest.approx(typed + 4 * TICK, abs=0.002)


def test_same_times_on_every_run(backend, firmware):
    fw = firmware()
    first = tick_times(backend, fw)
    assert tick_times(backend, fw) == first


def test_same_times_under_host_load_and_on_four_targets_at_once(backend, firmware):
    fw = firmware()
    idle = tick_times(backend, fw)
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(multiprocessing.cpu_count())]
    try:
        assert tick_times(backend, fw) == idle
    finally:
        for proc in burners:
            proc.kill()
            proc.wait()
    results: list = [None] * 4

    def run(i: int) -> None:
        results[i] = tick_times(backend, fw)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    assert results == [idle] * 4


def test_running_machine_keeps_running(backend, firmware):
    fw = firmware()
    with target(backend) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.expect_output("BOOT", timeout=1)
        client.write_uart("ticks on\r")
        client.expect_output(r"tick 2\r\n", timeout=1)
        t = client.virtual_time()
        client.expect_output(r"tick 4\r\n", timeout=1)
        assert client.virtual_time() > t


def test_timeout_names_pattern_time_and_output(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        start = booted(client, fw)
        with pytest.raises(ExpectTimeout) as info:
            client.expect_output("never printed", timeout=0.25)
        message = str(info.value)
        assert "'never printed'" in message and "0.25 s of virtual time" in message
        assert info.value.time == pytest.approx(start + 0.25, abs=0.002)
        assert client.virtual_time() == pytest.approx(start + 0.25, abs=0.002)  # paused at the timeout
        typed = ticks_on(client)
        assert client.expect_output(r"echo: ticks on", timeout=0.1) >= typed


def test_fail_on_wins_when_it_comes_first(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        booted(client, fw)
        typed = ticks_on(client)
        with pytest.raises(ExpectFailed) as info:
            client.expect_output(r"tick 5", timeout=1, fail_on=[r"tick 2"])
        assert info.value.failing == "tick 2"
        assert info.value.time == pytest.approx(typed + 2 * TICK, abs=0.002)
        assert "tick 1" in info.value.tail and "(fail_on)" in str(info.value)
        # A failed wait consumes nothing: the output is still there for the next one.
        assert client.expect_output(r"tick 2", timeout=0) == info.value.time


def test_consoles_still_receive_every_byte(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        with client.console.pexpect() as console:
            booted(client, fw)
            console.expect(re.escape(fw.banner), timeout=10)
            console.send(b"ticks on\r")
            client.expect_output(r"tick 3\r\n", timeout=1)
            console.expect(rb"echo: ticks on\r\ntick 1\r\ntick 2\r\ntick 3\r\n", timeout=10)
        assert "tick 3" in client.output_tail(lines=5)


def test_restore_snapshot_then_expect_again_gives_the_same_time(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        booted(client, fw)
        client.save_snapshot("booted")
        ticks_on(client)
        first = client.expect_output(r"tick 2\r\n", timeout=1)
        client.restore_snapshot("booted")
        ticks_on(client)
        assert client.expect_output(r"tick 2\r\n", timeout=1) == first


def test_bad_arguments_are_refused(standin, firmware):
    with target(standin, autostart=False) as (client, _):
        client.flasher.flash(firmware().elf)
        client.power.on()
        for args, kwargs, words in [
            (("(unclosed", 1), {}, "not a valid regular expression"),
            (("x", -1), {}, "timeout"),
            (("x", 1), {"uart": "nope"}, "no UART named 'nope'"),
            (("x", 1), {"fail_on": ["["]}, "fail_on pattern"),
            (("", 1), {}, "non-empty"),
        ]:
            with pytest.raises(DriverError, match=words):
                client.expect_output(*args, **kwargs)


def test_refused_while_off(standin):
    with target(standin) as (client, _):
        with pytest.raises(DriverError, match="off"):
            client.expect_output("x", timeout=1)


def test_input_typed_while_paused_reaches_the_firmware_at_that_time(backend, firmware):
    fw = firmware()
    echoes = []
    for _ in range(2):
        with target(backend, autostart=False) as (client, _):
            booted(client, fw)
            client.run_for(0.05)
            client.write_uart("hello\r")
            echoes.append(client.expect_output(r"echo: hello\r\n", timeout=0.1))
    assert 0.05 <= echoes[0] < 0.052
    assert echoes[1] == echoes[0]


def test_write_uart_is_checked(standin, firmware):
    with target(standin, autostart=False) as (client, _):
        with pytest.raises(DriverError, match="off"):
            client.write_uart("x")
        client.flasher.flash(firmware().elf)
        client.power.on()
        with pytest.raises(DriverError, match="no UART named 'nope'"):
            client.write_uart("x", uart="nope")
        with pytest.raises(DriverError, match="non-empty string"):
            client.write_uart("")


def test_anchored_patterns_and_long_output_while_the_board_runs(backend, firmware):
    """Over 4 KiB printed during one wait: the live check looks at recent output only, but `^` still
    means the start of a line, and nothing printed is missed or matched twice."""
    fw = firmware()
    with target(backend, autostart=False) as (client, _):
        booted(client, fw)
        lines = [f"line {n:03d} " + "x" * 90 for n in range(60)]
        client.write_uart("status: NO ERROR here\r" + "".join(line + "\r" for line in lines) + "last\r")
        client.expect_output(r"(?m)^echo: last\r\n", timeout=5, fail_on=[r"(?m)^ERROR"])  # no ExpectFailed
        with pytest.raises(ExpectTimeout) as info:
            client.expect_output(r"echo: line", timeout=0)  # all consumed by the match
        assert "echo: last" not in info.value.tail
