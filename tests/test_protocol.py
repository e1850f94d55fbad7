"""The monitor stream parser against real Renode 1.14.0 bytes, in any split, and against garbage."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transcripts import chunks, exchanges

from jumpstarter_driver_renode.protocol import (
    MonitorStream,
    Reply,
    banner_ready,
    parse_version,
    take_reply,
)

PROMPTS = ("(m0) ", "(monitor) ")

# What each command of the recorded sessions must parse to (output, error). The sessions ran without
# a machine (the swallowed first bytes turned `mach create` into `h create`), hence the errors.
EXPECTED = {
    "bogus": ("No such command or device: bogus", "No such command or device: bogus"),
    "sysbus LoadELF @/nonexistent.elf": (None, "No such command or device: sysbus"),
    "machine LoadPlatformDescription @/nonexistent.repl": (None, "No such command or device: machine"),
    "machine LoadPlatformDescription @platforms/cpus/stm32f4.repl": (None, "No such command or device: machine"),
    'emulation CreateUartPtyTerminal "term" "<tmp>/pty-link"': ("", None),
    "connector Connect sysbus.usart2 term": (
        None,
        "There was an error executing command 'connector Connect sysbus.usart2 term'\n"
        "Parameters did not match the signature",
    ),
    "sysbus LoadBinary @/etc/hostname": (None, "No such command or device: sysbus"),
    "currentTime": (re.compile(r"Current virtual time: \d\d:\d\d:\d\d\.\d{6}\nCurrent real time: [\d:.]+"), None),
    "start": ("Starting emulation...", None),
    "pause": ("Pausing emulation...", None),
    "machine Reset": (None, "No such command or device: machine"),
    'emulation RunFor "00:00:00.5"': ("", None),
}


def session(name: str) -> tuple[bytes, list[tuple[str, bytes]]]:
    """The preamble (banner and the mangled first command) and the later (command, answer) pairs."""
    pairs = exchanges(name)
    preamble = b"".join(answer for _, answer in pairs[:3])
    later = [(sent.decode().rstrip("\n"), answer) for sent, answer in pairs[3:]]
    return preamble, later


def feed_and_take(stream: MonitorStream, command: str, pieces: list[bytes]) -> Reply:
    """Feed pieces one by one; the reply must appear once, when the closing prompt's text is in.

    Only the prompt's trailing colour reset may follow it.
    """
    reply = None
    for piece in pieces:
        stream.feed(piece)
        got = take_reply(stream, command)
        if got is not None:
            assert reply is None, f"two replies to {command!r}"
            reply = got
    assert reply is not None, f"no reply to {command!r}"
    assert stream.as_str() in PROMPTS, f"text after the prompt that ended {command!r}: {stream.as_str()!r}"
    return reply


def check_session(name: str, split) -> None:
    preamble, later = session(name)
    stream = MonitorStream()
    for piece in split(preamble):
        stream.feed(piece)
    assert banner_ready(stream) == "Renode, version 1.14.0.4910 (-202611250243)"
    seen = 0
    for command, answer in later:
        if command not in EXPECTED:  # `version\r\n`, `help\tx`, `quit`: lines the driver never sends
            stream = MonitorStream()
            stream.feed(b"\x1b[31;1m(monitor) \x1b[0m")
            continue
        reply = feed_and_take(stream, command, split(answer))
        output, error = EXPECTED[command]
        if isinstance(output, re.Pattern):
            assert output.fullmatch(reply.output), reply.output
        elif output is not None:
            assert reply.output == output
        assert reply.error == error
        seen += 1
    assert seen == 13  # every command of the session but the three the driver never sends


@pytest.mark.parametrize("name", ["socket-plain.txt", "socket-color.txt"])
def test_transcript_parses_whole(name):
    check_session(name, lambda data: [data])


@pytest.mark.parametrize("name", ["socket-plain.txt", "socket-color.txt"])
def test_transcript_parses_byte_by_byte(name):
    check_session(name, lambda data: [data[i : i + 1] for i in range(len(data))])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_any_split_parses_the_same(data):
    def split(blob: bytes) -> list[bytes]:
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(blob) - 1)), max_size=12)))
        bounds = [0, *[c for c in cuts if c < len(blob)], len(blob)]
        return [blob[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [blob]

    check_session(data.draw(st.sampled_from(["socket-plain.txt", "socket-color.txt"])), split)


def test_raw_chunks_as_they_arrived():
    """The raw transcript's packets (many of one byte) give the same banner and first error."""
    stream = MonitorStream()
    pieces = chunks("socket-color.raw.txt")
    stream.feed(pieces[0])
    text_before = stream.as_str()
    assert text_before == ""  # telnet negotiation only
    for piece in pieces[3:]:
        stream.feed(piece)
    assert "Renode, version 1.14.0.4910" in stream.as_str()


def test_telnet_negotiation_and_escaped_ff_are_removed():
    stream = MonitorStream()
    stream.feed(b'\xff\xfd\x00\xff\xfd\x1f\xff\xfb\x01\xff\xfb\x03\xff\xfc"')  # 1.16's 15 bytes
    stream.feed(b"a\xff\xffb\xff\xfa\x1f\x00\x50\xff\xf0c")
    assert stream.as_str() == "a\ufffdbc"  # 0xFF alone is not UTF-8: replaced, never raised


def test_red_116_error_colour_and_bold_prompt_is_not_an_error():
    stream = MonitorStream()
    stream.feed(b"\x1b[33m(m0) \x1b[0m")
    stream.feed(b"sysbus LoadELF @/x\n\r\x1b[91mCould not find file '/x'\r\n\x1b[0m\x1b[33m(m0) \x1b[0m")
    reply = take_reply(stream, "sysbus LoadELF @/x")
    assert reply == Reply("Could not find file '/x'", "Could not find file '/x'", "(m0) ")
    stream.feed(b"start\n\rStarting emulation...\r\n\r\x1b[31;1m(monitor) \x1b[0m")
    assert take_reply(stream, "start") == Reply("Starting emulation...", None, "(monitor) ")


def test_plain_errors_are_found_by_phrase():
    stream = MonitorStream()
    stream.feed(b"(m0) ")
    stream.feed(
        b"include @/x.resc\n\rThere was an error executing command 'include @/x.resc'\r\nFile does not exist: /x.resc\r\n(m0) "
    )
    reply = take_reply(stream, "include @/x.resc")
    assert reply.error == "There was an error executing command 'include @/x.resc'\nFile does not exist: /x.resc"


def test_wrapped_echo_and_cursor_codes_are_tolerated():
    command = "machine LoadPlatformDescription @/a/very/long/path/" + "x" * 80 + ".repl"
    echo = command[:60] + "\r\n" + command[60:]
    stream = MonitorStream()
    stream.feed(b"(m0) \x1b[?25l" + echo.encode() + b"\x1b[?25h\n\r(m0) ")
    assert take_reply(stream, command) == Reply("", None, "(m0) ")


def test_unsolicited_output_before_the_echo_is_dropped():
    stream = MonitorStream()
    stream.feed(b"(m0) ")
    stream.feed(b"\n\rsome reset macro output\r\n(m0) ")
    stream.feed(b"pause\n\rPausing emulation...\r\n\r(m0) ")
    assert take_reply(stream, "pause") == Reply("Pausing emulation...", None, "(m0) ")


def test_prompt_split_in_the_middle_is_not_taken_early():
    stream = MonitorStream()
    stream.feed(b"(m0) start\n\rStarting emulation...\r\n\r(m")
    assert take_reply(stream, "start") is None
    stream.feed(b"0) ")
    assert take_reply(stream, "start") == Reply("Starting emulation...", None, "(m0) ")


@pytest.mark.parametrize(
    "text,version",
    [
        ("Renode, version 1.14.0.4910 (-202611250243)", (1, 14, 0)),
        ("Renode v1.16.1.1234\nbuild: abc", (1, 16, 1)),
        ("nothing here", None),
    ],
)
def test_parse_version(text, version):
    assert parse_version(text) == version


@settings(max_examples=400, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=40), st.text(max_size=30))
def test_fuzz_arbitrary_bytes_never_raise(pieces, command):
    stream = MonitorStream()
    for piece in pieces:
        stream.feed(piece)
        result = take_reply(stream, command or "x")
        assert result is None or isinstance(result, Reply)
        banner_ready(stream)
