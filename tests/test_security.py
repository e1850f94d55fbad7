"""Security: no reachable monitor, no injection through any client or config value, bad images,
and a monitor stream parser that neither raises nor stalls on hostile bytes.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import boot_line, firmware_for, write
from conftest import target as served_target
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from images import EM_ARM, elf32, intel_hex
from jumpstarter.client.core import DriverError
from pydantic import ValidationError

from jumpstarter_driver_renode import process as renode_process
from jumpstarter_driver_renode.driver import Renode
from jumpstarter_driver_renode.protocol import MonitorStream, take_reply

# Characters that mean something to the monitor's line editor or tokenizer.
HOSTILE = [
    "\n",
    "\r",
    "\t",
    "\x1b",
    "\x1b[A",
    "\x03",
    "\x04",
    "\x15",
    "\x00",
    "\x7f",
    "\x9b",
    '"',
    "'",
    "@",
    "$",
    ";",
    "#",
    "`",
    "\\",
]


def target(backend, **config):
    """A served target that starts Renode cold at every power-on: the spy on Renode's stdin must see only what a call sends, not a spare preparing in the background."""
    config.setdefault("warm_start", False)
    return served_target(backend, **config)


@pytest.fixture
def sent(monkeypatch) -> list[bytes]:
    """Every byte string the driver writes to Renode's monitor (its stdin), in order."""
    log: list[bytes] = []
    original = renode_process._StdinStream.send

    async def spy(self, data: bytes) -> None:
        log.append(bytes(data))
        await original(self, data)

    monkeypatch.setattr(renode_process._StdinStream, "send", spy)
    return log


def wait_until(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.02)


# -- the monitor is not reachable from the network ------------------------------------------------


def listening_tcp_inodes(pid: int) -> set[int]:
    """Inodes of the TCP sockets in LISTEN state (0A) that process `pid` holds an fd to."""
    listening = set()
    for table in ("tcp", "tcp6"):
        path = Path(f"/proc/{pid}/net/{table}")
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":
                listening.add(int(fields[9]))
    owned = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target_ = fd.readlink().as_posix()
        except OSError:
            continue
        if m := re.fullmatch(r"socket:\[(\d+)\]", target_):
            owned.add(int(m[1]))
    return listening & owned


def test_listening_socket_check_finds_a_real_listener():
    """The check used below is not vacuous: it sees this process's own listening socket."""
    import os

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        assert os.fstat(s.fileno()).st_ino in listening_tcp_inodes(os.getpid())


@pytest.mark.parametrize("config", [{}, {"monitor_port": 1234}])
def test_default_config_opens_no_monitor_socket(backend, firmware, config):
    with target(backend, **config) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        pid = driver.target.renode.process.pid
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        assert "--console" in argv
        for flag in ("--port", "-P", "--robot-server-port", "--server-mode"):
            assert flag not in argv and not any(a.startswith(flag + "=") for a in argv), argv
        assert listening_tcp_inodes(pid) == set(), "Renode listens on a TCP socket"
        client.power.off()


def test_raw_monitor_is_refused_by_default_through_api_and_cli(standin, sent):
    with target(standin) as (client, _):
        client.power.on()
        before = len(sent)
        with pytest.raises(DriverError, match="allow_raw_monitor"):
            client.monitor_cmd("version")
        result = CliRunner().invoke(client.cli(), ["monitor", "version"])
        assert result.exit_code != 0
        assert "allow_raw_monitor" in str(result.exception) + result.output
        assert sent[before:] == [], "a refused command reached Renode"


# -- hostile client arguments ---------------------------------------------------------------------


@pytest.mark.parametrize("bad", HOSTILE)
def test_load_address_with_metacharacters_is_refused(standin, tmp_path, sent, bad):
    image = write(tmp_path, "fw.bin", b"\x01\x02\x03\x04" * 64)
    with target(standin) as (client, driver):
        client.power.on()
        before = len(sent)
        variants = [f"0x0800{bad}0000", f"0x08000000{bad}quit"]
        if not bad.isspace():  # surrounding whitespace is stripped before parsing (see the test below)
            variants.append(f"{bad}0x08000000")
        for address in variants:
            with pytest.raises(DriverError, match="load address"):
                client.flasher.flash(image, load_address=address)
            with pytest.raises(DriverError, match="load address"):
                client.flasher.flash(image, target=address)
        result = CliRunner().invoke(client.flasher.cli(), ["flash", str(image), "--load-address", f"0x08{bad}00"])
        assert result.exit_code != 0
        assert "load address" in str(result.exception) + result.output
        assert sent[before:] == [], "a refused flash sent monitor commands"
        assert driver.target.firmware == {}
        assert stored_images(driver) == []


def stored_images(driver) -> list[Path]:
    folder = driver.workdir / "firmware"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def test_padded_load_address_is_parsed_to_a_number(standin, tmp_path, sent):
    """Whitespace around an address is harmless: the address is parsed and re-formatted, never passed through."""
    with target(standin) as (client, _):
        client.power.on()
        assert client.flasher.flash(write(tmp_path, "fw.bin", b"\x01" * 64), target="\t0x08000000\r\n") == "bin"
        loads = [line for line in sent if line.startswith(b"sysbus LoadBinary")]
        assert loads and all(re.fullmatch(rb"sysbus LoadBinary @/\S+ 0x8000000\n", line) for line in loads), loads


@pytest.mark.parametrize("bad", [c for c in HOSTILE if c in "\n\r\t\x1b\x03\x04\x15\x00\x7f\x9b" or c == "\x1b[A"])
def test_raw_monitor_refuses_control_characters_and_sends_nothing(standin, sent, bad):
    with target(standin, allow_raw_monitor=True) as (client, _):
        client.power.on()
        before = len(sent)
        for command in (f"version{bad}quit", f"{bad}version", f"version{bad}"):
            with pytest.raises(DriverError, match="control characters"):
                client.monitor_cmd(command)
        result = CliRunner().invoke(client.cli(), ["monitor", f"version{bad}quit"])
        assert result.exit_code != 0
        assert "control characters" in str(result.exception) + result.output
        assert sent[before:] == []
        assert "Renode, version" in client.monitor_cmd("version")  # still in sync


def test_raw_monitor_passes_monitor_syntax_verbatim_when_allowed(standin, sent):
    """Quotes, `@`, `$` and `;` are monitor syntax the user typed on purpose: sent as one line, replies in sync."""
    with target(standin, allow_raw_monitor=True) as (client, _):
        client.power.on()
        assert client.monitor_cmd("version; version").count("Renode, version") == 2
        with pytest.raises(DriverError, match=r"No such variable: \$nosuch"):
            client.monitor_cmd("echo $nosuch")
        with pytest.raises(DriverError, match="Renode rejected"):
            client.monitor_cmd('sysbus LoadELF @/nonexistent/"x.elf')
        assert b'sysbus LoadELF @/nonexistent/"x.elf\n' in sent
        assert "Renode, version" in client.monitor_cmd("version")


@pytest.mark.parametrize("bad", HOSTILE)
def test_snapshot_names_and_run_for_refuse_metacharacters(standin, sent, bad):
    with target(standin) as (client, _):
        client.power.on()
        before = len(sent)
        with pytest.raises(DriverError, match="snapshot name"):
            client.save_snapshot(f"snap{bad}quit")
        with pytest.raises(DriverError, match="snapshot name"):
            client.restore_snapshot(f"snap{bad}")
        with pytest.raises(DriverError, match="virtual time"):
            client.run_for(f"1{bad}")
        assert sent[before:] == []


@pytest.mark.parametrize("seconds", [float("nan"), float("inf"), -1.0, 0.0, 10**9, True])
def test_run_for_refuses_nonsense_durations(standin, sent, seconds):
    with target(standin) as (client, _):
        client.power.on()
        before = len(sent)
        with pytest.raises(DriverError, match="virtual time"):
            client.run_for(seconds)
        assert sent[before:] == []


# -- hostile or broken exporter config ------------------------------------------------------------

BASE = {
    "platform": "platforms/boards/stm32f4_discovery-kit.repl",
    "uart": "sysbus.usart2",
    "renode_path": "renode",
}


@pytest.mark.parametrize(
    "override,field",
    [
        ({"platform": 'platforms/boards/x".repl'}, "platform"),
        ({"platform": "platforms/boards/my board.repl"}, "platform"),
        ({"platform": "platforms/boards/x.repl; quit"}, "platform"),
        ({"platform": "platforms/boards/x.repl\nquit"}, "platform"),
        ({"platform": "/nonexistent/board.repl"}, "platform"),
        ({"platform": None, "script": "relative/board.resc"}, "script"),
        ({"platform": None, "script": "/nonexistent/board.resc"}, "script"),
        ({"machine_name": 'm0" ; quit ; "'}, "machine_name"),
        ({"machine_name": "my machine"}, "machine_name"),
        ({"machine_name": "m\n0"}, "machine_name"),
        ({"uart": "sysbus.usart2; quit"}, "uart"),
        ({"uart": "sysbus.usart2\n"}, "uart"),
        ({"uarts": {"dbg": 'sysbus."x"'}}, "uarts"),
        ({"uarts": {"bad name": "sysbus.usart3"}}, "uarts"),
        ({"uarts": {"power": "sysbus.usart3"}}, "uarts"),
        ({"extra_commands": ["version\nquit"]}, "extra_commands"),
        ({"extra_commands": ["\x1b[A"]}, "extra_commands"),
        ({"extra_commands": "version"}, "extra_commands"),
        ({"load_address": "0x0800 0000"}, "load"),
        ({"load_address": "0x08000000;quit"}, "load"),
        ({"load_address": -1}, "load"),
        ({"startup_timeout": "soon"}, "startup_timeout"),
        ({"startup_timeout": 0}, "startup_timeout"),
        ({"command_timeout": -5}, "command_timeout"),
        ({"monitor_port": 70000}, "monitor_port"),
        ({"console_backlog": -1}, "console_backlog"),
        ({"allow_raw_monitor": "sometimes"}, "allow_raw_monitor"),
        ({"log_level": "verbose"}, "log_level"),
        ({"no_such_option": 1}, "no_such_option"),
    ],
)
def test_bad_config_is_refused_naming_the_field(override, field):
    with pytest.raises((ValidationError, ValueError)) as info:
        Renode(**{**BASE, **override})
    assert field in str(info.value), f"the error does not name `{field}`: {info.value}"


def test_boolean_load_address_is_refused():
    with pytest.raises((ValidationError, ValueError), match=r"load_address|load address"):
        Renode(**BASE, load_address=True)


def test_absolute_platform_path_with_spaces_works(standin, tmp_path):
    """Spaces in an absolute path are legitimate: they are escaped, not refused, and the board boots."""
    folder = tmp_path / "my boards"
    folder.mkdir()
    board = folder / "board.repl"
    board.write_text((Path(standin.renode_path).parent / "root" / standin.platform).read_text())
    image = firmware_for(standin)
    with target(standin, platform=str(board)) as (client, _):
        client.flasher.flash(write(tmp_path, "fw.elf", image))
        client.power.on()
        with client.console.pexpect() as console:
            console.expect(re.escape(boot_line(image)), timeout=10)


# -- bad firmware -----------------------------------------------------------------------------------


def _truncated_program_headers() -> bytes:
    good = elf32(b"\x00\xbf" * 32, machine=EM_ARM)
    return good[:60]  # header intact, program header cut


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (b"\x7fELF\x01\x01\x01" + bytes(20), "truncated"),
        (_truncated_program_headers(), "truncated"),
        (b"\x7fELF\x07\x09" + bytes(60), "corrupt"),
        (intel_hex(b"\x00\xbf" * 8).replace(b"\n:", b"\n:0", 1), "Intel HEX line"),
        (b":10000000FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF01\n", "bad checksum"),
    ],
)
def test_bad_images_are_refused_and_nothing_reaches_renode(standin, tmp_path, sent, content, message):
    good = firmware_for(standin)
    with target(standin) as (client, driver):
        client.flasher.flash(write(tmp_path, "good.elf", good))
        client.power.on()
        before = len(sent)
        with pytest.raises(DriverError, match=message):
            client.flasher.flash(write(tmp_path, "bad", content), load_address="0x08000000")
        assert sent[before:] == [], "a refused image reached the monitor"
        assert len(list((driver.workdir / "firmware").iterdir())) == 1  # only the good image
        with client.console.pexpect() as console:
            client.reset()  # the machine still runs the good image
            console.expect(re.escape(boot_line(good)), timeout=10)


def test_elf_cut_inside_its_segment_is_refused(standin, tmp_path):
    image = elf32(b"\x00\xbf" * 4096)[:2048]  # headers intact, 8 KiB segment cut at 2 KiB
    with target(standin) as (client, driver):
        with pytest.raises(DriverError, match="truncated"):
            client.flasher.flash(write(tmp_path, "cut.elf", image))
        assert driver.target.firmware == {}


def test_intel_hex_without_end_record_is_refused(standin, tmp_path):
    lines = intel_hex(b"\x00\xbf" * 64).splitlines(keepends=True)
    with target(standin) as (client, driver):
        with pytest.raises(DriverError, match="Intel HEX"):
            client.flasher.flash(write(tmp_path, "cut.hex", b"".join(lines[:-1])))
        assert driver.target.firmware == {}


def test_zero_byte_raw_image_with_address_is_refused(standin, tmp_path):
    with target(standin) as (client, _):
        with pytest.raises(DriverError, match="empty"):
            client.flasher.flash(write(tmp_path, "zero.bin", b""), load_address="0x08000000")


# -- the monitor stream parser under hostile bytes ------------------------------------------------

PROMPT = b"(machine-0) "


hostile_pieces = st.one_of(
    st.binary(max_size=64),
    st.sampled_from(
        [
            b"\xff",
            b"\xff\xfa",
            b"\xff\xf0",
            b"\xff\xff",
            b"\xff\xfb",
            b"\x1b",
            b"\x1b[",
            b"\x1b[31;1m",
            b"\x1b[;031m",
            b"\x1b[91m",
            b"\x1b[0m",
            b"\x1b[?25l",
            b"\x1b[" + b"9;" * 40,
            b"\n\r",
            b"\r\n\r",
            PROMPT,
            b"(monitor) ",
            b"version",
            b"Renode, version 1.14.0.4910 (x)",
            "\u00e9".encode()[:1],
            b"\xc3",
            b"\x00",
        ]
    ),
)


@settings(max_examples=400, deadline=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(hostile_pieces, max_size=60), st.sampled_from(["version", "help x", "sysbus LoadELF @/a b"]))
def test_hostile_chunks_parse_as_their_concatenation(pieces, command):
    """Broken escapes, lone IACs, half UTF-8 characters and prompts in the middle: pieces parse exactly as the
    same bytes in one piece would, and a valid reply after the garbage still comes out whole."""
    split, whole = MonitorStream(), MonitorStream()
    for piece in pieces:
        split.feed(piece)
        assert len(split.text) == len(split.red)
    whole.feed(b"".join(pieces))
    assert (split.as_str(), split.red) == (whole.as_str(), whole.red)
    assert take_reply(split, command) == take_reply(whole, command)


@settings(max_examples=200, deadline=500)
@given(
    st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30),
    st.sampled_from([b"\x1b[?25l", b"\x1b[0m", b"\xff\xfb\x01"]),
)
def test_reply_survives_any_split_with_interleaved_control_sequences(cuts, noise):
    """A reply split anywhere, with cursor codes and telnet commands in between, parses to the same text."""
    wire = PROMPT + b"version\n\r" + b"Renode, version 1.14.0.4910 (x)\r\n\r" + PROMPT
    pieces, at = [], 0
    for cut in cuts:
        if at >= len(wire):
            break
        pieces += [wire[at : at + cut], noise]
        at += cut
    pieces.append(wire[at:])
    stream = MonitorStream()
    reply = None
    for piece in pieces:
        stream.feed(piece)
        reply = reply or take_reply(stream, "version")
    assert reply is not None and reply.ok
    assert reply.output == "Renode, version 1.14.0.4910 (x)"


def _time_feeding(chunks, budget: float) -> float:
    """Feed chunks as the driver does (feed, then look for a reply); stop early once over budget."""
    stream = MonitorStream()
    started = time.monotonic()
    for chunk in chunks:
        stream.feed(chunk)
        take_reply(stream, "version")
        if time.monotonic() - started > budget:
            break
    return time.monotonic() - started


def test_huge_line_in_pipe_sized_chunks_is_parsed_in_bounded_time():
    elapsed = _time_feeding([b"x" * 65536] * 32, budget=10)  # a 2 MiB line
    assert elapsed < 5, f"a 2 MiB line took {elapsed:.1f}s"


def test_output_arriving_byte_by_byte_is_parsed_in_bounded_time():
    """Renode's writer thread sends one byte per packet at times; 64 KiB of output must not stall the driver."""
    elapsed = _time_feeding([b"\x1b[" + b"1" * 100, *([b"y"] * 65536)], budget=4)
    assert elapsed < 3, f"64 KiB fed one byte at a time took {elapsed:.1f}s (or more: stopped at the budget)"


def test_unterminated_telnet_subnegotiation_is_bounded():
    stream = MonitorStream()
    started = time.monotonic()
    stream.feed(b"\xff\xfa\x1f")
    for _ in range(64):
        stream.feed(b"a" * 65536)  # 4 MiB after an IAC SB that never ends
    assert time.monotonic() - started < 3
    assert len(stream._pending) < 64 * 1024, f"{len(stream._pending)} bytes held waiting for IAC SE"


def test_endless_escape_sequence_is_dropped_not_buffered():
    stream = MonitorStream()
    stream.feed(b"\x1b[")
    for _ in range(1000):
        stream.feed(b"1;" * 512)
    assert len(stream._pending) < 4096
    stream.feed(b"\n\r" + PROMPT + b"version\n\rok\r\n" + PROMPT)
    assert take_reply(stream, "version").output == "ok"
