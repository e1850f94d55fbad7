"""The Renode composite driver: configuration, power, flasher and console children."""

from __future__ import annotations

import itertools
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

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
from .instance import BoardSpec, Firmware
from .lifecycle import Target
from .netns import GDB_PORT_IN_NAMESPACE
from .process import tail
from .uart import DEFAULT_BACKLOG, UartChannel

MAIN_CONSOLE = "console"
# A child's name is also an attribute of the client and a `j` subcommand: it must not hide either.
_CLI_COMMANDS = {"pause", "resume", "run-for", "time", "expect", "write", "snapshot", "log", "monitor", "reset"}
_RESERVED_CHILDREN = (
    {"power", "flasher", MAIN_CONSOLE, "gdb"}
    | _CLI_COMMANDS
    | {name for name in dir(RenodeClient) if not name.startswith("_")}
)


@pydantic_dataclass(kw_only=True, config=ConfigDict(arbitrary_types_allowed=True, extra="forbid"))
class Renode(Driver):
    """A board emulated by Renode, described entirely by the exporter config."""

    platform: str | None = None
    script: str | None = None
    uart: str = "sysbus.uart0"
    uarts: dict[str, str] = Field(default_factory=dict)
    buttons: dict[str, str] = Field(default_factory=dict)
    leds: dict[str, str] = Field(default_factory=dict)
    machine_name: str = "machine-0"
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
        self._validate()
        channels = {name: UartChannel(name, self.console_backlog) for name in [MAIN_CONSOLE, *self.uarts]}
        self._target = Target(self.board_spec, channels, self.machine_name, self.warm_start)
        self._images = itertools.count(1)
        self.children["power"] = RenodePower(parent=self)
        self.children["flasher"] = RenodeFlasher(parent=self)
        for name, channel in channels.items():
            self.children[name] = RenodeConsole(channel=channel)
        if self.gdb_port is not None:
            self.children["gdb"] = RenodeGdb(parent=self)
        for name, peripheral in self.buttons.items():
            self.children[name] = RenodeButton(parent=self, peripheral=peripheral)
        for name, peripheral in self.leds.items():
            self.children[name] = RenodeLed(parent=self, peripheral=peripheral, label=name)
        if self.monitor_port:
            self.logger.warning(
                "monitor_port=%d is ignored: the monitor runs over a private pipe, never a TCP port", self.monitor_port
            )

    def _validate(self) -> None:
        if (self.platform is None) == (self.script is None):
            raise ValueError("set exactly one of `platform` (a .repl file) or `script` (a .resc file)")
        self._validate_board_files()
        commands.check_name(self.machine_name, "machine_name")
        commands.check_peripheral(self.uart, "uart")
        taken: dict[str, str] = {}
        for key in ("uarts", "buttons", "leds"):
            for name, peripheral in getattr(self, key).items():
                commands.check_name(name, f"{key} key")
                if name in _RESERVED_CHILDREN:
                    raise ValueError(
                        f"{key} key {name!r} clashes with a built-in child, client method or command; pick another name"
                    )
                if name in taken:
                    raise ValueError(f"{key} key {name!r} is also a key of {taken[name]}: children need distinct names")
                taken[name] = key
                commands.check_peripheral(peripheral, f"{key}[{name}]")
        for command in self.extra_commands:
            commands.check_line(command, "extra_commands entry")
        if self.load_address is not None:
            self.load_address = commands.parse_address(self.load_address)

    def _validate_board_files(self) -> None:
        if self.platform is not None:
            commands.platform_token(self.platform)
            if self.platform.startswith("/") and not Path(self.platform).is_file():
                raise ValueError(f"platform file not found: {self.platform}")
        if self.script is not None:
            if not Path(self.script).is_absolute():
                raise ValueError(
                    f"script must be an absolute path (Renode changes its working directory): {self.script}"
                )
            if not Path(self.script).is_file():
                raise ValueError(f"script file not found: {self.script}")
            commands.path_token(self.script)

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
            machine_name=self.machine_name,
            platform=self.platform,
            script=Path(self.script) if self.script else None,
            uarts={MAIN_CONSOLE: self.uart, **self.uarts},
            extra_commands=tuple(self.extra_commands),
            log_level=self._renode_log_level,
            startup_timeout=self.startup_timeout,
            command_timeout=self.command_timeout,
            autostart=self.autostart,
            gdb_port=None if self.gdb_port is None else (self.gdb_port or GDB_PORT_IN_NAMESPACE),
            buttons=dict(self.buttons),
            leds=dict(self.leds),
        )

    async def store_firmware(self, chunks: AsyncIterator[bytes], address: str | int | None) -> str:
        """Write an upload to the work dir, check it, and make it the target's image; returns its format."""
        load_address = commands.parse_address(address) if address is not None else self.load_address
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
            await self._target.store_firmware(Firmware(path, kind, address, image_entry(path, kind, address)))
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return kind

    # -- exported calls --------------------------------------------------------------------------

    @export
    def get_platform(self) -> str | None:
        return self.platform

    @export
    def get_uart(self) -> str:
        return self.uart

    @export
    def get_machine_name(self) -> str:
        return self.machine_name

    @export
    async def reset_machine(self) -> None:
        """Reset the running machine in place (`machine Reset`): the firmware restarts from its image.

        :raises RenodeStateError: the target is off.
        """
        async with self._target.instance("reset the machine") as instance:
            await instance.reset()

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

    # -- waiting for output in virtual time --------------------------------------------------------

    def _console(self, uart: str | None) -> str:
        if uart is None or uart == MAIN_CONSOLE:
            return MAIN_CONSOLE
        if uart not in self.uarts:
            raise ValueError(f"no UART named {uart!r} (have: {', '.join([MAIN_CONSOLE, *self.uarts])})")
        return uart

    @export
    async def expect_output(
        self, pattern: str, timeout: float, uart: str | None = None, fail_on: list[str] | None = None
    ) -> dict:
        """Let the emulation run until the regex `pattern` appears in a UART's output, for at most
        `timeout` seconds of virtual time; returns how it ended (see `ExpectReply`).

        Matches output printed since the previous match on that UART (or power-on, or restore). A paused
        emulation stays paused where the wait ended; a running one keeps running.
        """
        console = self._console(uart)
        expect.check_pattern(pattern)
        if fail_on is None:
            fail_on = []
        if not isinstance(fail_on, list) or len(fail_on) > expect.MAX_FAIL_ON:
            raise ValueError(f"fail_on must be a list of at most {expect.MAX_FAIL_ON} regular expressions: {fail_on!r}")
        for item in fail_on:
            expect.check_pattern(item, "fail_on pattern")
        timeout = expect.check_timeout(timeout)
        async with self._target.instance("wait for UART output") as instance:
            reply = await instance.expect(console, pattern, fail_on, timeout, self.expect_host_timeout)
        return reply.as_dict()

    @export
    async def write_uart(self, data: str, uart: str | None = None) -> None:
        """Write `data` (UTF-8) to a UART's input; returns once it is in Renode's PTY.

        Unlike a console stream, the call returns after the write, so a following `expect_output` is sure
        to run the firmware with this input in its UART (deterministic input while paused).
        """
        console = self._console(uart)
        if not isinstance(data, str) or not data:
            raise ValueError(f"data must be a non-empty string: {data!r}")
        if len(data) > 65536:
            raise ValueError("data is longer than 65536 characters: send it in parts")
        async with self._target.instance("write to a UART"):
            try:
                with anyio.fail_after(self.command_timeout):  # a Renode that stopped reading its PTY
                    await self._target.channels[console].write(data.encode())
            except TimeoutError:
                raise RenodeTimeoutError(
                    f"Renode did not read {uart or MAIN_CONSOLE}'s input within {self.command_timeout:g}s"
                ) from None

    @export
    def output_tail(self, uart: str | None = None, lines: int = 50) -> str:
        """The last `lines` lines a UART printed since power-on (for failure reports)."""
        if not isinstance(lines, int | float) or not 0 < lines <= 10_000:
            raise ValueError(f"lines must be between 1 and 10000: {lines!r}")
        return self._target.channels[self._console(uart)].recent(int(lines))

    # -- snapshots -------------------------------------------------------------------------------

    def _snapshot_path(self, name: str) -> Path:
        commands.check_name(name, "snapshot name")
        folder = self.workdir / "snapshots"
        folder.mkdir(exist_ok=True)
        return folder / f"{name}.save"

    @export
    async def save_snapshot(self, name: str) -> None:
        """Save the whole emulation under `name` (in this target's private directory)."""
        path = self._snapshot_path(name)
        async with self._target.instance("save a snapshot") as instance:
            await instance.save(path)

    @export
    async def restore_snapshot(self, name: str) -> None:
        """Replace the emulation with snapshot `name`; the run state (running/paused) is kept."""
        path = self._snapshot_path(name)
        if not path.is_file():
            raise ValueError(f"no snapshot named {name!r} (have: {', '.join(self.list_snapshots()) or 'none'})")
        async with self._target.instance("restore a snapshot") as instance:
            await instance.restore(path)

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
        path = self.workdir / "renode.log"
        position = 0
        pending = ""
        while True:
            try:
                with path.open("r", errors="replace") as f:
                    if f.seek(0, 2) < position:  # rotated by a new power-on: start over
                        position = 0
                    f.seek(position)
                    pending += f.read()
                    position = f.tell()
            except FileNotFoundError:
                pass
            *complete, pending = pending.split("\n")
            for line in complete:
                yield line
            await anyio.sleep(0.2)  # a file has no change notification we can rely on everywhere

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

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.client.RenodeFlasherClient"

    @export
    async def flash(self, source, target: str | None = None) -> str:
        """Store an image (ELF, Intel HEX or raw binary; `target` = load address for raw binaries).

        Before power-on the image is loaded by `on`; while running it is loaded now and the machine reset.
        """
        async with self.resource(source) as res:  # resources are registered on this child
            return await self.parent.store_firmware(res, target)

    @export
    async def dump(self, target, partition: str | None = None):
        raise NotImplementedError("reading firmware back from a Renode target is not supported")


@dataclass(kw_only=True)
class RenodeGdb(NetworkInterface, Driver):
    """Renode's GDB server, reachable only through Jumpstarter (`j board gdb forward-tcp 3333`)."""

    parent: Renode

    @exportstream
    @asynccontextmanager
    async def connect(self):
        socket_path = self.parent.target.gdb_socket()
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
