"""Figures on real Renode with the project's firmware, written once against a `Side` (ours or the PyPI 0.9.0 one).

Imported by suite.py as the `real` step. Every figure is measured at the pace tests run: one operation
after the other, with 0, 1 or 5 s of "test work" (a sleep standing for the test) between them, and never
waiting for the driver's own background work (a spare being prepared) before the clock starts. Each
figure is the median over ROUNDS rounds. "The console answers" means a line sent to the firmware came
back echoed; "banner" means the boot line was read first (0.9.0 loses what the firmware prints before a
console attaches, so its figures end at the echo alone).
"""

from __future__ import annotations

import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pexpect
from common import ms, not_run, summary
from scenarios import Side, _concurrently, _short, _Target

ROUNDS = 8
CONCURRENT = 4
BANNER = b"BOOT jumpstarter-renode-fw"


def echo(client, text: bytes = b"ping", timeout: float = 60, every: float = 2.0, banner: bool = False) -> None:
    """Type a line until the firmware echoes it (after its boot banner, if `banner`). Renode's STM32 UART
    drops what arrives before the firmware enables its receiver (as the chip does), and with four cold
    Renodes on two cores the first line can come that early; a user would press Enter again."""
    with client.console.pexpect() as console:
        if banner:
            console.expect(BANNER, timeout=timeout)
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


def ours(client) -> bool:
    return hasattr(client, "save_snapshot")


def real(side: Side, results: dict, images: dict, label: str = "", **config) -> None:
    firmware = images.get("firmware")
    if firmware is None:
        results[f"real{label}: error"] = not_run("no --firmware given")
        return
    with _Target(side, **config) as (client, _driver):
        client.flasher.flash(firmware)
        client.power.on()
        echo(client)
        for work in (0, 1, 5):
            results[f"power cycle + banner + echo, {work} s of test work between{label}"] = _cycles(client, work)
        results[f"power on + echo, 20 monitor calls between cycles{label}"] = _cycles(client, 0, monitor_calls=20)
        time.sleep(2)  # idle: what a target in use costs while nothing happens (its spares settle)
        results[f"Renode RSS per target in use{label}"] = {"value": round(renode_rss_mib()), "unit": "MiB"}
        monitor = [_timed(client.monitor_cmd, "version") for _ in range(ROUNDS * 5)]
        results[f"monitor `version` round trip{label}"] = summary(ms(monitor), "ms")
        _reset_and_restore(client, results, label)
        client.power.off()
    for step in (_leases, _concurrent):  # one failing (0.9.0 fails some) must not hide the other
        try:
            step(side, results, firmware, label, **config)
        except Exception as exc:
            results[f"{step.__name__.strip('_')}{label}: error"] = not_run(_short(exc))


def _cycles(client, work: float, monitor_calls: int = 0) -> dict:
    """Power off + on until the console answers (after the banner, where the driver keeps it), ROUNDS times."""
    times = []
    for _ in range(ROUNDS):
        time.sleep(work)
        for _ in range(monitor_calls):
            client.monitor_cmd("version")
        start = time.perf_counter()
        client.power.off()
        client.power.on()
        echo(client, banner=ours(client))
        times.append(time.perf_counter() - start)
    return summary(ms(times), "ms")


def _reset_and_restore(client, results: dict, label: str) -> None:
    if not ours(client):
        results[f"reset() to the boot banner{label}"] = not_run("no reset() in 0.9.0")
        for key in (
            "restore + echo, console kept open, 1 s of test work between",
            "restore right after a save + echo",
            "power cycle + banner + echo after the lease used snapshots",
        ):
            results[f"{key}{label}"] = not_run("no snapshots in 0.9.0")
        results[f"expect_output: wait for the next 100 ms tick, paused machine{label}"] = not_run(
            "no virtual-time waits in 0.9.0"
        )
        return
    with client.console.pexpect() as console:
        resets = []
        for _ in range(ROUNDS):
            start = time.perf_counter()
            client.reset_machine()
            console.expect(BANNER, timeout=60)
            resets.append(time.perf_counter() - start)
        results[f"reset() to the boot banner{label}"] = summary(ms(resets), "ms")
        client.save_snapshot("booted")
        restores = []
        for n in range(ROUNDS):
            time.sleep(1)
            start = time.perf_counter()
            client.restore_snapshot("booted")
            _echo_on(console, b"r%d" % n)
            restores.append(time.perf_counter() - start)
        results[f"restore + echo, console kept open, 1 s of test work between{label}"] = summary(ms(restores), "ms")
        after_save = []
        for n in range(ROUNDS):
            client.save_snapshot("again")
            start = time.perf_counter()
            client.restore_snapshot("again")
            _echo_on(console, b"s%d" % n)
            after_save.append(time.perf_counter() - start)
        results[f"restore right after a save + echo{label}"] = summary(ms(after_save), "ms")
        _expect_waits(client, console, results, label)
    results[f"power cycle + banner + echo after the lease used snapshots{label}"] = _cycles(client, 0)


def _echo_on(console, text: bytes) -> None:
    console.send(text + b"\r")
    console.expect(b"echo: " + text, timeout=60)


def _expect_waits(client, console, results: dict, label: str) -> None:
    """Host time of `expect_output` on a paused machine, each wait 100 ms of virtual time (one tick)."""
    client.pause()
    console.send(b"ticks on\r")
    waits = [_timed(client.expect_output, rf"tick {n}\r\n", 1.0) for n in range(1, ROUNDS + 1)]
    results[f"expect_output: wait for the next 100 ms tick, paused machine{label}"] = summary(ms(waits), "ms")
    console.send(b"ticks off\r")
    client.resume()


def _leases(side: Side, results: dict, firmware: Path, label: str, **config) -> None:
    """Lease after lease in one exporter process (one event loop, a new driver tree per lease, as `jmp run`
    does): flash, power on until the console answers, end of lease, and the next lease at once."""
    from anyio.from_thread import start_blocking_portal
    from jumpstarter.common.utils import serve_async

    times = []
    with start_blocking_portal() as portal:

        @contextmanager
        def lease():
            driver = side.driver(**config)
            try:
                with (
                    ExitStack() as stack,
                    portal.wrap_async_context_manager(serve_async(driver, portal, stack)) as client,
                ):
                    yield client
            finally:
                driver.close()

        for _ in range(ROUNDS + 1):
            with lease() as client:
                client.flasher.flash(firmware)
                start = time.perf_counter()
                client.power.on()
                echo(client)
                times.append(time.perf_counter() - start)
    results[f"first power-on of a lease + echo, one exporter, leases back to back{label}"] = summary(
        ms(times[1:]), "ms", first=round(times[0] * 1000)
    )


def _concurrent(side: Side, results: dict, firmware: Path, label: str, **config) -> None:
    targets = [_Target(side, **config) for _ in range(CONCURRENT)]
    entered = []
    try:
        for t in targets:
            client, _driver = t.__enter__()
            entered.append(t)
            client.flasher.flash(firmware)

        def cycles(client):
            def run():
                for _ in range(3):
                    client.power.on()
                    echo(client)
                    client.power.off()

            return run

        total, errors = _concurrently([cycles(t.client) for t in entered])
        results[f"{CONCURRENT} targets: 3 power cycles + echo each, concurrently{label}"] = summary(ms([total]), "ms")
        results[f"{CONCURRENT} targets: failed power cycles{label}"] = {
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
