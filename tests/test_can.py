"""CAN hubs from the host: the hub child is `jumpstarter-driver-can`'s CanClient (a python-can bus) with
virtual timestamps; udsoncan over can-isotp on it talks to the project's `can_ecu` firmware, which sends
frame 0x100 every 10 ms, answers UDS on 0x7E0/0x7E8 and forwards 0x2xx as 0x3xx by the filter match
index it reads (firmware/README.md)."""

from __future__ import annotations

import itertools
import re

import can
import isotp
import pytest
import udsoncan
from click.testing import CliRunner
from conftest import target
from jumpstarter.client.core import DriverError
from udsoncan.client import Client
from udsoncan.connections import PythonIsoTpConnection
from udsoncan.exceptions import NegativeResponseException

from jumpstarter_driver_renode.can_client import format_frame, parse_frame
from jumpstarter_driver_renode.features.can import frame_parts, parse_recv

VIN = "JSRENODEVECU00001"
PERIODIC = [{"can_id": 0x100, "can_mask": 0x7FF, "extended": False}]
FORWARDING = [{"can_id": 0x200, "can_mask": 0x600, "extended": False}]  # 0x2xx and 0x3xx


def one_ecu(backend, **extra):
    return target(backend, autostart=False, hubs={"vehicle": {"kind": "can", "connect": ["sysbus.can1"]}}, **extra)


def two_ecus(backend):
    board = {"platform": backend.platform, "uart": backend.uart}
    hub = {"kind": "can", "connect": ["a:sysbus.can1", "b:sysbus.can1"]}
    return target(backend, autostart=False, machines={"a": board, "b": board}, hubs={"vehicle": hub})


def booted(client) -> None:
    """Let the firmware boot and bring CAN up (its first periodic frame is 10 ms after that): a frame sent
    to a controller still in reset is lost, as on hardware."""
    client.run_for(0.02)


def periodic_frames(bus, count: int) -> list[can.Message]:
    bus.set_filters(PERIODIC)
    frames = [bus.recv(1.0) for _ in range(count)]
    bus.set_filters(None)
    assert all(frames), frames
    return frames


def assert_periodic(bus) -> None:
    """Frame 0x100 every 10 ms of virtual time exactly, its counter going up by one."""
    frames = periodic_frames(bus, 4)
    ns = [round(f.timestamp * 1e9) for f in frames]
    assert [b - a for a, b in itertools.pairwise(ns)] == [10_000_000] * 3, ns
    counters = [f.data[0] for f in frames]
    assert [(b - a) % 256 for a, b in itertools.pairwise(counters)] == [1] * 3, counters
    assert all(f.arbitration_id == 0x100 and f.dlc == 8 and f.channel == "vehicle" for f in frames)


def uds(bus, build_id: str) -> Client:
    address = isotp.Address(isotp.AddressingMode.Normal_11bits, txid=0x7E0, rxid=0x7E8)
    stack = isotp.CanStack(bus=bus, address=address, params={"blocking_send": True, "tx_padding": 0})
    config = dict(udsoncan.configs.default_client_config)
    config["data_identifiers"] = {
        0xF190: udsoncan.AsciiCodec(len(VIN)),
        0xF18C: udsoncan.AsciiCodec(len(build_id)),
        0x1234: udsoncan.AsciiCodec(2),  # the ECU has no such DID
    }
    # udsoncan counts host seconds, and would take the ECU's P2 (50 ms of virtual time) as a host limit
    config["use_server_timing"] = False
    config["request_timeout"] = config["p2_timeout"] = config["p2_star_timeout"] = 30
    return Client(PythonIsoTpConnection(stack), config=config)


def assert_uds(bus, build_id: str) -> None:
    with uds(bus, build_id) as client:
        assert client.change_session(3).positive  # extended session
        client.tester_present()
        assert client.read_data_by_identifier_first(0xF190) == VIN  # a multi-frame answer, with flow control
        assert client.read_data_by_identifier_first(0xF18C) == build_id
        with pytest.raises(NegativeResponseException) as refused:
            client.read_data_by_identifier(0x1234)
        assert refused.value.response.code == 0x31  # requestOutOfRange


def test_the_host_receives_the_periodic_frame_every_10_ms_of_virtual_time(backend, firmware):
    with one_ecu(backend) as (client, _):
        client.flasher.flash(firmware(variant="can_ecu").elf)
        client.power.on()
        bus = client.vehicle
        assert "sysbus.can1" in bus.channel_info and bus.protocol is can.CanProtocol.CAN_20
        assert_periodic(bus)
        first = periodic_frames(bus, 1)[0]
        assert client.virtual_time() == pytest.approx(first.timestamp, abs=200e-6)  # paused where it came


def test_udsoncan_over_isotp_reads_the_vin_after_reset_and_restore(backend, firmware):
    fw = firmware(variant="can_ecu")
    with one_ecu(backend) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        assert_uds(client.vehicle, fw.build_id)
        client.save_snapshot("ecu")
        client.reset()
        assert_periodic(client.vehicle)
        assert_uds(client.vehicle, fw.build_id)
        client.restore_snapshot("ecu")
        assert_periodic(client.vehicle)
        assert_uds(client.vehicle, fw.build_id)
        client.flasher.flash(fw.hex)  # a re-flash while on: the board boots again
        assert_uds(client.vehicle, fw.build_id)
        client.power.off()
        client.power.on()
        assert_uds(client.vehicle, fw.build_id)


def forwarded(client, console, backend, data: bytes) -> None:
    """A host frame 0x2AB comes back as 0x3AB with the same data, within a millisecond of virtual time."""
    bus = client.vehicle
    bus.set_filters([{"can_id": 0x3AB, "can_mask": 0x7FF}])
    sent_at = client.virtual_time()
    bus.send(can.Message(arbitration_id=0x2AB, is_extended_id=False, data=data))
    answer = bus.recv(1.0)
    assert answer is not None and answer.arbitration_id == 0x3AB and answer.data == data
    assert 0 < answer.timestamp - sent_at < 0.001  # the next synced state (100 us quanta), then the ISR
    console.expect(rb"can: rx 2AB#" + data.hex().upper().encode() + rb" fmi=2\r\n", timeout=backend.timeout(10, 60))


def test_a_host_frame_reaches_the_firmware_by_the_filter_index_silicon_gives(backend, firmware):
    """Frames 0x2xx match the third filter bank (FMI 2): the firmware forwards them only if it reads FMI 2
    (Renode 1.16.1's STMCAN reports 0; the driver corrects the read), also after a save and a restore."""
    with one_ecu(backend) as (client, _), client.console.pexpect() as console:
        client.flasher.flash(firmware(variant="can_ecu").elf)
        client.power.on()
        booted(client)
        forwarded(client, console, backend, b"\x01\x02\x03")
        client.save_snapshot("forwarding")
        forwarded(client, console, backend, b"\x04")
        client.restore_snapshot("forwarding")
        forwarded(client, console, backend, b"\x05\x06")
        client.save_snapshot("again")  # a save after a restore: the restored machines' hooks only
        forwarded(client, console, backend, b"\x07")
        client.vehicle.send(can.Message(arbitration_id=0x2AB, is_extended_id=False, data=b"\x08"))
        client.save_snapshot("queued")  # a host frame not yet delivered does not stop a save
        client.vehicle.set_filters([{"can_id": 0x3AB, "can_mask": 0x7FF}])
        assert bytes(client.vehicle.recv(1.0).data) == b"\x08"


def test_two_ecus_exchange_frames_while_the_host_listens(backend, firmware):
    fw = firmware(variant="can_ecu")
    with two_ecus(backend) as (client, _), client.b.console.pexpect() as b_console:
        for machine in (client.a, client.b):
            machine.flasher.flash(fw.elf)
        client.power.on()
        booted(client)
        bus = client.vehicle
        assert "a:sysbus.can1" in bus.channel_info and "b:sysbus.can1" in bus.channel_info
        bus.set_filters(FORWARDING)
        client.a.write_uart("can send 220#CAFE\r")
        sent, forwarded = bus.recv(1.0), bus.recv(1.0)
        assert (sent.arbitration_id, bytes(sent.data)) == (0x220, b"\xca\xfe")  # A's frame
        assert (forwarded.arbitration_id, bytes(forwarded.data)) == (0x320, b"\xca\xfe")  # B's answer to it
        assert sent.timestamp < forwarded.timestamp < sent.timestamp + 0.001
        b_console.expect(rb"can: rx 220#CAFE fmi=2\r\n", timeout=backend.timeout(10, 60))
        assert bus.recv(0.05) is None  # A does not forward B's 0x320 (no filter of it takes 0x3xx)


def test_a_periodic_host_send_runs_in_virtual_time(backend, firmware):
    with one_ecu(backend) as (client, _):
        client.flasher.flash(firmware(variant="can_ecu").elf)
        client.power.on()
        bus = client.vehicle
        bus.set_filters([{"can_id": 0x3AB, "can_mask": 0x7FF}])
        task = bus.send_periodic(can.Message(arbitration_id=0x2AB, is_extended_id=False, data=b"\x07"), 0.005)
        answers = [bus.recv(1.0) for _ in range(3)]
        client.save_snapshot("sending")  # the send goes on after a save, in step
        answers += [bus.recv(1.0) for _ in range(3)]
        ns = [round(a.timestamp * 1e9) for a in answers]
        assert [b - a for a, b in itertools.pairwise(ns)] == [5_000_000] * 5, ns
        task.stop()
        assert bus.recv(0.05) is None  # ten sends' time: none came
        task.stop()  # again: nothing to stop
        short = bus.send_periodic(can.Message(arbitration_id=0x2AB, is_extended_id=False, data=b"\x08"), 0.005, 0.012)
        assert len([bus.recv(0.05) for _ in range(3)]) == 3  # at 0, 5 and 10 ms of its 12
        assert bus.recv(0.05) is None
        bus.send_periodic(can.Message(arbitration_id=0x2AB, is_extended_id=False, data=b"\x09"), 0.005)
        bus.shutdown()  # stops every task this bus started (the ended one too, without complaint)
        short.stop()
        assert bytes(bus.recv(0.05).data) == b"\x09"  # a task sends its first frame at once...
        assert bus.recv(0.05) is None  # ...and no more once stopped


def test_a_receive_waits_exactly_its_timeout_in_virtual_time(backend, firmware):
    """python-can's own recv loop adds host time to a timeout; the hub's client waits once, in Renode."""
    with one_ecu(backend) as (client, _):
        client.flasher.flash(firmware(variant="can_ecu").elf)
        client.power.on()
        booted(client)
        bus = client.vehicle
        bus.set_filters([{"can_id": 0x555, "can_mask": 0x7FF, "extended": False}])  # nothing sends it
        before = client.virtual_time()
        assert bus.recv(0.5) is None
        assert client.virtual_time() - before == pytest.approx(0.5, abs=200e-6)
        bus.set_filters([{"can_id": 0x100, "can_mask": 0x7FF, "extended": True}])  # 0x100 is a standard id
        assert bus.recv(0.05) is None
        with pytest.raises(DriverError, match="integer can_id"):
            bus.set_filters([{"can_id": "256", "can_mask": 0x7FF}])


def test_a_listen_only_bus_refuses_to_send(backend, firmware):
    with one_ecu(backend) as (client, _):
        client.flasher.flash(firmware(variant="can_ecu").elf)
        client.power.on()
        bus = client.vehicle
        bus.state = can.BusState.PASSIVE
        assert bus.state is can.BusState.PASSIVE
        frame = can.Message(arbitration_id=0x2AB, is_extended_id=False, data=b"\x01")
        for send in (lambda: bus.send(frame), lambda: bus.send_periodic(frame, 0.01)):
            with pytest.raises(DriverError, match="listen-only"):
                send()
        assert periodic_frames(bus, 1)  # it still hears
        with pytest.raises(DriverError, match="no error state"):
            bus.state = can.BusState.ERROR
        bus.state = can.BusState.ACTIVE
        bus.send(frame)
        with pytest.raises(DriverError, match=r"period \(virtual seconds\) must be a number at least 0.0001"):
            bus.send_periodic(frame, 1e-9)


def test_the_cli_sends_and_dumps_candump_lines(backend, firmware):
    with one_ecu(backend) as (client, _):
        client.flasher.flash(firmware(variant="can_ecu").elf)
        client.power.on()
        runner = CliRunner()
        dump = runner.invoke(client.vehicle.cli(), ["dump", "--count", "1"])  # once CAN is up
        assert dump.exit_code == 0, dump.output
        assert re.fullmatch(r"\(0\.010\d{3}\) vehicle 100#0000000000000000\n", dump.output), dump.output
        result = runner.invoke(client.vehicle.cli(), ["send", "7E0#0322F190"])
        assert result.exit_code == 0, result.output
        dump = runner.invoke(client.vehicle.cli(), ["dump", "-n", "1"])
        # the first frame of the VIN's answer, well before the next periodic frame
        assert re.fullmatch(r"\(0\.010\d{3}\) vehicle 7E8#101462F1904A5352\n", dump.output), dump.output
        bad = runner.invoke(client.vehicle.cli(), ["send", "7E0#123"])
        assert bad.exit_code != 0 and "whole bytes" in bad.output


def test_a_hub_of_a_powered_off_target_says_so_and_bad_frames_are_refused(backend, firmware):
    with one_ecu(backend) as (client, _):
        with pytest.raises(DriverError, match="powered off"):
            client.vehicle.send(can.Message(arbitration_id=0x123, is_extended_id=False, data=b"\x01"))
        client.flasher.flash(firmware(variant="can_ecu").elf)
        client.power.on()
        bus = client.vehicle
        with pytest.raises(DriverError, match="CAN FD"):
            bus.send(can.Message(arbitration_id=0x123, is_fd=True, data=bytes(12)))
        with pytest.raises(DriverError, match="does not fit a standard"):
            bus.send(can.Message(arbitration_id=0x800, is_extended_id=False, data=b""))


def test_a_wrong_can_peripheral_fails_power_on_naming_the_hub(backend, firmware):
    hubs = {"vehicle": {"kind": "can", "connect": ["sysbus.usart2"]}}
    with target(backend, hubs=hubs) as (client, _):
        client.flasher.flash(firmware(variant="can_ecu").elf)
        with pytest.raises(DriverError, match="vehicle"):
            client.power.on()


def test_remote_frames_carry_their_length_as_stmcan_reads_it():
    assert frame_parts(can.Message(arbitration_id=0x123, is_extended_id=False, is_remote_frame=True, dlc=3)) == (
        "123",
        "r",
        "000000",
    )
    reply = parse_recv("jumpstarter-can frame 20000 0 10000 1abcdef0 er 0000", "bus")
    msg = reply.message
    assert (msg.is_remote_frame, msg.is_extended_id, msg.dlc, bytes(msg.data)) == (True, True, 2, b"")
    assert (reply.outcome, reply.now, reply.dropped) == ("frame", 20e-6, 0)


def test_cansend_notation():
    msg = parse_frame("1ABCDEF0#DE.AD")
    assert (msg.arbitration_id, msg.is_extended_id, bytes(msg.data)) == (0x1ABCDEF0, True, b"\xde\xad")
    assert parse_frame("123#R").is_remote_frame
    for bad in ("12#00", "123#0", "123", "xyz#00"):
        with pytest.raises(ValueError):
            parse_frame(bad)
    frame = can.Message(timestamp=0.01, arbitration_id=0x7E8, is_extended_id=False, data=b"\x02\x7e", channel="v")
    assert format_frame(frame) == "(0.010000) v 7E8#027E"


def test_a_firmware_frame_without_data_bytes_crosses_the_hub(backend, firmware):
    """Renode 1.16.1's STMCAN sends a DLC 0 frame with no data array, on which CANHub fails and Renode
    dies; the host node mends the frame as the hub hands it over."""
    with one_ecu(backend) as (client, _):
        client.flasher.flash(firmware(variant="can_ecu").elf)
        client.power.on()
        booted(client)
        client.write_uart("can send 123#\r")
        bus = client.vehicle
        bus.set_filters([{"can_id": 0x123, "can_mask": 0x7FF}])
        empty = bus.recv(1.0)
        assert empty is not None and empty.dlc == 0 and bytes(empty.data) == b""
        assert_periodic(bus)  # and the board runs on
