"""The deployment files in deploy/ are the ones that work: the exporter config serves boards through `jmp run`
(the command the systemd unit and the container run), a client session through it returns its command's
exit code, and the systemd unit passes `systemd-analyze verify`. (The Containerfile is not built here: no
container registry can be reached.)"""

from __future__ import annotations

import configparser
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import STANDIN, no_renode_left

DEPLOY = Path(__file__).parent.parent / "deploy"
BIN = Path(sys.executable).parent
UNIT = DEPLOY / "jumpstarter-exporter@.service"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def exec_start() -> list[str]:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read(UNIT)
    return shlex.split(unit["Service"]["ExecStart"])


def wait_listening(port: int, exporter: subprocess.Popen, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert exporter.poll() is None, log.read_text(errors="replace")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            assert time.monotonic() < deadline, "the exporter did not listen"
            time.sleep(0.1)  # `jmp run` starts in a few seconds: poll for its port


@pytest.mark.timeout(420)
def test_the_deploy_exporter_config_serves_leases_through_jmp_run(backend, tmp_path, firmware):
    config = yaml.safe_load((DEPLOY / "exporter.yaml").read_text())
    assert set(config["export"]) == {"stm32f4-1", "stm32f4-2"}
    for entry in config["export"].values():
        if backend.standin:
            entry["config"]["renode_path"] = str(STANDIN)
    (tmp_path / "exporter.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "fw.elf").write_bytes(firmware().elf.read_bytes())
    # what the unit runs, with a local listener in place of the controller registration
    command = exec_start()
    assert command[1:] == ["run", "--exporter-config", "/etc/jumpstarter/exporters/%i.yaml"]
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    log = tmp_path / "exporter.log"
    with log.open("wb") as out:
        exporter = subprocess.Popen(
            [str(BIN / "jmp"), "run", "--exporter-config", str(tmp_path / "exporter.yaml"),
             "--tls-grpc-listener", f"127.0.0.1:{port}", "--tls-grpc-insecure"],
            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        wait_listening(port, exporter, log, 60)

        def session(script: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                [str(BIN / "jmp"), "shell", "--tls-grpc", f"127.0.0.1:{port}", "--tls-grpc-insecure", "--",
                 "sh", "-c", script],
                cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, capture_output=True, timeout=backend.timeout(60, 240),
            )  # fmt: skip

        for board in ("stm32f4-1", "stm32f4-2"):  # one lease after the other, each board its own target
            done = session(f"j {board} flasher flash fw.elf && j {board} power on && "
                           f"j {board} expect 'BOOT jumpstarter-renode-fw' -t 1 && j {board} power off")  # fmt: skip
            assert done.returncode == 0, done.stdout.decode() + done.stderr.decode()
        failed = session("j stm32f4-1 power on && j stm32f4-1 expect never -t 0.05")
        assert failed.returncode == 1, failed.stdout.decode() + failed.stderr.decode()  # CI sees a failure
    finally:
        exporter.send_signal(signal.SIGINT)  # as systemd's stop and `podman stop` end it
        try:
            exporter.wait(timeout=30)
        except subprocess.TimeoutExpired:
            exporter.kill()
            exporter.wait(timeout=30)
            raise
    assert no_renode_left()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
def test_the_systemd_unit_verifies(tmp_path):
    """`systemd-analyze verify` on the unit as shipped, with its paths pointed at this machine's (it checks
    that the executable exists): no unknown key, no bad value."""
    unit = UNIT.read_text().replace("/opt/jumpstarter/bin/jmp", str(BIN / "jmp"))
    copy = tmp_path / "jumpstarter-exporter@renode-lab-1.service"
    copy.write_text(unit.replace("User=jumpstarter", "User=root").replace("Group=jumpstarter", "Group=root"))
    done = subprocess.run(["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60)
    complaints = [line for line in (done.stdout + done.stderr).splitlines() if "jumpstarter-exporter@" in line]
    assert done.returncode == 0 and not complaints, done.stdout + done.stderr
