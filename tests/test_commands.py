"""Pure functions: monitor command building and quoting, firmware format detection."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from images import elf32, intel_hex

from jumpstarter_driver_renode import commands
from jumpstarter_driver_renode.errors import UnsafeInputError
from jumpstarter_driver_renode.firmware import FirmwareError, detect_format
from jumpstarter_driver_renode.session import parse_virtual_time


def test_paths_are_absolute_tokens_with_spaces_escaped():
    assert commands.path_token("/tmp/a b/fw.elf") == "@/tmp/a\\ b/fw.elf"
    assert commands.load_firmware("elf", Path("/w/fw")) == "sysbus LoadELF @/w/fw"
    assert commands.load_firmware("hex", Path("/w/fw")) == "sysbus LoadHEX @/w/fw"
    assert commands.load_firmware("bin", Path("/w/fw"), 0x8000000) == "sysbus LoadBinary @/w/fw 0x8000000"


@pytest.mark.parametrize(
    "bad", ["relative/fw.elf", "/a;quit", "/a#b", "/a$x", '/a"b', "/a'b", "/a\\b", "/a`b", "/a\nb", "/a\tb"]
)
def test_unsafe_paths_are_refused(bad):
    with pytest.raises(UnsafeInputError):
        commands.path_token(bad)


def test_platform_may_be_relative_to_renode_root():
    assert (
        commands.load_platform("platforms/boards/x.repl") == "machine LoadPlatformDescription @platforms/boards/x.repl"
    )
    with pytest.raises(UnsafeInputError):
        commands.load_platform("platforms/my board.repl")


def test_strings_names_and_peripherals():
    assert commands.mach_create("machine-0") == 'mach create "machine-0"'
    assert commands.connect_uart("sysbus.usart2", "term_console") == "connector Connect sysbus.usart2 term_console"
    for bad in ["a b", "a;b", "", "-x", "x" * 65, 'a"b']:
        with pytest.raises(UnsafeInputError):
            commands.check_name(bad, "name")
    for bad in ["sysbus.usart2; quit", "sysbus..x", "1abc", "sysbus usart2"]:
        with pytest.raises(UnsafeInputError):
            commands.check_peripheral(bad)


@pytest.mark.parametrize(
    "value,number", [("0x08000000", 0x08000000), ("  0x10 ", 16), ("4096", 4096), (0x20000000, 0x20000000)]
)
def test_load_addresses(value, number):
    assert commands.parse_address(value) == number


@pytest.mark.parametrize("bad", [True, -1, 2**64, "0x", "08000000h", "0x1;quit", 1.5, None, "1e3"])
def test_bad_load_addresses(bad):
    with pytest.raises(UnsafeInputError):
        commands.parse_address(bad)


def test_virtual_time_formatting_and_parsing():
    assert commands.run_for(0.5) == 'emulation RunFor "00:00:00.500000"'
    assert commands.run_for(3725.25) == 'emulation RunFor "01:02:05.250000"'
    for bad in [0, -1, float("nan"), float("inf"), True, "1"]:
        with pytest.raises(UnsafeInputError):
            commands.format_virtual_time(bad)
    assert parse_virtual_time("Current virtual time: 00:08:03.713300\nCurrent real time: 00:00:00.32") == 483.7133
    assert parse_virtual_time("Current virtual time: 00:00:01.000000001") == pytest.approx(1.000000001)


@given(st.text())
def test_check_line_refuses_every_control_character(text):
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in text) or not text.strip():
        with pytest.raises(UnsafeInputError):
            commands.check_line(text)
    else:
        assert commands.check_line(text) == text


def test_log_levels():
    assert commands.log_level("Warning") == "logLevel 2"
    with pytest.raises(UnsafeInputError):
        commands.log_level("loud")


@pytest.mark.parametrize(
    "content,kind",
    [
        (elf32(b"\x00" * 16), "elf"),
        (intel_hex(b"\x01\x02" * 20), "hex"),
        (b"\x00\x10\x00\x20\x41\x01\x00\x08" * 8, "bin"),
        (b":not really hex but binary \x00\xff", "bin"),
    ],
)
def test_format_is_detected_from_content(tmp_path, content, kind):
    path = tmp_path / "image"
    path.write_bytes(content)
    assert detect_format(path) == kind


@pytest.mark.parametrize(
    "content,message",
    [
        (b"", "empty"),
        (elf32(b"\x00" * 64)[:-10], "truncated"),
        (b"\x7fELF\x03\x01" + bytes(60), "corrupt"),
        (intel_hex(b"\x01" * 20).replace(b":00000001FF\n", b""), "end-of-file record"),
        (b"PK\x03\x04" + bytes(30), "zip"),
        (b"UF2\n" + bytes(30), "UF2"),
    ],
)
def test_unusable_images_say_why(tmp_path, content, message):
    path = tmp_path / "image"
    path.write_bytes(content)
    with pytest.raises(FirmwareError, match=message):
        detect_format(path)
