"""The monitor stream parser against real Renode bytes (1.14.0 socket and 1.16.1 `--console`
transcripts), in any split, and against garbage."""

from __future__ import annotations

import itertools
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transcripts import chunks, exchanges, load

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


def test_bright_red_is_an_error_too_and_bold_prompt_is_not():
    """`ESC[91m` was guessed from 1.16 sources; real 1.16.1 sends `ESC[;031m` (tests below)."""
    stream = MonitorStream()
    stream.feed(b"\x1b[33m(m0) \x1b[0m")
    stream.feed(b"sysbus LoadELF @/x\n\r\x1b[91mCould not find file '/x'\r\n\x1b[0m\x1b[33m(m0) \x1b[0m")
    reply = take_reply(stream, "sysbus LoadELF @/x")
    assert reply == Reply("Could not find file '/x'", "Could not find file '/x'", "(m0) ")
    stream.feed(b"start\n\rStarting emulation...\r\n\r\x1b[31;1m(monitor) \x1b[0m")
    assert take_reply(stream, "start") == Reply("Starting emulation...", None, "(monitor) ")


# ---------------------------------------------------------------------------------------------
# Real Renode 1.16.1 in --console mode (the driver's mode): tests/transcripts/console-*.txt

CONSOLE = ["console-plain.txt", "console-color.txt"]
BANNER_116 = "Renode, version 1.16.1 (-202611301012)"
TIME_116 = re.compile(r"Current virtual time: \d\d:\d\d:\d\d\.\d{9}\nCurrent real time: \d\d:\d\d:\d\d\.\d{9}")
_PROMPT_BYTES = re.compile(rb"\((?:m0|monitor)\) (?:\x1b\[0m)?")


def _failed(command: str, *lines: str) -> str:
    return "\n".join([f"There was an error executing command '{command}'", *lines])


def _listing(obj: str, signature: str) -> str:
    return f"The following methods are available:\n - {signature}\n\nUsage:\n {obj} MethodName param1 param2 ...\n"


CONNECT_LISTING = _listing("connector", "Void Connect (IEmulationElement connectee, IConnectable connector)")
LOADBINARY_LISTING = _listing(
    "sysbus",
    "Void LoadBinary (ReadFilePath fileName, UInt64 loadPoint, ICPU cpu = null, Int64 offset = 0, UInt64? size = null)",
)
ELF = "sysbus LoadELF @<tmp>/fw.elf"
SNAP = "@<tmp>/snap.save"
CONNECT9 = "connector Connect sysbus.usart9 term"
CONNECT9_ERROR = _failed(CONNECT9, "Parameters did not match the signature")
LOADBINARY = "sysbus LoadBinary @/etc/hostname"
LOADBINARY_ERROR = _failed(LOADBINARY, "Parameters did not match the signature")
# Every line the session sent, in order, with what it must parse to: (output, error, prompt); an
# output of None is not checked. `help<Tab>x`, `version\r\n` and `quit` are lines the driver never
# sends (it refuses control characters and quits through its own shutdown).
EXPECTED_116 = [
    ("version", BANNER_116, None, "(monitor) "),
    ("bogus", "No such command or device: bogus", "No such command or device: bogus", "(monitor) "),
    ('mach create "m0"', "", None, "(m0) "),
    (
        "machine LoadPlatformDescription @/nonexistent.repl",
        None,
        _failed("machine LoadPlatformDescription @/nonexistent.repl", "Could not find file '/nonexistent.repl'."),
        "(m0) ",
    ),
    ("machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl", "", None, "(m0) "),
    ("logFile @<tmp>/renode.log true", "", None, "(m0) "),
    ('emulation CreateUartPtyTerminal "term" "<tmp>/pty" true', "", None, "(m0) "),
    ("connector Connect sysbus.usart2 term", "", None, "(m0) "),
    (CONNECT9, CONNECT_LISTING + "\n" + CONNECT9_ERROR, CONNECT9_ERROR, "(m0) "),
    (ELF, "", None, "(m0) "),
    (f'macro reset "{ELF}"', "", None, "(m0) "),
    ("start", "Starting emulation...", None, "(m0) "),
    (ELF, None, _failed(ELF, "Cannot load ELF on an unpaused machine."), "(m0) "),
    ("machine Reset", "", None, "(m0) "),
    ("currentTime", TIME_116, None, "(m0) "),
    ("pause", "Pausing emulation...", None, "(m0) "),
    # RunFor blocks the monitor; the next five lines were typed meanwhile and answered in one block
    ('emulation RunFor "0.1"', "", None, "(m0) "),
    ("currentTime", TIME_116, None, "(m0) "),
    (f"Save {SNAP}", "", None, "(m0) "),
    (f"Load {SNAP}", "", None, "(monitor) "),  # no Clear first: succeeds, and no machine is selected
    (
        "Clear",
        None,
        _failed("Clear", "There was an error when removing symlink `<tmp>/pty': No such file or directory"),
        "(monitor) ",
    ),
    (f"Load {SNAP}", "", None, "(monitor) "),
    ('mach set "m0"', "", None, "(m0) "),
    ("machine StartGdbServer 3333", "", None, "(m0) "),
    (LOADBINARY, LOADBINARY_LISTING + "\n" + LOADBINARY_ERROR, LOADBINARY_ERROR, "(m0) "),
    ("help\tx", None, None, None),
    ("version\r", None, None, None),
    ("python \"print('x' * 3)\"", "xxx", None, "(m0) "),
    ("quit", None, None, None),
]


def at_prompts(answer: bytes) -> list[bytes]:
    """The answer cut after each prompt: what a client reads if it takes every reply as soon as its
    prompt is in (the driver sends one command at a time, so it never holds two replies at once)."""
    cuts = [m.end() for m in _PROMPT_BYTES.finditer(answer)]
    bounds = [0, *cuts, len(answer)]
    return [answer[a:b] for a, b in itertools.pairwise(bounds) if b > a]


def _take_replies(stream: MonitorStream, name: str, split) -> list[tuple[tuple, Reply]]:
    """Feed the session's answers; take each sent line's reply as soon as it is complete."""
    sent = exchanges(name)
    assert [line.decode().rstrip("\n") for line, _ in sent] == [e[0] for e in EXPECTED_116]
    pending: list[tuple] = []
    replies: list[tuple[tuple, Reply]] = []
    for (_, answer), expected in zip(sent, EXPECTED_116, strict=True):
        if expected[3] is None:  # a line the driver never sends: the next echo resyncs
            assert not pending
            for piece in split(answer):
                stream.feed(piece)
            continue
        pending.append(expected)
        for segment in at_prompts(answer):
            for piece in split(segment):
                stream.feed(piece)
                while pending and (reply := take_reply(stream, pending[0][0])) is not None:
                    replies.append((pending.pop(0), reply))
        if not pending:
            assert stream.as_str() == replies[-1][1].prompt  # nothing but the prompt is left
    assert not pending
    return replies


def check_console_session(name: str, split) -> None:
    events = load(name)
    assert events[0].direction == "<<"  # banner and first prompt, before anything is sent
    stream = MonitorStream()
    for piece in split(events[0].data):
        stream.feed(piece)
    assert banner_ready(stream) == BANNER_116
    assert stream.as_str().endswith("\n\r\n\r(monitor) ")
    replies = _take_replies(stream, name, split)
    # after `quit`: its echo, the green (not red) farewell, no prompt
    assert take_reply(stream, "quit") is None
    assert stream.as_str().endswith("(m0) quit\n\rRenode is quitting\r\n\r")
    assert not any(stream.red)
    assert len(replies) == len(EXPECTED_116) - 3
    for (command, output, error, prompt), reply in replies:
        if isinstance(output, re.Pattern):
            assert output.fullmatch(reply.output), (command, reply)
        elif output is not None:
            assert reply.output == output, command
        assert reply.error == error, command
        assert reply.prompt == prompt, command


@pytest.mark.parametrize("name", CONSOLE)
def test_console_transcript_parses_whole(name):
    check_console_session(name, lambda data: [data])


@pytest.mark.parametrize("name", CONSOLE)
def test_console_transcript_parses_byte_by_byte(name):
    check_console_session(name, lambda data: [data[i : i + 1] for i in range(len(data))])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_console_any_split_parses_the_same(data):
    def split(blob: bytes) -> list[bytes]:
        cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(blob) - 1)), max_size=12)))
        bounds = [0, *[c for c in cuts if c < len(blob)], len(blob)]
        return [blob[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [blob]

    check_console_session(data.draw(st.sampled_from(CONSOLE)), split)


@pytest.mark.parametrize("name", CONSOLE)
def test_console_typed_ahead_block_as_it_arrived(name):
    """The block after `RunFor` holds six replies; read as it arrived (often one byte per read),
    each typed-ahead line gets its own reply, in order, including the `Load` that leaves no
    machine selected and the `Clear` that then fails."""
    pairs = exchanges(name)
    start = next(i for i, (line, _) in enumerate(pairs) if line.startswith(b"emulation RunFor"))
    block = b"".join(answer for _, answer in pairs[start : start + 6])
    stream = MonitorStream()
    stream.feed(b"(m0) " if "plain" in name else b"\x1b[33;1m(m0) \x1b[0m")
    commands = [line.decode().rstrip("\n") for line, _ in pairs[start : start + 6]]
    assert block.startswith(b'emulation RunFor "0.1"\n\r') and commands[1:] == [
        "currentTime",
        f"Save {SNAP}",
        f"Load {SNAP}",
        "Clear",
        f"Load {SNAP}",
    ]
    replies = []
    for i in range(len(block)):
        stream.feed(block[i : i + 1])
        while len(replies) < len(commands) and (reply := take_reply(stream, commands[len(replies)])) is not None:
            replies.append(reply)
    assert [r.prompt for r in replies] == ["(m0) ", "(m0) ", "(m0) ", "(monitor) ", "(monitor) ", "(monitor) "]
    assert [r.error for r in replies] == [None, None, None, None, EXPECTED_116[20][2], None]
    assert TIME_116.fullmatch(replies[1].output)


def test_real_116_error_bytes_are_red_and_prompts_are_not():
    """`ESC[;031m` marks each error line; the `(monitor)` (`ESC[31;1m`) and machine (`ESC[33;1m`)
    prompts and the bold red default values of a method listing are not errors."""
    stream = MonitorStream()
    stream.feed(b"\x1b[31;1m(monitor) \x1b[0m")
    stream.feed(b"bogus\n\r\x1b[;031mNo such command or device: bogus\r\n\x1b[0m\x1b[31;1m(monitor) \x1b[0m")
    reply = take_reply(stream, "bogus")
    assert reply == Reply("No such command or device: bogus", "No such command or device: bogus", "(monitor) ")
    assert not any(stream.red)
    stream.feed(b'mach create "m0"\n\r\x1b[33;1m(m0) \x1b[0m')
    assert take_reply(stream, 'mach create "m0"') == Reply("", None, "(m0) ")
    stream.feed(b"x\n\r - \x1b[;032mV\x1b[0m cpu = \x1b[31;1mn\x1b[0m\x1b[31;1mu\x1b[0m\r\n\r\x1b[33;1m(m0) \x1b[0m")
    assert take_reply(stream, "x") == Reply(" - V cpu = nu", None, "(m0) ")
    # the colour alone marks an error, whatever its wording; each error line has its own SGR pair
    stream.feed(b"y\n\rok\r\n\x1b[;031mA first line\r\n\x1b[0m\x1b[;031mand a second\r\n\x1b[0m\x1b[33;1m(m0) \x1b[0m")
    assert take_reply(stream, "y") == Reply("ok\nA first line\nand a second", "A first line\nand a second", "(m0) ")


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
@given(st.lists(st.binary(max_size=64), max_size=40), st.sampled_from(["version", "help x", "mach create"]))
def test_any_bytes_parse_the_same_whatever_the_split(pieces, command):
    """Renode's output arrives in pieces as small as one byte: where the pieces end never changes the text, its
    colour (the error marker) or the reply cut from it, whatever the bytes are."""
    split, whole = MonitorStream(), MonitorStream()
    for piece in pieces:
        split.feed(piece)
    whole.feed(b"".join(pieces))
    assert (split.as_str(), split.red) == (whole.as_str(), whole.red)
    assert len(split.text) == len(split.red)
    assert take_reply(split, command) == take_reply(whole, command)
    assert banner_ready(split) == banner_ready(whole)
