"""Figures on real Renode with the project's firmware, written once against a `Side` (ours or the PyPI 0.9.0 one).

Imported by suite.py as the `real` step. Every figure is the median over at least 10 rounds.
"Power-on until the console answers" ends when a line sent to the firmware comes back echoed: the
boot banner would not do, since 0.9.0 loses what the firmware prints before a console attaches.
"""

from __future__ import annotations

import time
from pathlib import Path

import pexpect
from common import ms, not_run, summary
from scenarios import Side, _concurrently, _short, _Target

ROUNDS = 10
CONCURRENT = 4


def echo(client, text: bytes = b"ping", timeout: float = 60, every: float = 2.0) -> None:
    """Type a line until the firmware echoes it. Renode's STM32 UART drops what arrives before the
    firmware enables its receiver (as the chip does), and with four cold Renodes on two cores the first
    line can come that early; a user would press Enter again."""
    with client.console.pexpect() as console:
        deadline = time.monotonic() + timeout
        while True:
            console.send(text + b"\r")
            try:
                console.expect(b"echo: " + text, timeout=min(every, max(0.1, deadline - time.monotonic())))
                return
            except pexpect.TIMEOUT:
                if time.monotonic() >= deadline:
                    raise


def renode_rss_mib() -> float:
    """The resident memory of every Renode (Mono) process on this machine, in MiB."""
    total = 0
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            cmdline = (status.parent / "cmdline").read_bytes()
            if b"Renode.exe" not in cmdline and b"standin/renode" not in cmdline:
                continue
            for line in status.read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


def real(side: Side, results: dict, images: dict, label: str = "", **config) -> None:
    firmware = images.get("firmware")
    if firmware is None:
        results[f"real{label}: error"] = not_run("no --firmware given")
        return
    with _Target(side, **config) as (client, driver):
        client.flasher.flash(firmware)
        client.power.on()
        echo(client)
        client.power.off()
        settle(side, driver)
        on_echo, cycles = [], []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            client.power.on()
            echo(client)
            on_echo.append(time.perf_counter() - start)
            settle(side, driver)
            start = time.perf_counter()
            client.power.off()
            client.power.on()
            cycles.append(time.perf_counter() - start)
            client.power.off()
            settle(side, driver)
        results[f"power-on until the console answers{label}"] = summary(ms(on_echo), "ms")
        results[f"power cycle (off + on){label}"] = summary(ms(cycles), "ms")
        client.power.on()
        echo(client)
        settle(side, driver)  # measure the figures below without a spare being prepared beside them
        time.sleep(2)  # idle: what a powered-on target costs while nothing happens
        results[f"Renode RSS per powered-on target{label}"] = {"value": round(renode_rss_mib()), "unit": "MiB"}
        monitor = [_timed(client.monitor_cmd, "version") for _ in range(ROUNDS * 5)]
        results[f"monitor `version` round trip{label}"] = summary(ms(monitor), "ms")
        _reset_and_restore(side, client, driver, results, label)
        client.power.off()
    _concurrent(side, results, firmware, label, **config)


def settle(side: Side, driver, limit: float = 120) -> None:
    """Wait until a warm spare is ready (ours): a power-on right after the last one measures a spare still
    warming. The figures are for power-ons at test pace, seconds apart, not back to back."""
    target = getattr(driver, "target", None)  # 0.9.0 has none: nothing to wait for
    deadline = time.monotonic() + limit
    while target is not None and target.spare_preparing and time.monotonic() < deadline:
        time.sleep(0.01)


def _reset_and_restore(side: Side, client, driver, results: dict, label: str) -> None:
    if not hasattr(client, "save_snapshot"):
        results[f"reset() to the boot banner{label}"] = not_run("no reset() in 0.9.0")
        results[f"restore_snapshot{label}"] = not_run("no snapshots in 0.9.0")
        results[f"restore_snapshot, back to back{label}"] = not_run("no snapshots in 0.9.0")
        results[f"restore_snapshot, paused board{label}"] = not_run("no snapshots in 0.9.0")
        results[f"expect_output: wait for the next 100 ms tick, paused machine{label}"] = not_run(
            "no virtual-time waits in 0.9.0"
        )
        return
    with client.console.pexpect() as console:
        resets = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            client.reset_machine()
            console.expect(b"BOOT jumpstarter-renode-fw", timeout=60)
            resets.append(time.perf_counter() - start)
        results[f"reset() to the boot banner{label}"] = summary(ms(resets), "ms")
        client.save_snapshot("booted")
        restores = []
        for _ in range(ROUNDS):
            settle(side, driver)  # at test pace: the spare has loaded the snapshot again
            restores.append(_timed(client.restore_snapshot, "booted"))
        results[f"restore_snapshot{label}"] = summary(ms(restores), "ms")
        restores = [_timed(client.restore_snapshot, "booted") for _ in range(ROUNDS)]
        results[f"restore_snapshot, back to back{label}"] = summary(ms(restores), "ms")
        client.pause()  # as the pytest plugin restores before each test
        restores = []
        for _ in range(ROUNDS):
            settle(side, driver)
            restores.append(_timed(client.restore_snapshot, "booted"))
        results[f"restore_snapshot, paused board{label}"] = summary(ms(restores), "ms")
        client.resume()
        console.send(b"after restore\r")
        console.expect(b"echo: after restore", timeout=60)
        _expect_waits(client, console, results, label)


def _expect_waits(client, console, results: dict, label: str) -> None:
    """Host time of `expect_output` on a paused machine, each wait 100 ms of virtual time (one tick)."""
    client.pause()
    console.send(b"ticks on\r")
    waits = [_timed(client.expect_output, rf"tick {n}\r\n", 1.0) for n in range(1, ROUNDS + 1)]
    results[f"expect_output: wait for the next 100 ms tick, paused machine{label}"] = summary(ms(waits), "ms")
    console.send(b"ticks off\r")
    client.resume()


def _concurrent(side: Side, results: dict, firmware: Path, label: str, **config) -> None:
    targets = [_Target(side, **config) for _ in range(CONCURRENT)]
    entered = []
    try:
        for t in targets:
            client, _driver = t.__enter__()
            entered.append(t)
            client.flasher.flash(firmware)
        for t in entered:
            settle(side, t.driver)

        def on_and_echo(client):
            return lambda: (client.power.on(), echo(client))

        total, errors = _concurrently([on_and_echo(t.client) for t in entered])
        results[f"{CONCURRENT} targets: concurrent power-on until each console answers{label}"] = summary(
            ms([total]), "ms"
        )
        results[f"{CONCURRENT} targets: failed power-ons{label}"] = {
            "value": len(errors),
            "of": CONCURRENT,
            "first": _short(errors[0]) if errors else "",
        }
    finally:
        for t in entered:
            t.__exit__(None, None, None)


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start
