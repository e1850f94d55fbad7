"""One target's Renode: a session (process and monitor) and the board features built in it.

A power-on has a slow half, `prepare` (Renode started, log set, machines and platforms loaded, every
feature prepared: a warm spare waits here), and a fast half, `finish` (every feature finished, the board
started). Either one, if it fails, stops what it started before raising: a failed power-on leaves
nothing behind. The features are called in `features.FEATURES` order; this module names none of them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import anyio

from . import commands
from .errors import ErrorKind, RenodeCommandError, RenodeStartError
from .features import FEATURES, Feature
from .features.base import helper_script
from .flashstore import FlashStore
from .monitor import selected_machine
from .session import RenodeSession
from .spec import BoardSpec, Firmware, MachineSpec, ProcessFiles
from .uart import UartChannel

logger = logging.getLogger(__name__)
F = TypeVar("F", bound=Feature)

DOWNLOAD_HINT = (
    "the platform needs a file from the network (usually its SVD) and Renode could not download it: give the "
    "exporter network access once so Renode's download cache (~/.config/renode) keeps it, or use a copy of the "
    "platform file whose `ApplySVD` points at a local file"
)


def keep_one_previous_log(workdir: Path) -> Path:
    """Each power-on writes a fresh renode.log; the previous run's stays as renode.previous.log. Returns
    the path of the new log. (Renode itself would rotate an existing log to renode.log.N, one more file
    per power-on.)"""
    for old in workdir.glob("renode.log.*"):
        old.unlink(missing_ok=True)
    current = workdir / "renode.log"
    if current.exists():
        current.replace(workdir / "renode.previous.log")
    return current


def _new_features() -> list[Feature]:
    return [feature() for feature in FEATURES]


@dataclass(eq=False)
class RenodeInstance:
    spec: BoardSpec
    session: RenodeSession
    channels: dict[str, UartChannel]  # the target's UART channels (a spare holds those of its last target)
    log: logging.Logger = logger
    workdir: Path | None = None  # the target's directory while this Renode serves one (its log is renode.log)
    firmware: dict[str, Firmware] = field(default_factory=dict)  # machine -> the image it boots
    flash: FlashStore | None = None  # the target's images and flash contents, from power-on
    features: list[Feature] = field(default_factory=_new_features)
    raw_used: bool = False  # a raw monitor command ran here: what it changed outside the emulation may last
    reuses: int = 0  # emulations cleared or replaced in this process (Renode's memory grows with each)

    # -- what it is ------------------------------------------------------------------------------

    @property
    def files(self) -> ProcessFiles:
        return self.session.files

    @property
    def process(self):
        return self.session.process

    @property
    def pid(self) -> int:
        return self.session.pid

    @property
    def healthy(self) -> bool:
        return self.session.healthy

    @property
    def machine(self) -> str | None:
        """The Renode name of the first machine (the only one on a one-machine target), once created."""
        return self.session.names.get(self.spec.machines[0].name)

    def why_failed(self) -> str:
        return self.session.why_failed()

    def feature(self, kind: type[F]) -> F:
        """This Renode's feature of that kind (for diagnostics and tests; the core calls hooks only)."""
        return next(feature for feature in self.features if isinstance(feature, kind))

    # -- coming into being -------------------------------------------------------------------------

    @classmethod
    async def spawn(
        cls, spec: BoardSpec, channels: dict[str, UartChannel], log: logging.Logger, files: ProcessFiles
    ) -> RenodeInstance:
        """A new Renode process, started but not yet answering (`prepare` waits for it)."""
        relays = [relay for feature in FEATURES for relay in feature.relays(spec, files)]
        session = await RenodeSession.spawn(
            spec.renode_path, spec.command_timeout, spec.startup_timeout, files, relays, log
        )
        return cls(spec, session, channels, log)

    @classmethod
    async def start(
        cls,
        spec: BoardSpec,
        workdir: Path,
        channels: dict[str, UartChannel],
        flash: FlashStore,
        log: logging.Logger = logger,
    ) -> RenodeInstance:
        """A cold power-on: a new Renode, prepared and finished at once (logging to renode.log from the start)."""
        files = ProcessFiles.new(log=keep_one_previous_log(workdir))
        instance = await cls.spawn(spec, channels, log, files)
        await instance.prepare()
        instance.workdir = workdir
        await instance.finish(flash)
        return instance

    async def prepare(self) -> None:
        """The slow half of a power-on: Renode ready, its log set, the machines, every feature prepared.
        Nothing of the board runs yet and no console reads it: a warm spare waits in this state."""

        async def steps() -> None:
            await self.session.wait_ready(self.spec.startup_timeout)
            await self._build()

        await self.stop_on_failure(steps())

    async def finish(self, flash: FlashStore) -> None:
        """The fast half of a power-on: every feature finished (consoles read, flash and images...), started."""
        self.flash, self.firmware = flash, flash.boot_images()

        async def steps() -> None:
            for feature in self.features:
                await feature.finish(self)
            if self.spec.autostart:
                await self.session.resume()

        await self.stop_on_failure(steps())

    async def stop_on_failure(self, steps: Awaitable[None]) -> None:
        try:
            await steps
        except BaseException:
            with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                await self.stop()  # also when the caller went away mid-start: never leave Renode behind
            raise

    async def _build(self) -> None:
        """Everything of a spare after Renode's start: log, machines, the helpers, every feature prepared."""
        spec, session = self.spec, self.session
        await session.execute(commands.log_file(self.files.log))
        if spec.log_level:
            await session.execute(commands.log_level(spec.log_level))
        for machine in spec.machines:
            await self._create_machine(machine)
        for feature in self.features:
            for helper in feature.helpers:
                await session.execute(commands.include_script(helper_script(helper)), timeout=spec.startup_timeout)
        for feature in self.features:
            await feature.prepare(self)

    async def _create_machine(self, machine: MachineSpec) -> None:
        """A machine from its platform file, or whatever its script creates and selects."""
        session, timeout = self.session, self.spec.startup_timeout
        if machine.script is not None:
            await session.execute(commands.include_script(machine.script), timeout=timeout)
            created = selected_machine(session.monitor.prompt)
            if created is None or created in session.names.values():
                raise RenodeStartError(f"script {machine.script} did not create or select a new machine")
            session.names[machine.name] = created
            return
        await session.execute(commands.mach_create(machine.name))
        session.names[machine.name] = machine.name
        try:
            await session.execute(commands.load_platform(machine.platform), timeout=timeout)
        except RenodeCommandError as exc:
            if exc.kind is ErrorKind.DOWNLOAD_FAILED:
                raise RenodeStartError(f"{exc}; {DOWNLOAD_HINT}") from exc
            raise

    # -- serving a target --------------------------------------------------------------------------

    def take_over(self, workdir: Path, channels: dict[str, UartChannel], log: logging.Logger) -> None:
        """A spare becomes a target's Renode: its log becomes renode.log in the target's directory, and the
        target's channels and logger are its own from now on (a spare may come from another lease)."""
        renode_log = keep_one_previous_log(workdir)
        self.files.log.replace(renode_log)
        self.session.files = dataclasses.replace(self.files, log=renode_log)
        self.workdir, self.channels, self.log = workdir, channels, log
        self.session.use_logger(log)

    def release(self) -> None:
        """Stop serving the target at once (nothing of this run reaches a console any more)."""
        for feature in self.features:
            feature.release(self)

    async def recycle(self) -> None:
        """Make this Renode, which served a board, a spare again: `Clear` gives a new emulation (machines,
        memory, terminals, hubs, GDB servers and virtual time go with the old one; the monitor forgets its
        variables and macros: infra Monitor.cs EmulationChanged), then it is built as a new spare is. Its
        log continues in a new file; the helpers are loaded again, which resets their state.
        """
        self.release()

        async def steps() -> None:
            self.reuses += 1
            await self.session.execute("Clear", timeout=self.spec.startup_timeout)
            self.session.running, self.session.names = False, {}
            self.firmware, self.flash, self.features = {}, None, _new_features()
            files = self.files
            files.own_log.unlink(missing_ok=True)
            self.session.files, self.workdir = dataclasses.replace(files, log=files.own_log), None
            await self._build()

        await self.stop_on_failure(steps())

    async def reflash(self, machine: str, firmware: Firmware | None) -> None:
        """An image flashed (None: the flash erased) while on: written now, the machine reset (the features
        say how)."""
        assert self.flash is not None
        self.firmware = self.flash.boot_images()
        for feature in self.features:
            await feature.reflash(self, machine, firmware)

    async def power_off(self) -> None:
        """The board is paused and stops serving the target: each feature keeps what outlives it (flash)."""
        for feature in self.features:
            await feature.power_off(self)

    async def reset(self, machine: str) -> None:
        """`machine Reset`, after each feature got ready for it."""
        for feature in self.features:
            await feature.before_reset(self, machine)
        await self.session.on(machine, "machine Reset")

    # -- the end -------------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Kill the process group and reap it; let go of the consoles; remove the process's files.

        No `quit`: a powered-off board keeps nothing, and Renode's own exit (about 0.17 s on 1.16.1) would
        only remove what the driver removes itself (PTY links, config, temporary files). Shielded from
        cancellation (a client that disconnects mid-`off`), and bounded in time.
        """
        self._teardown()
        await self.session.stop()

    def kill(self) -> None:
        """Synchronous, no waiting (close() runs on the event loop): SIGKILL, then remove the files."""
        self._teardown()
        self.session.kill()

    def _teardown(self) -> None:
        self.release()
        for feature in self.features:
            feature.teardown(self)
