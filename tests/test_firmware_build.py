"""The test firmware's build script, as users run it (`python firmware/build.py OUT_DIR`)."""

from __future__ import annotations

from pathlib import Path

from firmware import build as firmware_build


def test_a_relative_output_directory_is_relative_to_the_callers_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    outputs = firmware_build.build("stm32f4", Path("out"), "relative")
    assert outputs["elf"] == tmp_path / "out" / "stm32f4-relative.elf"
    assert all(path.stat().st_size > 0 for path in outputs.values())
