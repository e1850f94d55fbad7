"""Leases on a long-lived exporter: Jumpstarter builds a new driver tree for every lease in one event loop.
The spares a lease leaves (and its board's Renode, cleared) serve the next lease of the same board, so
its first power-on is warm; nothing grows over many leases; another config never gets them."""

from __future__ import annotations

import os
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from anyio.from_thread import start_blocking_portal
from conftest import board_config, expect_banner, expect_echo, no_renode_left, renode_processes
from jumpstarter.common.utils import serve_async

from jumpstarter_driver_renode.driver import Renode
from jumpstarter_driver_renode.spares import POOL_PER_BOARD, SparePool

LEASES = 50


@contextmanager
def exporter():
    """One event loop serving lease after lease, as `jmp run` does; yields `lease(**config)`."""
    with start_blocking_portal() as portal:

        @contextmanager
        def lease(**config):
            driver = Renode(**config)
            with ExitStack() as stack, portal.wrap_async_context_manager(serve_async(driver, portal, stack)) as client:
                yield client, driver

        lease.pool_pids = lambda: portal.call(lambda: SparePool.here().pids)
        yield lease


def renodes_settled(limit: int, timeout: float = 5.0) -> int:
    """How many of this run's Renodes live, once no more than `limit` do or `timeout` passed: a Renode the
    driver replaced got SIGKILL without waiting and takes a moment to exit."""
    deadline = time.monotonic() + timeout
    while len(pids := renode_processes()) > limit and time.monotonic() < deadline:
        time.sleep(0.02)  # a process's exit has no notification we can wait on here
    return len(pids)


def temp_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("jumpstarter-renode-*"))


def renode_rss_kib() -> int:
    total = 0
    for pid in renode_processes():
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return total


def test_every_lease_after_the_first_powers_on_warm_and_nothing_grows(backend, firmware, tmp_path, monkeypatch):
    fw = firmware()
    config = board_config(backend)
    seen = []
    # This exporter's directories only, in a folder of their own (other Renode users of /tmp do not count).
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    before = temp_dirs()
    with exporter() as lease:
        for number in range(LEASES):
            kept = lease.pool_pids()
            with lease(**config) as (client, driver):
                client.flasher.flash(fw.elf)
                started = time.monotonic()
                client.power.on()
                took = time.monotonic() - started
                with client.console.pexpect() as console:
                    expect_banner(console, fw, backend)
                    expect_echo(console, backend, b"lease %d" % number)
                if number > 0:
                    assert driver.target.pid in kept, f"lease {number} powered on cold"
            assert len(lease.pool_pids()) <= POOL_PER_BOARD
            seen.append(
                (took, renodes_settled(POOL_PER_BOARD), len(os.listdir("/proc/self/fd")), len(temp_dirs() - before))
            )
            if number == 2:
                baseline_rss = renode_rss_kib()
        end_rss = renode_rss_kib()
    assert no_renode_left()  # the exporter's end kills what it kept
    after_warmup = seen[2:]
    assert max(s[1] for s in after_warmup) <= POOL_PER_BOARD, "more Renodes than one board keeps"
    fds = [s[2] for s in after_warmup]
    assert max(fds) - min(fds) <= 8, f"open fds grew: {fds}"
    dirs = [s[3] for s in after_warmup]
    assert max(dirs) <= POOL_PER_BOARD, f"more temp dirs than the kept Renodes' own: {dirs}"
    assert min(dirs) >= 1, "no directory of a kept Renode was counted: they are made elsewhere"
    assert not temp_dirs() - before, "temp dirs left after the exporter ended"
    assert end_rss <= baseline_rss * 1.25 + 32 * 1024, f"Renode RSS grew from {baseline_rss} to {end_rss} KiB"
    print(
        f"power-on of a lease: median {sorted(s[0] for s in after_warmup)[len(after_warmup) // 2]:.3f}s; "
        f"Renode RSS {baseline_rss // 1024} -> {end_rss // 1024} MiB over {LEASES} leases"
    )


def test_another_config_never_gets_the_spares_and_a_raw_monitor_renode_is_not_kept(backend, firmware):
    fw = firmware()
    with exporter() as lease:
        with lease(**board_config(backend, allow_raw_monitor=True)) as (client, driver):
            client.flasher.flash(fw.elf)
            client.power.on()
            used = driver.target.pid
            client.monitor_cmd("version")  # a raw command: what it changed outside the emulation may last
        kept = lease.pool_pids()
        assert used not in kept and kept, "the spare that served no board is kept, the board's Renode is not"
        with lease(**board_config(backend, allow_raw_monitor=True, autostart=False)) as (client, driver):
            client.flasher.flash(fw.elf)
            client.power.on()
            assert driver.target.pid not in kept, "a target of another config took a spare not built for it"
    assert no_renode_left()


@pytest.mark.parametrize("how", ["warm", "cold"])
def test_the_end_of_the_exporter_leaves_no_renode(backend, firmware, how):
    with exporter() as lease:
        with lease(**board_config(backend, warm_start=how == "warm")) as (client, _driver):
            client.flasher.flash(firmware().elf)
            client.power.on()
        assert bool(lease.pool_pids()) == (how == "warm")
    assert no_renode_left()
