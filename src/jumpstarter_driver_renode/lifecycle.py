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

Warm start (`warm_start`, on by default): besides the state, a target may own one *spare* — a Renode
started in the background and prepared up to its platform (the slow part: process start, Mono's JIT,
`LoadPlatformDescription`), with no UART wired, no firmware and virtual time never run. A power-on in
OFF takes the spare and only finishes it (UARTs, firmware, start); a new spare is prepared right away
for the next power-on. The spare is never a state of the target: a spare that died, hung or is not
ready in time is discarded and the power-on starts cold. Because every power-on gets a process that
never ran anything, nothing of a previous run can survive a power cycle.

Once a snapshot is saved or restored, the spare follows it instead: it loads that snapshot, paused,
with its own PTYs (snapshots hold none: inside_renode/terminals.py). A restore of that snapshot then
swaps processes: the spare takes over the consoles and runs on, and the Renode it replaced loads the
snapshot in the background to become the next spare. Any other restore, or one while the spare is
unusable, loads the snapshot in place. A snapshot spare never serves a power-on: power off discards it
and prepares a fresh spare, so the processes per target stay two (the board's and one spare).
"""

from __future__ import annotations

import asyncio
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
from .instance import BoardSpec, Firmware, ProcessFiles, RenodeInstance
from .process import RenodeProcess
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


async def _load_spare(
    previous: asyncio.Task[RenodeInstance] | RenodeInstance, path: Path, firmware: dict[str, Firmware]
) -> RenodeInstance:
    """A spare holding snapshot `path`: `previous` (a Renode, or the spare being prepared) loads it."""
    try:
        spare = previous if isinstance(previous, RenodeInstance) else await previous
    except BaseException:
        if isinstance(previous, asyncio.Task):
            previous.cancel()
        raise
    await spare.load_as_spare(path, firmware)  # stops it on failure or cancellation
    return spare


class Target:
    """The Renode side of one board: its state, its Renode (when on), UART channels, firmware and work dir."""

    def __init__(
        self, spec: Callable[[], BoardSpec], channels: dict[str, UartChannel], name: str, warm_start: bool = False
    ):
        self._spec = spec
        self.warm_start = warm_start
        self._spare: asyncio.Task[RenodeInstance] | None = None
        self._spare_process: RenodeProcess | None = None  # known from its spawn: close() must kill it at once
        self._spare_holds: tuple[Path, int] | None = None  # (snapshot, its version) once the spare follows one
        self._spare_previous: asyncio.Task[RenodeInstance] | RenodeInstance | None = None  # what it loads into
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
    def spare_preparing(self) -> bool:
        """Whether a warm spare is still being prepared in the background."""
        return self._spare is not None and not self._spare.done()

    @property
    def spare_snapshot(self) -> Path | None:
        """The snapshot the spare holds (or is loading), if it follows one."""
        return None if self._spare_holds is None else self._spare_holds[0]

    @property
    def spare_pid(self) -> int | None:
        """The warm spare's process id, once it is spawned."""
        return None if self._spare_process is None else self._spare_process.pid

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
            if self._spare_holds is not None:
                self._discard_spare()  # it holds a snapshot of the failed run: never a power-on's
            self._set(TargetState.STARTING)
            try:
                spare = await self._take_spare()
                if spare is not None:
                    try:
                        spare.take_over()
                    except OSError:
                        await spare.stop()  # finish() cleans up after itself; this step must too
                        raise
                    await spare.finish(self.firmware)
                    self._instance = spare
                else:
                    self._instance = await RenodeInstance.start(
                        self._spec(), self.workdir, self.channels, self.firmware, self.logger
                    )
            except BaseException:
                self._set(TargetState.OFF)  # finish/start stopped whatever they had started
                raise
            self._set(TargetState.ON)
            self.prepare_spare()

    async def power_off(self) -> None:
        """Any state -> OFF: the process is stopped and reaped before the call returns."""
        async with self._lock:
            if self.state is not TargetState.OFF:
                await self._stop()
            if self._spare_holds is not None:
                self._discard_spare()
            self.prepare_spare()

    async def _stop(self) -> None:
        self._set(TargetState.STOPPING)
        instance = self._instance
        try:
            if instance is not None:
                await instance.stop()
        finally:
            if instance is not None and instance.process.returncode is None:
                self._set(TargetState.FAILED)  # still alive after SIGKILL (stuck in the kernel): close() retries
            else:
                self._instance = None
                self._set(TargetState.OFF)

    # -- calls that need Renode -------------------------------------------------------------------

    @asynccontextmanager
    async def instance(self, action: str) -> AsyncIterator[RenodeInstance]:
        """The running instance for one call, under the target's lock; a clear error in any other state.

        A timeout or a vanished Renode during the call moves the target to FAILED.
        """
        async with self._lock:
            self._notice_failure()
            if self.state is TargetState.OFF:
                raise RenodeStateError(f"cannot {action}: the target is powered off; run `power on` first")
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
            self.prepare_spare()  # the target is in use: have a Renode ready for its power-on

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
        """Restore a snapshot: from the spare that holds it if there is one (a swap), else in place."""
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
                self._follow(path, retired=instance)
                self.logger.debug("restored from the spare (Renode pid %d)", spare.process.pid)
                if was_running:
                    await spare.resume()

    def gdb_socket(self, machine: str) -> Path:
        """The Unix socket of a machine's GDB server (connect without the lock: a debug session is long-lived)."""
        socket_path = self._instance.gdb_socket(machine) if self._instance is not None else None
        if self.state is not TargetState.ON or socket_path is None:
            raise RenodeStateError("cannot connect to GDB: the target is not powered on (or has no gdb_port)")
        return socket_path

    # -- the warm spare ----------------------------------------------------------------------------

    def prepare_spare(self) -> None:
        """Start preparing a spare Renode in the background, unless warm start is off or one exists."""
        if not self.warm_start or self._spare is not None:
            return
        files = ProcessFiles.new(self.workdir, "spare")
        self._spare = asyncio.get_running_loop().create_task(
            RenodeInstance.prepare(self._spec(), self.workdir, self.channels, self.logger, files, self._spawned),
            name=f"renode-spare-{self.name}",
        )

    def _follow(self, path: Path, retired: RenodeInstance | None = None) -> None:
        """Have the spare load snapshot `path` as it is now, in the background: the Renode a restore just
        replaced (`retired`), else the current spare once it is ready, else a new one."""
        if not self.warm_start or self.state is not TargetState.ON:
            if retired is not None:
                retired.kill()
            return
        holds = (path, self._versions.get(path, 0))
        if retired is None and self._spare_holds == holds:
            return
        if retired is not None:
            self._discard_spare()
            previous: asyncio.Task[RenodeInstance] | RenodeInstance = retired
            self._spare_process = retired.process
        else:
            task = self._spare
            if task is None or (task.done() and (task.cancelled() or task.exception() is not None)):
                self._discard_spare()
                self.prepare_spare()
                task = self._spare
            assert task is not None
            previous = task
        self._spare = asyncio.get_running_loop().create_task(
            _load_spare(previous, path, dict(self.firmware)), name=f"renode-spare-{self.name}"
        )
        self._spare_previous, self._spare_holds = previous, holds

    async def _take_snapshot_spare(self, path: Path) -> RenodeInstance | None:
        """The spare, if it holds this snapshot as last saved and is (or soon gets) ready; else None."""
        if self._spare is None or self._spare_holds != (path, self._versions.get(path, 0)):
            return None
        spare = await self._take_spare()
        if spare is None:
            return None
        try:  # also asks it something: a Renode killed a moment ago still looks alive until it is reaped
            await spare.sync_firmware(self.firmware)
        except RenodeError as exc:
            self.logger.warning("warm spare unusable (%s); restoring in place", exc)
            await spare.stop()
            return None
        except BaseException:
            spare.kill()
            raise
        return spare

    def _spawned(self, process: RenodeProcess) -> None:
        self._spare_process = process

    async def _take_spare(self) -> RenodeInstance | None:
        """The spare, once ready and healthy; None (power on cold) if there is none or it failed."""
        task = self._spare
        if task is None:
            return None
        if not task.done():  # still preparing: the rest of its start is still faster than a cold one
            await asyncio.wait({task}, timeout=self._spec().startup_timeout)
        fallback = "starting Renode cold" if self._spare_holds is None else "restoring in place"
        if not task.done() or task.cancelled() or task.exception() is not None:
            reason = "not ready in time" if not task.done() else repr(task.exception())
            self.logger.warning("warm spare unusable (%s); %s", reason, fallback)
            self._discard_spare()
            return None
        self._spare, self._spare_process, self._spare_holds, self._spare_previous = None, None, None, None
        spare = task.result()
        if not spare.healthy:
            self.logger.warning("warm spare died (%s); %s", spare.why_failed(), fallback)
            await spare.stop()
            return None
        self.logger.debug("took the warm spare (Renode pid %d)", spare.process.pid)
        return spare

    def _discard_spare(self) -> None:
        """Kill the spare without waiting, whatever it is doing (synchronous: close() uses it)."""
        task, self._spare, self._spare_holds = self._spare, None, None
        process, self._spare_process = self._spare_process, None
        previous, self._spare_previous = self._spare_previous, None
        if isinstance(previous, RenodeInstance):  # a task cancelled before it ran cleans up nothing itself
            previous.kill()
        elif previous is not None and not previous.done():
            previous.cancel()
        elif previous is not None and not previous.cancelled() and previous.exception() is None:
            previous.result().kill()
        if task is None:
            return
        if task.done() and not task.cancelled() and task.exception() is None:
            task.result().kill()
        else:
            task.cancel()  # its own clean-up stops what it started
            if process is not None:
                process.kill()

    def kill(self) -> None:
        """End of the lease: kill Renode without waiting (close() runs on the event loop), drop everything."""
        self._discard_spare()
        instance, self._instance = self._instance, None
        if instance is not None:
            instance.kill()
        for channel in self.channels.values():
            channel.detach()
        self.state = TargetState.OFF  # whatever it was: nothing of this target runs any more
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
