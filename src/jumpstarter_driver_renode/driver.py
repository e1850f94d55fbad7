"""The Renode composite driver: its config, the calls about the whole emulation, and the machine children.

Each board feature adds its own children (features/); this module wires them to the config.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import anyio
from jumpstarter.driver import Driver, export
from jumpstarter_driver_power.driver import PowerInterface, PowerReading
from pydantic import ConfigDict, Field, StrictInt, StrictStr
from pydantic.dataclasses import dataclass as pydantic_dataclass

from . import commands
from .bounded import BoundedErrors
from .config import (
    MAIN_CONSOLE,
    Backlog,
    HostTimeout,
    HubConfig,
    HubKey,
    MachineConfig,
    MachineKey,
    MonitorLine,
    Port,
    Timeout,
    hub_specs,
    machine_specs,
)
from .errors import RenodeTimeoutError
from .features import FEATURES, expect
from .features.flasher import receive_image
from .lifecycle import Target
from .process import LogFollower, tail
from .session import run_for_limit
from .spec import BoardSpec, MachineSpec
from .uart import DEFAULT_BACKLOG, UartChannel


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
        """Reset the machine in place (`machine Reset`): the firmware boots again from its reset vector, with
        its flash as it was (on a multi-machine root: every machine, one after the other).

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
        fail_on = expect.check_fail_on(fail_on)
        timeout = expect.check_timeout(timeout)
        async with self._root.target.instance("wait for UART output") as instance:
            reply = await expect.wait(instance, console, pattern, fail_on, timeout, self._root.expect_host_timeout)
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
        count = int(commands.check_number(lines, "lines", 1, 10_000))
        return self._root.target.channels[self._console(uart, "read output")].recent(count)


@pydantic_dataclass(kw_only=True, config=ConfigDict(arbitrary_types_allowed=True, extra="forbid"))
class Renode(MachineCalls, BoundedErrors, Driver):
    """A board emulated by Renode (or several, `machines`), described entirely by the exporter config.

    The board-level keys of a one-machine target are checked as a `MachineConfig` (config.py).
    """

    platform: str | None = None
    script: str | None = None
    uart: str | None = None  # default sysbus.uart0
    uarts: dict[str, str] = Field(default_factory=dict)
    buttons: dict[str, str] = Field(default_factory=dict)
    leds: dict[str, str] = Field(default_factory=dict)
    machine_name: str | None = None  # default machine-0
    machines: dict[MachineKey, MachineConfig] = Field(default_factory=dict)
    hubs: dict[HubKey, HubConfig] = Field(default_factory=dict)
    monitor_port: Port = 0
    extra_commands: list[MonitorLine] = Field(default_factory=list)
    allow_raw_monitor: bool = False
    renode_path: str | None = None
    load_address: StrictStr | StrictInt | None = None
    non_volatile: list[str] | None = None  # memories whose contents persist (default: where the image is)
    startup_timeout: Timeout = 60.0
    command_timeout: Timeout = 30.0
    console_backlog: Backlog = DEFAULT_BACKLOG
    autostart: bool = True
    warm_start: bool = True
    gdb_port: Port | None = None
    expect_host_timeout: HostTimeout = 600.0

    def __post_init__(self):
        self._renode_log_level = _split_log_level(self)
        super().__post_init__()
        self._specs = machine_specs(self)
        self._hubs = hub_specs(self, self._specs)
        spec = self.board_spec()
        self._root, self._machine = self, None if spec.several else self._specs[0]
        channels = {uart.key: UartChannel(uart.key, self.console_backlog) for uart in spec.uarts}
        label = "+".join(m.name for m in self._specs)[:64]  # names the target's log and work dir
        self._target = Target(self.board_spec, channels, label, self.warm_start)
        self.children["power"] = RenodePower(parent=self)
        if spec.several:
            for machine in self._specs:
                self.children[machine.name] = RenodeMachine(root=self, spec=machine)
        else:
            add_machine_children(self, self, self._specs[0])
        for feature in FEATURES:  # children of the whole target (a CAN hub's bus)
            for name, child in feature.board_children(self, spec).items():
                if name in self.children:
                    raise ValueError(f"hubs key {name!r} is also the name of another child of this target: rename one")
                self.children[name] = child
        if self.monitor_port:
            self.logger.warning(
                "monitor_port=%d is ignored: the monitor runs over a private pipe, never a TCP port", self.monitor_port
            )

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
            machines=self._specs,
            extra_commands=tuple(self.extra_commands),
            log_level=self._renode_log_level,
            startup_timeout=self.startup_timeout,
            command_timeout=self.command_timeout,
            autostart=self.autostart,
            hubs=self._hubs,
        )

    async def store_firmware(self, chunks: AsyncIterator[bytes], address: str | int | None, machine: str) -> str:
        """Write an upload to the work dir, check it, and make it the machine's image; returns its format."""
        default = next(m for m in self._specs if m.name == machine).load_address
        firmware = await receive_image(chunks, self.workdir / "firmware", address, default)
        try:
            await self._target.store_firmware(machine, firmware)
        except BaseException:
            firmware.path.unlink(missing_ok=True)
            raise
        return firmware.kind

    async def erase_flash(self, machine: str) -> None:
        """Erase the machine's flash (blank, no images): now if on, else before the next power-on."""
        await self._target.store_firmware(machine, None)

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
            return await instance.session.execute(command)

    # -- virtual time ----------------------------------------------------------------------------

    @export
    async def pause(self) -> None:
        """Pause the emulation (virtual time stops)."""
        async with self._target.instance("pause") as instance:
            await instance.session.pause()

    @export
    async def resume(self) -> None:
        """Resume the emulation."""
        async with self._target.instance("resume") as instance:
            await instance.session.resume()

    @export
    async def run_for(self, seconds: float) -> float:
        """Run exactly `seconds` of virtual time, then pause; returns the virtual time reached."""
        commands.format_virtual_time(seconds)
        async with self._target.instance("run for a virtual time") as instance:
            await instance.session.run_for(seconds, timeout=run_for_limit(self.command_timeout, seconds))
            return await instance.session.virtual_time()

    @export
    async def virtual_time(self) -> float:
        """The machine's virtual clock, in seconds."""
        async with self._target.instance("read the virtual time") as instance:
            return await instance.session.virtual_time()

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
        count = int(commands.check_number(lines, "lines", 1, 100_000))
        return "\n".join(tail(self.workdir / "renode.log", count))

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


def add_machine_children(root: Renode, owner: Driver, machine: MachineSpec) -> None:
    """A machine's children (flasher, consoles, GDB, buttons, LEDs...): each feature adds its own."""
    spec = root.board_spec()
    for feature in FEATURES:
        owner.children.update(feature.children(root, machine, spec))


@dataclass(kw_only=True)
class RenodeMachine(MachineCalls, BoundedErrors, Driver):
    """One machine of a multi-machine target: flasher, consoles, GDB, buttons, LEDs, reset and UART calls."""

    root: Renode
    spec: MachineSpec

    def __post_init__(self):
        super().__post_init__()
        self._root, self._machine = self.root, self.spec
        add_machine_children(self.root, self, self.spec)

    @classmethod
    def client(cls) -> str:
        return "jumpstarter_driver_renode.client.RenodeMachineClient"


@dataclass(kw_only=True)
class RenodePower(BoundedErrors, PowerInterface, Driver):
    parent: Renode

    @export
    async def on(self) -> None:
        """Start Renode and the board (idempotent); a failed start leaves nothing running."""
        await self.parent.target.power_on()

    @export
    async def off(self) -> None:
        """Stop Renode (idempotent): the board's Renode is killed and reaped, or kept as a warm spare."""
        await self.parent.target.power_off()

    @export
    async def read(self) -> AsyncGenerator[PowerReading, None]:
        raise NotImplementedError("a Renode target has no power measurement")
        yield  # pragma: no cover - makes this an async generator like the interface
