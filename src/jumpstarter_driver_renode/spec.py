"""What a target is made of, as the driver resolved and validated it from the exporter config: boards,
machines, hubs, UARTs, firmware images; and where one Renode process keeps its files. Frozen data and
pure helpers only: no I/O but making a process's directory."""

from __future__ import annotations

import itertools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from . import commands
from .firmware import Entry


@dataclass(frozen=True)
class Firmware:
    path: Path
    kind: str  # elf, hex or bin
    address: int | None = None  # load address of a raw binary
    entry: Entry | None = None  # where a BIN or HEX image starts (LoadELF sets the CPU's entry itself)

    def load_command(self) -> str:
        return commands.load_firmware(self.kind, self.path, self.address)


@dataclass(frozen=True)
class BootCpu:
    """The CPU that runs the image: the platform's first, and whether it boots from a vector table."""

    name: str  # e.g. sysbus.cpu
    cortex_m: bool

    def entry_command(self, entry: Entry) -> str:
        """Cortex-M reads SP and PC from its vector table at reset; other cores start at PC."""
        if self.cortex_m:
            return commands.set_vector_table(self.name, entry.vector_table)
        return commands.set_pc(self.name, entry.start)


_process_numbers = itertools.count(1)


@dataclass(frozen=True)
class ProcessFiles:
    """One Renode process's own directory: its config, stderr, TMPDIR, PTY links and GDB sockets, and its
    log until it serves a target (then the target's `renode.log`, renamed: Renode keeps writing to the
    file it opened). The directory lives as long as the process, which may outlive the target that
    started it (a spare, see spares.py), and is removed with it.
    """

    dir: Path
    log: Path
    number: int = 0

    @classmethod
    def new(cls, log: Path | None = None) -> ProcessFiles:
        number = next(_process_numbers)
        folder = Path(tempfile.mkdtemp(prefix=f"jumpstarter-renode-p{number}-"))
        return cls(folder, log or folder / "spare.log", number)

    @property
    def config(self) -> Path:
        return self.dir / "renode.config"

    @property
    def stderr(self) -> Path:
        return self.dir / "renode.stderr"

    @property
    def own_log(self) -> Path:
        """The log's name while the process serves no target."""
        return self.dir / "spare.log"

    def gdb_socket(self, index: int) -> Path:
        """The Unix socket of the GDB relay of the `index`-th machine (short: socket paths are limited)."""
        return self.dir / f"gdb-{index}.sock"

    @property
    def tmp(self) -> Path:
        """The process's TMPDIR (Renode's temporary files)."""
        return self.dir / "tmp"

    def uart_link(self, console: str) -> Path:
        """The PTY link of a console's terminal: per process, so a spare can wire its UARTs in advance."""
        return self.dir / f"uart-{console}"


@dataclass(frozen=True)
class MachineSpec:
    """One machine of the emulation: from a platform file (named `name`) or a script that creates it."""

    name: str
    platform: str | None = None
    script: Path | None = None
    uarts: dict[str, str] = field(default_factory=dict)  # console name -> peripheral; the first is `console`
    buttons: dict[str, str] = field(default_factory=dict)  # child name -> peripheral
    leds: dict[str, str] = field(default_factory=dict)
    extra_commands: tuple[str, ...] = ()  # run with this machine selected, before its firmware loads
    gdb_port: int | None = None  # port of its GDB server inside Renode's private network namespace
    load_address: int | None = None  # of raw binaries flashed without one
    non_volatile: tuple[str, ...] | None = None  # memories that keep their contents (None: found from the image)


HUB_KINDS = {"uart": "CreateUARTHub", "can": "CreateCANHub", "ethernet": "CreateSwitch"}


@dataclass(frozen=True)
class HubSpec:
    """A hub (`emulation CreateUARTHub`, `CreateCANHub`, `CreateSwitch`) and the peripherals wired to it."""

    name: str
    kind: str  # a key of HUB_KINDS
    connect: tuple[tuple[str, str], ...]  # (machine, peripheral)

    def create_command(self) -> str:
        return f"emulation {HUB_KINDS[self.kind]} {commands.string_token(commands.check_name(self.name, 'hub'))}"


@dataclass(frozen=True)
class Uart:
    """One UART wired to a console channel."""

    key: str  # the channel's key: the console's name, or `machine/console` when there are several machines
    machine: str
    console: str
    peripheral: str
    slug: str  # unique in the emulation and safe in a Renode name and a file name

    @property
    def terminal(self) -> str:
        """The Renode PTY terminal behind it."""
        return f"term_{self.slug}"


@dataclass(frozen=True)
class BoardSpec:
    """Everything `start` needs, resolved and validated by the driver."""

    renode_path: str | None
    machines: tuple[MachineSpec, ...]
    extra_commands: tuple[str, ...]  # one machine: run with it selected; several: with none selected
    log_level: str | None
    startup_timeout: float
    command_timeout: float
    autostart: bool = True  # False: power on leaves the machine paused at virtual time zero
    hubs: tuple[HubSpec, ...] = ()

    @property
    def several(self) -> bool:
        return len(self.machines) > 1

    @property
    def uarts(self) -> tuple[Uart, ...]:
        """Every UART with a console, machine by machine."""
        return tuple(
            Uart(f"{m.name}/{console}", m.name, console, peripheral, f"{i}_{console}")
            if self.several
            else Uart(console, m.name, console, peripheral, console)
            for i, m in enumerate(self.machines)
            for console, peripheral in m.uarts.items()
        )

    @property
    def gdb(self) -> dict[int, MachineSpec]:
        """The machines with a GDB server, by their index."""
        return {i: m for i, m in enumerate(self.machines) if m.gdb_port is not None}
