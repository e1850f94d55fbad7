"""This package replaces PyPI's `jumpstarter-driver-renode` 0.9.0: its version sorts above it, so a resolver
given both picks this one, and `jumpstarter-all==0.9.0` (which pins 0.9.0) takes it with the override the
README gives. Resolved by uv against PyPI (skipped, saying so, when PyPI cannot be reached)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
UV = os.environ.get("UV") or shutil.which("uv")
pytestmark = pytest.mark.skipif(UV is None, reason="uv not found (run the suite with `uv run pytest`)")


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([UV, "build", "--wheel", "-o", str(out), str(ROOT)], check=True, capture_output=True, timeout=300)
    assert [p.name for p in out.glob("*.whl")] == [f"jumpstarter_driver_renode-{VERSION}-py3-none-any.whl"]
    return out


def resolve(tmp_path: Path, wheels: Path, requirements: list[str], overrides: list[str] = ()) -> dict[str, str]:
    """name -> version that uv resolves for `requirements`, from PyPI plus the built wheel."""
    (tmp_path / "req.in").write_text("\n".join(requirements) + "\n")
    args = [UV, "pip", "compile", str(tmp_path / "req.in"), "--find-links", str(wheels), "--python-version", "3.11"]
    if overrides:
        (tmp_path / "overrides.txt").write_text("\n".join(overrides) + "\n")
        args += ["--override", str(tmp_path / "overrides.txt")]
    done = subprocess.run([*args, "--no-header", "--quiet"], capture_output=True, text=True, timeout=300)
    if done.returncode and re.search(r"Failed to fetch|error sending request|dns error|connect", done.stderr):
        pytest.skip(f"PyPI cannot be reached: {done.stderr.strip().splitlines()[-1]}")
    assert done.returncode == 0, done.stderr
    return dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", done.stdout, re.MULTILINE))


def test_the_version_sorts_above_pypis_090_and_a_resolver_picks_it(tmp_path, wheels):
    pins = resolve(tmp_path, wheels, ["jumpstarter==0.9.0", "jumpstarter-driver-renode"])
    assert pins["jumpstarter-driver-renode"] == VERSION
    assert pins["jumpstarter"] == "0.9.0"


def test_jumpstarter_all_090_takes_it_with_the_readmes_override(tmp_path, wheels):
    pins = resolve(tmp_path, wheels, ["jumpstarter-all==0.9.0"], overrides=[f"jumpstarter-driver-renode=={VERSION}"])
    assert (pins["jumpstarter-all"], pins["jumpstarter-driver-renode"]) == ("0.9.0", VERSION)
