"""The `j` CLI inside `jmp shell --exporter-config`, as users run it, with the example config."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import STANDIN, no_renode_left

EXAMPLE = Path(__file__).parent.parent / "examples" / "exporter.yaml"


def jmp_shell(cwd: Path, script: str, timeout: float) -> str:
    """`jmp shell --exporter-config exporter.yaml -- sh -c SCRIPT` in `cwd`, no stdin; its whole output."""
    bin_dir = str(Path(sys.executable).parent)
    result = subprocess.run(
        [f"{bin_dir}/jmp", "shell", "--exporter-config", "exporter.yaml", "--", "sh", "-c", script],
        cwd=cwd,
        env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=timeout,
    )
    return result.stdout.decode(errors="replace") + result.stderr.decode(errors="replace")


def example_config(backend, tmp_path: Path) -> None:
    """examples/exporter.yaml as tmp_path/exporter.yaml, its targets on `backend`."""
    config = yaml.safe_load(EXAMPLE.read_text())
    for entry in config["export"].values():
        if backend.standin:
            entry["config"]["renode_path"] = str(STANDIN)
    (tmp_path / "exporter.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.timeout(420)  # the session is one `j` process per step: a loaded host needs more than 120 s
def test_jmp_shell_session_with_the_example_config(backend, tmp_path, firmware):
    """The README's `j` commands in `jmp shell`, on the stand-in and on the `renode` on PATH."""
    example_config(backend, tmp_path)
    fw = firmware()
    (tmp_path / "fw.elf").write_bytes(fw.elf.read_bytes())
    # Jumpstarter 0.9's `console pipe` can hang if SIGINT arrives while it is still connecting (seen on
    # real Renode while a warm spare loads beside it): give it time to connect, and a KILL as a backstop.
    pipe_seconds = backend.timeout(3, 10)
    script = (
        "j board flasher flash fw.elf && j board power on && "
        "j board expect 'BOOT jumpstarter-renode-fw' --timeout 1 && "
        "(j board expect never -t 0.05 --fail-on nothing || echo expect exit $?) && "
        "j board user on && j board green wait-for-active -t 1 && j board green read && "
        "j board user off && j board green wait-for-inactive -t 1 && j board green read && "
        f"(timeout -k 5 -s INT {pipe_seconds} j board console pipe < /dev/null; true) && "
        "j board snapshot save s1 && j board snapshot list && j board power off && "
        "j hifive1 power on && j hifive1 power off"
    )
    out = jmp_shell(tmp_path, script, backend.timeout(120, 300))
    # `jmp shell` exits 0 whatever the command did: the output is the evidence.
    assert "flashed fw.elf (elf)" in out, out
    assert fw.banner.decode() in out, out
    assert re.search(r"^\d\.\d{9}$", out, re.MULTILINE), out  # the virtual time of the banner
    assert "waiting for 'never' on console: it did not appear within 0.05 s of virtual time" in out, out
    assert "expect exit 1" in out, out
    assert "\nactive\n" in out.replace("\r", "") and "\ninactive\n" in out.replace("\r", ""), out
    assert "\ns1\n" in out.replace("\r", ""), out
    assert no_renode_left()


TWO_BOARDS = EXAMPLE.parent / "two-boards.yaml"


def ecus_config(example: Path, backend, tmp_path: Path) -> None:
    """An example whose target is `ecus`, as tmp_path/exporter.yaml, on `backend`."""
    config = yaml.safe_load(example.read_text())
    if backend.standin:
        config["export"]["ecus"]["config"]["renode_path"] = str(STANDIN)
    (tmp_path / "exporter.yaml").write_text(yaml.safe_dump(config))


@pytest.mark.timeout(420)
def test_jmp_shell_session_with_the_two_board_example(backend, tmp_path, firmware):
    """Machines are nested children in the CLI: `j ecus a ...`; power and time are the target's."""
    ecus_config(TWO_BOARDS, backend, tmp_path)
    fw = firmware()
    (tmp_path / "fw.elf").write_bytes(fw.elf.read_bytes())
    script = (
        "j ecus a flasher flash fw.elf && j ecus b flasher flash fw.elf && j ecus power on && "
        "j ecus a expect 'BOOT jumpstarter' -t 1 && j ecus b expect 'BOOT jumpstarter' -t 1 && "
        "j ecus a write --line 'hello b' && j ecus b expect 'bus: hello b' -t 1 && "
        "j ecus a user press && j ecus a expect 'button released' -t 1 && "
        "(j ecus expect x -t 1 || echo root expect exit $?) && j ecus power off"
    )
    out = jmp_shell(tmp_path, script, backend.timeout(120, 300))
    assert out.count("flashed fw.elf (elf)") == 2, out
    times = re.findall(r"^\d+\.\d{9}$", out.replace("\r", ""), re.MULTILINE)
    assert len(times) == 5, out  # banners, bus line, release, button line: each at its virtual time
    assert "several machines (a, b)" in out and re.search(r"root expect exit [1-9]", out), out
    assert no_renode_left()


CLASS_EXAMPLE = EXAMPLE.parent / "test_jumpstarter_class.py"


@pytest.mark.timeout(420)
def test_the_jumpstarter_test_class_example_passes_inside_jmp_shell(backend, tmp_path, firmware):
    """examples/test_jumpstarter_class.py, as its docstring runs it, against examples/exporter.yaml."""
    example_config(backend, tmp_path)
    fw = firmware()
    script = f"FIRMWARE={fw.elf} {sys.executable} -m pytest -p no:cacheprovider -q {CLASS_EXAMPLE}"
    out = jmp_shell(tmp_path, script, backend.timeout(120, 300))
    assert re.search(r"^3 passed in ", out, re.MULTILINE), out  # `jmp shell` exits 0 whatever pytest did
    assert no_renode_left()


CAN_ECUS = EXAMPLE.parent / "can-ecus.yaml"


@pytest.mark.timeout(420)
def test_jmp_shell_session_with_the_can_example(backend, tmp_path, firmware):
    """A CAN hub is a child of the target in the CLI: `j ecus vehicle send` / `dump`, as the example says."""
    ecus_config(CAN_ECUS, backend, tmp_path)
    fw = firmware(variant="can_ecu")
    (tmp_path / "fw.elf").write_bytes(fw.elf.read_bytes())
    script = (
        "j ecus a flasher flash fw.elf && j ecus b flasher flash fw.elf && j ecus power on && "
        "j ecus vehicle dump --count 2 && j ecus vehicle send 2AB#0102 && "
        "j ecus a expect 'can: rx 2AB#0102 fmi=2' -t 1 && j ecus b expect 'can: rx 2AB#0102 fmi=2' -t 1 && "
        "(j ecus vehicle send 2AB#012 || echo send exit $?) && j ecus power off"
    )
    out = jmp_shell(tmp_path, script, backend.timeout(120, 300))
    lines = out.replace("\r", "").splitlines()
    dumped = [line for line in lines if re.fullmatch(r"\(\d+\.\d{6}\) vehicle 100#[0-9A-F]{16}", line)]
    assert len(dumped) == 2 and all(line.startswith("(0.010") for line in dumped), out  # each ECU's first
    assert len(re.findall(r"^\d+\.\d{9}$", out.replace("\r", ""), re.MULTILINE)) == 2, out  # both expects
    assert "whole bytes" in out and re.search(r"send exit [1-9]", out), out
    assert no_renode_left()
