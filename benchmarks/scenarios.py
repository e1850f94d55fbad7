"""The benchmark scenarios, written once against a `Side` (our driver or the PyPI 0.9.0 one).

Every figure goes into `results[key]`: a summary (median, p95, n, unit) or `not_run(reason)`.
Timings are wall-clock around public client calls made through jumpstarter's serve(), except the
"direct" monitor figure, which awaits the driver's monitor on serve()'s own event loop.
"""

from __future__ import annotations

import inspect
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import MIB, ms, not_run, rss_kib, summary, timed, write_images
from jumpstarter.common.utils import serve
from jumpstarter_driver_composite.driver import Composite

POWER_RUNS = 15
MONITOR_RUNS = 300
ECHO_RUNS = 200
FLOOD_BYTES = 4 * MIB
FLOOD_RUNS = 4
RESET_RUNS = 15
SCALE_SIZES = (1, 4, 16)
SCALE_RUNS = 3
FLASH_RUNS = {"1mib": 8, "32mib": 4}
BOOT_LINE = b"Booting stand-in firmware sha256="


class Side:
    """What differs between the two drivers; subclasses live in suite.py."""

    name = "?"

    def driver(self, **config):  # -> a Renode driver instance with allow_raw_monitor=True
        raise NotImplementedError

    def standin_alone(self) -> float:
        """Seconds from spawning the stand-in with this driver's flags to its first monitor prompt."""
        raise NotImplementedError

    def direct_monitor(self, driver) -> Callable:
        """An async callable(command) -> output on the driver's monitor, bypassing serve()."""
        raise NotImplementedError

    def running(self, driver) -> bool:
        raise NotImplementedError


def run_all(side: Side, only: set[str] | None = None) -> dict:
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-renode-") as tmp:
        images = write_images(Path(tmp))
        steps = [
            ("probe", probe),
            ("power", power),
            ("monitor", monitor),
            ("console", console),
            ("reset", reset),
            ("flash", flash),
            ("scale", scale),
        ]
        for name, step in steps:
            if (only and name not in only) or (not only and name == "probe"):
                continue
            try:
                step(side, results, images)
            except Exception as exc:  # one broken scenario must not hide the others
                results[f"{name}: error"] = not_run(_short(exc))
    return results


def _short(exc: BaseException) -> str:
    """The error in one line; for an exception group, its first leaf (the real error)."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    text = f"{type(exc).__name__}: " + " ".join(str(exc).split())
    return text if len(text) <= 360 else f"{text[:140]} ... {text[-200:]}"


class _Target:
    """One driver served through serve(); always closed, even when a step fails."""

    def __init__(self, side: Side, **config):
        self.driver = side.driver(**config)
        self._serve = serve(self.driver)

    def __enter__(self):
        self.client = self._serve.__enter__()
        return self.client, self.driver

    def __exit__(self, *exc):
        try:
            self._serve.__exit__(*exc)
        finally:
            self.driver.close()


# -- probe: one power-on attempt, to report how (and how fast) it fails ---------------------------


def probe(side: Side, results: dict, images: dict) -> None:
    with _Target(side) as (client, _driver):
        client.flasher.flash(images["small"])
        start = time.perf_counter()
        try:
            client.power.on()
        except Exception as exc:
            results["power-on"] = not_run(f"FAILS after {time.perf_counter() - start:.1f}s: {_short(exc)}")
            return
        results["power-on"] = summary(ms([time.perf_counter() - start]), "ms")
        client.power.off()


# -- power ---------------------------------------------------------------------------------------


def power(side: Side, results: dict, images: dict) -> None:
    alone = [side.standin_alone() for _ in range(POWER_RUNS)]
    results["stand-in alone: spawn to first prompt"] = summary(ms(alone), "ms")
    baseline = sorted(alone)[len(alone) // 2]
    on_times, cycles = [], []
    with _Target(side) as (client, _driver):
        client.flasher.flash(images["small"])
        first = timed(client.power.on)
        client.power.off()
        cpu = time.process_time()
        for _ in range(POWER_RUNS):
            on = timed(client.power.on)
            off = timed(client.power.off)
            on_times.append(on)
            cycles.append(on + off)
        cpu_per_cycle = (time.process_time() - cpu) / POWER_RUNS
    results["power-on, first call (not in the figures below)"] = summary(ms([first]), "ms")
    results["power-on total (serve)"] = summary(ms(on_times), "ms")
    results["power-on overhead (total - stand-in alone)"] = summary(ms([t - baseline for t in on_times]), "ms")
    results["power on+off cycle (serve)"] = summary(ms(cycles), "ms")
    results["CPU per on+off cycle, exporter+client process (mean)"] = {
        "value": round(cpu_per_cycle * 1000, 1),
        "unit": "ms",
    }


# -- monitor -------------------------------------------------------------------------------------


def monitor(side: Side, results: dict, images: dict) -> None:
    with _Target(side) as (client, driver):
        client.flasher.flash(images["small"])
        client.power.on()
        execute = side.direct_monitor(driver)
        direct = [timed(client.portal.call, execute, "version") for _ in range(MONITOR_RUNS)]
        served = [timed(client.monitor_cmd, "version") for _ in range(MONITOR_RUNS)]
        client.power.off()
    results["monitor `version`, direct on the event loop"] = summary(ms(direct), "ms")
    results["monitor `version`, client through serve()"] = summary(ms(served), "ms")


# -- console -------------------------------------------------------------------------------------


def console(side: Side, results: dict, images: dict) -> None:
    with _Target(side) as (client, _driver):
        client.flasher.flash(images["small"])
        client.power.on()
        with client.console.pexpect() as con:
            con.maxread = 65536  # read what is there, not 2000-byte slices: measure the driver, not pexpect
            echoes = []
            for i in range(ECHO_RUNS + 1):
                start = time.perf_counter()
                con.send(f"ping {i}\r".encode())
                con.expect_exact(f"echo: ping {i}\r\n".encode(), timeout=20)
                echoes.append(time.perf_counter() - start)
                if i == 0:  # the first exchange brings the link up; what came before it is the boot output
                    boot_seen = BOOT_LINE in con.before
            echoes = echoes[1:]
            rates = []
            for _ in range(FLOOD_RUNS):
                start = time.perf_counter()
                con.send(f"flood {FLOOD_BYTES}\r".encode())
                con.expect_exact(b"\r\nflood done\r\n", timeout=120, searchwindowsize=64)
                rates.append(FLOOD_BYTES / MIB / (time.perf_counter() - start))
        client.power.off()
    results["console attached after power-on sees the boot output"] = (
        {"value": "yes"}
        if boot_seen
        else not_run("NO: the firmware's boot line was lost (printed before the console attached)")
    )
    results["console echo latency (pexpect)"] = summary(ms(echoes), "ms")
    results[f"console UART -> pexpect, {FLOOD_BYTES // MIB} MiB flood"] = summary(rates, "MiB/s", higher_is_better=True)


# -- reset ---------------------------------------------------------------------------------------


def reset(side: Side, results: dict, images: dict) -> None:
    with _Target(side) as (client, _driver):
        client.flasher.flash(images["small"])
        client.power.on()
        cycles = [timed(client.power.off) + timed(client.power.on) for _ in range(RESET_RUNS)]
        results["reset: power cycle (off + on)"] = summary(ms(cycles), "ms")
        if hasattr(client, "reset"):
            resets = [timed(client.reset) for _ in range(RESET_RUNS)]
            results["reset: client.reset() (machine Reset)"] = summary(ms(resets), "ms")
        else:
            results["reset: client.reset() (machine Reset)"] = not_run("not available: the client has no reset()")
        results["reset: restore_snapshot"] = _snapshot(client)
        client.power.off()


def _snapshot(client) -> dict:
    if not hasattr(client, "restore_snapshot"):
        return not_run("not available: the client has no restore_snapshot()")
    try:
        args = ("bench",) if _takes_argument(client.restore_snapshot) else ()
        if hasattr(client, "save_snapshot"):
            client.save_snapshot(*args)
        return summary(ms([timed(client.restore_snapshot, *args) for _ in range(RESET_RUNS)]), "ms")
    except Exception as exc:
        return not_run(f"failed: {_short(exc)}")


def _takes_argument(method) -> bool:
    return any(
        p.default is inspect.Parameter.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        for p in inspect.signature(method).parameters.values()
    )


# -- flash ---------------------------------------------------------------------------------------


def flash(side: Side, results: dict, images: dict) -> None:
    with _Target(side) as (client, _driver):
        for state in ("before power-on", "while running"):
            if state == "while running":
                client.flasher.flash(images["small"])
                client.power.on()
            for size, runs in FLASH_RUNS.items():
                key = f"flash {size[:-3]} MiB ELF, {state}"
                path = images[size]
                mib = path.stat().st_size / MIB
                try:
                    rates = [mib / timed(client.flasher.flash, path) for _ in range(runs)]
                    results[key] = summary(rates, "MiB/s", higher_is_better=True)
                except Exception as exc:
                    results[key] = not_run(f"fails: {_short(exc)}")
        client.power.off()


# -- scale ---------------------------------------------------------------------------------------


def scale(side: Side, results: dict, images: dict) -> None:
    for count in SCALE_SIZES:
        totals, failures, first_error = [], 0, None
        names = [f"t{i}" for i in range(count)]
        rss_before = rss_kib()
        root = Composite(children={name: side.driver(machine_name=f"m{name}") for name in names})
        try:
            with serve(root) as client:
                for name in names:
                    client.children[name].flasher.flash(images["small"])
                for run in range(SCALE_RUNS):
                    total, errors = _concurrently([client.children[n].power.on for n in names])
                    failures += len(errors) + sum(not side.running(root.children[n]) for n in names)
                    first_error = first_error or (errors and _short(errors[0]))
                    totals.append(total)
                    if run == 0:
                        rss_growth = (rss_kib() - rss_before) / count / 1024
                    _, off_errors = _concurrently([client.children[n].power.off for n in names])
                    failures += len(off_errors)
                    first_error = first_error or (off_errors and _short(off_errors[0]))
        finally:
            root.close()
        label = f"scale {count:2d} targets"
        results[f"{label}: concurrent power-on, total"] = summary(ms(totals), "ms")
        results[f"{label}: failed calls"] = {"value": failures, "of": SCALE_RUNS * count * 2, "first": first_error}
        results[f"{label}: exporter RSS growth / target"] = {"value": round(rss_growth, 2), "unit": "MiB"}


def _concurrently(calls: list[Callable]) -> tuple[float, list[BaseException]]:
    """Run the calls in threads at once; (seconds until all returned, their exceptions)."""
    errors: list[BaseException] = []
    gate = threading.Barrier(len(calls) + 1)

    def run(call):
        gate.wait()
        try:
            call()
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(c,)) for c in calls]
    for t in threads:
        t.start()
    gate.wait()
    start = time.perf_counter()
    for t in threads:
        t.join()
    return time.perf_counter() - start, errors
