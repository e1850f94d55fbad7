"""The Renode stand-in with several machines wired by hubs, as Renode 1.16.1 does it (tests/standin/hubs.py).

Two STM32F4 machines run the project's firmware; their USART3s share a UART hub (`emulation CreateUARTHub`,
`connector Connect sysbus.usart3 <hub>`). The firmware sends every console line on USART3 and prints
`bus: <line>` for each line it receives there (firmware/README.md), so a line typed on one console comes
out on the other. Error texts are Renode 1.16.1's, read from its sources (infra Core/ExternalsManager.cs,
Core/Connector.cs, Peripherals/UART/UARTHub.cs, Core/Machine.cs, Sockets/SocketsManager.cs) and checked
against real 1.16.1.
"""

import os
import re

from test_standin import ERROR_HEADER, RENODE_116, Console, connect, free_port, kill, read_fd_until, recv_until

PLATFORM = "platforms/boards/stm32f4_discovery-kit.repl"
QUANTUM_NS = 100_000  # Renode's default time quantum: a hub's character reaches the other machine at a sync point


class Pty:
    """One end of a UART's PTY terminal, read as it comes."""

    def __init__(self, link):
        self.fd = os.open(str(link), os.O_RDWR | os.O_NOCTTY)
        self.buf = b""

    def type(self, data):
        os.write(self.fd, data)

    def line(self):
        """The next whole line (with its `\\r\\n`)."""
        self.buf = read_fd_until(self.fd, lambda b: b"\r\n" in b, buf=self.buf)
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line + b"\r\n"

    def until(self, suffix):
        """Everything up to and including `suffix`."""
        self.buf = read_fd_until(self.fd, lambda b: suffix in b, buf=self.buf)
        end = self.buf.index(suffix) + len(suffix)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Boards:
    """The stand-in (1.16.1, plain) with machines `a` and `b` on the STM32F4 Discovery kit, each with the project
    firmware loaded and its USART2 on a PTY (`t_a`, `t_b`); `b` is selected at the end."""

    def __init__(self, fw, tmp_path, names=("a", "b")):
        self.c = Console("--plain", version=RENODE_116)
        self.fw, self.tmp, self.names = fw, tmp_path, names
        self.prompt = b"(monitor) "
        self.ptys = {}
        try:
            self.c.take(self.prompt)
            for name in names:
                assert self.cmd(f'mach create "{name}"', prompt=f"({name}) ") == ""
                for line in (
                    f"machine LoadPlatformDescription @{PLATFORM}",
                    f'emulation CreateUartPtyTerminal "t_{name}" "{self.link(name)}" true',
                    f"connector Connect sysbus.usart2 t_{name}",
                    f"sysbus LoadELF @{fw.elf}",
                ):
                    assert self.cmd(line) == ""
            self.open_ptys()
        except BaseException:
            self.close()
            raise

    def link(self, name):
        return self.tmp / ("uart_" + name)

    def open_ptys(self):
        for pty in self.ptys.values():
            pty.close()
        self.ptys = {name: Pty(self.link(name)) for name in self.names}

    def cmd(self, line, prompt=None):
        """Runs a monitor line; its output (between the echo and the next prompt)."""
        if prompt is not None:
            self.prompt = prompt.encode()
        self.c.send(line.encode() + b"\n")
        out = self.c.take(self.prompt)
        assert out.startswith(line.encode() + b"\n\r"), out
        return out[len(line) + 2 : -len(self.prompt)].decode()

    def select(self, name):
        assert self.cmd(f'mach set "{name}"', prompt=f"({name}) ") == ""

    def hub(self, name="bus", *extra):
        """A UART hub with every machine's USART3 on it."""
        assert self.cmd(" ".join([f'emulation CreateUARTHub "{name}"', *extra])) == ""
        for machine in self.names:
            self.select(machine)
            assert self.cmd(f"connector Connect sysbus.usart3 {name}") == ""

    def start(self):
        """Started; both banners read."""
        assert self.cmd("start") == "Starting emulation...\r\n\r"
        for pty in self.ptys.values():
            assert pty.line() == self.fw.banner + b"\r\n"

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        for pty in self.ptys.values():
            pty.close()
        kill(self.c.proc)


def test_a_line_typed_on_one_console_comes_out_on_the_other(firmware, tmp_path):
    with Boards(firmware(), tmp_path) as s:
        s.hub()
        s.start()
        a, b = s.ptys["a"], s.ptys["b"]
        a.type(b"hello\r")
        assert a.line() == b"echo: hello\r\n"
        assert b.line() == b"bus: hello\r\n"
        b.type(b"world\r")
        assert b.line() == b"echo: world\r\n"
        # no loopback: a's own `hello` never came back to it (it would have come before `bus: world`)
        assert a.line() == b"bus: world\r\n"
        # a bus line is no command, and is not sent back to the bus (no ping-pong between the boards)
        a.type(b"ticks on\r")
        assert a.until(b"tick 2\r\n") == b"echo: ticks on\r\ntick 1\r\ntick 2\r\n"
        assert b.line() == b"bus: ticks on\r\n"
        a.type(b"ticks off\r")
        assert b.line() == b"bus: ticks off\r\n"
        b.type(b"ping\r")
        assert b.line() == b"echo: ping\r\n"  # b never ticked
        assert re.fullmatch(rb"(tick \d+\r\n)*echo: ticks off\r\nbus: ping\r\n", a.until(b"bus: ping\r\n"))
        # the hub is a monitor object too (measured on 1.16.1)
        assert s.cmd("bus IsPaused; emulation IsStarted; machine IsPaused") == "False\r\r\nTrue\r\r\nFalse\r\r\n"
        # the monitor's Python sees the hub among the externals, after the terminals
        assert s.cmd('python "from Antmicro.Renode.Core import EmulationManager"') == ""
        names = 'python "print(list(EmulationManager.Instance.CurrentEmulation.ExternalsManager.GetNames()))"'
        assert s.cmd(names) == "['t_a', 't_b', 'bus']\r\r\n"
        kinds = 'python "print([e.GetType().Name for e in EmulationManager.Instance.CurrentEmulation.ExternalsManager.Externals])"'
        assert s.cmd(kinds) == "['UartPtyTerminal', 'UartPtyTerminal', 'UARTHub`1']\r\r\n"


def test_the_other_machine_receives_at_its_next_sync_point(firmware, tmp_path):
    """UARTHub.cs: the character is written into the other UART through that machine's time domain, at its first
    synced state after the sender's virtual time (the stand-in's firmware takes no time, so strictly after)."""
    script = tmp_path / "printed.py"
    script.write_text(
        "from Antmicro.Renode.Core import EmulationManager\n"
        "seen = []  # (machine, character, virtual ns) of everything the consoles print\n"
        "def hook(m):\n"
        "    return lambda c: seen.append((m.Name, chr(c), m.ElapsedVirtualTime.TimeElapsed.TotalNanoseconds))\n"
        "for m in EmulationManager.Instance.CurrentEmulation.Machines:\n"
        "    m['sysbus.usart2'].CharReceived += hook(m)\n"
        "def printed_at(name, text):\n"
        "    chars = [(c, t) for n, c, t in seen if n == name]\n"
        "    return chars[''.join(c for c, _ in chars).index(text)][1]\n"
    )
    with Boards(firmware(), tmp_path) as s:
        s.hub()
        assert s.cmd(f"include @{script}") == ""
        s.start()
        s.ptys["a"].type(b"hi\r")
        assert s.ptys["b"].line() == b"bus: hi\r\n"
        out = s.cmd("python \"print(printed_at('a', 'echo: hi'), printed_at('b', 'bus: hi'))\"")
        sent, received = (int(x) for x in out.split())
        assert sent > 0 and received == (sent // QUANTUM_NS + 1) * QUANTUM_NS


def test_errors(firmware, tmp_path):
    with Boards(firmware(), tmp_path) as s:

        def error(line, *lines):
            assert s.cmd(line) == (ERROR_HEADER % line) + "".join(x + "\r\n" for x in lines)

        assert s.cmd('emulation CreateUARTHub "bus"') == ""
        error('emulation CreateUARTHub "bus"', "External's name already in use")
        error('emulation CreateUARTHub "t_a"', "External's name already in use")  # one namespace with terminals
        error('emulation CreateUartPtyTerminal "bus" "%s"' % (tmp_path / "other"), "External's name already in use")
        assert s.cmd('emulation CreateCANHub "can"; emulation CreateSwitch "switch"') == ""
        error('emulation CreateSwitch "can"', "External's name already in use")
        error(
            "connector Connect sysbus.gpioPortA.UserButton bus", "Could not find a way to connect Button to UARTHub`1"
        )
        error("connector Connect sysbus.usart3 can", "Could not find a way to connect STM32_UART to CANHub")
        error("connector Connect sysbus.usart3 switch", "Could not find a way to connect STM32_UART to Switch")
        error("connector Connect t_a bus", "Could not find a way to connect UartPtyTerminal to UARTHub`1")
        error(
            "connector Disconnect sysbus.gpioPortA.UserButton bus",
            "Could not find a way to disconnect Button from UARTHub`1",
        )
        error(
            "connector Disconnect sysbus.usart3 bus",
            "Cannot detach from the provided UART as it is not registered in this hub.",
        )
        assert s.cmd("connector Connect sysbus.usart3 bus") == ""
        error(
            "connector Connect sysbus.usart3 bus",
            "Cannot attach to the provided UART as it is already registered in this hub.",
        )
        assert s.cmd("connector Disconnect sysbus.usart3 bus; connector Connect usart3 bus") == ""  # `using sysbus`
        listing = (
            "\r\nThe following methods are available:\r\n\r"
            " - Void Connect (IEmulationElement connectee, IConnectable connector)\r\n\r\r\n\r"
            "Usage:\r\n\r connector MethodName param1 param2 ...\r\n\r\r\n\r"
        )
        for line in ("connector Connect sysbus.usart9 bus", "connector Connect sysbus.usart3 nohub"):
            assert s.cmd(line) == listing + (ERROR_HEADER % line) + "Parameters did not match the signature\r\n"
        # the hub as a monitor object (bytes measured on 1.16.1); stopped until the emulation first runs
        assert s.cmd("bus IsPaused") == "True\r\r\n"
        error("bus Loopback", "bus does not provide a field, method or property Loopback.")
        assert s.cmd("bus") == (
            "\r\nThe following methods are available:\r\n\r - Void AttachTo (IUART<Byte> uart)\r\n\r"
            " - Void DebugLog (String message)\r\n\r - Void DetachFrom (IUART<Byte> uart)\r\n\r"
            " - Void ErrorLog (String message)\r\n\r - Void InfoLog (String message)\r\n\r"
            " - Void Log (LogLevel type, String message)\r\n\r - Void NoisyLog (String message)\r\n\r"
            " - Void Pause ()\r\n\r - Void Resume ()\r\n\r - Void Start ()\r\n\r"
            " - Void WarningLog (String message)\r\n\r\r\n\rUsage:\r\n\r bus MethodName param1 param2 ...\r\n\r\r\n\r"
            "\r\nThe following properties are available:\r\n\r - Boolean IsPaused\r\n\r"
            "     available for 'get'\r\n\r\r\n\rUsage:\r\n\r - get: bus PropertyName\r\n\r"
            " - set: bus PropertyName Value\r\n\r\r\n\r"
        )
        assert s.cmd('emulation CreateUARTHub "x" maybe').endswith(
            "There was an error executing command 'emulation CreateUARTHub \"x\" maybe'\r\n"
            "Parameters did not match the signature\r\n"
        )


def test_a_loopback_hub_echoes_to_the_sender(firmware, tmp_path):
    with Boards(firmware(), tmp_path, names=("a",)) as s:
        s.hub("loop", "true")
        s.start()
        a = s.ptys["a"]
        a.type(b"x\r")
        assert a.until(b"bus: x\r\n") == b"echo: x\r\nbus: x\r\n"


def test_bus_input_has_the_console_line_rules(firmware, tmp_path):
    """USART3 on a PTY instead of a hub: console lines go out on it; lines typed into it come back as `bus: ...`,
    at most 120 characters, empty ones ignored, never run as commands."""
    with Boards(firmware(), tmp_path, names=("b",)) as s:
        assert s.cmd('emulation CreateUartPtyTerminal "t_bus" "%s" true' % (tmp_path / "bus")) == ""
        assert s.cmd("connector Connect sysbus.usart3 t_bus") == ""
        wire = Pty(tmp_path / "bus")
        s.ptys["bus"] = wire
        b = s.ptys["b"]
        assert s.cmd("start") == "Starting emulation...\r\n\r"
        assert b.line() == s.fw.banner + b"\r\n"
        b.type(b"to the bus\r")
        assert b.line() == b"echo: to the bus\r\n"
        assert wire.line() == b"to the bus\r\n"
        wire.type(b"\r\n\n" + b"x" * 130 + b"\rticks on\n")
        assert b.line() == b"bus: " + b"x" * 120 + b"\r\n"
        assert b.line() == b"bus: ticks on\r\n"
        # no ticks: 300 ms of virtual time pass, then the next line is the echo
        assert s.cmd('pause; emulation RunFor "0.3"; start') == "Pausing emulation...\r\n\rStarting emulation...\r\n\r"
        b.type(b"z\r")
        assert b.line() == b"echo: z\r\n"
        assert wire.line() == b"z\r\n"  # bus lines were not sent back
        # the UART's WriteChar from the monitor and from Python is input too (measured on 1.16.1)
        assert s.cmd("sysbus.usart3 WriteChar 0x68; sysbus.usart3 WriteChar 0x0d") == ""
        assert b.line() == b"bus: h\r\n"
        assert s.cmd("python \"[monitor.Machine['sysbus.usart3'].WriteChar(c) for c in (112, 121, 13)]\"") == ""
        assert b.line() == b"bus: py\r\n"


def test_a_hub_created_while_running_stays_stopped_until_the_emulation_is_paused_and_started(firmware, tmp_path):
    """ExternalsManager.AddExternal starts nothing; only ExternalsManager.Start (from a paused emulation) does."""
    with Boards(firmware(), tmp_path) as s:
        s.start()
        s.hub()
        a, b = s.ptys["a"], s.ptys["b"]
        a.type(b"lost\r")
        assert a.line() == b"echo: lost\r\n"
        assert s.cmd("pause; start") == "Pausing emulation...\r\n\rStarting emulation...\r\n\r"
        a.type(b"kept\r")
        assert a.line() == b"echo: kept\r\n"
        assert b.line() == b"bus: kept\r\n"  # `bus: lost` would have come first


def test_reset_resets_the_selected_machine_only(firmware, tmp_path):
    fw = firmware()
    with Boards(fw, tmp_path) as s:
        s.hub()
        s.start()
        a, b = s.ptys["a"], s.ptys["b"]
        # macros are per machine: a's `reset` reloads its firmware, b has none
        s.select("a")
        assert s.cmd(f'macro reset "sysbus LoadELF @{fw.elf}"') == ""
        assert s.cmd('python "from Antmicro.Renode.Core import EmulationManager"') == ""
        paused = "paused = EmulationManager.Instance.CurrentEmulation.GetStartedStateChangedEvent(False)"
        assert s.cmd(f'python "{paused}"') == ""
        assert s.cmd("machine Reset") == ""
        assert a.line() == fw.banner + b"\r\n"  # the macro loaded the ELF into a (a paused while it ran)
        # only a paused (Machine.Reset's paused state): the emulation stayed started
        assert s.cmd('python "print(paused.WaitOne(0), EmulationManager.Instance.CurrentEmulation.IsStarted)"') == (
            "False True\r\r\n"
        )
        log = s.cmd("lastLog 100")
        assert "a: Machine paused." in log and "a: Machine resumed." in log
        assert "b: Machine paused." not in log and "No action for reset" not in log
        b.type(b"after\r")
        assert b.line() == b"echo: after\r\n"  # b printed nothing meanwhile: it kept running
        assert a.line() == b"bus: after\r\n"  # and the hub still links them
        assert s.cmd(f"sysbus LoadELF @{fw.elf}").endswith("Cannot load ELF on an unpaused machine.\r\n")
        s.select("b")
        assert s.cmd("runMacro $reset") == (ERROR_HEADER % "runMacro $reset") + "No such variable: $reset\r\n"
        assert s.cmd('python "print(monitor.Machine)"') == "b\r\r\n"
        assert s.cmd("machine Reset") == ""
        assert "No action for reset - macro b.reset is not registered." in s.cmd("lastLog 5")
        assert s.cmd("sysbus.cpu PC") == "0x0\r\r\n"  # no macro: the Cortex-M halted at 0
        a.type(b"still\r")
        assert a.line() == b"echo: still\r\n"
        s.select("a")
        assert s.cmd("sysbus.cpu PC") != "0x0\r\r\n"
        # one clock for the emulation: currentTime is the same whichever machine is selected
        assert s.cmd("pause") == "Pausing emulation...\r\n\r"
        now = s.cmd("currentTime").split("\r\n")[0]
        s.select("b")
        assert s.cmd("currentTime").split("\r\n")[0] == now


def test_a_gdb_server_per_machine(firmware, tmp_path):
    first = second = free_port()
    while second == first:
        second = free_port()
    with Boards(firmware(), tmp_path) as s:
        s.select("a")
        assert s.cmd(f"machine StartGdbServer {first} false") == ""
        line = f"machine StartGdbServer {second} false"
        assert s.cmd(line) == (ERROR_HEADER % line) + (
            f"CPU: a.cpu is already attached to an existing GDB server, running on port :{first}\r\n"
        )
        s.select("b")
        line = f"machine StartGdbServer {first} false"
        assert s.cmd(line) == (ERROR_HEADER % line) + (
            f"Unable to create '0.0.0.0:{first}' socket:[AddressAlreadyInUse] Address already in use\r\n"
        )
        assert s.cmd(f"machine StartGdbServer {second} false") == ""
        for port in (first, second):
            sock = connect(port)
            sock.sendall(b"$?#3f")
            assert recv_until(sock, lambda d: d.endswith(b"#b3")) == b"$S05#b8+$S00#b3"
            sock.close()


def test_save_clear_load_keeps_the_hub(firmware, tmp_path):
    snap = tmp_path / "two.save"
    with Boards(firmware(), tmp_path) as s:
        s.hub()
        s.start()
        s.ptys["a"].type(b"before\r")
        assert s.ptys["b"].until(b"bus: before\r\n") == b"bus: before\r\n"
        assert s.cmd(f"pause; Save @{snap}") == "Pausing emulation...\r\n\r"
        for pty in s.ptys.values():
            pty.close()
        assert s.cmd(f"Clear; Load @{snap}", prompt="(monitor) ") == ""
        assert s.cmd("emulation IsStarted; bus IsPaused") == "False\r\r\nTrue\r\r\n"  # measured on 1.16.1
        # the restored terminals pass bytes once their UARTs are connected again (measured on 1.16.1);
        # the hub and its connections are restored as they were
        for name in s.names:
            s.select(name)
            assert s.cmd(f"connector Disconnect sysbus.usart2 t_{name}; connector Connect sysbus.usart2 t_{name}") == ""
        s.open_ptys()
        assert s.cmd("start") == "Starting emulation...\r\n\r"
        assert s.cmd("bus IsPaused") == "False\r\r\n"
        a, b = s.ptys["a"], s.ptys["b"]
        a.type(b"after\r")
        assert a.line() == b"echo: after\r\n"
        assert b.line() == b"bus: after\r\n"
        b.type(b"back\r")
        assert b.line() == b"echo: back\r\n"
        assert a.line() == b"bus: back\r\n"  # not `bus: after` first: no loopback
