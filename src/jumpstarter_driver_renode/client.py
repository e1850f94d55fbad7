"""Client side: `RenodeClient` (the composite), and the flasher and console clients."""

from __future__ import annotations

from contextlib import asynccontextmanager, contextmanager

import click
from jumpstarter.client import FlasherClient
from jumpstarter.client.core import DriverError
from jumpstarter.client.decorators import driver_click_group
from jumpstarter.client.flasher import PathBuf
from jumpstarter_driver_composite.client import CompositeClient
from jumpstarter_driver_pyserial.client import PySerialClient

from .bounded import bound
from .errors import ExpectError, ExpectFailed, ExpectTimeout


class MachineCalls:
    """The calls about one machine: a one-machine target's client has them, and each machine of a
    multi-machine target (`client.<machine>`)."""

    @property
    def platform(self) -> str | None:
        return self.call("get_platform")

    @property
    def uart(self) -> str:
        return self.call("get_uart")

    @property
    def machine_name(self) -> str:
        return self.call("get_machine_name")

    def reset_machine(self) -> None:
        """Reset the machine in place (`machine Reset`), without restarting Renode: the firmware reboots.
        (On a multi-machine target itself: every machine, one after the other.)

        :raises DriverError: the target is off, or Renode failed.
        """
        self.call("reset_machine")

    def reset(self) -> None:
        """Short name of `reset_machine()` (the driver's own `reset` is Jumpstarter's lease-start hook)."""
        self.reset_machine()

    def expect_output(
        self, pattern: str, timeout: float, uart: str | None = None, fail_on: list[str] | None = None
    ) -> float:
        """Wait for the regex `pattern` in a UART's output, letting the emulation run for at most `timeout`
        seconds of *virtual* time; returns the virtual time (s) at which the matching output was printed.

        Deterministic: the same firmware and the same input give the same time, whatever the host's load.
        Matches output printed since the previous match on that UART (default: the main console), or since
        power-on or the last snapshot restore. A paused emulation runs for the wait and stays paused at the
        match; a running one keeps running. Input sent while paused reaches the UART before it runs.

        :raises ExpectTimeout: the pattern did not appear in time (or the exporter's host time limit passed).
        :raises ExpectFailed: one of the `fail_on` regexes appeared first.
        :raises DriverError: a bad regex or UART name, the target is off, or Renode failed.
        """
        fail_on = list(fail_on or [])
        reply = self.call("expect_output", pattern, timeout, uart, fail_on)
        if reply["outcome"] == "match":
            return reply["time"]
        raise _expect_error(reply, pattern, timeout, uart or "console", fail_on)

    def write_uart(self, data: str, uart: str | None = None) -> None:
        """Type `data` into a UART (default: the main console), e.g. `"ticks on\\r"`.

        Returns once the bytes are in Renode's PTY: a following `expect_output` runs the firmware with them
        in its UART, at the virtual time the machine is paused at. (Writes through a console stream or
        pexpect travel asynchronously and may reach the UART later.)
        """
        self.call("write_uart", data, uart)

    def output_tail(self, uart: str | None = None, lines: int = 50) -> str:
        """The last `lines` lines a UART (default: the main console) printed since power-on."""
        return self.call("output_tail", uart, lines)


def _add_machine_commands(client: MachineCalls, base: click.Group) -> None:
    """The `expect`, `write` and `reset` subcommands of a machine."""

    @base.command(name="expect")
    @click.argument("pattern")
    @click.option("--timeout", "-t", type=click.FloatRange(min=0), required=True, help="Virtual seconds")
    @click.option("--uart", default=None, help="UART name (default: the main console)")
    @click.option("--fail-on", multiple=True, help="Regex that fails the wait if it appears first")
    def expect_cmd(pattern, timeout, uart, fail_on):
        """Run until regex PATTERN appears on a UART; print the virtual time of the match"""
        try:
            click.echo(f"{client.expect_output(pattern, timeout, uart, list(fail_on)):.9f}")
        except ExpectError as exc:
            raise click.ClickException(str(exc)) from None

    @base.command(name="write")
    @click.argument("text")
    @click.option("--uart", default=None, help="UART name (default: the main console)")
    @click.option("--line", "-l", is_flag=True, help="Append a carriage return (Enter)")
    def write_cmd(text, uart, line):
        """Type TEXT into a UART (returns once Renode has it)"""
        client.write_uart(text + ("\r" if line else ""), uart)

    @base.command(name="reset")
    def reset_cmd():
        """Reset the running machine (firmware restarts; Renode keeps running)"""
        client.reset_machine()


class RenodeClient(MachineCalls, CompositeClient):
    """A board emulated by Renode: `power`, `flasher`, `console` (+ named UARTs, `gdb`) children, reset,
    snapshots, virtual time, logs and (when the exporter allows it) raw monitor commands.

    Calls that need a running board raise `DriverError` saying the target is off, or how Renode ended
    if it died; bad arguments are refused before anything reaches Renode.
    """

    def monitor_cmd(self, command: str) -> str:
        """Run a raw monitor command (only if the exporter sets allow_raw_monitor); returns its output.

        :raises DriverError: not allowed on this exporter, control characters, or Renode's own error text.
        """
        return self.call("monitor_cmd", command)

    def pause(self) -> None:
        """Pause the emulation: virtual time stops.

        :raises DriverError: the target is off, or Renode failed.
        """
        self.call("pause")

    def resume(self) -> None:
        """Resume the emulation."""
        self.call("resume")

    def run_for(self, seconds: float) -> float:
        """Run exactly `seconds` of virtual time, then pause; returns the virtual time reached.

        :raises DriverError: a duration outside (0, 100 h), the target is off, or Renode failed.
        """
        return self.call("run_for", seconds)

    def virtual_time(self) -> float:
        """The virtual clock in seconds."""
        return self.call("virtual_time")

    def save_snapshot(self, name: str) -> None:
        """Save the emulation as snapshot `name` (letters, digits, `_`, `.`, `-`).

        :raises DriverError: a bad name, the target is off, or Renode failed.
        """
        self.call("save_snapshot", name)

    def restore_snapshot(self, name: str) -> None:
        """Restore snapshot `name`: the fast way to reset a board between tests.

        :raises DriverError: no such snapshot, the target is off, or Renode failed.
        """
        self.call("restore_snapshot", name)

    def list_snapshots(self) -> list[str]:
        return self.call("list_snapshots")

    def log(self, lines: int = 50) -> str:
        """The last `lines` lines of the target's Renode log."""
        return self.call("log", lines)

    def follow_log(self):
        """Yield Renode log lines as they are written (the existing ones first)."""
        yield from self.streamingcall("follow_log")

    def cli(self):  # noqa: C901 - one nested function per subcommand
        base = super().cli()
        base.help = "Renode virtual board: power, flasher, consoles, reset, snapshots, virtual time, logs"

        @base.command(name="pause")
        def pause_cmd():
            """Pause the emulation"""
            self.pause()

        @base.command(name="resume")
        def resume_cmd():
            """Resume the emulation"""
            self.resume()

        @base.command(name="run-for")
        @click.argument("seconds", type=click.FloatRange(min=0, min_open=True))
        def run_for_cmd(seconds):
            """Run SECONDS of virtual time, then pause"""
            click.echo(f"{self.run_for(seconds):.6f}")

        @base.command(name="time")
        def time_cmd():
            """Print the virtual time in seconds"""
            click.echo(f"{self.virtual_time():.6f}")

        @base.group()
        def snapshot():
            """Save, restore and list emulation snapshots"""

        @snapshot.command(name="save")
        @click.argument("name")
        def snapshot_save(name):
            """Save the emulation as NAME"""
            self.save_snapshot(name)

        @snapshot.command(name="restore")
        @click.argument("name")
        def snapshot_restore(name):
            """Restore snapshot NAME"""
            self.restore_snapshot(name)

        @snapshot.command(name="list")
        def snapshot_list():
            """List saved snapshots"""
            for name in self.list_snapshots():
                click.echo(name)

        @base.command(name="log")
        @click.option("-n", "--lines", default=50, show_default=True, type=click.IntRange(1, 100_000))
        @click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C to stop)")
        def log_cmd(lines, follow):
            """Print the tail of the target's Renode log"""
            if not follow:
                click.echo(self.log(lines))
                return
            try:
                for line in self.follow_log():
                    click.echo(line)
            except KeyboardInterrupt:
                pass

        @base.command(context_settings={"ignore_unknown_options": True})
        @click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
        def monitor(command):
            """Run a raw Renode monitor command (needs allow_raw_monitor on the exporter)"""
            output = self.monitor_cmd(" ".join(command))
            if output:
                click.echo(output)

        _add_machine_commands(self, base)
        return base


WHOLE_TAIL = "the whole output is the error's `tail`"


def _expect_error(reply: dict, pattern: str, timeout: float, uart: str, fail_on: list[str]) -> ExpectError:
    tail = reply["tail"]
    last = f"; last output on {uart}:\n{tail}" if tail else f"; {uart} printed nothing since the previous match"
    if reply["outcome"] == "fail":
        failing = fail_on[int(reply["failing"])]
        return ExpectFailed(
            bound(
                f"{failing!r} (fail_on) appeared on {uart} at virtual time {reply['time']:.6f} s before {pattern!r}: "
                f"{reply['matched']!r}{last}",
                whole=WHOLE_TAIL,
            ),
            pattern,
            reply["time"],
            tail,
            failing,
        )
    if reply["outcome"] == "host-timeout":
        why = (
            f"the exporter's host time limit (expect_host_timeout) passed at virtual time {reply['now']:.6f} s: "
            f"the emulation runs slower than that allows"
        )
    else:
        why = f"it did not appear within {timeout} s of virtual time (now {reply['now']:.6f} s)"
    return ExpectTimeout(
        bound(f"waiting for {pattern!r} on {uart}: {why}{last}", whole=WHOLE_TAIL), pattern, reply["now"], tail
    )


class RenodeMachineClient(MachineCalls, CompositeClient):
    """One machine of a multi-machine target: `flasher`, `console` (+ named UARTs, buttons, LEDs, `gdb`)
    children, reset and UART waits; power, snapshots and virtual time are the target's (its parent)."""

    def cli(self):
        base = super().cli()
        base.help = "One machine of a Renode emulation: flasher, consoles, reset, expect, write"
        _add_machine_commands(self, base)
        return base


class RenodeFlasherClient(FlasherClient):
    """FlasherClient plus a load address for raw binaries."""

    def flash(self, path: PathBuf, *, target: str | None = None, load_address: str | int | None = None, **kwargs):
        """Flash an ELF, Intel HEX or raw binary; raw binaries need `load_address` (e.g. "0x08000000")."""
        if load_address is not None:
            if target is not None:
                raise ValueError("give either target or load_address, not both")
            target = hex(load_address) if isinstance(load_address, int) else load_address
        with _driver_error_unwrapped():
            return super().flash(path, target=target, **kwargs)

    def dump(self, path: PathBuf, **kwargs):
        with _driver_error_unwrapped():
            return super().dump(path, **kwargs)

    def erase(self) -> None:
        """Erase the machine's flash (it reads 0xFF) and forget its images; a running board is reset."""
        self.call("erase")

    def cut_power_at(self, operation: int, timeout: float = 10.0) -> bool:
        """Run until the firmware's `operation`th flash operation from now (program or erase) and cut the
        target's power just before it takes effect (the target is off afterwards); False if fewer came within
        `timeout` virtual seconds."""
        return self.call("cut_power_at", operation, timeout)

    def cli(self):
        @driver_click_group(self)
        def base():
            """Renode firmware loader (ELF, Intel HEX, raw binary) and flash"""

        @base.command()
        def erase():
            """Erase the flash (blank: reads 0xFF)"""
            self.erase()
            click.echo("erased")

        @base.command("cut-power-at")
        @click.argument("operation", type=int)
        @click.option("--timeout", default=10.0, show_default=True, help="Virtual seconds to wait for it")
        def cut_power_at(operation, timeout):
            """Cut power at the firmware's OPERATION-th flash operation from now"""
            if self.cut_power_at(operation, timeout):
                click.echo(f"power cut at flash operation {operation}")
            else:
                click.echo(f"fewer than {operation} flash operations within {timeout:g} s: nothing cut")

        @base.command()
        @click.argument("file")
        @click.option("--load-address", "-a", default=None, help="Load address for raw binaries, e.g. 0x08000000")
        def flash(file, load_address):
            """Flash FILE (format detected from its content)"""
            kind = self.flash(file, load_address=load_address)
            click.echo(f"flashed {file} ({kind})")

        @base.command()
        @click.argument("file")
        def dump(file):
            """Not supported on Renode targets"""
            self.dump(file)

        return base


@contextmanager
def _driver_error_unwrapped():
    """Transfers run in a task group: surface the driver's error itself, not the exception group."""
    try:
        yield
    except BaseExceptionGroup as group:
        errors = [e for e in _leaves(group) if isinstance(e, DriverError)]
        if errors:
            raise errors[0] from None
        raise


def _leaves(group: BaseExceptionGroup) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out


class RenodeConsoleClient(PySerialClient):
    """PySerial's client (pexpect, start-console, pipe) plus `start` as a short alias."""

    @asynccontextmanager
    async def stream_async(self, method):
        """Jumpstarter's stream, whose gRPC call is cancelled as the console leaves.

        Jumpstarter ends the call only when a cancellation happens to land in a gRPC read or write;
        otherwise (say, pexpect's socket closed and the input side half-closed first) the call stays
        open until the garbage collector finds it, maybe a minute later. Until then the exporter keeps
        the console subscribed to its UART: the next power-on's output goes to that dead console
        instead of the backlog the next console receives first, and the boot banner is lost.
        """
        call = None
        try:
            async with super().stream_async(method) as stream:
                call = stream.stream.context  # MetadataStream -> RouterStream -> grpc.aio call
                yield stream
        finally:
            if call is not None:  # after the stream's own close, which may still send its end of input
                call.cancel()

    def cli(self):
        base = super().cli()
        start_console = base.commands["start-console"]

        @base.command(name="start")
        def start():
            """Start the console (alias of start-console); exit with CTRL+B x 3"""
            click.get_current_context().invoke(start_console)

        return base
