"""The exporter config, validated once by pydantic, and turned into the frozen spec (spec.py).

Every value is checked by its type when the exporter starts: a wrong type, an unknown key or an unsafe
value fails naming the key (pydantic puts the key's path in the error). Nothing re-checks it later.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, ConfigDict, Field, Strict, StrictInt, StrictStr, model_validator
from pydantic.dataclasses import dataclass as pydantic_dataclass

from . import commands
from .netns import GDB_PORT_IN_NAMESPACE
from .spec import HubSpec, MachineSpec

MAIN_CONSOLE = "console"
DEFAULT_UART = "sysbus.uart0"
DEFAULT_MACHINE = "machine-0"

# A child's name is also an attribute of the client and a `j` subcommand: it must not hide either.
# `tests/test_layout.py` checks that every public attribute of the clients is listed here.
RESERVED_CHILDREN = frozenset(
    {"power", "flasher", MAIN_CONSOLE, "gdb"}
    | {"pause", "resume", "run-for", "time", "expect", "write", "snapshot", "log", "monitor", "reset"}  # CLI
    | {
        "call",
        "call_async",
        "check_exporter_status",
        "cli",
        "close",
        "description",
        "end_session_async",
        "expect_output",
        "follow_log",
        "get_status_async",
        "labels",
        "list_snapshots",
        "log",
        "log_level",
        "log_stream",
        "log_stream_async",
        "machine_name",
        "monitor_cmd",
        "name",
        "open_stream",
        "output_tail",
        "pause",
        "platform",
        "reset",
        "reset_machine",
        "resource_async",
        "restore_snapshot",
        "resume",
        "run_for",
        "save_snapshot",
        "status",
        "status_monitor_async",
        "stream",
        "stream_async",
        "streamingcall",
        "streamingcall_async",
        "uart",
        "uuid",
        "virtual_time",
        "wait_for_hook_complete_monitored",
        "wait_for_hook_status",
        "wait_for_lease_ready",
        "wait_for_lease_ready_monitored",
        "write_uart",
        "children",
        "portal",
        "stack",
    }
)


def Range(low: float, high: float, *, above: bool = False, kind: type = float):
    """The config's one range type: a number (strict: never a bool or a string) with low <= value <= high
    (low < value when `above`)."""
    return Annotated[kind, Strict(), Field(gt=low, le=high) if above else Field(ge=low, le=high)]


Port = Range(0, 65535, kind=int)
Timeout = Range(0, 3600, above=True)
HostTimeout = Range(0, 24 * 3600, above=True)
Backlog = Range(0, 256 * 1024 * 1024, kind=int)


def _platform(platform: str) -> str:
    commands.platform_token(platform)
    if platform.startswith("/") and not Path(platform).is_file():
        raise ValueError(f"platform file not found: {platform}")
    return platform


def _script(script: str) -> str:
    if not Path(script).is_absolute():
        raise ValueError(f"script must be an absolute path (Renode changes its working directory): {script}")
    if not Path(script).is_file():
        raise ValueError(f"script file not found: {script}")
    commands.path_token(script)
    return script


def _unreserved(what: str):
    """A check for names that become children (and client attributes, and `j` subcommands)."""

    def check(name: str) -> str:
        commands.check_name(name, what)
        if name in RESERVED_CHILDREN:
            raise ValueError(f"{what} {name!r} clashes with a built-in child, client method or command; pick another")
        return name

    return check


def _line(line: str) -> str:
    return commands.check_line(line, "extra_commands entry")


def _hub_key(name: str) -> str:
    commands.check_name(name, "hubs key")
    if name.startswith("term_"):
        raise ValueError(f"hubs key {name!r}: names starting with `term_` are the driver's UART terminals")
    return name


Platform = Annotated[str, AfterValidator(_platform)]
Script = Annotated[str, AfterValidator(_script)]
Peripheral = Annotated[str, AfterValidator(commands.check_peripheral)]
ChildName = Annotated[str, AfterValidator(_unreserved("child name"))]
MonitorLine = Annotated[str, AfterValidator(_line)]
LoadAddress = Annotated[StrictStr | StrictInt, AfterValidator(commands.parse_address)]
MachineKey = Annotated[str, AfterValidator(_unreserved("machines key"))]
HubKey = Annotated[str, AfterValidator(_hub_key)]


@pydantic_dataclass(kw_only=True, config=ConfigDict(extra="forbid"))
class MachineConfig:
    """One machine of a multi-machine target (`machines: {name: ...}`): the board-level keys of a target."""

    platform: Platform | None = None
    script: Script | None = None
    uart: Peripheral = DEFAULT_UART
    uarts: dict[ChildName, Peripheral] = Field(default_factory=dict)
    buttons: dict[ChildName, Peripheral] = Field(default_factory=dict)
    leds: dict[ChildName, Peripheral] = Field(default_factory=dict)
    load_address: LoadAddress | None = None
    non_volatile: list[Peripheral] | None = None
    extra_commands: list[MonitorLine] = Field(default_factory=list)
    gdb_port: Port | None = None

    @model_validator(mode="after")
    def _whole(self) -> MachineConfig:
        if (self.platform is None) == (self.script is None):
            raise ValueError("set exactly one of `platform` (a .repl file) or `script` (a .resc file)")
        taken: dict[str, str] = {}
        for key in ("uarts", "buttons", "leds"):
            for child in getattr(self, key):
                if child in taken:
                    raise ValueError(
                        f"{key} key {child!r} is also a key of {taken[child]}: children need distinct names"
                    )
                taken[child] = key
        return self

    def spec(self, name: str, free_port: int) -> MachineSpec:
        """`gdb_port: 0` becomes `free_port` (a port of Renode's private network namespace)."""
        return MachineSpec(
            name=name,
            platform=self.platform,
            script=Path(self.script) if self.script else None,
            uarts={MAIN_CONSOLE: self.uart, **self.uarts},
            buttons=dict(self.buttons),
            leds=dict(self.leds),
            extra_commands=tuple(self.extra_commands),
            gdb_port=None if self.gdb_port is None else (self.gdb_port or free_port),
            load_address=self.load_address,
            non_volatile=None if self.non_volatile is None else tuple(self.non_volatile),
        )


@pydantic_dataclass(kw_only=True, config=ConfigDict(extra="forbid"))
class HubConfig:
    """A hub wiring peripherals of the target's machines (`hubs: {name: ...}`): `connect` lists
    `machine:peripheral` (a one-machine target may name just the peripheral)."""

    kind: Literal["uart", "can", "ethernet"]
    connect: list[str]

    def spec(self, name: str, machines: set[str], only: str | None = None) -> HubSpec:
        """Every connection names a machine of the target and a peripheral path, once. `only`: the machine
        of a one-machine target, which entries without `machine:` mean."""
        connect: list[tuple[str, str]] = []
        for item in self.connect:
            machine, sep, peripheral = item.partition(":")
            if not sep and only is not None:
                machine, sep, peripheral = only, ":", item
            if not sep or machine not in machines:
                raise ValueError(
                    f"hubs[{name}].connect: {item!r} must be `machine:peripheral` with a machine of `machines` "
                    f"({', '.join(sorted(machines))})"
                )
            commands.check_peripheral(peripheral, f"hubs[{name}].connect peripheral")
            if (machine, peripheral) in connect:
                raise ValueError(f"hubs[{name}].connect lists {item!r} twice")
            connect.append((machine, peripheral))
        if not connect:
            raise ValueError(f"hubs[{name}].connect is empty: list the `machine:peripheral`s to wire")
        return HubSpec(name, self.kind, tuple(connect))


# Keys of a one-machine target that a multi-machine target sets per machine instead.
MACHINE_KEYS = (
    "platform",
    "script",
    "uart",
    "uarts",
    "buttons",
    "leds",
    "load_address",
    "non_volatile",
    "gdb_port",
    "machine_name",
)


def machine_specs(config) -> tuple[MachineSpec, ...]:
    """The machines of a `driver.Renode` config: its top-level keys (checked here, as a `MachineConfig`), or
    each of `machines` (checked by pydantic already)."""
    if not config.machines:
        name = commands.check_name(
            config.machine_name if config.machine_name is not None else DEFAULT_MACHINE, "machine_name"
        )
        board = MachineConfig(
            platform=config.platform,
            script=config.script,
            uart=config.uart if config.uart is not None else DEFAULT_UART,
            uarts=config.uarts,
            buttons=config.buttons,
            leds=config.leds,
            load_address=config.load_address,
            non_volatile=config.non_volatile,
            gdb_port=config.gdb_port,
        )
        return (board.spec(name, GDB_PORT_IN_NAMESPACE),)
    for key in MACHINE_KEYS:
        if getattr(config, key) not in (None, {}):
            raise ValueError(f"with `machines`, set `{key}` inside each machine, not at the top level")
    specs = tuple(
        board.spec(name, GDB_PORT_IN_NAMESPACE + i) for i, (name, board) in enumerate(config.machines.items())
    )
    ports = [m.gdb_port for m in specs if m.gdb_port is not None]
    if len(set(ports)) < len(ports):
        raise ValueError(f"machines need distinct `gdb_port`s (0 picks a free one): {ports}")
    return specs


def hub_specs(config, machines: tuple[MachineSpec, ...]) -> tuple[HubSpec, ...]:
    names = {m.name for m in machines}
    only = machines[0].name if len(machines) == 1 and not config.machines else None
    return tuple(hub.spec(name, names, only) for name, hub in config.hubs.items())
