"""Warm start: the spares one target keeps (spares.py), and when it uses them.

A power-on takes whichever fresh spare is ready first — a new Renode prepared up to its platform, or the
Renode of the previous run, cleared and built again at power off (`Clear`: a new emulation, warm JIT,
several times faster than a new process) — and only finishes it (consoles, firmware, start). Nothing of a
previous run can survive: each power-on gets an emulation that never ran anything. A spare that died, hung
or is not ready within `startup_timeout` is discarded and the power-on starts cold. A target keeps at most
two Renodes: the board's and one spare while on, two spares while off.

Once a snapshot is saved or restored, the spare follows it: it loads that snapshot, paused, with its own
PTYs. A restore of that snapshot, once the spare holds it, swaps processes: the spare takes over the
consoles and runs on, and the Renode it replaced loads the snapshot in the background to become the next
spare. Any other restore, or one while the spare is still loading, loads in place (never slower than
waiting). Power off clears the snapshot from the spares: the next power-on is warm again.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import anyio

from . import snapshots
from .errors import RenodeError, RenodeExitedError, RenodeTimeoutError
from .flashstore import FlashStore
from .instance import RenodeInstance
from .spares import Spare, SparePool, SpareState, first_ready
from .spec import BoardSpec, Firmware
from .uart import UartChannel

# Emulations one Renode process may clear or load before it is replaced by a new one: measured on 1.16.1
# (STM32F4), a process's resident memory grows by about 6.5 MiB with each `Clear` and platform load.
REUSE_LIMIT = 8


def reusable(instance: RenodeInstance | None) -> bool:
    return instance is not None and instance.healthy and instance.reuses < REUSE_LIMIT


def _ready_and_alive(spare: Spare) -> bool:
    return spare.state is SpareState.READY and spare.instance is not None and spare.instance.healthy


class WarmStart:
    """One target's spares: which to start, take, follow a snapshot with, and leave to the next lease."""

    def __init__(self, spec: Callable[[], BoardSpec], channels: dict[str, UartChannel], log: logging.Logger):
        self._spec = spec
        self._channels = channels
        self._log = log
        self._spares: list[Spare] = []  # the live ones (see `spares`)
        self._adopted = False  # whether it took what the previous lease of this board left (SparePool)
        self._versions: dict[Path, int] = {}  # snapshot -> how many times it was saved

    @property
    def spares(self) -> tuple[Spare, ...]:
        """The live spares (at most one while the target is on, two while it is off)."""
        self._spares = [spare for spare in self._spares if spare.alive]
        return tuple(self._spares)

    @property
    def preparing(self) -> bool:
        """Whether a spare is still on its way (preparing, recycling or loading a snapshot)."""
        return any(not spare.settled for spare in self.spares)

    @property
    def pid(self) -> int | None:
        """The process id of the first spare, once it is spawned."""
        return next((s.pid for s in self.spares if s.pid is not None), None)

    def keep(self) -> None:
        """Have one spare on its way, unless one is (the recycled board's counts)."""
        if not self._adopted:  # the first time the target is used: what the previous lease left
            self._adopted = True
            pool = SparePool.here()
            if pool is not None:
                self._spares.extend(pool.take(self._pool_key()))
        if not self.spares:
            self._spares.append(Spare.start(self._spec(), self._channels, self._log))

    def _pool_key(self) -> str:
        """Spares serve only targets of exactly this config (everything a spare is built from is in it)."""
        return repr(self._spec())

    async def power_on(self, workdir: Path, flash: FlashStore, timeout: float) -> RenodeInstance | None:
        """The board from the first fresh spare to be ready (the next one if it turns out dead); None (start
        cold) if none is ready within `timeout`."""
        self.keep()
        for spare in self.spares:
            if not spare.fresh:
                spare.clear()  # it holds a snapshot of a run that ended: never a power-on's
        deadline = anyio.current_time() + timeout
        while candidates := [s for s in self.spares if s.fresh]:
            spare = await first_ready(candidates, _ready_and_alive, max(0.0, deadline - anyio.current_time()))
            if spare is None:
                self._log.warning("no warm spare ready within startup_timeout; starting Renode cold")
                for left in candidates:
                    left.discard()  # hung: it never became ready
                return None
            instance = spare.take()
            self._log.debug("took the warm spare (Renode pid %d)", instance.pid)
            try:
                instance.take_over(workdir, self._channels, self._log)
                await instance.finish(flash)  # stops it on failure
                return instance
            except (RenodeExitedError, RenodeTimeoutError, OSError) as exc:  # it died meanwhile (its PTYs too)
                self._log.warning("warm spare unusable (%s); trying the next one", exc)
                await instance.stop()
        return None

    def retire(self, instance: RenodeInstance) -> None:
        """The board's Renode, paused at power off, is cleared in the background to serve the next power-on."""
        instance.release()
        self._spares.append(Spare.recycle(instance, self._log))

    def forget_snapshots(self) -> None:
        """Power off: a snapshot of the run that ended is no power-on's."""
        for spare in self.spares:
            spare.clear()

    # -- snapshots ---------------------------------------------------------------------------------

    def saving(self, path: Path) -> None:
        """Before a save: a save that fails after replacing the file must not leave a spare matching it."""
        self._versions[path] = self._versions.get(path, 0) + 1

    def _snapshot(self, path: Path) -> tuple[Path, int]:
        return path, self._versions.get(path, 0)

    @property
    def snapshot(self) -> Path | None:
        """The snapshot a spare holds (or is loading), if one follows a snapshot."""
        return next((s.snapshot[0] for s in self.spares if s.snapshot is not None), None)

    def follow(self, path: Path, firmware: dict[str, Firmware]) -> None:
        """Have a spare load snapshot `path` as it is now, in the background (after what it does now)."""
        snapshot = self._snapshot(path)
        self.keep()
        if not any(spare.will_hold(snapshot) for spare in self.spares):
            self.spares[0].load(snapshot, firmware)

    async def take_holding(self, path: Path, firmware: dict[str, Firmware]) -> RenodeInstance | None:
        """A spare's Renode if it holds this snapshot as last saved already; else None (no waiting)."""
        snapshot = self._snapshot(path)
        spare = next(
            (s for s in self.spares if s.settled and s.state is SpareState.HOLDING and s.holds == snapshot), None
        )
        if spare is None:
            return None
        instance = spare.take()
        try:
            await snapshots.catch_up(instance, firmware)
        except RenodeError as exc:
            self._log.warning("warm spare unusable (%s); restoring in place", exc)
            await instance.stop()
            return None
        except BaseException:
            instance.kill()
            raise
        return instance

    def replaced(self, instance: RenodeInstance, path: Path, firmware: dict[str, Firmware]) -> bool:
        """The Renode a swap replaced loads the snapshot to be the next spare, if it can serve again."""
        if not reusable(instance):
            return False
        self._spares.append(Spare.replaced(instance, self._snapshot(path), firmware, self._log))
        return True

    # -- the end of the lease ------------------------------------------------------------------------

    def leave(self, instance: RenodeInstance | None) -> None:
        """End of the lease: the spares and the board's Renode (`instance`, cleared, unless a raw monitor
        command ran on it) go to the exporter's SparePool for the next lease of this board; the rest is killed."""
        pool = SparePool.here()
        leaving = list(self.spares)
        self._spares = []
        if instance is not None:
            if pool is not None and reusable(instance) and not instance.raw_used:
                instance.release()
                leaving.append(Spare.recycle(instance, self._log))
            else:
                instance.kill()
        for spare in leaving:
            if pool is None or (
                spare.instance is not None and (spare.instance.raw_used or not reusable(spare.instance))
            ):
                spare.discard()
            else:
                spare.clear()
                pool.put(self._pool_key(), spare)
