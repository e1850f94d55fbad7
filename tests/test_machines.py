"""Several machines in one emulation (`machines`), wired by hubs (`hubs`).

The scenario: two STM32F4 Discovery boards running the project firmware, whose USART3s share a UART
hub. Each board sends every console line on USART3 and prints what it receives there as `bus: <line>`
(firmware/README.md), so a line typed on one console comes out of the other's.
"""

from __future__ import annotations

import os
import re

import pytest
from conftest import gdb_stop_replies, no_renode_left, target
from jumpstarter.client.core import DriverError

from jumpstarter_driver_renode.client import RenodeMachineClient
from jumpstarter_driver_renode.driver import Renode
from jumpstarter_driver_renode.errors import ExpectTimeout

PLATFORM = "platforms/boards/stm32f4_discovery-kit.repl"


def two_boards(**hub) -> dict:
    """The config of two STM32F4 Discovery machines `a` and `b`, USART3s on UART hub `bus` by default."""
    board = {"platform": PLATFORM, "uart": "sysbus.usart2"}
    return {
        "machines": {"a": dict(board), "b": dict(board)},
        "hubs": {"bus": hub or {"kind": "uart", "connect": ["a:sysbus.usart3", "b:sysbus.usart3"]}},
    }


def booted(client, fw_a, fw_b=None) -> None:
    """Both machines flashed, powered on paused, and past their boot banners."""
    client.a.flasher.flash(fw_a.elf)
    client.b.flasher.flash((fw_b or fw_a).elf)
    client.power.on()
    client.a.expect_output(fw_a.banner.decode(), timeout=1)
    client.b.expect_output((fw_b or fw_a).banner.decode(), timeout=1)


# -- the config ------------------------------------------------------------------------------------


def config_error(**config) -> str:
    with pytest.raises(ValueError) as info:
        Renode(renode_path="/bin/true", **config)
    return str(info.value)


def test_each_machine_is_a_child_with_its_own_flasher_and_console():
    driver = Renode(renode_path="/bin/true", **two_boards())
    try:
        assert set(driver.children) == {"power", "a", "b"}
        for name in ("a", "b"):
            machine = driver.children[name]
            assert machine.client() == f"{RenodeMachineClient.__module__}.RenodeMachineClient"
            assert {"flasher", "console"} <= set(machine.children)
        spec = driver.board_spec()
        assert [u.key for u in spec.uarts] == ["a/console", "b/console"]
        assert len({u.terminal for u in spec.uarts}) == 2  # one Renode terminal per console
        assert spec.hubs[0].connect == (("a", "sysbus.usart3"), ("b", "sysbus.usart3"))
    finally:
        driver.close()


@pytest.mark.parametrize(
    "config,message",
    [
        ({**two_boards(), "platform": PLATFORM}, r"with `machines`, set `platform` inside each machine"),
        ({**two_boards(), "uart": "sysbus.usart2"}, r"set `uart` inside each machine"),
        (
            {"hubs": {"bus": {"kind": "can", "connect": ["x:sysbus.can1"]}}, "platform": PLATFORM},
            r"hubs\[bus\]\.connect: 'x:sysbus.can1'.*\(machine-0\)",
        ),
        (
            {"hubs": {"flasher": {"kind": "can", "connect": ["sysbus.can1"]}}, "platform": PLATFORM},
            r"hubs key 'flasher' is also the name of another child",
        ),
        (
            {"machines": two_boards()["machines"], "hubs": {"a": {"kind": "can", "connect": ["a:sysbus.can1"]}}},
            r"hubs key 'a' is also the name of another child",
        ),
        (two_boards(kind="uart", connect=["c:sysbus.usart3"]), r"hubs\[bus\]\.connect: 'c:sysbus.usart3'.*\(a, b\)"),
        (two_boards(kind="uart", connect=["a-sysbus.usart3"]), r"must be `machine:peripheral`"),
        (two_boards(kind="uart", connect=["a:sysbus.usart3", "a:sysbus.usart3"]), r"twice"),
        (two_boards(kind="uart", connect=[]), r"connect is empty"),
        (two_boards(kind="uart", connect=["a:sysbus.usart3;quit"]), r"peripheral"),
        ({"machines": {"a": {"uart": "sysbus.usart2"}}}, r"machines\.a\n.*exactly one of `platform`.*or `script`"),
        ({"machines": {"power": {"platform": PLATFORM}}}, r"machines key 'power' clashes"),
        ({"machines": {"a": {"platform": PLATFORM, "uarts": {"flasher": "sysbus.usart3"}}}}, r"'flasher' clashes"),
        (
            {"machines": {"a": {"platform": PLATFORM, "gdb_port": 5}, "b": {"platform": PLATFORM, "gdb_port": 5}}},
            r"distinct `gdb_port`s",
        ),
    ],
)
def test_bad_machine_and_hub_configs_are_refused_when_the_exporter_starts(config, message):
    assert re.search(message, config_error(**config))


def test_a_one_machine_target_names_just_the_peripheral_and_gets_a_bus_child():
    driver = Renode(
        renode_path="/bin/true", platform=PLATFORM, hubs={"vehicle": {"kind": "can", "connect": ["sysbus.can1"]}}
    )
    try:
        assert driver.board_spec().hubs[0].connect == (("machine-0", "sysbus.can1"),)
        assert driver.children["vehicle"].client() == "jumpstarter_driver_renode.can_client.RenodeCanClient"
    finally:
        driver.close()


def test_a_hub_kind_must_be_one_renode_has():
    with pytest.raises(ValueError, match=r"uart.*can.*ethernet"):
        Renode(renode_path="/bin/true", **two_boards(kind="bluetooth", connect=["a:sysbus.usart3"]))


# -- on an emulation ---------------------------------------------------------------------------------


def test_a_line_typed_on_one_console_comes_out_of_the_other(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False, **two_boards()) as (client, _):
        booted(client, fw)
        client.a.write_uart("hello b\r")
        sent = client.a.expect_output(r"echo: hello b\r\n", timeout=1)
        received = client.b.expect_output(r"bus: hello b\r\n", timeout=1)
        assert sent < received  # a's line crosses the bus after a echoed it
        client.b.write_uart("hello a\r")
        client.a.expect_output(r"bus: hello a\r\n", timeout=1)
        # No loops and no loopback: neither board hears its own line back.
        with pytest.raises(ExpectTimeout):
            client.b.expect_output("bus: hello b", timeout=0.2)
        assert "bus: hello a" not in client.b.output_tail()


def test_each_console_is_its_own_stream(backend, firmware):
    fw = firmware()
    with target(backend, **two_boards()) as (client, _):
        booted(client, fw)
        with client.a.console.pexpect() as a, client.b.console.pexpect() as b:
            a.send(b"over the bus\r")
            a.expect(rb"echo: over the bus\r\n", timeout=backend.timeout(10, 60))
            b.expect(rb"bus: over the bus\r\n", timeout=backend.timeout(10, 60))


def test_resetting_one_machine_leaves_the_other_running(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False, **two_boards()) as (client, _):
        booted(client, fw)
        client.b.write_uart("ticks on\r")
        client.b.expect_output(r"tick 3\r\n", timeout=1)
        client.a.reset()
        client.a.expect_output(fw.banner.decode(), timeout=1)
        # b was not reset: it keeps counting where it was, and printed no banner.
        ticks = client.b.expect_output(r"tick 5\r\n", timeout=1)
        assert client.b.output_tail(lines=100).count("BOOT") == 1  # only its power-on banner
        assert ticks > 0


def test_flashing_one_machine_while_on_leaves_the_other_running(backend, firmware):
    fw, new = firmware(), firmware(build_id="second")
    with target(backend, autostart=False, **two_boards()) as (client, _):
        booted(client, fw)
        client.b.write_uart("ticks on\r")
        client.b.expect_output(r"tick 2\r\n", timeout=1)
        client.a.flasher.flash(new.elf)
        client.a.expect_output(new.banner.decode(), timeout=1)
        client.b.expect_output(r"tick 4\r\n", timeout=1)
        assert client.b.output_tail(lines=100).count("BOOT") == 1  # only its power-on banner
        client.a.write_uart("after flash\r")
        client.b.expect_output(r"bus: after flash\r\n", timeout=1)  # the new image is on the bus too


def test_a_restored_snapshot_brings_back_both_machines_and_the_hub(backend, firmware):
    fw = firmware()
    with target(backend, autostart=False, **two_boards()) as (client, _):
        booted(client, fw)
        client.save_snapshot("both")
        client.a.write_uart("before restore\r")
        client.b.expect_output(r"bus: before restore\r\n", timeout=1)
        client.restore_snapshot("both")
        client.a.write_uart("after restore\r")
        client.a.expect_output(r"echo: after restore\r\n", timeout=1)
        client.b.expect_output(r"bus: after restore\r\n", timeout=1)
        client.b.write_uart("and back\r")
        client.a.expect_output(r"bus: and back\r\n", timeout=1)
        # A reset after a restore reboots only that machine (Renode's Load drops the reset hooks: re-armed).
        client.b.reset()
        client.b.expect_output(fw.banner.decode(), timeout=1)
        assert "BOOT" not in client.a.output_tail(lines=100)  # (the tail starts at the restore)


def test_calls_about_one_machine_on_the_target_itself_say_where_they_belong(standin):
    with target(standin, **two_boards()) as (client, _):
        with pytest.raises(DriverError, match=r"several machines \(a, b\).*target.<machine>"):
            client.expect_output("x", timeout=1)
        with pytest.raises(DriverError, match=r"several machines"):
            client.write_uart("x")
        assert client.a.machine_name == "a" and client.a.uart == "sysbus.usart2"
        assert client.a.platform == PLATFORM


@pytest.mark.parametrize(
    "kind,peripheral,renode_says",
    [
        ("uart", "sysbus.usart9", "no such peripheral in that machine"),
        ("uart", "sysbus.gpioPortA.UserButton", "Could not find a way to connect Button to UARTHub`1"),
        ("can", "sysbus.usart3", "Could not find a way to connect STM32_UART to CANHub"),
        ("ethernet", "sysbus.can1", "Could not find a way to connect STMCAN to Switch"),
    ],
)
def test_a_hub_peripheral_that_does_not_fit_fails_power_on_naming_it(backend, firmware, kind, peripheral, renode_says):
    fitting = {"uart": "a:sysbus.usart3", "can": "a:sysbus.can1", "ethernet": "a:sysbus.ethernet"}[kind]
    config = two_boards(kind=kind, connect=[fitting, f"b:{peripheral}"])
    with target(backend, **config) as (client, driver):
        client.a.flasher.flash(firmware().elf)
        expected = rf"hub `bus` \({kind}\): cannot connect `b:{re.escape(peripheral)}`: {re.escape(renode_says)}"
        with pytest.raises(DriverError, match=expected):
            client.power.on()
        assert driver.target.renode is None
        assert no_renode_left()


def test_each_machine_has_its_own_gdb_server(backend, firmware):
    config = two_boards()
    for machine in config["machines"].values():
        machine["gdb_port"] = 0
    with target(backend, **config) as (client, driver):
        booted(client, firmware())
        for name in ("a", "b"):
            with getattr(client, name).gdb.stream() as gdb:
                assert gdb_stop_replies(gdb) == [b"$S00#b3", b"$S05#b8"], name
        pid = driver.target.renode.process.pid
        assert os.readlink(f"/proc/{pid}/ns/net") != os.readlink("/proc/self/ns/net")


def test_can_controllers_and_ethernet_macs_join_their_hubs(backend, firmware):
    """CAN hubs and Ethernet switches are wired at power-on like UART hubs: Renode holds each listed peripheral
    in its hub (it refuses to attach one twice), and only those (no test firmware sends frames yet)."""
    config = two_boards()
    config["hubs"]["can"] = {"kind": "can", "connect": ["a:sysbus.can1", "b:sysbus.can1"]}
    config["hubs"]["lan"] = {"kind": "ethernet", "connect": ["a:sysbus.ethernet", "b:sysbus.ethernet"]}
    with target(backend, autostart=False, allow_raw_monitor=True, **config) as (client, _):
        booted(client, firmware())
        for machine in ("a", "b"):
            for peripheral, hub, refusal in [
                ("sysbus.can1", "can", "already registered in this hub"),
                ("sysbus.ethernet", "lan", "already registered in this switch"),
            ]:
                with pytest.raises(DriverError, match=refusal):
                    client.monitor_cmd(f'mach set "{machine}"; connector Connect {peripheral} {hub}')
        client.monitor_cmd('mach set "a"; connector Connect sysbus.can2 can')  # not listed: it was free
        client.a.write_uart("three hubs\r")
        client.b.expect_output(r"bus: three hubs\r\n", timeout=1)
