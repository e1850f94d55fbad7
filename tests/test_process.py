"""RenodeProcess on its own, with small fake `renode` executables written into tmp_path.

Each fake is a Python script that behaves like one way Renode can end: it quits when told, ignores quit and
SIGTERM, closes its stdin but stays alive, leaves a child behind, or writes a crash report to stderr. The
process layer must stop every one of them within a bounded time, reap it, and say how it ended. Every wait
is bounded; conditions with no event to wait on are polled against a deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest

from jumpstarter_driver_renode.errors import RenodeStartError
from jumpstarter_driver_renode.process import INSTALL_HINT, LogFollower, RenodeProcess, check_version, resolve_renode

# Leaves a child in Renode's process group (as a launcher wrapper would) and says its pid.
WITH_CHILD = """
child = subprocess.Popen(["sleep", "60"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
print("child", child.pid, flush=True)
"""


def fake_renode(tmp_path: Path, *parts: str) -> str:
    """An executable `renode` running the Python code in `parts` (each dedented on its own)."""
    path = tmp_path / "bin" / "renode"
    path.parent.mkdir(exist_ok=True)
    code = "".join(textwrap.dedent(part) for part in parts)
    path.write_text(f"#!{sys.executable}\nimport json, os, signal, subprocess, sys, time\n{code}")
    path.chmod(0o755)
    return str(path)


def workdir(tmp_path: Path) -> Path:
    path = tmp_path / "target"
    path.mkdir(exist_ok=True)
    return path


@asynccontextmanager
async def spawned(tmp_path: Path, *parts: str) -> AsyncIterator[RenodeProcess]:
    process = await RenodeProcess.spawn(fake_renode(tmp_path, *parts), workdir(tmp_path))
    try:
        yield process
    finally:
        process.kill()  # whatever the test did: nothing of it may outlive the test
        await process.wait_exit(5)


async def read_until(process: RenodeProcess, marker: bytes, timeout: float = 5.0) -> bytes:
    data = b""
    with anyio.fail_after(timeout):
        while marker not in data:
            data += await process.stdout.receive()
    return data


async def child_pid(process: RenodeProcess) -> int:
    line = (await read_until(process, b"\n")).decode()
    assert line.startswith("child "), line
    return int(line.split()[1])


def gone(pid: int) -> bool:
    """Whether `pid` has exited (a zombie nobody has reaped yet counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll a condition the kernel makes true (a process's exit has no event we can await here)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        await anyio.sleep(0.02)


def environ_of(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace").split("\0")
    return dict(entry.split("=", 1) for entry in entries if "=" in entry)


def open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def anyio_backend():
    return "asyncio"  # RenodeProcess uses asyncio's subprocess support


# -- stopping ----------------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(
    "body",
    [
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\ntime.sleep(60)\n",
        "os.close(0)\nprint('ready', flush=True)\ntime.sleep(60)\n",
    ],
    ids=["ignores-sigterm", "stdin-closed"],
)
async def test_kill_and_reap_stops_the_group_and_closes_the_pipes_whatever_renode_does(tmp_path, body):
    """Power off: SIGKILL to the process group, reaped before returning, pipes closed; no quit needed."""
    fds = open_fds()
    async with spawned(tmp_path, WITH_CHILD, body) as process:
        child = await child_pid(process)  # the body runs after this line is printed
        started = time.monotonic()
        with anyio.fail_after(10):
            await process.kill_and_reap()
        assert time.monotonic() - started < 2, "a SIGKILLed process is reaped at once"
        assert process.returncode == -signal.SIGKILL
        assert process.describe_exit() == "Renode was killed by signal SIGKILL"
        await until(lambda: gone(child), 5, "the child Renode left in its process group to be killed")
        with pytest.raises(anyio.BrokenResourceError):
            await process.stdin.send(b"version\n")
    assert open_fds() <= fds, "the pipes to Renode were left open"


@pytest.mark.anyio
async def test_kill_returns_at_once_and_the_whole_process_group_dies(tmp_path):
    ignores_sigterm = "signal.signal(signal.SIGTERM, signal.SIG_IGN)  # only SIGKILL works\n"
    async with spawned(tmp_path, ignores_sigterm, WITH_CHILD, "time.sleep(60)\n") as process:
        child = await child_pid(process)
        started = time.monotonic()
        process.kill()
        assert time.monotonic() - started < 0.5, "kill() must not wait for the process"
        assert await process.wait_exit(5)
        assert process.returncode == -signal.SIGKILL
        assert process.describe_exit() == "Renode was killed by signal SIGKILL"
        await until(lambda: gone(child), 5, "the child in Renode's process group to be killed")
        with pytest.raises(anyio.BrokenResourceError):
            await process.stdin.send(b"quit\n")


# -- reporting ---------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_describe_exit_says_how_renode_ended_and_quotes_the_last_stderr_lines(tmp_path):
    body = """
    for i in range(1, 21):
        print(f"crash report line {i}", file=sys.stderr)
    sys.stderr.flush()
    print("ready", flush=True)
    sys.stdin.readline()
    sys.exit(3)
    """
    async with spawned(tmp_path, body) as process:
        await read_until(process, b"ready\n")
        assert process.describe_exit().startswith("Renode is still running; stderr:\n  crash report line 6\n")
        await process.stdin.send(b"quit\n")
        assert await process.wait_exit(5)
        assert process.returncode == 3
        assert process.describe_exit() == "Renode exited with code 3; stderr:\n  " + "\n  ".join(
            f"crash report line {i}" for i in range(6, 21)
        )


# -- starting ----------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_spawn_of_a_missing_executable_raises_start_error_with_the_install_hint(tmp_path):
    missing = str(tmp_path / "no-such-renode")
    try:
        process = await RenodeProcess.spawn(missing, workdir(tmp_path))
    except RenodeStartError as exc:
        assert missing in str(exc)
        assert INSTALL_HINT in str(exc)
    else:
        process.kill()
        await process.wait_exit(5)
        pytest.fail(f"spawn() started a process that failed at once instead: {process.describe_exit()}")


def test_resolve_renode_names_what_is_missing_and_how_to_install_it(tmp_path, monkeypatch):
    missing = str(tmp_path / "no-such-renode")
    with pytest.raises(RenodeStartError, match="does not exist or is not executable") as by_path:
        resolve_renode(missing)
    assert missing in str(by_path.value)
    assert INSTALL_HINT in str(by_path.value)

    not_executable = tmp_path / "renode-not-executable"
    not_executable.write_text("#!/bin/sh\n")
    with pytest.raises(RenodeStartError, match="does not exist or is not executable"):
        resolve_renode(str(not_executable))

    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(RenodeStartError, match="`renode` is not on PATH") as by_name:
        resolve_renode(None)
    assert INSTALL_HINT in str(by_name.value)

    found = fake_renode(tmp_path, "")
    monkeypatch.setenv("PATH", str(Path(found).parent))
    assert resolve_renode(None) == found


@pytest.mark.anyio
async def test_renode_runs_in_its_own_session_with_a_private_tmpdir_and_without_ci_mode(tmp_path, monkeypatch):
    monkeypatch.setenv("RENODE_CI_MODE", "YES")  # as an exporter's environment may set it
    monkeypatch.setenv("JUMPSTARTER_RENODE_TEST_MARKER", "inherited")
    body = """
    print("argv", json.dumps(sys.argv[1:]), flush=True)
    sys.stdin.readline()
    """
    target = workdir(tmp_path)
    async with spawned(tmp_path, body) as process:
        line = await read_until(process, b"\n")
        assert json.loads(line.decode().split(" ", 1)[1]) == [
            "--console",
            "--disable-xwt",
            "--hide-log",
            "--config",
            str(target / "renode.config"),
        ]
        pid = process.pid
        assert os.getpgid(pid) == pid, "a stop must reach the whole group, and only it"
        assert os.getsid(pid) == pid != os.getsid(0)
        assert os.readlink(f"/proc/{pid}/cwd") == str(target)
        environ = environ_of(pid)
        assert "RENODE_CI_MODE" not in environ, "CI mode disables Renode's download cache"
        assert environ["TMPDIR"] == str(target / "tmp")
        assert (target / "tmp").is_dir()  # the default; the driver gives each process its own (tmp-<n>)
        assert environ["JUMPSTARTER_RENODE_TEST_MARKER"] == "inherited"
        assert environ["PATH"] == os.environ["PATH"]
        assert os.environ["RENODE_CI_MODE"] == "YES", "the exporter's own environment is left alone"
        with anyio.fail_after(10):
            await process.kill_and_reap()


def test_renode_dies_with_the_exporter(tmp_path):
    """PR_SET_PDEATHSIG: no Renode outlives an exporter that was SIGKILLed (no chance to clean up)."""
    fake = fake_renode(tmp_path, "time.sleep(60)\n")
    exporter = textwrap.dedent(
        f"""
        import asyncio, pathlib, time
        from jumpstarter_driver_renode.process import RenodeProcess
        async def main():
            process = await RenodeProcess.spawn({fake!r}, pathlib.Path({str(workdir(tmp_path))!r}))
            print(process.pid, flush=True)
            time.sleep(60)
        asyncio.run(main())
        """
    )
    renode = None
    with subprocess.Popen([sys.executable, "-c", exporter], stdout=subprocess.PIPE, text=True) as parent:
        try:
            assert select.select([parent.stdout], [], [], 10)[0], "the exporter did not start Renode within 10s"
            renode = int(parent.stdout.readline())
            assert not gone(renode)
            parent.kill()
            parent.wait(5)
            deadline = time.monotonic() + 5
            while not gone(renode):
                assert time.monotonic() < deadline, "Renode outlived the exporter"
                time.sleep(0.02)  # polling /proc: the orphan's exit has no event we can wait on
        finally:
            parent.kill()
            parent.wait(5)
            if renode is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(renode, signal.SIGKILL)


def versioned_renode(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text(f"#!{sys.executable}\nimport sys, time\n{textwrap.dedent(body)}")
    path.chmod(0o755)
    return str(path)


@pytest.mark.anyio
async def test_check_version_accepts_1_x_from_1_13_and_refuses_the_rest_with_the_reason(tmp_path):
    def renode(name: str, version: str) -> str:
        return versioned_renode(tmp_path, name, f'print("Renode, version {version} (-202611301012)")\n')

    assert await check_version(renode("renode-1.16.1", "1.16.1"), 5) == (1, 16, 1)
    assert await check_version(renode("renode-1.13.0", "1.13.0"), 5) == (1, 13, 0)
    with pytest.raises(RenodeStartError, match=r"unsupported Renode version 1\.12\.9 .*need 1\.13\.0 or newer 1\.x"):
        await check_version(renode("renode-1.12.9", "1.12.9"), 5)
    with pytest.raises(RenodeStartError, match=r"unsupported Renode version 2\.0\.0"):
        await check_version(renode("renode-2.0.0", "2.0.0"), 5)

    broken = versioned_renode(tmp_path, "renode-broken", 'print("mono: not found", file=sys.stderr)\nsys.exit(127)\n')
    with pytest.raises(RenodeStartError, match=r"--version` failed \(exit 127\): mono: not found"):
        await check_version(broken, 5)

    hangs = versioned_renode(tmp_path, "renode-hangs", "time.sleep(60)\n")
    started = time.monotonic()
    with pytest.raises(RenodeStartError, match=r"--version` did not finish within 0\.3s"):
        await check_version(hangs, 0.3)
    assert time.monotonic() - started < 3


@pytest.mark.anyio
@pytest.mark.parametrize(
    "content", [b"\x7fELF\x02\x01\x01" + bytes(60), b"#!/nonexistent/mono\n"], ids=["wrong-format", "no-interpreter"]
)
async def test_check_version_of_an_unrunnable_executable_raises_start_error(tmp_path, content):
    path = tmp_path / "renode"
    path.write_bytes(content)
    path.chmod(0o755)
    assert resolve_renode(str(path)) == str(path)  # it is there and executable...
    with pytest.raises(RenodeStartError, match="renode"):  # ...but cannot run: say so, typed
        await check_version(str(path), 5)


def test_log_follower_reads_each_file_to_its_end_once(tmp_path):
    """`follow_log`: a power-on or a restore from the spare gives the log's name to another file, and a
    second restore gives it back. Every line is read once: the file losing the name to its end, each
    file from where it was left."""
    log, other = tmp_path / "renode.log", tmp_path / "spare.log"
    follower = LogFollower(log)
    assert follower.new_lines() == []  # no log yet
    log.write_text("one\ntwo\nthr")
    assert follower.new_lines() == ["one", "two"]
    with log.open("a") as f:
        f.write("ee\nfour\nunfinish")
    other.write_text("".join(f"spare {n}\n" for n in range(100)))  # longer than the first file
    swap = tmp_path / "swap"
    log.replace(swap)
    other.replace(log)
    swap.replace(other)
    assert follower.new_lines() == ["three", "four", "unfinish", *(f"spare {n}" for n in range(100))]
    with other.open("a") as f:
        f.write("five\n")
    with log.open("a") as f:
        f.write("spare 100\n")
    log.replace(swap)
    other.replace(log)
    swap.replace(other)
    assert follower.new_lines() == ["spare 100", "five"]
    follower.close()
