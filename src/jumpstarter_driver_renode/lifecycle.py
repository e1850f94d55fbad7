"""One target's lifecycle: its explicit state, the transitions allowed, and the resources it owns.

States and transitions (the only ones `Target` makes; anything else is a bug and raises):

    OFF ──power on──▶ STARTING ──Renode ready──▶ ON ──power off──▶ STOPPING ──reaped──▶ OFF
                         │                        │                    ▲
                         └── start failed ────────┼──▶ OFF             │ (cleaned up first)
                                                  └── Renode died, hung ──▶ FAILED ──power off / on──┘

- OFF: no Renode process. An image flashed now is stored and loaded by the next power-on.
- STARTING: `RenodeInstance.start` is bringing the board up; a failure stops what it started.
- ON: Renode answers; the emulation inside is running or paused (`RenodeInstance.running`).
- FAILED: the process exited or its monitor timed out or broke. Every call fails at once with how it
  ended (exit status, stderr and log tail) until `power off` or the next `power on` cleans it up.
- STOPPING: `quit`, then SIGTERM, then SIGKILL to the process group, always reaped.

Every call that needs Renode goes through `Target.instance()`, under one lock: one lifecycle change or
monitor call at a time per target. `kill()` is for `close()` at the end of a lease: synchronous, no
waiting, whatever the state.

Warm start (`warm_start`, on by default): besides the state, a target owns spares (spares.py): Renodes
made ready in the background. A power-on takes whichever fresh spare is ready first — a new Renode
prepared up to its platform, or the Renode of the previous run, cleared and built again at power off
(`Clear`: a new emulation, warm JIT, several times faster than a new process) — and only finishes it
(UARTs, firmware, start). Nothing of a previous run can survive: each power-on gets an emulation that never
ran anything. A spare that died, hung or is not ready within `startup_timeout` is discarded and the
power-on starts cold. A target keeps at most two Renodes: the board's and one spare while on, two spares
while off.

Once a snapshot is saved or restored, the spare follows it: it loads that snapshot, paused, with its own
PTYs (snapshots hold none: inside_renode/terminals.py). A restore of that snapshot, once the spare holds
it, swaps processes: the spare takes over the consoles and runs on, and the Renode it replaced loads the
snapshot in the background to become the next spare. Any other restore, or one while the spare is still
loading, loads the snapshot in place (never slower than waiting). Power off clears the snapshot from the
spares: the next power-on is warm again.
"""

from __future__ import annotations

import enum
import itertools
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from .errors import RenodeError, RenodeExitedError, RenodeStateError, RenodeTimeoutError
from .instance import RenodeInstance
from .spares import Spare, SparePool, SpareState, first_ready
from .spec import BoardSpec, Firmware
from .uart import UartChannel


class TargetState(enum.Enum):
    OFF = "off"
    STARTING = "starting"
    ON = "on"
    FAILED = "failed"
    STOPPING = "stopping"


TRANSITIONS: dict[TargetState, frozenset[TargetState]] = {
    TargetState.OFF: frozenset({TargetState.STARTING}),
    TargetState.STARTING: frozenset({TargetState.ON, TargetState.OFF}),
    TargetState.ON: frozenset({TargetState.STOPPING, TargetState.FAILED}),
    TargetState.FAILED: frozenset({TargetState.STOPPING}),
    TargetState.STOPPING: frozenset({TargetState.OFF, TargetState.FAILED}),
}

_ids = itertools.count(1)
HALT_TIMEOUT = 5.0  # seconds a power off waits for Renode to pause the board before it kills Renode
# Emulations one Renode process may clear or load before it is replaced by a new one: measured on 1.16.1
# (STM32F4), a process's resident memory grows by about 6.5 MiB with each `Clear` and platform load.
REUSE_LIMIT = 8


def _reusable(instance: RenodeInstance | None) -> bool:
    return instance is not None and instance.healthy and instance.reuses < REUSE_LIMIT


def _ready_and_alive(spare: Spare) -> bool:
    return spare.state is SpareState.READY and spare.instance is not None and spare.instance.healthy


class Target:
    """The Renode side of one board: its state, its Renode (when on), UART channels, firmware and work dir."""

    def __init__(
        self, spec: Callable[[], BoardSpec], channels: dict[str, UartChannel], name: str, warm_start: bool = False
    ):
        self._spec = spec
        self.warm_start = warm_start
        self._spares: list[Spare] = []  # the live ones (see `spares`)
        self._adopted = False  # whether it took what the previous lease of this board left (SparePool)
        self._versions: dict[Path, int] = {}  # snapshot -> how many times it was saved
        self.channels = channels
        self.label = name  # for file names
        self.name = f"{name}#{next(_ids)}"  # machine names repeat across targets; log lines must not
        self.logger = logging.getLogger(f"{__package__}.target.{self.name}")
        for channel in channels.values():
            channel.log = self.logger
        self.state = TargetState.OFF
        self.firmware: dict[str, Firmware] = {}  # machine -> its image
        self._instance: RenodeInstance | None = None
        self._lock = anyio.Lock()
        self._workdir: Path | None = None

    # -- state ------------------------------------------------------------------------------------

    def _set(self, new: TargetState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise AssertionError(f"target {self.name}: no transition {self.state.value} -> {new.value}")
        self.logger.debug("%s -> %s", self.state.value, new.value)
        self.state = new

    def _notice_failure(self) -> None:
        """ON becomes FAILED once the process is gone or the monitor unusable (found out, not signalled)."""
        if self.state is TargetState.ON and self._instance is not None and not self._instance.healthy:
            self.logger.warning("Renode failed: %s", self._instance.why_failed())
            self._set(TargetState.FAILED)

    @property
    def renode(self) -> RenodeInstance | None:
        """The Renode instance while one exists (ON or FAILED): for diagnostics, tests and benchmarks.
        Calls that drive it go through `instance()`, which holds the target's lock."""
        return self._instance

    @property
    def pid(self) -> int | None:
        """Renode's process id while one exists."""
        return None if self._instance is None else self._instance.process.pid

    @property
    def spares(self) -> tuple[Spare, ...]:
        """The live spares (at most one while the target is on, two while it is off)."""
        self._spares = [spare for spare in self._spares if spare.alive]
        return tuple(self._spares)

    @property
    def spare_preparing(self) -> bool:
        """Whether a spare is still on its way (preparing, recycling or loading a snapshot)."""
        return any(not spare.settled for spare in self.spares)

    @property
    def spare_snapshot(self) -> Path | None:
        """The snapshot a spare holds (or is loading), if one follows a snapshot."""
        return next((s.snapshot[0] for s in self.spares if s.snapshot is not None), None)

    @property
    def spare_pid(self) -> int | None:
        """The process id of the first spare, once it is spawned."""
        return next((s.pid for s in self.spares if s.pid is not None), None)

    @property
    def existing_workdir(self) -> Path | None:
        """The work dir if one was created (and not yet removed by `kill`), without creating one."""
        return self._workdir

    @property
    def workdir(self) -> Path:
        """This target's private directory: log, PTY links, firmware copies, snapshots, Renode's temp files."""
        if self._workdir is None or not self._workdir.exists():
            self._workdir = Path(tempfile.mkdtemp(prefix=f"jumpstarter-renode-{self.label}-"))
        return self._workdir

    # -- transitions ------------------------------------------------------------------------------

    async def power_on(self) -> None:
        """OFF -> ON; ON stays ON; FAILED is cleaned up first. A failed start ends in OFF, nothing left."""
        async with self._lock:
            self._notice_failure()
            if self.state is TargetState.ON:
                return
            if self.state is TargetState.FAILED:
                self.logger.warning("starting a new Renode in place of the failed one")
                await self._stop()
            unflashed = [m.name for m in self._spec().machines if m.name not in self.firmware]
            if unflashed:
                self.logger.warning(
                    "powering on without firmware for %s: flash an image first unless extra_commands load one",
                    ", ".join(unflashed),
                )
            self._set(TargetState.STARTING)
            try:
                self._instance = await self._start_warm() or await RenodeInstance.start(
                    self._spec(), self.workdir, self.channels, self.firmware, self.logger
                )
            except BaseException:
                self._set(TargetState.OFF)  # finish/start stopped whatever they had started
                raise
            self._set(TargetState.ON)
            self._keep_spares()

    async def _start_warm(self) -> RenodeInstance | None:
        """Power on from the first fresh spare to be ready (the next one if it turns out dead); None (start
        cold) if none is ready within startup_timeout."""
        self._keep_spares()  # adopts what the previous lease left, if this is the target's first use
        for spare in self.spares:
            if not spare.fresh:
                spare.clear()  # it holds a snapshot of a run that ended: never a power-on's
        deadline = anyio.current_time() + self._spec().startup_timeout
        while candidates := [s for s in self.spares if s.fresh]:
            spare = await first_ready(candidates, _ready_and_alive, max(0.0, deadline - anyio.current_time()))
            if spare is None:
                self.logger.warning("no warm spare ready within startup_timeout; starting Renode cold")
                for left in candidates:
                    left.discard()  # hung: it never became ready
                return None
            instance = spare.take()
            self.logger.debug("took the warm spare (Renode pid %d)", instance.process.pid)
            try:
                instance.take_over(self.workdir, self.channels, self.logger)
                await instance.finish(self.firmware)  # stops it on failure
                return instance
            except (RenodeExitedError, RenodeTimeoutError, OSError) as exc:  # it died meanwhile (its PTYs too)
                self.logger.warning("warm spare unusable (%s); trying the next one", exc)
                await instance.stop()
        return None

    async def power_off(self) -> None:
        """Any state -> OFF: the process is stopped and reaped before the call returns."""
        async with self._lock:
            if self.state is not TargetState.OFF:
                await self._stop()
            for spare in self.spares:
                spare.clear()  # a snapshot of the run that ended is no power-on's
            self._keep_spares()

    async def _stop(self) -> None:
        """The board's Renode stops serving it: cleared to be a spare (warm start), else killed and reaped."""
        self._set(TargetState.STOPPING)
        instance = self._instance
        if self.warm_start and _reusable(instance) and await self._halted(instance):
            instance.detach_channels()  # at once: nothing of this run reaches a console any more
            self._spares.append(Spare.recycle(instance, self.logger))
            self._instance = None
            self._set(TargetState.OFF)
            return
        try:
            if instance is not None:
                await instance.stop()
        finally:
            if instance is not None and instance.process.returncode is None:
                self._set(TargetState.FAILED)  # still alive after SIGKILL (stuck in the kernel): close() retries
            else:
                self._instance = None
                self._set(TargetState.OFF)

    async def _halted(self, instance: RenodeInstance) -> bool:
        """Pause the board before power off returns (its clearing runs in the background); False if Renode
        does not answer in a few seconds: then it is killed instead."""
        try:
            with anyio.CancelScope(shield=True):
                await instance.pause(timeout=min(self._spec().command_timeout, HALT_TIMEOUT))
        except RenodeError as exc:
            self.logger.warning("Renode did not pause at power off (%s): killing it", exc)
            return False
        return True

    # -- calls that need Renode -------------------------------------------------------------------

    @asynccontextmanager
    async def instance(self, action: str) -> AsyncIterator[RenodeInstance]:
        """The running instance for one call, under the target's lock; a clear error in any other state.

        A timeout or a vanished Renode during the call moves the target to FAILED.
        """
        async with self._lock:
            self._notice_failure()
            if self.state is TargetState.OFF:
                raise RenodeStateError(
                    f"cannot {action}: the target is powered off; run `power on` first", self.state.value
                )
            if self.state is TargetState.FAILED:
                assert self._instance is not None
                raise RenodeExitedError(
                    f"cannot {action}: Renode failed ({self._instance.why_failed()}); run `power on` to start a new one"
                )
            assert self._instance is not None and self.state is TargetState.ON
            try:
                yield self._instance
            except (RenodeExitedError, RenodeTimeoutError):
                self._notice_failure()
                raise

    async def store_firmware(self, machine: str, firmware: Firmware) -> None:
        """Make `firmware` the machine's image: loaded now if ON (hot re-flash), else at the next power-on.

        The previous image file is removed once the new one is in place; on failure the old one stays.
        """
        async with self._lock:
            self._notice_failure()
            if self.state is TargetState.FAILED:
                assert self._instance is not None
                raise RenodeExitedError(
                    f"cannot flash: Renode failed ({self._instance.why_failed()}); run `power on` first"
                )
            if self.state is TargetState.ON:
                assert self._instance is not None
                try:
                    await self._instance.reflash(machine, firmware)
                except (RenodeExitedError, RenodeTimeoutError):
                    self._notice_failure()
                    raise
            previous = self.firmware.get(machine)
            self.firmware[machine] = firmware
            if previous is not None and previous.path != firmware.path:
                previous.path.unlink(missing_ok=True)
            self._keep_spares()  # the target is in use: have a Renode ready for its power-on

    # Save and restore take the terminals out of the emulation for a moment: a client that goes away
    # mid-call must not leave the board without its consoles, so both run shielded (every step is bounded).

    async def save(self, path: Path) -> None:
        """Save a snapshot; the spare then follows it."""
        async with self.instance("save a snapshot") as instance:
            with anyio.CancelScope(shield=True):
                # Before: a save that fails after replacing the file must not leave the spare matching it.
                self._versions[path] = self._versions.get(path, 0) + 1
                await instance.save(path)
                self._follow(path)

    async def restore(self, path: Path) -> None:
        """Restore a snapshot: from the spare if it holds it already (a swap), else in place (no waiting)."""
        async with self.instance("restore a snapshot") as instance:
            with anyio.CancelScope(shield=True):
                spare = await self._take_snapshot_spare(path)
                if spare is None:
                    await instance.restore(path)
                    self._follow(path)
                    return
                was_running = instance.running
                try:
                    await instance.hand_over(spare)
                except BaseException:
                    spare.kill()
                    if was_running and instance.healthy:
                        await instance.resume()  # the board goes on as it was
                    raise
                self._instance = spare
                self.logger.debug("restored from the spare (Renode pid %d)", spare.process.pid)
                if self.warm_start and _reusable(instance):  # it loads the snapshot to be the next spare
                    self._spares.append(Spare.replaced(instance, self._snapshot(path), self.firmware, self.logger))
                else:
                    instance.kill()
                    self._follow(path)
                if was_running:
                    await spare.resume()

    def gdb_socket(self, machine: str) -> Path:
        """The Unix socket of a machine's GDB server (connect without the lock: a debug session is long-lived)."""
        socket_path = self._instance.gdb_socket(machine) if self._instance is not None else None
        if self.state is not TargetState.ON or socket_path is None:
            raise RenodeStateError(
                "cannot connect to GDB: the target is not powered on (or has no gdb_port)", self.state.value
            )
        return socket_path

    # -- the warm spares ---------------------------------------------------------------------------

    def _keep_spares(self) -> None:
        """Have one spare on its way, unless warm start is off or one is (the recycled board's counts)."""
        if not self.warm_start:
            return
        if not self._adopted:  # the first time the target is used: what the previous lease left
            self._adopted = True
            pool = SparePool.here()
            if pool is not None:
                self._spares.extend(pool.take(self._pool_key()))
        if not self.spares:
            self._spares.append(Spare.start(self._spec(), self.channels, self.logger))

    def _pool_key(self) -> str:
        """Spares serve only targets of exactly this config (everything a spare is built from is in it)."""
        return repr(self._spec())

    def _snapshot(self, path: Path) -> tuple[Path, int]:
        return path, self._versions.get(path, 0)

    def _follow(self, path: Path) -> None:
        """Have a spare load snapshot `path` as it is now, in the background (after what it does now)."""
        if not self.warm_start or self.state is not TargetState.ON:
            return
        snapshot = self._snapshot(path)
        self._keep_spares()
        if not any(spare.will_hold(snapshot) for spare in self.spares):
            self.spares[0].load(snapshot, self.firmware)

    async def _take_snapshot_spare(self, path: Path) -> RenodeInstance | None:
        """A spare's Renode if it holds this snapshot as last saved already; else None (no waiting)."""
        snapshot = self._snapshot(path)
        spare = next(
            (s for s in self.spares if s.settled and s.state is SpareState.HOLDING and s.holds == snapshot), None
        )
        if spare is None:
            return None
        instance = spare.take()
        try:  # also asks it something: a Renode killed a moment ago still looks alive until it is reaped
            await instance.sync_firmware(self.firmware)
        except RenodeError as exc:
            self.logger.warning("warm spare unusable (%s); restoring in place", exc)
            await instance.stop()
            return None
        except BaseException:
            instance.kill()
            raise
        return instance

    def kill(self) -> None:
        """End of the lease: nothing of it runs any more, without waiting (close() runs on the event loop).

        With warm start, the spares and the board's Renode (cleared, unless a raw monitor command ran on it)
        go to the exporter's SparePool for the next lease of this board; everything else is killed.
        """
        pool = SparePool.here() if self.warm_start else None
        instance, self._instance = self._instance, None
        leaving = list(self.spares)
        if instance is not None:
            if pool is not None and self.state is TargetState.ON and _reusable(instance) and not instance.raw_used:
                instance.detach_channels()
                leaving.append(Spare.recycle(instance, self.logger))
            else:
                instance.kill()
        self._spares = []
        for spare in leaving:
            if pool is None or (
                spare.instance is not None and (spare.instance.raw_used or not _reusable(spare.instance))
            ):
                spare.discard()
            else:
                spare.clear()
                pool.put(self._pool_key(), spare)
        for channel in self.channels.values():
            channel.detach()
        self.state = TargetState.OFF  # whatever it was: nothing of this target runs any more
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
