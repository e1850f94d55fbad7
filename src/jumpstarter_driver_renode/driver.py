"""The Renode composite driver: configuration, power, flasher and console children."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import anyio
from jumpstarter.driver import Driver, FlasherInterface, export, exportstream
from jumpstarter_driver_network.driver import NetworkInterface
from jumpstarter_driver_power.driver import PowerInterface, PowerReading
from pydantic import ConfigDict, Field, StrictInt, StrictStr
from pydantic.dataclasses import dataclass as pydantic_dataclass

from . import commands, expect
from .client import RenodeClient
from .errors import FirmwareError, RenodeTimeoutError
from .firmware import detect_format, image_entry
from .gpio import RenodeButton, RenodeLed
from .lifecycle import Target
from .netns import GDB_PORT_IN_NAMESPACE
from .process import LogFollower, tail
from .spec import BoardSpec, Firmware, HubSpec, MachineSpec
from .uart import DEFAULT_BACKLOG, UartChannel

MAIN_CONSOLE = "console"
# A child's name is also an attribute of the client and a `j` subcommand: it must not hide either.
_CLI_COMMANDS = {"pause", "resume", "run-for", "time", "expect", "write", "snapshot", "log", "monitor", "reset"}
_RESERVED_CHILDREN = (
    {"power", "flasher", MAIN_CONSOLE, "gdb"}
    | _CLI_COMMANDS
    | {name for name in dir(RenodeClient) if not name.startswith("_")}
)


class MachineCalls:
    """The calls about one machine: on a one-machine target the root's, else each machine child's.

    Needs `_root` (the Renode driver) and `_machine` (the machine's spec; None on a multi-machine root).
    """

    def _one_machine(self, action: str) -> MachineSpec:
        if self._machine is None:
            names = ", ".join(m.name for m in self._root._specs)
            raise ValueError(
                f"this target has several machines ({names}): {action} on one of them, e.g. `target.<machine>`"
                " in Python or `j <target> <machine> ...`"
            )
        return self._machine

    @export
    def get_platform(self) -> str | None:
        return None if self._machine is None else self._machine.platform

    @export
    def get_uart(self) -> str | None:
        return None if self._machine is None else self._machine.uarts[MAIN_CONSOLE]

    @export
    def get_machine_name(self) -> str | None:
        return None if self._machine is None else self._machine.name

    @export
    async def reset_machine(self) -> None:
        """Reset the machine in place (`machine Reset`): the firmware restarts from its image (on a
        multi-machine root: every machine, one after the other).

        :raises RenodeStateError: the target is off.
        """
        machines = self._root._specs if self._machine is None else [self._machine]
        async with self._root.target.instance("reset the machine") as instance:
            for machine in machines:
                await instance.reset(machine.name)

    def _console(self, uart: str | None, action: str) -> str:
        """The channel key of a UART of this machine (default: its main console)."""
        machine = self._one_machine(action)
        name = MAIN_CONSOLE if uart is None else uart
        if name not in machine.uarts:
            raise ValueError(f"no UART named {uart!r} (have: {', '.join(machine.uarts)})")
        return next(u.key for u in self._root.board_spec().uarts if u.machine == machine.name and u.console == name)

    @export
    async def expect_output(
        self, pattern: str, timeout: float, uart: str | None = None, fail_on: list[str] | None = None
    ) -> dict:
        """Let the emulation run until the regex `pattern` appears in a UART's output, for at most
        `timeout` seconds of virtual time; returns how it ended (see `ExpectReply`).

        Matches output printed since the previous match on that UART (or power-on, or restore). A paused
        emulation stays paused where the wait ended; a running one keeps running.
        """
        console = self._console(uart, "wait for output")
        expect.check_pattern(pattern)
        if fail_on is None:
            fail_on = []
        if not isinstance(fail_on, list) or len(fail_on) > expect.MAX_FAIL_ON:
            raise ValueError(f"fail_on must be a list of at most {expect.MAX_FAIL_ON} regular expressions: {fail_on!r}")
        for item in fail_on:
            expect.check_pattern(item, "fail_on pattern")
        timeout = expect.check_timeout(timeout)
        async with self._root.target.instance("wait for UART output") as instance:
            reply = await instance.expect(console, pattern, fail_on, timeout, self._root.expect_host_timeout)
        return reply.as_dict()

    @export
    async def write_uart(self, data: str, uart: str | None = None) -> None:
        """Write `data` (UTF-8) to a UART's input; returns once it is in Renode's PTY.

        Unlike a console stream, the call returns after the write, so a following `expect_output` is sure
        to run the firmware with this input in its UART (deterministic input while paused).
        """
        console = self._console(uart, "write to a UART")
        if not isinstance(data, str) or not data:
            raise ValueError(f"data must be a non-empty string: {data!r}")
        if len(data) > 65536:
            raise ValueError("data is longer than 65536 characters: send it in parts")
        root = self._root
        async with root.target.instance("write to a UART"):
            try:
                with anyio.fail_after(root.command_timeout):  # a Renode that stopped reading its PTY
                    await root.target.channels[console].write(data.encode())
            except TimeoutError:
                raise RenodeTimeoutError(
                    f"Renode did not read {console}'s input within {root.command_timeout:g}s"
                ) from None

    @export
    def output_tail(self, uart: str | None = None, lines: int = 50) -> str:
        """The last `lines` lines a UART printed since power-on (for failure reports)."""
        if not isinstance(lines, int | float) or not 0 < lines <= 10_000:
            raise ValueError(f"lines must be between 1 and 10000: {lines!r}")
        return self._root.target.channels[self._console(uart, "read output")].recent(int(lines))


DEFAULT_UART = "sysbus.uart0"
DEFAULT_MACHINE = "machine-0"


@pydantic_dataclass(kw_only=True, config=ConfigDict(extra="forbid"))
class MachineConfig:
    """One machine of a multi-machine target (`machines: {name: ...}`): the board-level keys of a target."""

    platform: str | None = None
    script: str | None = None
    uart: str = DEFAULT_UART
    uarts: dict[str, str] = Field(default_factory=dict)
    buttons: dict[str, str] = Field(default_factory=dict)
    leds: dict[str, str] = Field(default_factory=dict)
    load_address: StrictStr | StrictInt | None = None
    extra_commands: list[str] = Field(default_factory=list)
    gdb_port: int | None = Field(default=None, ge=0, le=65535)


@pydantic_dataclass(kw_only=True, config=ConfigDict(extra="forbid"))
class HubConfig:
    """A hub wiring peripherals of several machines (`hubs: {name: ...}`): `connect` lists `machine:peripheral`."""

    kind: Literal["uart", "can", "ethernet"]
    connect: list[str]


# Keys of a one-machine target that a multi-machine target sets per machine instead.
_MACHINE_KEYS = ("platform", "script", "uart", "uarts", "buttons", "leds", "load_address", "gdb_port", "machine_name")


@pydantic_dataclass(kw_only=True, config=ConfigDict(arbitrary_types_allowed=True, extra="forbid"))
class Renode(MachineCalls, Driver):
    """A board emulated by Renode (or several, `machines`), described entirely by the exporter config."""

    platform: str | None = None
    script: str | None = None
    uart: str | None = None  # default sysbus.uart0
    uarts: dict[str, str] = Field(default_factory=dict)
    buttons: dict[str, str] = Field(default_factory=dict)
    leds: dict[str, str] = Field(default_factory=dict)
    machine_name: str | None = None  # default machine-0
    machines: dict[str, MachineConfig] = Field(default_factory=dict)
    hubs: dict[str, HubConfig] = Field(default_factory=dict)
    monitor_port: int = Field(default=0, ge=0, le=65535)
    extra_commands: list[str] = Field(default_factory=list)
    allow_raw_monitor: bool = False
    renode_path: str | None = None
    load_address: StrictStr | StrictInt | None = None
    startup_timeout: float = Field(default=60.0, gt=0, le=3600)
    command_timeout: float = Field(default=30.0, gt=0, le=3600)
    console_backlog: int = Field(default=DEFAULT_BACKLOG, ge=0, le=256 * 1024 * 1024)
    autostart: bool = True
    warm_start: bool = True
    gdb_port: int | None = Field(default=None, ge=0, le=65535)
    expect_host_timeout: float = Field(default=600.0, gt=0, le=24 * 3600)

    def __post_init__(self):
        self._renode_log_level = _split_log_level(self)
        super().__post_init__()
        self._specs = self._validate()
        names = {m.name for m in self._specs}
        self._hubs = tuple(_hub_spec(name, hub, names) for name, hub in self.hubs.items())
        spec = self.board_spec()
        self._root, self._machine = self, None if spec.several else self._specs[0]
        channels = {uart.key: UartChannel(uart.key, self.console_backlog) for uart in spec.uarts}
        label = "+".join(m.name for m in self._specs)[:64]  # names the target's log and work dir
        self._target = Target(self.board_spec, channels, label, self.warm_start)
        self._images = itertools.count(1)
        self.children["power"] = RenodePower(parent=self)
        if spec.several:
            for machine in self._specs:
                self.children[machine.name] = RenodeMachine(root=self, spec=machine)
        else:
            _add_machine_children(self, self, self._specs[0])
        if self.monitor_port:
            self.logger.warning(
                "monitor_port=%d is ignored: the monitor runs over a private pipe, never a TCP port", self.monitor_port
            )

    def _validate(self) -> list[MachineSpec]:
        for command in self.extra_commands:
            commands.check_line(command, "extra_commands entry")
        if not self.machines:
            if self.hubs:
                raise ValueError("`hubs` wire machines together: list them under `machines`")
            name = self.machine_name if self.machine_name is not None else DEFAULT_MACHINE
            commands.check_name(name, "machine_name")
            board = MachineConfig(
                platform=self.platform,
                script=self.script,
                uart=self.uart if self.uart is not None else DEFAULT_UART,
                uarts=self.uarts,
                buttons=self.buttons,
                leds=self.leds,
                load_address=self.load_address,
                gdb_port=self.gdb_port,
            )
            return [_machine_spec(name, board, "", GDB_PORT_IN_NAMESPACE)]
        for key in _MACHINE_KEYS:
            if getattr(self, key) not in (None, {}):
                raise ValueError(f"with `machines`, set `{key}` inside each machine, not at the top level")
        specs = []
        for name, board in self.machines.items():
            commands.check_name(name, "machines key")
            if name in _RESERVED_CHILDREN:
                raise ValueError(f"machines key {name!r} clashes with a built-in child, client method or command")
            specs.append(_machine_spec(name, board, f"machines[{name}].", GDB_PORT_IN_NAMESPACE + len(specs)))
        ports = [m.gdb_port for m in specs if m.gdb_port is not None]
        if len(set(ports)) < len(ports):
            raise ValueError(f"machines need distinct `gdb_port`s (0 picks a free one): {ports}")
        return specs

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.client.RenodeClient"

    # -- state shared with the children ----------------------------------------------------------

    @property
    def workdir(self) -> Path:
        """This target's private directory: log, PTY links, firmware copies, snapshots, Renode's temp files."""
        return self._target.workdir

    @property
    def target(self) -> Target:
        """The target's lifecycle: state, Renode instance, UART channels, firmware."""
        return self._target

    def board_spec(self) -> BoardSpec:
        return BoardSpec(
            renode_path=self.renode_path,
            machines=tuple(self._specs),
            extra_commands=tuple(self.extra_commands),
            log_level=self._renode_log_level,
            startup_timeout=self.startup_timeout,
            command_timeout=self.command_timeout,
            autostart=self.autostart,
            hubs=self._hubs,
        )

    def _spec_of(self, machine: str) -> MachineSpec:
        return next(m for m in self._specs if m.name == machine)

    async def store_firmware(self, chunks: AsyncIterator[bytes], address: str | int | None, machine: str) -> str:
        """Write an upload to the work dir, check it, and make it the machine's image; returns its format."""
        load_address = commands.parse_address(address) if address is not None else self._spec_of(machine).load_address
        images = self.workdir / "firmware"
        images.mkdir(exist_ok=True)
        path = images / f"image-{next(self._images)}"
        try:
            with path.open("wb") as out:  # page-cache writes of 64 KiB chunks: cheaper than a thread hop
                async for chunk in chunks:
                    out.write(chunk)
            kind = detect_format(path)
            if kind == "bin" and load_address is None:
                raise FirmwareError(
                    "this image is a raw binary (not ELF or Intel HEX): give its load address, e.g. "
                    "`flash fw.bin --load-address 0x08000000`, or set `load_address` in the exporter config"
                )
            address = load_address if kind == "bin" else None
            firmware = Firmware(path, kind, address, image_entry(path, kind, address))
            await self._target.store_firmware(machine, firmware)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return kind

    # -- exported calls ---------------------------------------------------------------------------

    @export
    async def monitor_cmd(self, command: str) -> str:
        """Run a raw monitor command; refused unless the exporter config sets allow_raw_monitor.

        :raises PermissionError: raw monitor access is not allowed on this exporter.
        :raises UnsafeInputError: the command contains control characters.
        :raises RenodeCommandError: Renode answered with an error (its text is in the message).
        """
        if not self.allow_raw_monitor:
            raise PermissionError(
                "raw monitor access is disabled on this exporter (set `allow_raw_monitor: true` in its config "
                "to allow it: the monitor can read and write host files)"
            )
        commands.check_line(command)
        async with self._target.instance("run a monitor command") as instance:
            instance.raw_used = True  # it may change what a Clear keeps: this Renode never serves another lease
            return await instance.execute(command)

    # -- virtual time ----------------------------------------------------------------------------

    @export
    async def pause(self) -> None:
        """Pause the emulation (virtual time stops)."""
        async with self._target.instance("pause") as instance:
            await instance.pause()

    @export
    async def resume(self) -> None:
        """Resume the emulation."""
        async with self._target.instance("resume") as instance:
            await instance.resume()

    @export
    async def run_for(self, seconds: float) -> float:
        """Run exactly `seconds` of virtual time, then pause; returns the virtual time reached."""
        commands.format_virtual_time(seconds)
        async with self._target.instance("run for a virtual time") as instance:
            # RunFor blocks the monitor for the whole interval: allow for emulation slower than real time.
            await instance.run_for(seconds, timeout=self.command_timeout + 20 * seconds)
            return await instance.virtual_time()

    @export
    async def virtual_time(self) -> float:
        """The machine's virtual clock, in seconds."""
        async with self._target.instance("read the virtual time") as instance:
            return await instance.virtual_time()

    # -- snapshots -------------------------------------------------------------------------------

    def _snapshot_path(self, name: str) -> Path:
        commands.check_name(name, "snapshot name")
        folder = self.workdir / "snapshots"
        folder.mkdir(exist_ok=True)
        return folder / f"{name}.save"

    @export
    async def save_snapshot(self, name: str) -> None:
        """Save the whole emulation under `name` (in this target's private directory)."""
        await self._target.save(self._snapshot_path(name))

    @export
    async def restore_snapshot(self, name: str) -> None:
        """Replace the emulation with snapshot `name`; the run state (running/paused) is kept."""
        path = self._snapshot_path(name)
        if not path.is_file():
            raise ValueError(f"no snapshot named {name!r} (have: {', '.join(self.list_snapshots()) or 'none'})")
        await self._target.restore(path)

    @export
    def list_snapshots(self) -> list[str]:
        folder = self.workdir / "snapshots"
        return sorted(p.stem for p in folder.glob("*.save")) if folder.is_dir() else []

    # -- logs ------------------------------------------------------------------------------------

    @export
    def log(self, lines: int = 50) -> str:
        """The last `lines` lines of this target's Renode log (kept after power off)."""
        if not isinstance(lines, int | float) or not 0 < lines <= 100_000:
            raise ValueError(f"lines must be between 1 and 100000: {lines!r}")
        return "\n".join(tail(self.workdir / "renode.log", int(lines)))

    @export
    async def follow_log(self) -> AsyncGenerator[str, None]:
        """Stream the Renode log: the lines so far, then new lines as Renode writes them."""
        follower = LogFollower(self.workdir / "renode.log")
        try:
            while True:
                for line in follower.new_lines():
                    yield line
                await anyio.sleep(0.2)  # a file has no change notification we can rely on everywhere
        finally:
            follower.close()

    def close(self):
        self._target.kill()  # close() runs on the event loop thread: no waiting here
        super().close()


def _split_log_level(driver: Renode) -> str | None:
    """`log_level` sets both Renode's log level and the driver's Python logger level."""
    level = str(driver.log_level).lower()
    if level not in commands.LOG_LEVELS:
        raise ValueError(f"log_level must be one of {', '.join(commands.LOG_LEVELS)}: {driver.log_level!r}")
    driver.log_level = "DEBUG" if level == "noisy" else level.upper()
    return level


def _machine_spec(name: str, board: MachineConfig, where: str, free_port: int) -> MachineSpec:
    """A machine's config, checked (`where` prefixes key names in errors: `machines[a].`); `gdb_port: 0`
    becomes `free_port` (a port of Renode's private network namespace)."""
    if (board.platform is None) == (board.script is None):
        raise ValueError(f"set exactly one of `{where}platform` (a .repl file) or `{where}script` (a .resc file)")
    _check_board_files(board.platform, board.script)
    commands.check_peripheral(board.uart, f"{where}uart")
    taken: dict[str, str] = {}
    for key in ("uarts", "buttons", "leds"):
        for child, peripheral in getattr(board, key).items():
            commands.check_name(child, f"{where}{key} key")
            if child in _RESERVED_CHILDREN:
                raise ValueError(
                    f"{where}{key} key {child!r} clashes with a built-in child, client method or command; pick another"
                    " name"
                )
            if child in taken:
                raise ValueError(
                    f"{where}{key} key {child!r} is also a key of {taken[child]}: children need distinct names"
                )
            taken[child] = key
            commands.check_peripheral(peripheral, f"{where}{key}[{child}]")
    for command in board.extra_commands:
        commands.check_line(command, f"{where}extra_commands entry")
    return MachineSpec(
        name=name,
        platform=board.platform,
        script=Path(board.script) if board.script else None,
        uarts={MAIN_CONSOLE: board.uart, **board.uarts},
        buttons=dict(board.buttons),
        leds=dict(board.leds),
        extra_commands=tuple(board.extra_commands),
        gdb_port=None if board.gdb_port is None else (board.gdb_port or free_port),
        load_address=None if board.load_address is None else commands.parse_address(board.load_address),
    )


def _check_board_files(platform: str | None, script: str | None) -> None:
    if platform is not None:
        commands.platform_token(platform)
        if platform.startswith("/") and not Path(platform).is_file():
            raise ValueError(f"platform file not found: {platform}")
    if script is not None:
        if not Path(script).is_absolute():
            raise ValueError(f"script must be an absolute path (Renode changes its working directory): {script}")
        if not Path(script).is_file():
            raise ValueError(f"script file not found: {script}")
        commands.path_token(script)


def _hub_spec(name: str, hub: HubConfig, machines: set[str]) -> HubSpec:
    """A hub's config, checked: every connection names a machine of the target and a peripheral path."""
    commands.check_name(name, "hubs key")
    if name.startswith("term_"):
        raise ValueError(f"hubs key {name!r}: names starting with `term_` are the driver's UART terminals")
    connect: list[tuple[str, str]] = []
    for item in hub.connect:
        machine, sep, peripheral = item.partition(":")
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
    return HubSpec(name, hub.kind, tuple(connect))


def _add_machine_children(root: Renode, owner: Driver, machine: MachineSpec) -> None:
    """A machine's flasher, consoles, GDB, buttons and LEDs, as children of `owner`."""
    owner.children["flasher"] = RenodeFlasher(parent=root, machine=machine.name)
    for uart in root.board_spec().uarts:
        if uart.machine == machine.name:
            owner.children[uart.console] = RenodeConsole(channel=root.target.channels[uart.key])
    if machine.gdb_port is not None:
        owner.children["gdb"] = RenodeGdb(parent=root, machine=machine.name)
    for name, peripheral in machine.buttons.items():
        owner.children[name] = RenodeButton(parent=root, machine=machine.name, peripheral=peripheral)
    for name, peripheral in machine.leds.items():
        owner.children[name] = RenodeLed(parent=root, machine=machine.name, peripheral=peripheral, label=name)


@dataclass(kw_only=True)
class RenodeMachine(MachineCalls, Driver):
    """One machine of a multi-machine target: flasher, consoles, GDB, buttons, LEDs, reset and UART calls."""

    root: Renode
    spec: MachineSpec

    def __post_init__(self):
        super().__post_init__()
        self._root, self._machine = self.root, self.spec
        _add_machine_children(self.root, self, self.spec)

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.client.RenodeMachineClient"


@dataclass(kw_only=True)
class RenodePower(PowerInterface, Driver):
    parent: Renode

    @export
    async def on(self) -> None:
        """Start Renode and the board (idempotent); a failed start leaves nothing running."""
        await self.parent.target.power_on()

    @export
    async def off(self) -> None:
        """Stop Renode (idempotent): `quit`, then SIGTERM, then SIGKILL; reaped before returning."""
        await self.parent.target.power_off()

    @export
    async def read(self) -> AsyncGenerator[PowerReading, None]:
        raise NotImplementedError("a Renode target has no power measurement")
        yield  # pragma: no cover - makes this an async generator like the interface


@dataclass(kw_only=True)
class RenodeFlasher(FlasherInterface, Driver):
    parent: Renode
    machine: str

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.client.RenodeFlasherClient"

    @export
    async def flash(self, source, target: str | None = None) -> str:
        """Store an image (ELF, Intel HEX or raw binary; `target` = load address for raw binaries).

        Before power-on the image is loaded by `on`; while running it is loaded now and the machine reset.
        """
        async with self.resource(source) as res:  # resources are registered on this child
            return await self.parent.store_firmware(res, target, self.machine)

    @export
    async def dump(self, target, partition: str | None = None):
        raise NotImplementedError("reading firmware back from a Renode target is not supported")


@dataclass(kw_only=True)
class RenodeGdb(NetworkInterface, Driver):
    """Renode's GDB server, reachable only through Jumpstarter (`j board gdb forward-tcp 3333`)."""

    parent: Renode
    machine: str

    @exportstream
    @asynccontextmanager
    async def connect(self):
        socket_path = self.parent.target.gdb_socket(self.machine)
        async with await anyio.connect_unix(str(socket_path)) as stream:
            yield stream


@dataclass(kw_only=True)
class RenodeConsole(Driver):
    """A UART of the board as a serial console (use with PySerial's client: pexpect, `start-console`)."""

    channel: UartChannel = field(repr=False)

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.client.RenodeConsoleClient"

    @exportstream
    @asynccontextmanager
    async def connect(self):
        async with self.channel.subscribe() as stream:
            yield stream
