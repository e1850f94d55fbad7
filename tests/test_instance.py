"""RenodeInstance's command sequences through its public calls, against a scripted monitor and process
(no Renode, no stand-in).

These pin what the driver says to Renode for start-up, BIN/HEX entry, restore and stop; the end-to-end
tests prove the same sequences work on the stand-in and on real Renode.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
from pathlib import Path

import pytest

from jumpstarter_driver_renode import snapshots
from jumpstarter_driver_renode.errors import RenodeCommandError
from jumpstarter_driver_renode.features.base import helper_script
from jumpstarter_driver_renode.features.flasher import parse_cpu_names
from jumpstarter_driver_renode.firmware import Entry
from jumpstarter_driver_renode.flashstore import FlashStore
from jumpstarter_driver_renode.instance import RenodeInstance
from jumpstarter_driver_renode.session import RenodeSession
from jumpstarter_driver_renode.spec import BoardSpec, Firmware, MachineSpec, ProcessFiles
from jumpstarter_driver_renode.uart import UartChannel

pytestmark = pytest.mark.anyio


class FakeMonitor:
    """Answers like Renode's monitor; creates a real PTY where Renode would create a UART terminal."""

    def __init__(self, cortex_m: bool = True):
        self.sent: list[str] = []
        self.cortex_m = cortex_m
        self.prompt = "(monitor) "
        self.broken: str | None = None
        self.ptys: list[int] = []
        self.log = logging.getLogger("fake-renode")

    async def wait_ready(self, timeout: float) -> str:
        return "Renode, version 1.16.1"

    async def execute(self, command: str, timeout: float | None = None) -> str:
        self.sent.append(command)
        if m := re.fullmatch(r'mach (?:create|set) "([^"]+)"', command):
            self.prompt = f"({m[1]}) "  # Renode's prompt names the selected machine
        if command.startswith(("Load ", "Clear")) or command == "mach clear":
            self.prompt = "(monitor) "
        if m := re.fullmatch(r'emulation CreateUartPtyTerminal "\w+" "([^"]+)" true', command):
            master, slave = os.openpty()
            self.ptys += [master, slave]
            os.symlink(os.ttyname(slave), m[1])
        if command == "sysbus GetCPUs":
            return "[\n[CPU: m0.cpu[0]], \n]"
        if command == "jumpstarter_rearm_reset":
            return "jumpstarter-rearm done"  # as inside_renode/machine.py prints
        if command.endswith("VectorTableOffset") and not self.cortex_m:
            raise RenodeCommandError(command, "cpu does not provide a field, method or property VectorTableOffset.")
        return ""

    def close(self) -> None:
        for fd in self.ptys:
            os.close(fd)


class FakeProcess:
    def __init__(self):
        self.returncode: int | None = None
        self.killed = False
        self.pid = 4242
        self.log = logging.getLogger("fake-renode")

    async def kill_and_reap(self) -> None:
        self.killed = True
        self.returncode = -9

    def kill(self) -> None:
        self.killed = True
        self.returncode = -9

    def describe_exit(self) -> str:
        return "Renode exited with code 0"


def spec(uarts=None, gdb_port=None, buttons=None, leds=None, **overrides) -> BoardSpec:
    machine = MachineSpec(
        "m0",
        platform="platforms/boards/stm32f4_discovery-kit.repl",
        uarts=uarts or {"console": "sysbus.usart2"},
        buttons=buttons or {},
        leds=leds or {},
        gdb_port=gdb_port,
    )
    values = dict(
        renode_path=None,
        machines=(machine,),
        extra_commands=(),
        log_level=None,
        startup_timeout=5,
        command_timeout=5,
    )
    values.update(overrides)
    return BoardSpec(**values)


@pytest.fixture
def make(tmp_path):
    made = []

    def build(cortex_m: bool = True, **overrides) -> RenodeInstance:
        board = spec(**overrides)
        channels = {uart.key: UartChannel(uart.key) for uart in board.uarts}
        files = ProcessFiles.new(log=tmp_path / "renode.log")
        session = RenodeSession(FakeProcess(), FakeMonitor(cortex_m), files)
        instance = RenodeInstance(board, session, channels, workdir=tmp_path)
        made.append(instance)
        return instance

    yield build
    for instance in made:
        for channel in instance.channels.values():
            channel.detach()
        instance.session.monitor.close()
        shutil.rmtree(instance.files.dir, ignore_errors=True)


async def power_on(instance: RenodeInstance, firmware: Firmware | None = None) -> None:
    await instance.prepare()
    flash = FlashStore(lambda: instance.files.dir / "flash")
    if firmware:
        flash.add("m0", firmware)
    await instance.finish(flash)


async def test_boot_sequence(make, tmp_path):
    elf = Firmware(tmp_path / "fw.elf", "elf")
    instance = make()
    await power_on(instance, elf)
    link = instance.files.uart_link("console")
    assert instance.session.monitor.sent == [
        f"logFile @{tmp_path}/renode.log true",
        'mach create "m0"',
        "machine LoadPlatformDescription @platforms/boards/stm32f4_discovery-kit.repl",
        f"include @{helper_script('terminals.py')}",
        f"include @{helper_script('expect.py')}",
        f"include @{helper_script('can.py')}",
        f"include @{helper_script('gpio.py')}",
        f"include @{helper_script('flash.py')}",
        f"include @{helper_script('machine.py')}",
        f'emulation CreateUartPtyTerminal "term_console" "{link}" true',
        "connector Connect sysbus.usart2 term_console",
        'jumpstarter_watch "sysbus.usart2" "term_console"',
        f"sysbus LoadELF @{tmp_path}/fw.elf",  # no entry known: no reset macro, no memory to keep
        "jumpstarter_start",
    ]
    assert instance.session.running and instance.machine == "m0"


@pytest.mark.parametrize(
    "cortex_m,kind,entry,expected",
    [
        (True, "bin", Entry(0x08000000, 0x08000000), "sysbus.cpu VectorTableOffset 0x8000000"),
        (True, "hex", Entry(0x08000000, 0x08000195), "sysbus.cpu VectorTableOffset 0x8000000"),
        (False, "bin", Entry(0x20400000, 0x20400000), "sysbus.cpu PC 0x20400000"),
        (False, "hex", Entry(0x20400000, 0x20400010), "sysbus.cpu PC 0x20400010"),
    ],
)
async def test_images_get_their_entry_now_and_in_the_reset_macro(make, tmp_path, cortex_m, kind, entry, expected):
    image = Firmware(tmp_path / f"fw.{kind}", kind, entry.vector_table if kind == "bin" else None, entry)
    instance = make(cortex_m=cortex_m, autostart=False)
    await power_on(instance, image)
    sent = instance.session.monitor.sent
    load = image.load_command()
    at = sent.index(load)
    assert sent[at + 1 : at + 4] == ["sysbus GetCPUs", "sysbus.cpu VectorTableOffset", expected]
    assert sent[at + 4] == f'macro reset "{expected}"'  # a reset boots the entry again, and loads nothing
    assert "jumpstarter_start" not in sent  # autostart off: paused at virtual time 0


async def test_restore_loads_without_the_ptys_and_keeps_the_run_state(make, tmp_path):
    elf = Firmware(tmp_path / "fw.elf", "elf", None, Entry(0x08000000, 0x08000195))
    instance = make(uarts={"console": "sysbus.usart2", "debug": "sysbus.usart3"})
    await power_on(instance, elf)
    instance.session.monitor.sent.clear()
    snapshot = tmp_path / "s.save"
    await snapshots.restore(instance, snapshot)
    assert instance.session.monitor.sent == [
        "pause",
        "jumpstarter_unhook",
        "connector Disconnect sysbus.usart2 term_console",
        'jumpstarter_park "term_console"',
        "connector Disconnect sysbus.usart3 term_debug",
        'jumpstarter_park "term_debug"',
        f"Load @{snapshot}",
        'jumpstarter_unpark "term_console"',
        'mach set "m0"',
        "connector Connect sysbus.usart2 term_console",
        'jumpstarter_unpark "term_debug"',
        "connector Connect sysbus.usart3 term_debug",
        'jumpstarter_watch "sysbus.usart2" "term_console"',
        'jumpstarter_watch "sysbus.usart3" "term_debug"',
        "jumpstarter_rearm_reset",
        'macro reset "sysbus.cpu VectorTableOffset 0x8000000"',  # only in the macro: the CPU runs on
        "jumpstarter_start",
    ]
    assert all(channel.attached for channel in instance.channels.values())


async def test_stop_kills_and_reaps_without_talking_to_renode(make, tmp_path):
    """Power off never depends on Renode's monitor or stdin: SIGKILL to the group, reaped, files removed."""
    instance = make()
    instance.files.config.write_text("")
    instance.files.tmp.mkdir()
    instance.session.monitor.broken = "stdin broken"
    await instance.stop()
    assert instance.process.killed and instance.session.monitor.sent == []
    assert not instance.files.config.exists() and not instance.files.tmp.exists()


def test_cpu_names_from_get_cpus():
    assert parse_cpu_names("[\r\n[CPU: m0.cpu[0]], \r\n]", "m0") == ["cpu"]
    assert parse_cpu_names("[ [CPU: a.b.core1[0]], [CPU: a.b.core2[1]], ]", "a.b") == ["core1", "core2"]
    assert parse_cpu_names("[\n]", "m0") == []


def test_entry_of_bin_hex_and_elf(tmp_path):
    from images import elf32, intel_hex

    from jumpstarter_driver_renode.firmware import image_entry

    assert image_entry(Path("x"), "bin", 0x8000) == Entry(0x8000, 0x8000)
    elf = tmp_path / "a.elf"
    elf.write_bytes(elf32(b"\x00\xbf" * 8, address=0x08020000, entry=0x08020041))
    assert image_entry(elf, "elf", None) == Entry(0x08020000, 0x08020041)  # lowest loaded address, e_entry
    plain = tmp_path / "a.hex"
    plain.write_bytes(intel_hex(b"\x01" * 40, address=0x20400000))
    assert image_entry(plain, "hex", None) == Entry(0x20400000, 0x20400000)
    with_start = tmp_path / "b.hex"
    start_record = b":040000052040001087\n"
    with_start.write_bytes(
        intel_hex(b"\x01" * 40, address=0x20400000).replace(b":00000001FF", start_record + b":00000001FF")
    )
    assert image_entry(with_start, "hex", None) == Entry(0x20400000, 0x20400010)


async def test_a_spare_stopping_leaves_the_running_instance_s_channels_alone(make, tmp_path):
    """Spares share the target's channels object: only the instance the channels read may detach them."""
    running = make()
    await power_on(running, Firmware(tmp_path / "fw.elf", "elf"))
    spare = make()
    spare.channels = running.channels
    await spare.prepare()  # a spare wires its terminals but never attaches the channels
    await spare.stop()
    spare.kill()
    assert all(channel.attached for channel in running.channels.values())


async def test_a_save_that_fails_halfway_puts_every_terminal_back_and_resumes(make, tmp_path):
    """One terminal parked, the next one's disconnect refused (say, someone disconnected it by hand):
    the parked one comes back connected, the watches are hooked again and the board runs on."""
    elf = Firmware(tmp_path / "fw.elf", "elf")
    instance = make(uarts={"console": "sysbus.usart2", "debug": "sysbus.usart3"})
    await power_on(instance, elf)
    monitor = instance.session.monitor
    monitor.sent.clear()
    answer = monitor.execute

    async def refuse_second_disconnect(command: str, timeout: float | None = None) -> str:
        if command == "connector Disconnect sysbus.usart3 term_debug":
            monitor.sent.append(command)
            raise RenodeCommandError(command, "not connected")
        return await answer(command, timeout)

    monitor.execute = refuse_second_disconnect
    with pytest.raises(RenodeCommandError, match="not connected"):
        await snapshots.save(instance, tmp_path / "s.save")
    assert monitor.sent == [
        "pause",
        "jumpstarter_unhook",
        "connector Disconnect sysbus.usart2 term_console",
        'jumpstarter_park "term_console"',
        "connector Disconnect sysbus.usart3 term_debug",
        'jumpstarter_unpark "term_console"',
        "connector Connect sysbus.usart2 term_console",
        "jumpstarter_hook",
        "jumpstarter_start",
    ]
    assert instance.session.running
    assert not (tmp_path / "s.save").exists()
