"""Snapshots: `Save` and `Load` as transactions over a Renode's features, and the swap to a spare that
holds the snapshot already.

Around `Save` and `Load` every feature parks what a snapshot must not hold (the host's PTY terminals, the
helpers' event handlers) and puts it back afterwards in whichever emulation is current, whether the
command worked or not: a failed save or load leaves the board as it was. After a `Load` each feature sets
up again what `Load` forgets (design record, section 7).
"""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import anyio

from . import commands
from .errors import RenodeError
from .features import Feature
from .instance import RenodeInstance
from .spec import Firmware


async def _parked(instance: RenodeInstance, command: str, replacing: bool) -> None:
    """Run `Save` or `Load` with every feature parked (in reverse order), then put each back (in order):
    every feature is tried, and the first failure is raised after."""
    parked: list[Feature] = []
    replaced = False
    try:
        for feature in reversed(instance.features):
            parked.append(feature)
            await feature.park(instance, replacing)
        await instance.session.execute(command, timeout=instance.spec.startup_timeout)
        replaced = replacing
    finally:
        with anyio.CancelScope(shield=True):
            failure: RenodeError | None = None
            for feature in reversed(parked):
                try:
                    await feature.unpark(instance, replaced)
                except RenodeError as exc:
                    failure = failure or exc
            if failure is not None:
                raise failure


async def save(instance: RenodeInstance, path: Path) -> None:
    """Save the emulation, paused meanwhile (no output may fall between parking the terminals and the save).

    Written beside `path` and renamed into place: a failed save keeps the previous snapshot, and a Renode
    still loading the previous one reads it whole.
    """
    partial = path.with_name(path.name + ".partial")
    async with instance.session.paused():
        try:
            await _parked(instance, commands.save_snapshot(partial), replacing=False)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)


async def _load(instance: RenodeInstance, path: Path) -> None:
    """Replace the emulation with a snapshot's, paused; `Load` keeps the current emulation when it fails,
    and so does this."""
    if instance.session.running:
        await instance.session.pause()
    await _parked(instance, commands.load_snapshot(path), replacing=True)
    instance.session.running = False
    for feature in instance.features:
        await feature.after_load(instance)


async def restore(instance: RenodeInstance, path: Path) -> None:
    """Load a snapshot in place of the running emulation; the run state and the consoles stay."""
    async with instance.session.paused():
        await _load(instance, path)


async def load_as_spare(instance: RenodeInstance, path: Path, firmware: dict[str, Firmware]) -> None:
    """Make this Renode (read by no console) hold snapshot `path`, paused, to take over at its restore."""
    instance.firmware = dict(firmware)
    instance.reuses += 1
    await instance.stop_on_failure(_load(instance, path))


async def catch_up(spare: RenodeInstance, firmware: dict[str, Firmware]) -> None:
    """Before a spare holding the snapshot takes over: it answers (a Renode killed a moment ago still looks
    alive until it is reaped), and its features catch up with the target (images flashed since)."""
    await spare.session.execute("version")
    for feature in spare.features:
        await feature.catch_up(spare, firmware)


async def hand_over(instance: RenodeInstance, successor: RenodeInstance) -> None:
    """At a restore: this Renode stops running the board and `successor` (a spare holding the snapshot)
    serves it from now on, paused; their log names are swapped. Nothing awaits after the switch."""
    if instance.session.running:
        await instance.session.pause()
    successor.channels, successor.flash = instance.channels, instance.flash
    for feature in instance.features:
        await feature.hand_over(instance, successor)
    successor.log = instance.log
    successor.session.use_logger(instance.log)
    _swap_logs(instance, successor)


def _swap_logs(retired: RenodeInstance, successor: RenodeInstance) -> None:
    """The successor's log takes the retired process's name, and the other way round (each process keeps
    writing to the file it opened)."""
    mine, theirs = retired.files.log, successor.files.log
    scratch = mine.with_name(mine.name + ".swap")
    for source, target in ((mine, scratch), (theirs, mine), (scratch, theirs)):
        with contextlib.suppress(FileNotFoundError):
            source.replace(target)
    retired.session.files = dataclasses.replace(retired.files, log=theirs)
    successor.session.files = dataclasses.replace(successor.files, log=mine)
    retired.workdir, successor.workdir = None, retired.workdir
