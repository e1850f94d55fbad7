"""One Renode process and its monitor: what runs, which machine the monitor has selected, whether the
emulation is started. Knows nothing of UARTs, firmware or any other board feature.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from . import commands
from .errors import RenodeError, RenodeStartError
from .monitor import MonitorClient, selected_machine
from .process import RenodeProcess, check_version, resolve_renode, tail
from .spec import ProcessFiles

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
_TIME_RE = re.compile(r"virtual time:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_virtual_time(output: str) -> float:
    """Seconds from `currentTime` output (`Current virtual time: 00:00:01.000000`, six or nine decimals)."""
    m = _TIME_RE.search(output)
    if m is None:
        raise RenodeError(f"unexpected `currentTime` output: {output!r}")
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])


def wait_limit(command_timeout: float, host_timeout: float) -> float:
    """How long Renode may take to answer a command that runs the board until something happens: a helper
    may spend 5 s waiting for console input, then the host limit twice (run, then pause)."""
    return 5 + 2 * host_timeout + command_timeout


def run_for_limit(command_timeout: float, seconds: float) -> float:
    """`RunFor` blocks the monitor for the whole interval: allow for emulation slower than real time."""
    return command_timeout + 20 * seconds


@dataclass(eq=False)
class RenodeSession:
    """A Renode process, its monitor, the machines it created (by their names in the target's config) and
    whether the emulation runs (the driver is the only one who starts and pauses it)."""

    process: RenodeProcess
    monitor: MonitorClient
    files: ProcessFiles  # the process's own directory (and its log's current name)
    version: tuple[int, int, int] = (0, 0, 0)
    names: dict[str, str] = field(default_factory=dict)  # machine -> its name in Renode (a script's own)
    running: bool = False

    @classmethod
    async def spawn(
        cls,
        renode_path: str | None,
        command_timeout: float,
        startup_timeout: float,
        files: ProcessFiles,
        relays: list[tuple[Path, int]],
        log: logging.Logger,
    ) -> RenodeSession:
        """Start Renode in its own directory (`files`: config, stderr, TMPDIR); with `relays` (socket, port)
        inside a private network namespace. Returns once the process runs, before its monitor answers; on
        failure the directory is gone."""
        try:
            executable = resolve_renode(renode_path)
            version = await check_version(executable, startup_timeout)
            process = await RenodeProcess.spawn(
                executable,
                files.dir,
                relays,
                log,
                config_file=files.config,
                stderr_path=files.stderr,
                tmp_dir=files.tmp,
            )
        except BaseException:
            shutil.rmtree(files.dir, ignore_errors=True)
            raise
        session: RenodeSession

        def describe() -> str:
            return session.describe_failure()

        monitor = MonitorClient(
            process.stdin,
            process.stdout,
            timeout=command_timeout,
            describe_exit=describe,
            on_eof=lambda: process.wait_exit(2.0),
            log=log,
        )
        session = cls(process, monitor, files, version)
        return session

    async def wait_ready(self, timeout: float) -> None:
        try:
            await self.monitor.wait_ready(timeout)
        except RenodeError as exc:
            raise RenodeStartError(f"Renode did not start: {exc}") from exc

    # -- what it is ------------------------------------------------------------------------------

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def exited(self) -> bool:
        return self.process.returncode is not None

    @property
    def healthy(self) -> bool:
        """The process is alive and its monitor usable."""
        return not self.exited and self.monitor.broken is None

    def use_logger(self, log: logging.Logger) -> None:
        self.process.log = self.monitor.log = log

    def why_failed(self) -> str:
        """How this Renode failed: its monitor's breakage (if any), then the process state and log tail."""
        broken = self.monitor.broken
        return f"monitor unusable: {broken}; {self.describe_failure()}" if broken else self.describe_failure()

    def describe_failure(self) -> str:
        parts = [self.process.describe_exit()]
        log = tail(self.files.log, LOG_TAIL_LINES)
        if log:
            parts.append("Renode log tail:\n  " + "\n  ".join(log))
        return "; ".join(parts)

    # -- commands --------------------------------------------------------------------------------

    async def execute(self, command: str, timeout: float | None = None) -> str:
        return await self.monitor.execute(command, timeout)

    async def on(self, machine: str, command: str, timeout: float | None = None) -> str:
        """Run a command with `machine` selected (the prompt says which one is)."""
        name = self.names[machine]
        if selected_machine(self.monitor.prompt) != name:
            await self.monitor.execute(commands.mach_set(name))
        return await self.monitor.execute(command, timeout)

    async def on_wait(self, machine: str, command: str, timeout: float) -> str:
        """`on` for a command that runs the board until something happens (bounded by its host time limit).

        Shielded: a client that gives up mid-wait (Ctrl-C) must not leave Renode answering a command
        nobody reads, or the next command would take that answer, time out, and fail the target.
        """
        with anyio.CancelScope(shield=True):
            return await self.on(machine, command, timeout)

    # -- the emulation's run state ----------------------------------------------------------------

    async def resume(self) -> None:
        """Start the emulation: the monitor's `start` less the 100 ms host sleep it ends with (expect.py's
        helper; loaded with the features, before anything resumes)."""
        await self.monitor.execute("jumpstarter_start")
        self.running = True

    async def pause(self, timeout: float | None = None) -> None:
        await self.monitor.execute("pause", timeout)
        self.running = False

    @asynccontextmanager
    async def paused(self) -> AsyncIterator[bool]:
        """The emulation paused for the block, started again after it if it ran before (and Renode is still
        usable). Yields whether it ran. The resume is shielded: a cancelled caller leaves the board as it was."""
        was_running = self.running
        if was_running:
            await self.pause()
        try:
            yield was_running
        finally:
            if was_running and self.healthy and not self.running:
                with anyio.CancelScope(shield=True):
                    await self.resume()

    async def run_for(self, seconds: float, timeout: float) -> None:
        """Run exactly `seconds` of virtual time, then stay paused (RunFor refuses a started emulation)."""
        if self.running:
            await self.pause()
        await self.monitor.execute(commands.run_for(seconds), timeout=timeout)

    async def virtual_time(self) -> float:
        return parse_virtual_time(await self.monitor.execute("currentTime"))

    # -- the end ---------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Kill the process group and reap it (bounded, shielded); remove the process's directory."""
        with anyio.CancelScope(shield=True):
            try:
                await self.process.kill_and_reap()
            finally:
                shutil.rmtree(self.files.dir, ignore_errors=True)

    def kill(self) -> None:
        """Synchronous, no waiting (close() runs on the event loop): SIGKILL, then remove the directory."""
        self.process.kill()
        shutil.rmtree(self.files.dir, ignore_errors=True)
