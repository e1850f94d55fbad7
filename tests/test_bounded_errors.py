"""Every error a client receives is bounded: gRPC carries it in metadata (8 KiB), and an error past that
reached clients as `RESOURCE_EXHAUSTED: Stream removed` instead of Renode's words (measured on 1.16.1)."""

from __future__ import annotations

import re

import pytest
from conftest import firmware_for, no_renode_left, target, write
from jumpstarter.client.core import DriverError

from jumpstarter_driver_renode.bounded import MAX_ERROR_BYTES, bound
from jumpstarter_driver_renode.client import _expect_error

LONG = "sysbus NoSuchThing" + "Q" * 12000
NOTE = r"\[\.\.\. \d+ characters cut \(the error had \d+\): the whole (text is in the exporter's log|output is)"


def assert_bounded(message: str) -> None:
    assert len(message.encode()) <= MAX_ERROR_BYTES + 512, len(message.encode())  # + Jumpstarter's own words
    assert re.search(NOTE, message), message[:300]


def test_bound_keeps_short_texts_and_cuts_long_ones_at_both_ends():
    assert bound("short") == "short"
    text = "start " + "é" * 9000 + " end"  # two bytes a character: the limit is in bytes
    cut = bound(text)
    assert len(cut.encode()) <= MAX_ERROR_BYTES
    assert cut.startswith("start ") and cut.endswith(" end")
    counted = int(re.search(r"(\d+) characters cut", cut)[1])
    assert counted == len(text) - len(cut.split("\n[...")[0]) - len(cut.rsplit("...]\n", 1)[1])


def test_a_long_renode_error_reaches_the_client_bounded_and_the_target_goes_on(backend, firmware):
    with target(backend, allow_raw_monitor=True) as (client, _):
        client.flasher.flash(firmware().elf)
        client.power.on()
        with pytest.raises(DriverError) as info:
            client.monitor_cmd(LONG)
        message = str(info.value)
        assert re.search(r"Renode rejected `sysbus NoSuchThingQQQQ+\.\.\. \(12018 characters\)`", message)
        assert_bounded(message)
        assert "Renode" in client.monitor_cmd("version")


def test_a_start_up_failure_with_a_long_error_is_bounded_and_leaves_nothing(backend, firmware):
    with target(backend, extra_commands=[LONG]) as (client, driver):
        client.flasher.flash(firmware().elf)
        with pytest.raises(DriverError) as info:
            client.power.on()
        assert_bounded(str(info.value))
        assert driver.target.renode is None
    assert no_renode_left()


def test_a_crash_report_with_long_crash_text_is_bounded(standin, tmp_path, monkeypatch):
    word = "Q" * 9000  # the stand-in's crash text quotes the command's first word on stderr
    monkeypatch.setenv("STANDIN_CRASH_ON", word)
    with target(standin, allow_raw_monitor=True) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", firmware_for(standin)))
        client.power.on()
        with pytest.raises(DriverError) as info:
            client.monitor_cmd(word)
        message = str(info.value)
        assert re.search(r"Renode exited with code 134|Renode was killed", message), message[:500]
        assert_bounded(message)
    assert no_renode_left()


def test_an_expect_failure_is_bounded_and_keeps_the_whole_tail():
    """A firmware that prints one endless line: the error says how much was cut; `tail` keeps all of it."""
    tail = "x" * 60000
    reply = {"outcome": "timeout", "time": 1.0, "now": 1.0, "matched": "", "tail": tail, "failing": None}
    error = _expect_error(reply, "READY", 1.0, "console", [])
    assert_bounded(str(error))
    assert error.tail == tail
