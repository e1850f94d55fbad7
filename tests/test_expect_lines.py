"""The monitor lines of `expect_output` and the parsing of its reply: pure functions, no Renode."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jumpstarter_driver_renode.errors import RenodeError, UnsafeInputError
from jumpstarter_driver_renode.features import FEATURES, expect
from jumpstarter_driver_renode.features.base import helper_script

_ARG = re.compile(r'"([^"\\;$`\']*)"')


@given(st.text(min_size=1, max_size=200).filter(lambda s: _compiles(s)))
def test_any_pattern_travels_as_hex_and_cannot_break_out(pattern):
    line = expect.expect_command("sysbus.usart2", pattern, [pattern], 1.5, 600, 3)
    args = _ARG.findall(line)
    assert line == "jumpstarter_expect " + " ".join(f'"{a}"' for a in args)
    assert bytes.fromhex(args[1]).decode() == pattern
    assert [bytes.fromhex(h).decode() for h in args[2].split(",")] == [pattern]
    assert args[3:] == ["1500000000", "600000", "3"]


def _compiles(pattern: str) -> bool:
    try:
        re.compile(pattern)
    except re.error:
        return False
    return True


def test_no_fail_on_is_a_dash():
    assert expect.expect_command("sysbus.uart0", "x", [], 0, 1, 0).split()[3] == '"-"'


def test_peripheral_and_terminal_names_are_checked():
    with pytest.raises(UnsafeInputError):
        expect.expect_command('sysbus.usart2" ; quit', "x", [], 1, 1, 0)
    with pytest.raises(UnsafeInputError):
        expect.watch("sysbus.usart2", "term;quit")
    assert expect.watch("sysbus.usart2", "term_console") == 'jumpstarter_watch "sysbus.usart2" "term_console"'


@pytest.mark.parametrize(
    ("pattern", "words"),
    [("", "non-empty"), ("(", "not a valid regular expression"), ("x" * 5000, "longer than"), (None, "non-empty")],
)
def test_bad_patterns(pattern, words):
    with pytest.raises(ValueError, match=words):
        expect.check_pattern(pattern)


@pytest.mark.parametrize("timeout", [-1, 1e9, True, "1", float("nan")])
def test_bad_timeouts(timeout):
    with pytest.raises(ValueError, match="timeout"):
        expect.check_timeout(timeout)


def test_reply_of_a_match():
    out = "jumpstarter-expect match 350100000 350100860 7469636b2033 7469636b20310a7469636b2033 9\r\n"
    reply = expect.parse_reply(out)
    assert reply == expect.ExpectReply("match", 0.3501, 0.35010086, "tick 3", "tick 1\ntick 3", None, 9)


def test_reply_of_a_failing_pattern_and_of_timeouts():
    assert expect.parse_reply("jumpstarter-expect fail1 5 6 78 - 0").failing == 1
    assert expect.parse_reply("jumpstarter-expect fail1 5 6 78 - 0").outcome == "fail"
    timeout = expect.parse_reply("jumpstarter-expect timeout 50001970 50001970 - - 0")
    assert (timeout.outcome, timeout.matched, timeout.tail) == ("timeout", "", "")
    assert expect.parse_reply("jumpstarter-expect host-timeout 1 2 - - 0").outcome == "host-timeout"


def test_unexpected_reply_is_an_error():
    with pytest.raises(RenodeError, match="unexpected reply"):
        expect.parse_reply("Command 'jumpstarter_expect' failed")


def test_every_features_helper_scripts_ship_with_the_package():
    helpers = [name for feature in FEATURES for name in feature.helpers]
    assert sorted(helpers) == ["can.py", "expect.py", "flash.py", "gpio.py", "machine.py", "terminals.py"]
    for name in helpers:
        assert helper_script(name).is_file()
