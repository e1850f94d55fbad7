"""One powered-on target: a Renode process, its monitor, its UART terminals.

`RenodeInstance.start` brings a board up step by step and, if any step fails, tears down what it
started before raising: a failed power-on leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import shutil
import termios
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from . import commands, expect, gpio
from .errors import RenodeCommandError, RenodeError, RenodeStartError
from .monitor import MonitorClient, selected_machine
from .process import RenodeProcess, check_version, resolve_renode, tail
from .spec import BoardSpec, BootCpu, Firmware, HubSpec, MachineSpec, ProcessFiles, Uart
from .uart import UartChannel

logger = logging.getLogger(__name__)

LOG_TAIL_LINES = 20
DOWNLOAD_HINT = (
    "the platform needs a file from the network (usually its SVD) and Renode could not download it: give the "
    "exporter network access once so Renode's download cache (~/.config/renode) keeps it, or use a copy of the "
    "platform file whose `ApplySVD` points at a local file"
)
_TIME_RE = re.compile(r"virtual time:\s*(\d+):(\d+):(\d+(?:\.\d+)?)", re.IGNORECASE)


def parse_virtual_time(output: str) -> float:
    """Seconds from `currentTime` output (`Current virtual time: 00:00:01.000000`, six or nine decimals)."""
    m = _TIME_RE.search(output)
    if m is None:
        raise RenodeError(f"unexpected `currentTime` output: {output!r}")
    return int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])


_CPU_RE = re.compile(r"\[CPU: ([^\[\]\s]+)\[\d+\]\]")


def parse_cpu_names(output: str, machine: str | None) -> list[str]:
    """CPU names from `sysbus GetCPUs` (`[CPU: <machine>.<name>[<slot>]]` per CPU), machine prefix removed."""
    names = []
    for qualified in _CPU_RE.findall(output):
        prefix = f"{machine}."
        names.append(qualified[len(prefix) :] if machine and qualified.startswith(prefix) else qualified)
    return names


def _last_line(message: str) -> str:
    """Renode's error text without the "There was an error executing command" header."""
    lines = [line for line in message.splitlines() if line.strip()]
    return lines[-1].strip() if lines else message


def _swap_logs(retired: RenodeInstance, successor: RenodeInstance) -> None:
    """The successor's log takes the retired process's name, and the other way round (each process keeps
    writing to the file it opened)."""
    mine, theirs = retired.files.log, successor.files.log
    scratch = mine.with_name(mine.name + ".swap")
    for source, target in ((mine, scratch), (theirs, mine), (scratch, theirs)):
        with contextlib.suppress(FileNotFoundError):
            source.replace(target)
    retired.files = dataclasses.replace(retired.files, log=theirs)
    successor.files = dataclasses.replace(successor.files, log=mine)
    retired.workdir, successor.workdir = None, retired.workdir


def _keep_one_previous_log(workdir: Path) -> Path:
    """Each power-on writes a fresh renode.log; the previous run's stays as renode.previous.log. Returns
    the path of the new log. (Renode itself would rotate an existing log to renode.log.N, one more file
    per power-on.)"""
    for old in workdir.glob("renode.log.*"):
        old.unlink(missing_ok=True)
    current = workdir / "renode.log"
    if current.exists():
        current.replace(workdir / "renode.previous.log")
    return current


@dataclass(eq=False)
class RenodeInstance:
    spec: BoardSpec
    workdir: Path | None  # the target's directory while this Renode serves one (its log is renode.log there)
    process: RenodeProcess
    monitor: MonitorClient
    channels: dict[str, UartChannel]
    firmware: dict[str, Firmware] = field(default_factory=dict)  # machine -> its image
    version: tuple[int, int, int] = (0, 0, 0)
    running: bool = False  # whether the emulation is started (we are the only one who starts/pauses it)
    renode_names: dict[str, str] = field(default_factory=dict)  # machine -> its name in Renode (a script's own)
    boot_cpus: dict[str, BootCpu] = field(default_factory=dict)  # machine -> found on its first BIN or HEX load
    files: ProcessFiles | None = None
    links: dict[str, Path] = field(default_factory=dict)  # channel key -> the PTY link its channel reads
    raw_used: bool = False  # a raw monitor command ran here: what it changed outside the emulation may last
    reuses: int = 0  # emulations cleared or replaced in this process (Renode's memory grows with each)
    _reading: bool = False  # whether the target's UART channels read this process's PTYs

    @property
    def machine(self) -> str | None:
        """The Renode name of the first machine (the only one on a one-machine target), once created."""
        return self.renode_names.get(self.spec.machines[0].name)

    @property
    def log_path(self) -> Path:
        return self.files.log

    def gdb_socket(self, machine: str) -> Path | None:
        """The socket of a machine's GDB server, if it has one."""
        index = next((i for i, m in self.spec.gdb.items() if m.name == machine), None)
        return None if index is None else self.files.gdb_socket(index)

    @property
    def healthy(self) -> bool:
        """The process is alive and its monitor usable."""
        return self.process.returncode is None and self.monitor.broken is None

    @classmethod
    async def start(
        cls,
        spec: BoardSpec,
        workdir: Path,
        channels: dict[str, UartChannel],
        firmware: dict[str, Firmware],
        log: logging.Logger = logger,
    ) -> RenodeInstance:
        """A cold power-on: a new Renode, prepared and finished at once (logging to renode.log from the start)."""
        files = ProcessFiles.new(log=_keep_one_previous_log(workdir))
        instance = await cls.prepare(spec, channels, log, files)
        instance.workdir = workdir
        await instance.finish(firmware)
        return instance

    @classmethod
    async def prepare(
        cls,
        spec: BoardSpec,
        channels: dict[str, UartChannel],
        log: logging.Logger,
        files: ProcessFiles,
        on_spawn: Callable[[RenodeProcess], None] = lambda process: None,
    ) -> RenodeInstance:
        """The slow half of a power-on: Renode started, its log set, the machine and platform loaded.

        Nothing of the board runs yet and no UART is wired: a warm spare waits in this state.
        """
        try:
            executable = resolve_renode(spec.renode_path)
            version = await check_version(executable, spec.startup_timeout)
            gdb = [(files.gdb_socket(i), machine.gdb_port) for i, machine in spec.gdb.items()]
            process = await RenodeProcess.spawn(
                executable, files.dir, gdb, log, config_file=files.config, stderr_path=files.stderr, tmp_dir=files.tmp
            )
        except BaseException:
            shutil.rmtree(files.dir, ignore_errors=True)
            raise
        on_spawn(process)
        self = cls(
            spec,
            None,
            process,
            MonitorClient(
                process.stdin,
                process.stdout,
                timeout=spec.command_timeout,
                describe_exit=lambda: self.describe_failure(),
                on_eof=lambda: process.wait_exit(2.0),
                log=log,
            ),
            channels,
            version=version,
            files=files,
        )
        await self._stop_on_failure(self._prepare())
        return self

    async def finish(self, firmware: dict[str, Firmware]) -> None:
        """The fast half of a power-on: UARTs wired, extra commands, firmware loaded, GDB, started."""
        self.firmware = dict(firmware)
        await self._stop_on_failure(self._finish())

    async def _stop_on_failure(self, step: Awaitable[None]) -> None:
        try:
            await step
        except BaseException:
            with contextlib.suppress(Exception), anyio.CancelScope(shield=True):
                await self.stop()  # also when the caller went away mid-start: never leave Renode behind
            raise

    async def _prepare(self) -> None:
        try:
            await self.monitor.wait_ready(self.spec.startup_timeout)
        except RenodeError as exc:
            raise RenodeStartError(f"Renode did not start: {exc}") from exc
        await self._build()

    async def _build(self) -> None:
        """Everything of a spare after Renode's start: log, machines, terminals, hubs, helpers, checks."""
        spec = self.spec
        await self.monitor.execute(commands.log_file(self.log_path))
        if spec.log_level:
            await self.monitor.execute(commands.log_level(spec.log_level))
        for machine in spec.machines:
            await self._create_machine(machine)
        await self._connect_uarts()
        for hub in spec.hubs:
            await self._create_hub(hub)
        for line in expect.include_helpers():
            await self.monitor.execute(line, timeout=spec.startup_timeout)
        await self._watch_uarts()
        await self._check_gpios()

    async def _finish(self) -> None:
        spec, run = self.spec, self.monitor.execute
        self._attach_channels()
        if spec.several:
            await run("mach clear")  # the target's own extra commands are about the whole emulation
        for command in spec.extra_commands:
            await run(command, timeout=spec.startup_timeout)
        for machine in spec.machines:
            for command in machine.extra_commands:
                await self.on(machine.name, command, timeout=spec.startup_timeout)
            if machine.name in self.firmware:
                await self._load(machine.name, self.firmware[machine.name])
        for machine in spec.gdb.values():
            await self.on(machine.name, commands.start_gdb_server(machine.gdb_port))
        if spec.autostart:
            await self.resume()

    def take_over(self, workdir: Path, channels: dict[str, UartChannel], log: logging.Logger) -> None:
        """A spare becomes a target's Renode: its log becomes renode.log in the target's directory, and the
        target's channels and logger are its own from now on (a spare may come from another lease)."""
        renode_log = _keep_one_previous_log(workdir)
        self.files.log.replace(renode_log)
        self.files = dataclasses.replace(self.files, log=renode_log)
        self.workdir, self.channels = workdir, channels
        self.process.log = self.monitor.log = log

    async def recycle(self) -> None:
        """Make this Renode, which served a board, a spare again: `Clear` gives a new emulation (machines,
        memory, terminals, hubs, GDB servers and virtual time go with the old one; the monitor forgets its
        variables and macros: infra Monitor.cs EmulationChanged), then it is built as a new spare is. Its
        log continues in a new file; the helpers are loaded again, which resets their state.
        """
        self.detach_channels()
        await self._stop_on_failure(self._recycle())

    async def _recycle(self) -> None:
        self.reuses += 1
        await self.monitor.execute("Clear", timeout=self.spec.startup_timeout)
        self.running, self.firmware, self.renode_names, self.boot_cpus, self.links = False, {}, {}, {}, {}
        self.files.own_log.unlink(missing_ok=True)
        self.files, self.workdir = dataclasses.replace(self.files, log=self.files.own_log), None
        await self._build()

    async def _create_machine(self, machine: MachineSpec) -> None:
        """A machine from its platform file, or whatever its script creates and selects."""
        run, timeout = self.monitor.execute, self.spec.startup_timeout
        if machine.script is not None:
            await run(commands.include_script(machine.script), timeout=timeout)
            created = selected_machine(self.monitor.prompt)
            if created is None or created in self.renode_names.values():
                raise RenodeStartError(f"script {machine.script} did not create or select a new machine")
            self.renode_names[machine.name] = created
            return
        await run(commands.mach_create(machine.name))
        self.renode_names[machine.name] = machine.name
        try:
            await run(commands.load_platform(machine.platform), timeout=timeout)
        except RenodeCommandError as exc:
            if "Failed to download" in exc.renode_message:
                raise RenodeStartError(f"{exc}; {DOWNLOAD_HINT}") from exc
            raise

    async def on(self, machine: str, command: str, timeout: float | None = None) -> str:
        """Run a command with `machine` selected (the prompt says which one is)."""
        name = self.renode_names[machine]
        if selected_machine(self.monitor.prompt) != name:
            await self.monitor.execute(commands.mach_set(name))
        return await self.monitor.execute(command, timeout)

    async def on_wait(self, machine: str, command: str, timeout: float) -> str:
        """`on` for a command that runs the board until something happens (see `execute_wait`)."""
        with anyio.CancelScope(shield=True):
            return await self.on(machine, command, timeout)

    async def _create_hub(self, hub: HubSpec) -> None:
        """A hub, and each listed peripheral connected to it (with its machine selected)."""
        await self.monitor.execute(hub.create_command())
        for machine, peripheral in hub.connect:
            try:
                await self.on(machine, commands.connect_uart(peripheral, hub.name))
            except RenodeCommandError as exc:
                said = exc.renode_message
                # Renode answers a name it cannot resolve with the command's signatures.
                why = "no such peripheral in that machine" if "did not match the signature" in said else said
                raise RenodeStartError(
                    f"hub `{hub.name}` ({hub.kind}): cannot connect `{machine}:{peripheral}`: {_last_line(why)}"
                ) from exc

    async def _connect_uarts(self) -> None:
        """A PTY terminal per console, connected to its UART (a channel reads it once the board starts)."""
        for uart in self.spec.uarts:
            link = self.files.uart_link(uart.slug)
            self.links[uart.key] = link
            await self.monitor.execute(commands.create_pty_terminal(uart.terminal, link))
            try:
                await self.on(uart.machine, commands.connect_uart(uart.peripheral, uart.terminal))
            except RenodeError as exc:
                raise RenodeStartError(
                    f"cannot connect UART `{uart.peripheral}` (console `{uart.key}`): the platform has no such "
                    f"UART? {exc}"
                ) from exc

    async def _watch_uarts(self) -> None:
        """Renode records each UART's output for `expect` (after the connects: see inside_renode/expect.py)."""
        for uart in self.spec.uarts:
            await self.on(uart.machine, expect.watch(uart.peripheral, uart.terminal))

    async def _check_gpios(self) -> None:
        """Every configured button and LED exists and is of its kind, or power-on fails naming it."""
        for machine in self.spec.machines:
            for kind, peripherals in (("button", machine.buttons), ("led", machine.leds)):
                for name, peripheral in peripherals.items():
                    try:
                        await self.on(machine.name, gpio.check(peripheral, kind))
                    except RenodeCommandError as exc:
                        what = f"{'button' if kind == 'button' else 'LED'} `{name}`"
                        if self.spec.several:
                            what += f" of machine `{machine.name}`"
                        raise RenodeStartError(f"{what}: {_last_line(exc.renode_message)}") from exc

    def _attach_channels(self, fresh: bool = True) -> None:
        for uart in self.spec.uarts:
            self.channels[uart.key].attach(self.links[uart.key], fresh)
        self._reading = True

    async def resume(self) -> None:
        await self.monitor.execute("start")
        self.running = True

    async def pause(self, timeout: float | None = None) -> None:
        await self.monitor.execute("pause", timeout)
        self.running = False

    async def run_for(self, seconds: float, timeout: float) -> None:
        """Run exactly `seconds` of virtual time, then stay paused (RunFor refuses a started emulation)."""
        if self.running:
            await self.pause()
        await self.monitor.execute(commands.run_for(seconds), timeout=timeout)

    async def expect(
        self, console: str, pattern: str, fail_on: list[str], timeout: float, host_timeout: float
    ) -> expect.ExpectReply:
        """Let the emulation run until `pattern` is printed on `console` (see `expect`); the run state stays.

        Input written to the console before the call reaches the UART before the machine runs.
        """
        uart = self._uart(console)
        written = self.channels[console].written
        line = expect.expect_command(uart.peripheral, pattern, fail_on, timeout, host_timeout, written)
        # Renode's helper may spend 5 s waiting for input, then the host limit twice (run, then pause).
        limit = 5 + 2 * host_timeout + self.spec.command_timeout
        reply = expect.parse_reply(await self.on_wait(uart.machine, line, limit))
        if reply.delivered < written:
            logger.warning(
                "%s: Renode had received %d of the %d input bytes written when the wait began: the rest reached "
                "the firmware later than the virtual time of the call",
                console,
                reply.delivered,
                written,
            )
        return reply

    def _uart(self, key: str) -> Uart:
        return next(uart for uart in self.spec.uarts if uart.key == key)

    async def virtual_time(self) -> float:
        return parse_virtual_time(await self.monitor.execute("currentTime"))

    async def save(self, path: Path) -> None:
        """Save the emulation, paused meanwhile, without this process's PTYs (inside_renode/terminals.py).

        Written beside `path` and renamed into place: a failed save keeps the previous snapshot, and a
        Renode still loading the previous one reads it whole.
        """
        was_running = self.running
        if was_running:
            await self.pause()  # no output may fall between disconnecting the terminals and the save
        partial = path.with_name(path.name + ".partial")
        parked: list[tuple[Uart, bool]] = []
        try:
            await self.monitor.execute("jumpstarter_unhook")
            await self._park_terminals(parked)
            await self.monitor.execute(commands.save_snapshot(partial), timeout=self.spec.startup_timeout)
            partial.replace(path)
        finally:
            partial.unlink(missing_ok=True)
            with anyio.CancelScope(shield=True):
                await self._unpark_terminals(parked)
                await self.monitor.execute("jumpstarter_hook")
                if was_running:
                    await self.resume()

    async def restore(self, path: Path) -> None:
        """Load a snapshot in place of the running emulation; the run state and the consoles stay.

        A snapshot that does not load leaves the emulation as it was.
        """
        was_running = self.running
        try:
            await self._load_snapshot(path)
        finally:
            if was_running and self.healthy:
                await self.resume()

    async def load_as_spare(self, path: Path, firmware: dict[str, Firmware]) -> None:
        """Make this Renode (read by no channel) hold snapshot `path`, paused, to take over at its restore."""
        self.firmware = dict(firmware)
        self.reuses += 1
        self._discard_unread()
        await self._stop_on_failure(self._load_snapshot(path))

    def _discard_unread(self) -> None:
        """Empty this process's PTYs: a Renode a restore replaced may hold output no channel took (its
        consoles did not read in time); it must not reach a console when this Renode runs the board again."""
        for link in self.links.values():
            try:
                fd = os.open(link, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                termios.tcflush(fd, termios.TCIFLUSH)
            except termios.error:
                pass
            finally:
                os.close(fd)

    async def _load_snapshot(self, path: Path) -> None:
        """Replace the emulation with a snapshot's, paused, and wire this process's terminals to it.

        Renode's `Load` keeps the current emulation when it fails, and so does this. After a `Load` no
        machine is selected, macros and GDB servers are gone (`Machine.gdbStubs` is rebuilt empty), and a
        reset no longer runs the reset macro (inside_renode/machine.py): all are set up again here.
        """
        if self.running:
            await self.pause()
        await self.drain_channels()  # what the replaced run printed is delivered before the new run's
        parked: list[tuple[Uart, bool]] = []
        try:
            await self.monitor.execute("jumpstarter_unhook")  # the watches of the replaced machines
            await self._park_terminals(parked)
            await self.monitor.execute(commands.load_snapshot(path), timeout=self.spec.startup_timeout)
        except BaseException:  # the emulation is still the old one: its terminals and watches come back
            with anyio.CancelScope(shield=True):
                await self._unpark_terminals(parked)
                await self.monitor.execute("jumpstarter_hook")
            raise
        await self._unpark_terminals(parked)
        for machine in self.spec.machines:
            if "unavailable" in await self.on(machine.name, "jumpstarter_rearm_reset"):
                logger.warning(
                    "this Renode cannot re-arm the reset macro after a snapshot load: resets may halt the CPU"
                )
            if machine.name in self.firmware:
                await self.on(machine.name, commands.reset_macro(await self._load_line(machine.name)))
        for machine in self.spec.gdb.values():
            await self.on(machine.name, commands.start_gdb_server(machine.gdb_port))
        await self._watch_uarts()
        if self._reading:  # the same PTYs: the channels only start counting and recording afresh
            self.detach_channels()
            self._attach_channels(fresh=False)

    async def _park_terminals(self, done: list[tuple[Uart, bool]]) -> None:
        """Disconnect each terminal and take it out of the emulation; `done` says how far each one got."""
        for uart in self.spec.uarts:
            await self.on(uart.machine, commands.disconnect_uart(uart.peripheral, uart.terminal))
            done.append((uart, False))
            await self.monitor.execute(commands.park_terminal(uart.terminal))
            done[-1] = (uart, True)

    async def _unpark_terminals(self, done: list[tuple[Uart, bool]]) -> None:
        """Undo `_park_terminals` as far as it got, in whichever emulation is current: every terminal is
        tried, and the first failure is raised after."""
        failure: RenodeError | None = None
        for uart, parked in done:
            try:
                if parked:
                    await self.monitor.execute(commands.unpark_terminal(uart.terminal))
                await self.on(uart.machine, commands.connect_uart(uart.peripheral, uart.terminal))
            except RenodeError as exc:
                failure = failure or exc
        done.clear()
        if failure is not None:
            raise failure

    async def drain_channels(self) -> None:
        """Deliver what the UARTs printed and the channels have not read yet (this process's PTYs)."""
        if self._reading:
            for uart in self.spec.uarts:
                await self.channels[uart.key].drain()

    async def sync_firmware(self, firmware: dict[str, Firmware]) -> None:
        """Before a spare takes over: it answers, and its reset macros load the target's current images
        (it may have loaded the snapshot before a re-flash)."""
        await self.monitor.execute("version")
        for machine, image in firmware.items():
            if self.firmware.get(machine) != image:
                self.firmware[machine] = image
                await self.on(machine, commands.reset_macro(await self._load_line(machine)))

    async def hand_over(self, successor: RenodeInstance) -> None:
        """At a restore: this Renode stops running the board and `successor` (a spare holding the snapshot)
        reads the consoles from now on, paused; their log names are swapped. Nothing awaits after the switch."""
        if self.running:
            await self.pause()
        await self.drain_channels()
        self.detach_channels()
        successor.channels = self.channels
        successor.process.log = successor.monitor.log = self.monitor.log
        try:
            successor._attach_channels(fresh=False)
        except BaseException:  # e.g. its PTY link is gone: the consoles stay with this Renode
            self._attach_channels(fresh=False)
            raise
        _swap_logs(self, successor)

    async def _load(self, machine: str, firmware: Firmware) -> None:
        await self.on(machine, firmware.load_command(), timeout=self.spec.startup_timeout)
        if firmware.entry is not None:
            await self.on(machine, (await self._boot_cpu(machine)).entry_command(firmware.entry))
        # Renode's own board scripts reload the image on every reset through this macro. A reset also
        # forgets a BIN or HEX image's entry, so the macro sets it again.
        await self.on(machine, commands.reset_macro(await self._load_line(machine, firmware)))

    async def _load_line(self, machine: str, firmware: Firmware | None = None) -> str:
        """The image's load command, with its entry for BIN and HEX, as one monitor line."""
        firmware = firmware or self.firmware[machine]
        if firmware.entry is None:
            return firmware.load_command()
        return f"{firmware.load_command()}; {(await self._boot_cpu(machine)).entry_command(firmware.entry)}"

    async def _boot_cpu(self, machine: str) -> BootCpu:
        """The platform's first CPU, asked once: names differ between platforms (`cpu` is common, not universal)."""
        if machine not in self.boot_cpus:
            names = parse_cpu_names(await self.on(machine, "sysbus GetCPUs"), self.renode_names[machine])
            if not names:
                raise RenodeStartError("the platform has no CPU (`sysbus GetCPUs` listed none)")
            name = f"sysbus.{names[0]}"
            try:
                await self.on(machine, f"{name} VectorTableOffset")
                cortex_m = True
            except RenodeCommandError:  # only Cortex-M cores have a vector table offset
                cortex_m = False
            self.boot_cpus[machine] = BootCpu(name, cortex_m)
        return self.boot_cpus[machine]

    async def reflash(self, machine: str, firmware: Firmware) -> None:
        """Load a new image into a machine and reset it; the emulation keeps its run state."""
        was_running = self.running
        if was_running:
            await self.pause()  # LoadELF refuses an unpaused machine
        await self._load(machine, firmware)
        self.firmware[machine] = firmware
        await self.reset(machine)
        if was_running:
            await self.resume()

    async def reset(self, machine: str) -> None:
        """`machine Reset`; waits for output then match what the board prints from now on, not the last boot."""
        for uart in self.spec.uarts:  # before: the new boot prints at once
            if uart.machine == machine:
                await self.on(machine, expect.forget(uart.peripheral))
        await self.on(machine, "machine Reset")

    async def execute(self, command: str, timeout: float | None = None) -> str:
        return await self.monitor.execute(command, timeout)

    async def execute_wait(self, command: str, timeout: float) -> str:
        """A command that runs the board until something happens (bounded by its host time limit).

        Shielded: a client that gives up mid-wait (Ctrl-C) must not leave Renode answering a command
        nobody reads, or the next command would take that answer, time out, and fail the target.
        """
        with anyio.CancelScope(shield=True):
            return await self.monitor.execute(command, timeout)

    def why_failed(self) -> str:
        """How this Renode failed: its monitor's breakage (if any), then the process state and log tail."""
        broken = self.monitor.broken
        return f"monitor unusable: {broken}; {self.describe_failure()}" if broken else self.describe_failure()

    def describe_failure(self) -> str:
        parts = [self.process.describe_exit()]
        log = tail(self.log_path, LOG_TAIL_LINES)
        if log:
            parts.append("Renode log tail:\n  " + "\n  ".join(log))
        return "; ".join(parts)

    def detach_channels(self) -> None:
        """Stop reading the UARTs, if this process is the one they read (a spare never is)."""
        if self._reading:
            for uart in self.spec.uarts:
                self.channels[uart.key].detach()
            self._reading = False

    def _detach(self) -> None:
        self.detach_channels()
        for link in self.links.values():  # Renode's own links, if it did not remove them: never left behind
            with contextlib.suppress(OSError):
                link.unlink()

    async def stop(self) -> None:
        """Kill the process group and reap it; close the UARTs; remove the process's files.

        No `quit`: a powered-off board keeps nothing, and Renode's own exit (about 0.17 s on 1.16.1) would
        only remove what the driver removes itself (PTY links, config, temporary files). Shielded from
        cancellation (a client that disconnects mid-`off`), and bounded in time.
        """
        with anyio.CancelScope(shield=True):
            self._detach()
            try:
                await self.process.kill_and_reap()
            finally:
                shutil.rmtree(self.files.dir, ignore_errors=True)

    def kill(self) -> None:
        """Synchronous, no waiting (close() runs on the event loop): SIGKILL, then remove the files."""
        self._detach()
        self.process.kill()
        shutil.rmtree(self.files.dir, ignore_errors=True)
