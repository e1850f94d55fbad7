"""Starting and stopping the Renode process.

Renode runs with its monitor on stdin/stdout (`--console`): no TCP socket exists, so nothing on
the network can reach the monitor (the `--port` socket binds every interface). The log goes to a
per-target file (`logFile`), crash reports to a per-target stderr file. Each process gets its own
session (process group) so a stop reaches launcher wrappers and their children, and it is asked to
die with the exporter (PR_SET_PDEATHSIG) so no Renode outlives a killed exporter.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shlex
import shutil
import signal
import subprocess
import sys
import weakref
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import anyio

from .errors import RenodeStartError
from .netns import isolated_argv
from .protocol import parse_version

logger = logging.getLogger(__name__)

MIN_VERSION = (1, 13, 0)
INSTALL_HINT = (
    "install Renode (https://renode.io: the Linux portable package, `renode` on PATH) "
    "or set `renode_path` in the exporter config"
)


def resolve_renode(renode_path: str | None) -> str:
    """The executable to run, or a RenodeStartError saying what is missing and how to get it."""
    name = renode_path or "renode"
    found = shutil.which(name)
    if found is None:
        where = f"`{name}` does not exist or is not executable" if "/" in name else f"`{name}` is not on PATH"
        raise RenodeStartError(f"Renode not found: {where}; {INSTALL_HINT}")
    return found


def _check_executable(executable: str) -> None:
    """A RenodeStartError unless `executable` is an executable file (one stat: cheap enough for the loop)."""
    if not (os.path.isfile(executable) and os.access(executable, os.X_OK)):
        raise RenodeStartError(f"could not start {executable}: not an executable file; {INSTALL_HINT}")


@functools.lru_cache(maxsize=16)
def _cached_version(executable: str, mtime: float, timeout: float) -> tuple[tuple[int, int, int], str]:
    try:
        done = subprocess.run(
            [executable, "--version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        raise RenodeStartError(f"`{executable} --version` did not finish within {timeout:g}s") from None
    except OSError as exc:  # executable but not runnable: wrong architecture, missing script interpreter
        raise RenodeStartError(f"cannot run `{executable} --version`: {exc}; {INSTALL_HINT}") from None
    text = (done.stdout + done.stderr).decode(errors="replace").strip()
    version = parse_version(text)
    if done.returncode != 0 or version is None:
        raise RenodeStartError(
            f"`{executable} --version` failed (exit {done.returncode}): {text[-500:] or 'no output'}"
        )
    return version, text.splitlines()[0]


async def check_version(executable: str, timeout: float) -> tuple[int, int, int]:
    """Run `renode --version` once per executable and refuse versions we do not support."""
    mtime = os.stat(executable).st_mtime
    version, line = await anyio.to_thread.run_sync(_cached_version, executable, mtime, timeout)
    if version < MIN_VERSION or version[0] >= 2:
        want = ".".join(map(str, MIN_VERSION))
        raise RenodeStartError(
            f"unsupported Renode version {'.'.join(map(str, version))} ({line}); need {want} or newer 1.x"
        )
    return version


_DEATH_WRAPPER = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG\n"
    "os.getppid() == int(sys.argv[1]) or os._exit(1)\n"
    "os.execv(sys.argv[2], sys.argv[2:])\n"
)


def die_with_parent(argv: list[str]) -> list[str]:
    """`argv` wrapped so the process gets SIGKILL when its parent (the exporter) dies.

    A preexec_fn would do this in the forked child, but running Python after fork() in a process with
    gRPC's threads crashes; instead a tiny exec wrapper sets PR_SET_PDEATHSIG and execs Renode.
    """
    setpriv = shutil.which("setpriv")
    if setpriv is not None:
        return [setpriv, "--pdeathsig", "KILL", "--", *argv]
    return [sys.executable, "-c", _DEATH_WRAPPER, str(os.getpid()), *argv]


def renode_argv(executable: str, config_file: Path) -> list[str]:
    return [executable, "--console", "--disable-xwt", "--hide-log", "--config", str(config_file)]


def renode_env(workdir: Path, tmp: Path | None = None) -> dict[str, str]:
    """The environment for one Renode: its own TMPDIR (Renode's temporary files, PTYs, crash dumps).

    RENODE_CI_MODE is removed, never set: it disables Renode's download cache, so every power-on of a
    board whose platform applies an SVD from a URL would download it again, and fail offline. The
    per-user cache (~/.config/renode) is shared safely: Renode guards it with a file lock. Per-target
    isolation comes from `--config` (a private config file) and this TMPDIR.
    """
    tmp = tmp or workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if key != "RENODE_CI_MODE"}
    return {**env, "TMPDIR": str(tmp)}


def tail(path: Path, lines: int) -> list[str]:
    """The last `lines` lines of a text file ([] if it does not exist)."""
    try:
        with path.open("r", errors="replace") as f:
            return [line.rstrip("\n") for line in deque(f, maxlen=lines)]
    except FileNotFoundError:
        return []


@dataclass
class LogFollower:
    """Reads what a log gained since the last call. Another file may take the log's name (a power-on keeps
    the previous log under another name; a restore from the spare swaps two processes' log names): the
    file that lost the name is read to its end first, and each file goes on from where it was left."""

    path: Path
    _file: BinaryIO | None = None
    _positions: dict[int, int] = field(default_factory=dict)  # inode -> bytes read of that file
    _pending: bytes = b""

    def new_lines(self) -> list[str]:
        """The complete lines written since the last call (a line still being written waits)."""
        try:
            named = os.stat(self.path).st_ino
        except FileNotFoundError:
            named = None
        if self._file is not None:
            self._pending += self._file.read()
            inode = os.fstat(self._file.fileno()).st_ino
            if inode != named:
                self._positions[inode] = self._file.tell()
                self.close()
                if self._pending and not self._pending.endswith(b"\n"):
                    self._pending += b"\n"  # its last line, unfinished
        if self._file is None and named is not None:
            try:
                self._file = self.path.open("rb")
            except FileNotFoundError:
                return self._complete()
            self._file.seek(self._positions.get(os.fstat(self._file.fileno()).st_ino, 0))
            self._pending += self._file.read()
        return self._complete()

    def _complete(self) -> list[str]:
        *complete, self._pending = self._pending.split(b"\n")
        return [line.decode(errors="replace") for line in complete]

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


class _StdinStream:
    """anyio-style send side over an asyncio StreamWriter."""

    def __init__(self, writer: asyncio.StreamWriter):
        self._writer = writer

    async def send(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise anyio.BrokenResourceError
        self._writer.write(data)
        try:
            await self._writer.drain()
        except (ConnectionResetError, BrokenPipeError) as exc:
            raise anyio.BrokenResourceError from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._writer.close()


class _StdoutStream:
    """anyio-style receive side over an asyncio StreamReader."""

    def __init__(self, reader: asyncio.StreamReader):
        self._reader = reader

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self._reader.read(max_bytes)
        if not data:
            raise anyio.EndOfStream
        return data


@dataclass(eq=False)
class RenodeProcess:
    """One running Renode. Owns the process and its pipes; `stop()`/`kill()` always reap it."""

    process: asyncio.subprocess.Process
    stdin: _StdinStream
    stdout: _StdoutStream
    stderr_path: Path
    log: logging.Logger = logger

    @classmethod
    async def spawn(
        cls,
        executable: str,
        workdir: Path,
        gdb: list[tuple[Path, int]] | None = None,
        log: logging.Logger = logger,
        *,
        config_file: Path | None = None,
        stderr_path: Path | None = None,
        tmp_dir: Path | None = None,
    ) -> RenodeProcess:
        """Start Renode; with `gdb` = [(socket path, port)], inside a private network namespace (see netns).

        `config_file` is Renode's own config (kept per process, not per user); `stderr_path` gets crash text.
        """
        _check_executable(executable)  # here too: the exec wrapper would start fine, then fail to run it
        config_file = config_file or workdir / "renode.config"
        stderr_path = stderr_path or workdir / "renode.stderr"
        argv = renode_argv(executable, config_file)
        if not gdb:
            argv = die_with_parent(argv)
        else:
            for socket_path, _ in gdb:
                socket_path.unlink(missing_ok=True)
            argv = isolated_argv(argv, [(str(socket_path), port) for socket_path, port in gdb])
        with stderr_path.open("wb") as stderr:
            try:
                process = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=stderr,
                    cwd=workdir,
                    env=renode_env(workdir, tmp_dir),
                    start_new_session=True,
                    limit=1 << 20,
                )
            except OSError as exc:
                raise RenodeStartError(f"could not start {executable}: {exc}; {INSTALL_HINT}") from exc
        log.info("started Renode pid %d: %s", process.pid, shlex.join(argv))
        return cls(process, _StdinStream(process.stdin), _StdoutStream(process.stdout), stderr_path, log)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return self.process.returncode

    def describe_exit(self) -> str:
        """A sentence about the process state plus its crash output, for error messages."""
        code = self.process.returncode
        if code is None:
            state = "Renode is still running"
        elif code < 0:
            state = f"Renode was killed by signal {signal.Signals(-code).name}"
        else:
            state = f"Renode exited with code {code}"
        err = tail(self.stderr_path, 15)
        return state + ("; stderr:\n  " + "\n  ".join(err) if err else "")

    async def wait_exit(self, timeout: float) -> bool:
        with anyio.move_on_after(timeout):
            await self.process.wait()
            return True
        return False

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, sig)

    async def kill_and_reap(self, timeout: float = 5.0) -> None:
        """SIGKILL the whole process group now and wait (bounded) until the process is reaped."""
        try:
            self._signal_group(signal.SIGKILL)
            if not await self.wait_exit(timeout):
                self.log.error("Renode pid %d survived SIGKILL for %gs", self.pid, timeout)
        finally:
            self._close_transport()

    def kill(self) -> None:
        """Synchronous, non-blocking: for close(), which must not wait on the event loop thread. The process
        is reaped before its event loop ends (`Reaper`)."""
        self._signal_group(signal.SIGKILL)
        self._close_transport()
        Reaper.keep(self)

    def _close_transport(self) -> None:
        # asyncio's Process has no public close(). Close the pipes now rather than in a finalizer that may
        # run after the event loop is gone; close the transport itself only once the child is reaped:
        # its close() polls the child, and reaping it there steals the exit status from asyncio's child
        # watcher (which then reports code 255 instead of the signal that killed Renode).
        self.stdin.close()
        transport = getattr(self.process, "_transport", None)
        if transport is None:
            return
        for fd in (0, 1, 2):
            pipe = transport.get_pipe_transport(fd)
            if pipe is not None:
                pipe.close()
        if self.process.returncode is not None:
            transport.close()


class Reaper:
    """Processes killed without waiting (`RenodeProcess.kill`), reaped before their event loop ends.

    asyncio's child watcher hands a child's exit to the loop that started it; a child that exits after that
    loop closed makes it log `Loop <...> that handles pid N is closed` (seen at the end of the main job on
    real Renode, whose Mono process takes a moment to die). So each loop gets a keeper task that, when the
    loop ends and cancels it, waits (bounded) for the processes killed on that loop.
    """

    _reapers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Reaper] = weakref.WeakKeyDictionary()
    TIMEOUT = 2.0  # seconds the end of a loop waits for its killed processes (SIGKILLed: milliseconds)

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._killed: set[RenodeProcess] = set()
        self._keeper = keeper_task(loop, self._keep(), "renode-reaper")

    @classmethod
    def keep(cls, process: RenodeProcess) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop: nothing will be told about the child's exit
        reaper = cls._reapers.get(loop)
        if reaper is None or reaper._keeper.done():
            reaper = cls._reapers[loop] = cls(loop)
        reaper._killed = {p for p in reaper._killed if p.returncode is None}  # a long-lived exporter kills many
        if process.returncode is None:
            reaper._killed.add(process)

    async def _keep(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # until the loop ends and cancels it
        finally:
            await reap(self._killed)


def keeper_task(loop: asyncio.AbstractEventLoop, coro, name: str) -> asyncio.Task:
    """A task that waits until its loop ends. A loop shut down properly (asyncio.run, anyio.run) cancels it,
    which runs its clean-up; a loop that is only abandoned (`jmp shell` leaves its exporter's loop at exit)
    destroys it pending, and asyncio's "Task was destroyed but it is pending!" would then be logged while
    Python shuts down: a stray traceback at the end of a clean session, with nothing left to clean."""
    task = loop.create_task(coro, name=name)
    task._log_destroy_pending = False  # asyncio's own switch for that message (CPython's Task has it)
    return task


async def reap(processes: set[RenodeProcess] | list[RenodeProcess], timeout: float = Reaper.TIMEOUT) -> None:
    """Wait until `processes` (killed) are reaped, at most `timeout` seconds in all."""
    waiting = [asyncio.ensure_future(p.process.wait()) for p in list(processes) if p.returncode is None]
    if waiting:
        await asyncio.wait(waiting, timeout=timeout)
        for future in waiting:
            future.cancel()
