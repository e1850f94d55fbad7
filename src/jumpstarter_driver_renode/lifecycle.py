"""One target's lifecycle: its explicit state, the transitions allowed, and the resources it owns.

States and transitions (the only ones `Target` makes; anything else is a bug and raises):

    OFF ──power on──▶ STARTING ──Renode ready──▶ ON ──power off──▶ STOPPING ──reaped──▶ OFF
                         │                        │                    ▲
                         └── start failed ────────┼──▶ OFF             │ (cleaned up first)
                                                  └── Renode died, hung ──▶ FAILED ──power off / on──┘

- OFF: no Renode process. An image flashed now is stored and written into flash by the next power-on;
  the flash contents saved at the last power off wait in the target's directory (flashstore.py).
- STARTING: a spare is finished or `RenodeInstance.start` brings a new Renode up; a failure stops it.
- ON: Renode answers; the emulation inside is running or paused (`RenodeSession.running`).
- FAILED: the process exited or its monitor timed out or broke. Every call fails at once with how it
  ended (exit status, stderr and log tail) until `power off` or the next `power on` cleans it up.
- STOPPING: the board paused, its non-volatile memory saved, then its Renode made a spare (warm start) or
  killed (SIGKILL to the process group), always reaped.

Every call that needs Renode goes through `Target.instance()`, under one lock: one lifecycle change or
monitor call at a time per target. `kill()` is for `close()` at the end of a lease: synchronous, no
waiting, whatever the state.

Warm start (`warm_start`, on by default): besides the state, a target owns spares (warm.py), Renodes
made ready in the background; a power-on takes one if one is ready, and power off makes the board's
Renode a spare again. Snapshots go through snapshots.py.
"""

from __future__ import annotations

import enum
import itertools
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio

from . import snapshots
from .errors import RenodeExitedError, RenodeStateError, RenodeTimeoutError
from .flashstore import FlashStore
from .instance import RenodeInstance
from .spec import BoardSpec, Firmware
from .uart import UartChannel
from .warm import WarmStart, reusable


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


class Target:
    """The Renode side of one board: its state, its Renode (when on), UART channels, firmware and work dir."""

    def __init__(
        self, spec: Callable[[], BoardSpec], channels: dict[str, UartChannel], name: str, warm_start: bool = False
    ):
        self._spec = spec
        self.channels = channels
        self.label = name  # for file names
        self.name = f"{name}#{next(_ids)}"  # machine names repeat across targets; log lines must not
        self.logger = logging.getLogger(f"{__package__}.target.{self.name}")
        for channel in channels.values():
            channel.log = self.logger
        self.warm = WarmStart(spec, channels, self.logger) if warm_start else None
        self.state = TargetState.OFF
        self.flash = FlashStore(lambda: self.workdir / "flash")  # images and flash contents, per machine
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

    def _refuse_failed(self, action: str) -> None:
        if self.state is TargetState.FAILED:
            assert self._instance is not None
            raise RenodeExitedError(
                f"cannot {action}: Renode failed ({self._instance.why_failed()}); run `power on` to start a new one"
            )

    # Read-only views, for diagnostics and tests: calls go through `instance()`.
    firmware = property(lambda self: self.flash.boot_images(), doc="machine -> the image it boots")
    renode = property(lambda self: self._instance, doc="the Renode instance while one exists (ON or FAILED)")
    pid = property(lambda self: None if self._instance is None else self._instance.pid, doc="Renode's pid")
    spares = property(lambda self: () if self.warm is None else self.warm.spares, doc="the live spares (warm.py)")
    existing_workdir = property(lambda self: self._workdir, doc="the work dir, if made (without making one)")

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
            spec = self._spec()
            unflashed = [m.name for m in spec.machines if m.name not in self.firmware]
            if unflashed:
                self.logger.warning(
                    "powering on without firmware for %s: flash an image first unless extra_commands load one",
                    ", ".join(unflashed),
                )
            self._set(TargetState.STARTING)
            try:
                warm = self.warm and await self.warm.power_on(self.workdir, self.flash, spec.startup_timeout)
                self._instance = warm or await RenodeInstance.start(
                    spec, self.workdir, self.channels, self.flash, self.logger
                )
            except BaseException:
                self._set(TargetState.OFF)  # finish/start stopped whatever they had started
                raise
            self._set(TargetState.ON)
            if self.warm is not None:
                self.warm.keep()

    async def power_off(self) -> None:
        """Any state -> OFF: the process is stopped and reaped before the call returns."""
        async with self._lock:
            await self._off()

    async def cut_power(self, cut: Callable[[RenodeInstance], Awaitable[bool]]) -> bool:
        """Run `cut` on the board's Renode and power off if it cut the power, under one hold of the lock: no
        other call (a flash, a resume) can come between the cut and the save of the flash."""
        async with self.instance("cut power at a flash operation") as instance:
            if not await cut(instance):
                return False
            with anyio.CancelScope(shield=True):
                await self._off()
            return True

    async def _off(self) -> None:
        if self.state is not TargetState.OFF:
            await self._stop()
        if self.warm is not None:
            self.warm.forget_snapshots()
            self.warm.keep()

    async def _stop(self) -> None:
        """The board's Renode stops serving it: cleared to be a spare (warm start), else killed and reaped."""
        self._set(TargetState.STOPPING)
        instance = self._instance
        halted = instance is not None and instance.healthy and await self._halted(instance)
        if self.warm is not None and halted and reusable(instance):
            self.warm.retire(instance)
            self._instance = None
            self._set(TargetState.OFF)
            return
        try:
            if instance is not None:
                await instance.stop()
        finally:
            if instance is not None and not instance.session.exited:
                self._set(TargetState.FAILED)  # still alive after SIGKILL (stuck in the kernel): close() retries
            else:
                self._instance = None
                self._set(TargetState.OFF)

    async def _halted(self, instance: RenodeInstance) -> bool:
        """Pause the board and save its non-volatile memory before power off returns (a spare's clearing runs
        in the background); False if Renode does not answer in a few seconds: then it is killed instead."""
        try:
            with anyio.CancelScope(shield=True):
                await instance.session.pause(timeout=min(self._spec().command_timeout, HALT_TIMEOUT))
                await instance.power_off()
        except Exception as exc:  # a full disk too: whatever it was, power off goes on
            self.logger.warning("Renode did not pause and save its flash at power off (%s): killing it", exc)
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
            self._refuse_failed(action)
            assert self._instance is not None and self.state is TargetState.ON
            try:
                yield self._instance
            except (RenodeExitedError, RenodeTimeoutError):
                self._notice_failure()
                raise

    async def store_firmware(self, machine: str, firmware: Firmware | None) -> None:
        """Write an image into the machine's flash: now if ON (then reset), else at the next power-on.
        None erases the flash instead. On failure the flash stays as it was."""
        async with self._lock:
            self._notice_failure()
            self._refuse_failed("flash" if firmware else "erase")
            self.flash.erase(machine) if firmware is None else self.flash.add(machine, firmware)
            if self.state is TargetState.ON:
                assert self._instance is not None
                try:  # shielded (every step is bounded): a client leaving mid-call cannot tear it
                    with anyio.CancelScope(shield=True):
                        await self._instance.reflash(machine, firmware)
                except BaseException:
                    self.flash.discard(machine, firmware)
                    self._notice_failure()
                    raise
            if self.warm is not None:
                self.warm.keep()  # the target is in use: have a Renode ready for its power-on

    # Save and restore take the terminals out of the emulation for a moment: a client that goes away
    # mid-call must not leave the board without its consoles, so both run shielded (every step is bounded).

    async def save(self, path: Path) -> None:
        """Save a snapshot; the spare then follows it."""
        async with self.instance("save a snapshot") as instance:
            with anyio.CancelScope(shield=True):
                if self.warm is not None:
                    self.warm.saving(path)
                await snapshots.save(instance, path)
                self._follow(path)

    async def restore(self, path: Path) -> None:
        """Restore a snapshot: from the spare if it holds it already (a swap), else in place (no waiting)."""
        async with self.instance("restore a snapshot") as instance:
            with anyio.CancelScope(shield=True):
                spare = None if self.warm is None else await self.warm.take_holding(path, self.firmware)
                if spare is None:
                    await snapshots.restore(instance, path)
                    self._follow(path)
                    return
                was_running = instance.session.running
                try:
                    await snapshots.hand_over(instance, spare)
                except BaseException:
                    spare.kill()
                    if was_running and instance.healthy:
                        await instance.session.resume()  # the board goes on as it was
                    raise
                self._instance = spare
                self.logger.debug("restored from the spare (Renode pid %d)", spare.pid)
                if not self.warm.replaced(instance, path, self.firmware):
                    instance.kill()
                    self._follow(path)
                if was_running:
                    await spare.session.resume()

    def _follow(self, path: Path) -> None:
        if self.warm is not None and self.state is TargetState.ON:
            self.warm.follow(path, self.firmware)

    def serving(self, action: str) -> RenodeInstance:
        """The board's Renode while ON, without the lock: for long-lived streams (a debug session) that
        must not hold the target for their whole life."""
        self._notice_failure()
        self._refuse_failed(action)
        if self.state is not TargetState.ON or self._instance is None:
            raise RenodeStateError(f"cannot {action}: the target is not powered on", self.state.value)
        return self._instance

    def kill(self) -> None:
        """End of the lease: nothing of it runs any more, without waiting (close() runs on the event loop).

        With warm start, the spares and the board's Renode go to the exporter's pool (warm.py).
        """
        instance, self._instance = self._instance, None
        if self.warm is not None:
            self.warm.leave(instance if self.state is TargetState.ON else None)
            if instance is not None and self.state is not TargetState.ON:
                instance.kill()
        elif instance is not None:
            instance.kill()
        for channel in self.channels.values():
            channel.detach()
        self.state = TargetState.OFF  # whatever it was: nothing of this target runs any more
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
