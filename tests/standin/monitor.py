"""Monitor (infra src/Emulator/Extensions/UserInterface/Monitor.cs, MonitorCommands.cs, Commands/)."""

import hashlib
import os

import tempfiles
from cpu import Cpu, project_banner
from downloads import DownloadFailed, FileFetcher
from errors import CommandError, Quit, SignatureMismatch
from faults import runfor_delay
from gpios import BUTTON, LED, GpioCommands
from hubs import CREATE_METHODS, KINDS, NAME_TAKEN, Hub, HubCommands
from loaders import elf_info, parse_hex
from logs import LEVEL_NAMES, LEVELS, LOG
from machines import Emulation, Firmware, GdbServer, Machine
from paths import LAUNCH_CWD, ROOT
from platforms import cpu_arch, parse_repl
from pyengine import PythonEngine
from snapshots import SNAPSHOT_METHODS, SnapshotCommands
from terminals import PtyTerminal
from tokens import Tok, fmt_time, parse_bool, parse_number, parse_time, resolve_at_path, tokenize
from versions import C_DARKRED, C_DARKYELLOW, C_ERR, C_GREEN, C_RESET, IS_116, banner_version


class Discard:
    """Where a reset the firmware requested writes what its `reset` macro prints: nowhere."""

    def __getattr__(self, name):
        return lambda *args, **kwargs: None


METHODS = {
    # object -> method -> signature listing used by PrintMonitorInfo (MonitorCommands.cs)
    "LoadELF": [
        (
            "Void",
            "LoadELF",
            [
                ("ReadFilePath", "fileName", None),
                ("Boolean", "useVirtualAddress", "False"),
                ("Boolean", "allowLoadsOnlyToMemory", "True"),
                ("IInitableCPU", "cpu", "null"),
            ],
        )
    ],
    "LoadBinary": [
        (
            "Void",
            "LoadBinary",
            [("ReadFilePath", "fileName", None), ("UInt64", "loadPoint", None), ("ICPU", "cpu", "null")],
        )
    ],
    "LoadHEX": [("Void", "LoadHEX", [("ReadFilePath", "fileName", None), ("IInitableCPU", "cpu", "null")])],
    "Connect": [("Void", "Connect", [("IEmulationElement", "connectee", None), ("IConnectable", "connector", None)])],
    # infra Core/Connector.cs: both overloads, in declaration order
    "Disconnect": [
        ("Void", "Disconnect", [("IEmulationElement", "connectee", None), ("IConnectable", "connector", None)]),
        ("Void", "Disconnect", [("IConnectable", "connector", None), ("IEmulationElement", "connectee", None)]),
    ],
    # infra Peripherals/UART/UARTHub.cs, Tools/Network/CANHub.cs, Tools/Network/Switch.cs (extension methods)
    "CreateUartPtyTerminal": [
        (
            "Void",
            "CreateUartPtyTerminal",
            [("String", "name", None), ("String", "fileName", None), ("Boolean", "forceCreate", "False")],
        )
    ],
    "RunFor": [("Void", "RunFor", [("TimeInterval", "period", None)])],
    "StartGdbServer": [
        (
            "Void",
            "StartGdbServer",
            [("Int32", "port", None), ("Boolean", "autostartEmulation", None), ("Boolean", "blockOnStep", None)],
        ),
        (
            "Void",
            "StartGdbServer",
            [
                ("Int32", "port", None),
                ("Boolean", "autostartEmulation", "True"),
                ("ICpuSupportingGdb", "cpu", "null"),
                ("Boolean", "blockOnStep", "True"),
            ],
        ),
    ],
    "LoadPlatformDescription": [("Void", "LoadPlatformDescription", [("String", "platformDescriptionFile", None)])],
    "Reset": [("Void", "Reset", [])],
}
METHODS.update(CREATE_METHODS)
METHODS.update(SNAPSHOT_METHODS)
if IS_116:
    # The listing real 1.16.1 printed for `sysbus LoadBinary @/etc/hostname` (console transcripts).
    METHODS["LoadBinary"] = [
        (
            "Void",
            "LoadBinary",
            [
                ("ReadFilePath", "fileName", None),
                ("UInt64", "loadPoint", None),
                ("ICPU", "cpu", "null"),
                ("Int64", "offset", "0"),
                ("UInt64?", "size", "null"),
            ],
        )
    ]

BUILTINS = {
    # name: (aliases, description)
    "help": (["?", "h"], "prints this help message or info about specified command."),
    "version": ([], "shows version information."),
    "mach": ([], "list and manipulate machines available in the environment."),
    "start": (["s"], "starts the emulation."),
    "pause": (["p"], "pauses the emulation."),
    "quit": (["q"], "quits the emulator."),
    "include": (["i"], "loads a Monitor script, Python code, platform file or a plugin class."),
    "logFile": (["logF"], "sets the output file for logger."),
    "logLevel": ([], "sets logging level for backends."),
    "lastLog": ([], "Logs last n logs."),
    "macro": ([], "sets macro."),
    "runMacro": ([], "executes a command or the content of a macro."),
    "set": ([], "sets variable."),
    "echo": ([], "(python) prints the given string."),
    "currentTime": ([], "prints the current emulation virtual and real time"),
    "peripherals": (["peri"], "prints list of registered and named peripherals."),
    "using": ([], "expose a prefix to avoid typing full object names."),
    "Clear": ([], "clears the whole emulation."),
    "python": (["py"], "executes the provided python command."),  # infra Commands/PythonExecuteCommand.cs
}
ALIASES = {a: n for n, (al, _) in BUILTINS.items() for a in al}


class Monitor(HubCommands, GpioCommands, SnapshotCommands):
    def __init__(self, plain):
        self.plain = plain
        self.emu = Emulation()
        self.current = None
        self.variables = {}
        self.macros = {}
        self.usings = ["sysbus."] if IS_116 else []
        self.py = PythonEngine(self)  # one Python scope for the whole process (pyengine.py)

    # -- prompt ------------------------------------------------------------------------------
    def prompt(self):
        if self.current is None:
            text, color = "(monitor) ", C_DARKRED
        else:
            text, color = "(%s) " % self.current.name, C_DARKYELLOW
        return text if self.plain else color + text + C_RESET

    # -- parsing -----------------------------------------------------------------------------
    def parse(self, line, w, origin=None):
        """Runs `;`-separated commands; returns False at the first failure (Monitor.Parse)."""
        try:
            commands = tokenize(line)
        except CommandError as e:
            for l in e.lines:  # noqa: E741 - moved as is
                w.error(l)
            LOG.log("WARNING", "\n".join(e.lines))
            return False
        for toks in commands:
            if not self.run_command(toks, w, origin):
                return False
        return True

    def command_text(self, toks):
        parts = []
        for t in toks:
            if t.kind == "path":
                parts.append("@" + resolve_at_path(t.value).replace(" ", "\\ "))
            else:
                parts.append(t.text)
        return " ".join(parts)

    def expand(self, toks, origin):
        out = []
        for t in toks:
            if t.kind == "var" and not t.value.endswith("="):
                name, slash, suffix = t.value.partition("/")
                suffix = slash + suffix
                if name == "ORIGIN" and origin:
                    out.append(Tok("path", origin + suffix, "@" + origin + suffix))
                    continue
                if name == "CWD":
                    out.append(Tok("path", LAUNCH_CWD + suffix, "@" + LAUNCH_CWD + suffix))
                    continue
                val = self.lookup_var(name)
                if val is None:
                    raise CommandError("No such variable: $%s" % name)
                if suffix:
                    val = Tok("path", val.value + suffix, "@" + val.value + suffix)
                out.append(val)
            else:
                out.append(t)
        return out

    def var_key(self, name):
        """Monitor.GetVariableName: `global.x` and `<machine>.x` as they are, else under the current machine
        (`-` in its name as `_`), or global without one: variables and macros are per machine."""
        first, dot, _ = name.partition(".")
        if dot and (first == "global" or first in {n.replace("-", "_") for n in self.emu.machines}):
            return name
        if self.current is None:
            return "global." + name
        return "%s.%s" % (self.current.name.replace("-", "_"), name)

    def lookup(self, collection, name):
        """Monitor.TryExpandVariable: the name as it is, then under the current machine, then global."""
        keys = [name]
        if self.current is not None:
            keys.append("%s.%s" % (self.current.name.replace("-", "_"), name))
        keys.append("global." + name)
        for key in keys:
            if key in collection:
                return collection[key]
        return None

    def lookup_var(self, name):
        return self.lookup(self.variables, name)

    def run_command(self, toks, w, origin=None):
        if not toks:
            return True
        head = toks[0]
        # $var = value / $var ?= value
        if head.kind == "var" and (head.value.endswith("=") or (len(toks) > 1 and toks[1].text in ("=", "?="))):
            return self.assign(toks, w)
        try:
            if head.kind == "var" and len(toks) == 1:
                val = self.lookup_var(head.value)
                if val is None:
                    raise CommandError("No such variable: $%s" % head.value)
                w.value(val.value if val.kind != "path" else "@" + val.value)
                return True
            if not (head.kind == "word" and head.value in ("macro", "runMacro", "set")):
                toks = [toks[0]] + self.expand(toks[1:], origin)  # noqa: RUF005 - moved as is
            word = head.value if head.kind == "word" else None
            if word is None:
                w.error("No such command or device: %s" % head.text)
                return False
            name = ALIASES.get(word, word)
            if name in BUILTINS:
                return getattr(self, "cmd_" + name)(toks, w, origin) is not False
            return self.device_command(toks, w)
        except CommandError as e:
            for l in e.lines:  # noqa: E741 - moved as is
                w.error(l)
            return False
        except SignatureMismatch as e:
            self.print_methods(toks[0].value, e.methods, w)
            w.error("There was an error executing command '%s'" % self.command_text(toks))
            w.error("Parameters did not match the signature")
            return False

    def assign(self, toks, w):
        name = toks[0].value
        rest = toks[1:]
        cond = False
        if name.endswith("?="):
            name, cond = name[:-2], True
        elif name.endswith("="):
            name = name[:-1]
        elif rest and rest[0].text in ("=", "?="):
            cond = rest[0].text == "?="
            rest = rest[1:]
        if len(rest) != 1:
            w.error("Could not tokenize here:")
            return False
        key = self.var_key(name)
        if cond and self.lookup_var(name) is not None:
            return True
        val = rest[0]
        if val.kind == "path":
            val = Tok("path", resolve_at_path(val.value), val.text)
        self.variables[key] = val
        return True

    # -- printing helpers --------------------------------------------------------------------
    def print_methods(self, objname, methods, w):
        w.writeline("\nThe following methods are available:")
        for ret, name, params in methods:
            w.write(" - ")
            w.write(ret, C_GREEN)
            w.write(" %s (" % name)
            for i, (ptype, pname, default) in enumerate(params):
                w.write(ptype, C_GREEN)
                w.write(" " + pname)
                if default is not None:
                    w.write(" = ")
                    w.write(default, C_DARKRED)
                if i != len(params) - 1:
                    w.write(", ")
            w.writeline(")")
        w.writeline("\n\rUsage:\n\r %s MethodName param1 param2 ...\n\r" % objname)

    def bad_parameters(self, toks, w):
        name = ALIASES.get(toks[0].value, toks[0].value)
        w.error("Bad parameters for command %s" % " ".join([name] + [t.text for t in toks[1:]]))
        self.command_help(name, w)
        return False

    def command_help(self, name, w):
        aliases, desc = BUILTINS[name]
        w.write("%s%s\r\n" % (name, " [ %s ]" % ", ".join(aliases) if aliases else ""))
        w.writeline(desc)
        w.writeline()

    # -- built-in commands -------------------------------------------------------------------
    def cmd_help(self, toks, w, origin):
        if len(toks) == 1:
            w.writeline("Available commands:")
            for name in sorted(BUILTINS, key=str.lower):
                w.writeline("%-16s: %s" % (name, BUILTINS[name][1]))
            w.writeline()
            return True
        if len(toks) > 2:
            return self.bad_parameters(toks, w)
        name = ALIASES.get(toks[1].value, toks[1].value)
        if name not in BUILTINS:
            raise CommandError("No such command: %s." % toks[1].value)
        self.command_help(name, w)
        return True

    def cmd_version(self, toks, w, origin):
        w.writeline(banner_version())

    def cmd_mach(self, toks, w, origin):  # noqa: C901 - one branch per `mach` subcommand
        args = toks[1:]
        sub = args[0].value if args else None
        if sub is None:
            if not self.emu.machines:
                w.writeline("No machines loaded.")
            for i, name in enumerate(self.emu.machines):
                w.writeline("%s%d: %s" % ("*" if self.current and self.current.name == name else " ", i, name))
            return True
        if sub in ("create", "add") and len(args) <= 2:
            if len(args) == 2:
                name = args[1].value
            else:
                name = "machine-%d" % self.emu.counter
            if name in self.emu.machines:
                raise CommandError(
                    "There was an error executing command '%s'" % self.command_text(toks),
                    "Given machine is already added or name is already taken.",
                )
            self.emu.counter += 1
            m = Machine(self.emu, name)
            self.emu.machines[name] = m
            self.register_reset_command(m)  # the MachineAdded event of the current emulation
            LOG.log("INFO", "System bus created.", None)
            if sub == "create":
                self.current = m
            return True
        if sub == "set" and len(args) == 2:
            key = args[1].value
            names = list(self.emu.machines)
            if key.isdigit() and int(key) < len(names):
                key = names[int(key)]
            if key in self.emu.machines:
                self.current = self.emu.machines[key]
            else:
                w.error("Machine %s not found." % key)  # MachCommand.cs: printed, not a failure
            return True
        if sub == "clear" and len(args) == 1:
            self.current = None
            return True
        if sub in ("rem", "remove") and len(args) == 2:
            m = self.emu.machines.pop(args[1].value, None)
            if m is None:
                w.error("Machine %s not found." % args[1].value)
            else:
                if self.current is m:
                    self.current = None
                LOG.log("INFO", "Disposed.", m.name)
            return True
        return self.bad_parameters(toks, w)

    def cmd_start(self, toks, w, origin):
        if len(toks) > 1:
            if not self.cmd_include(toks, w, origin):
                return False
        w.writeline("Starting emulation...")
        self.emu.start_all()  # StartCommand: Emulation.StartAll, with its 100 ms sleep

    def cmd_pause(self, toks, w, origin):
        w.writeline("Pausing emulation...")
        self.emu.pause()

    def cmd_quit(self, toks, w, origin):
        # infra Commands/QuitCommand.cs: "Renode is quitting" in Green
        w.writeline("Renode is quitting", C_GREEN)
        if not self.plain:
            w.raw(C_RESET)
        self.current = None
        raise Quit()

    def cmd_Clear(self, toks, w, origin):
        # infra EmulationManager.CurrentEmulation setter: the old emulation is disposed first and is
        # replaced only if that succeeds. Emulation.Dispose pauses, then ExternalsManager.Clear
        # empties the externals list and disposes each; renode UartPtyTerminal.Dispose throws when
        # its symlink is gone (deleted by the emulation that a forceCreate `Load` replaced), which
        # aborts the Dispose: machines stay, nothing is deselected (real 1.16.1 transcripts).
        terms = list(self.emu.terminals.values())
        gone = next((t for t in terms if not os.path.lexists(t.link)), None)
        if gone is not None:
            self.emu.pause()
            self.emu.terminals = {}
            self.emu.hubs = {}  # ExternalsManager.Clear emptied its list first (a hub stays paused, unreachable)
            for t in terms[: terms.index(gone) + 1]:
                t.dispose(unlink=t is not gone)
            raise CommandError(
                "There was an error executing command '%s'" % self.command_text(toks),
                "There was an error when removing symlink `%s': No such file or directory" % gone.link,
            )
        self.emu.dispose()
        self.reset_monitor_state(Emulation())

    def reset_monitor_state(self, emu):
        # Monitor.cs EmulationChanged: variables, macros, aliases cleared, machine deselected
        self.emu = emu
        self.current = None
        self.variables = {}
        self.macros = {}
        for m in emu.machines.values():
            self.wire_reset(m)

    def cmd_include(self, toks, w, origin):
        if len(toks) != 2:
            return self.bad_parameters(toks, w)
        t = toks[1]
        path = resolve_at_path(t.value) if t.kind == "path" else t.value
        if not os.path.isfile(path):
            raise CommandError(
                "There was an error executing command '%s'" % self.command_text(toks),
                "File does not exist: %s" % t.value,
            )
        ext = os.path.splitext(path)[1].lower()
        if ext == ".repl":  # Monitor.TryLoadPlatform: creates a machine if none is selected
            if self.current is None:
                self.cmd_mach([Tok("word", "mach", "mach"), Tok("word", "create", "create")], w, origin)
            return self.load_platform(self.current, path, toks)
        if ext == ".py":  # MonitorPythonEngine.TryExecutePythonScript
            return self.py.execute_file(path, "There was an error executing command '%s'" % self.command_text(toks), w)
        if ext == ".cs":
            raise CommandError(
                "There was an error executing command '%s'" % self.command_text(toks),
                "stand-in: .cs files are not modelled",
            )
        return self.run_script(path, w)

    def run_script(self, path, w):
        with open(path, encoding="utf-8", errors="replace") as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            i += 1
            while line.count('"""') % 2 == 1 and i < len(lines):  # multi-line """ strings
                line += "\n" + lines[i]
                i += 1
            if not line.strip():
                continue
            if not self.parse(line, w, origin=os.path.dirname(path)):
                return False  # break-script-on-exception
        return True

    def cmd_logFile(self, toks, w, origin):
        if len(toks) not in (2, 3) or toks[1].kind not in ("path", "str"):
            return self.bad_parameters(toks, w)
        path = toks[1].value
        if not os.path.isabs(path):
            path = os.path.join(os.getcwd(), path)  # lands in the Renode root
        flush = len(toks) == 3 and parse_bool(toks[2].value) is True
        LOG.set_file(path, flush)

    def cmd_logLevel(self, toks, w, origin):
        if len(toks) == 1:
            w.writeline(
                "Currently set levels:\nBackend           | Emitter                        | Level\n"
                "-----------------------------------------------------------------\n"
                "console           |                                | %s" % LEVEL_NAMES[LOG.console_level].title()
            )
            return True
        val = toks[1].value
        lvl = LEVELS.get(val.upper())
        if lvl is None:
            n = parse_number(val)
            lvl = n if n is not None and -1 <= n <= 3 else None
        if lvl is None:
            return self.bad_parameters(toks, w)
        if len(toks) <= 2:
            LOG.console_level = lvl
        return True

    def cmd_lastLog(self, toks, w, origin):
        n = 20
        if len(toks) == 2:
            n = parse_number(toks[1].value)
            if n is None:
                return self.bad_parameters(toks, w)
        for level, line in LOG.memory[-n:]:
            w.writeline(line, C_ERR if level == "ERROR" else None)

    def cmd_macro(self, toks, w, origin):
        if len(toks) == 1:
            for k, v in self.macros.items():
                w.writeline("%s = %s" % (k, v))
            return True
        if len(toks) != 3 or toks[2].kind != "str":
            return self.bad_parameters(toks, w)
        self.macros[self.var_key(toks[1].value)] = toks[2].value
        return True

    def cmd_runMacro(self, toks, w, origin):
        if len(toks) != 2:
            return self.bad_parameters(toks, w)
        name = toks[1].value
        body = self.lookup(self.macros, name)
        if body is None:  # ExecuteCommand: ExpandVariable throws (measured on 1.16.1: with the header)
            raise CommandError(
                "There was an error executing command '%s'" % self.command_text(toks), "No such variable: $%s" % name
            )
        for line in body.split("\n"):
            if line.strip() and not self.parse(line, w):
                return False
        return True

    def cmd_set(self, toks, w, origin):
        if len(toks) != 3:
            return self.bad_parameters(toks, w)
        self.variables[self.var_key(toks[1].value)] = toks[2]

    def cmd_echo(self, toks, w, origin):
        # renode scripts/monitor.py mc_echo (Python print: text + \r\r\n on the terminal)
        args = toks[1:]
        for t in args:
            if t.kind == "word" and parse_number(t.value) is None:
                # GetTokenValue throws before the call: printed like any failed command (measured, 1.16.1)
                raise CommandError(
                    "There was an error executing command '%s'" % self.command_text(toks),
                    "No such emulation element: %s" % t.value,
                )
        vals = [t.value for t in args]
        if len(vals) == 2 and vals[0] == "-n":
            w.write(vals[1])
        elif len(vals) == 1:
            w.value(vals[0])
        elif not vals:
            w.value("")
        else:
            w.value("usage: echo [-n] [string]")

    def cmd_currentTime(self, toks, w, origin):
        # infra Commands/TimeCommand.cs: printed and logged
        text = "Current virtual time: %s\nCurrent real time: %s" % (fmt_time(self.emu.vt_ns), fmt_time(self.emu.rt_ns))
        w.writeline(text)
        LOG.log("INFO", text)

    def cmd_python(self, toks, w, origin):
        # infra Commands/PythonExecuteCommand.cs, MonitorPythonEngine.cs: the string runs in the
        # monitor's Python scope (IronPython there, CPython here; pyengine.py); what it prints reaches
        # the monitor with each newline as `\r\r\n` (`xxx\r\r\n` in the 1.16.1 transcripts).
        if len(toks) != 2 or toks[1].kind != "str":
            return self.bad_parameters(toks, w)
        return self.py.execute_command(
            toks[1].value, "There was an error executing command '%s'" % self.command_text(toks), w
        )

    def cmd_peripherals(self, toks, w, origin):
        # infra Commands/PeripheralsCommand.cs
        m = self.current
        if m is None:
            w.error("Select active machine.")
            return True
        w.writeline("Available peripherals:")
        w.writeline()
        w.writeline("  sysbus (SystemBus)")
        w.writeline("  │   ")
        items = [(n, t, r) for n, (t, r) in m.periphs.items() if r.startswith("sysbus") or r == ""]
        for i, (name, typ, reg) in enumerate(items):
            last = i == len(items) - 1
            w.writeline("  %s %s (%s)" % ("└──" if last else "├──", name, typ.split(".")[-1]))
            where = reg[len("sysbus") :].strip() or ("Slot: 0" if typ.startswith("CPU.") else "")
            bar = "    " if last else "│   "
            if where:
                w.writeline("  %s   %s" % (bar, where))
            w.writeline("  %s   " % bar)
        return True

    def cmd_using(self, toks, w, origin):
        if len(toks) == 2:
            self.usings.append(toks[1].value.rstrip(".") + ".")
            return True
        return self.bad_parameters(toks, w)

    # -- objects -----------------------------------------------------------------------------
    def device_command(self, toks, w):
        word = toks[0].value
        m = self.current
        if word in ("Save", "Load"):  # EmulationManager methods (Monitor.IsNameAvailableInEmulationManager)
            return getattr(self, "emu_" + word)(toks, w)
        if word == "emulation":
            return self.emulation_command(toks, w)
        if word == "connector":
            return self.connector_command(toks, w)
        if m is not None and word == "machine":
            return self.machine_command(toks, w)
        if m is not None:
            paths = m.peripheral_paths()
            for prefix in [""] + self.usings:  # noqa: RUF005 - moved as is
                name = prefix + word
                if name == "sysbus":
                    return self.sysbus_command(toks, w)
                if name in paths:
                    return self.peripheral_command(toks, paths[name], name, w)
        if word in self.emu.hubs:  # an external, by its name
            return self.hub_command(toks, self.emu.hubs[word], w)
        if self.py.has_command(word):  # Monitor.cs: Python `mc_` commands are tried last
            return self.py.execute_builtin(
                toks, "There was an error executing command '%s'" % self.command_text(toks), w
            )
        raise CommandError("No such command or device: %s" % word)

    def no_member(self, toks, objname):
        raise CommandError(
            "There was an error executing command '%s'" % self.command_text(toks),
            "%s does not provide a field, method or property %s." % (objname, toks[1].value),
        )

    def emulation_command(self, toks, w):  # noqa: C901 - one branch per emulation member
        if len(toks) < 2:
            w.writeline("\nThe following methods are available:")
            return True
        meth = toks[1].value
        args = toks[2:]
        if meth == "IsStarted" and not args:
            w.value("True" if self.emu.started else "False")
            return True
        if meth == "CreateUartPtyTerminal":
            if not (2 <= len(args) <= 3) or args[0].kind not in ("str", "word") or args[1].kind not in ("str", "path"):
                raise SignatureMismatch(METHODS[meth])
            force = False
            if len(args) == 3:
                force = parse_bool(args[2].value)
                if force is None:
                    raise SignatureMismatch(METHODS[meth])
            name, link = args[0].value, args[1].value
            if not os.path.isabs(link):
                link = os.path.join(os.getcwd(), link)
            t = PtyTerminal(name, link, force)
            try:
                t.open()  # the constructor opens the PTY and makes the link, then AddExternal checks the name
            except CommandError as e:
                raise CommandError("There was an error executing command '%s'" % self.command_text(toks), *e.lines)  # noqa: B904 - the monitor prints this text instead
            if self.external_taken(name):
                t.dispose(unlink=False)  # never registered, never disposed by Renode: its link stays
                raise CommandError("There was an error executing command '%s'" % self.command_text(toks), NAME_TAKEN)
            self.emu.terminals[name] = t
            self.emu.external_names.append(name)
            return True
        if meth in ("CreateUARTHub", "CreateCANHub", "CreateSwitch"):
            return self.create_hub(meth, args, toks)
        if meth == "RunFor":
            if len(args) != 1 or args[0].kind not in ("str", "word"):
                raise SignatureMismatch(METHODS[meth])
            try:
                ns = parse_time(args[0].value)
            except ValueError:
                raise SignatureMismatch(METHODS[meth])  # noqa: B904 - the monitor lists the signatures instead
            if self.emu.started:
                # infra Emulation.cs RunFor
                raise CommandError(
                    "There was an error executing command '%s'" % self.command_text(toks),
                    "This action is not available when emulation is already started",
                )
            self.emu.run_for(ns)
            runfor_delay()  # STANDIN_RUNFOR_DELAY: the monitor stays blocked (faults.py)
            return True
        if meth == "Clear":
            self.cmd_Clear(toks, w, None)
            return True
        self.no_member(toks, "emulation")

    def external_taken(self, name):
        """ExternalsManager.AddExternal: terminals and hubs share one namespace."""
        return name in self.emu.terminals or name in self.emu.hubs

    def element_of(self, tok):
        """MonitorCommands.ConvertValue to IEmulationElement: a peripheral of the current machine (its path,
        or through a `using`), else an external. (type name, (machine, peripheral) or the external), or None."""
        if tok.kind not in ("word", "str"):
            return None
        name, m = tok.value, self.current
        if m is not None:
            if name == "sysbus":
                return "SystemBus", None
            paths = m.peripheral_paths()
            for prefix in [""] + self.usings:  # noqa: RUF005 - as device_command
                if prefix + name in paths:
                    periph = paths[prefix + name]
                    return m.periphs[periph][0].rpartition(".")[2], (m, periph)
        if name in self.emu.terminals:
            return "UartPtyTerminal", self.emu.terminals[name]
        if name in self.emu.hubs:
            return self.emu.hubs[name].type_name, self.emu.hubs[name]
        return None

    def connector_command(self, toks, w):
        """infra Core/Connector.cs: Connect / Disconnect (connectee, connector) with the current machine's
        peripherals; the connector is a terminal or a hub (hubs.py)."""
        if len(toks) < 2 or toks[1].value not in ("Connect", "Disconnect"):
            if len(toks) < 2:
                return True
            self.no_member(toks, "connector")
        meth, args = toks[1].value, toks[2:]
        connectee = self.element_of(args[0]) if len(args) == 2 else None
        connector = None
        if len(args) == 2 and args[1].kind in ("word", "str"):
            connector = self.emu.terminals.get(args[1].value) or self.emu.hubs.get(args[1].value)
        if connectee is None or connector is None:
            raise SignatureMismatch(METHODS[meth])
        err = "There was an error executing command '%s'" % self.command_text(toks)
        type_name, target = connectee
        is_hub = isinstance(connector, Hub)
        periph_type = target[0].periphs[target[1]][0] if isinstance(target, tuple) else ""
        if not (connector.accepts(periph_type) if is_hub else periph_type.startswith(KINDS["UART"][2])):
            # the connectable's AttachTo / DetachFrom has no overload for this element's type
            raise CommandError(
                err,
                "Could not find a way to %s %s %s %s"
                % (
                    "connect" if meth == "Connect" else "disconnect",
                    type_name,
                    "to" if meth == "Connect" else "from",
                    connector.type_name if is_hub else "UartPtyTerminal",
                ),
            )
        if is_hub:
            with self.emu.lock:
                problem = connector.attach(*target) if meth == "Connect" else connector.detach(*target)
            if problem:
                raise CommandError(err, problem)
            return True
        connector.uart = target if meth == "Connect" else None
        connector.dead = False
        return True

    def machine_command(self, toks, w):  # noqa: C901 - one branch per machine member
        m = self.current
        if len(toks) < 2:
            w.writeline("\nThe following methods are available:")
            return True
        meth, args = toks[1].value, toks[2:]
        if meth in ("LoadPlatformDescription",):
            if len(args) != 1 or args[0].kind not in ("path", "str"):
                raise SignatureMismatch(METHODS[meth])
            path = resolve_at_path(args[0].value) if args[0].kind == "path" else args[0].value
            tempfiles.set_up()  # its first use (measured: the first platform load; not at start)
            return self.load_platform(m, path, toks)
        if meth == "Reset":
            self.reset_machine(m, w)
            return True
        if meth == "IsPaused":
            w.value("True" if m.is_paused() else "False")
            return True
        if meth == "StartGdbServer":
            if not 1 <= len(args) <= 2:
                raise SignatureMismatch(METHODS[meth])
            port = parse_number(args[0].value)
            auto = True if len(args) == 1 else parse_bool(args[1].value)
            if port is None or auto is None:
                raise SignatureMismatch(METHODS[meth])
            err = "There was an error executing command '%s'" % self.command_text(toks)
            if not m.cpu:
                raise CommandError(
                    err, "Cannot start GDB server with no CPUs. Did you forget to load the platform description first?"
                )
            if m.gdb:  # Machine.CheckIsCpuAlreadyAttached: one GDB server per CPU, whatever the port
                cpu = next(n for n, (t, _) in m.periphs.items() if t.startswith("CPU."))
                raise CommandError(
                    err,
                    "CPU: %s.%s is already attached to an existing GDB server, running on port :%d"
                    % (m.name, cpu, next(iter(m.gdb))),
                )
            try:
                m.gdb[port] = GdbServer(m, port, auto)
            except OSError as e:
                # infra Sockets/SocketsManager.cs: the SocketException as a RecoverableException
                code = {98: "AddressAlreadyInUse", 13: "AccessDenied"}.get(e.errno, "SocketError")
                raise CommandError(  # noqa: B904 - the monitor prints this text instead
                    err, "Unable to create '0.0.0.0:%d' socket:[%s] %s" % (port, code, e.strerror or str(e))
                )
            LOG.log("INFO", "GDB server with all CPUs started on port :%d" % port, m.name)
            return True
        if meth == "Start":
            self.emu.start()
            return True
        if meth == "Pause":
            self.emu.pause()
            return True
        self.no_member(toks, "machine")

    def load_platform(self, m, path, toks):
        extra = {"memories": {}, "svds": []}
        try:
            periphs, cpu = parse_repl(path, extra=extra)
        except CommandError as e:
            lines = list(e.lines)
            if lines and lines[0].startswith("Could not find file"):
                lines[0] = "Could not find file '%s'." % (toks[-1].value if toks else path)
            raise CommandError("There was an error executing command '%s'" % self.command_text(toks), *lines)  # noqa: B904 - the monitor prints this text instead
        # The `init:` sections run as monitor commands; their `@https://` paths are fetched (Monitor.cs).
        fetcher = FileFetcher(ROOT, lambda level, text: LOG.log(level, text))
        for url in extra["svds"]:
            try:
                os.unlink(fetcher.fetch(url))  # the SVD itself is not modelled
            except DownloadFailed as e:
                raise CommandError(str(e))  # noqa: B904 - the monitor prints this text instead
        m.periphs.update(periphs)
        m.gpios.add_platform(periphs, extra.get("gpios", []))
        for name, size in extra["memories"].items():
            where = periphs[name][1].split()
            if len(where) == 2 and where[0] == "sysbus":
                m.memory.add(name, parse_number(where[1]), size)
        m.add_controllers()
        m.can_masters.update(extra.get("masters", {}))
        m.add_cans()
        self.wire_reset(m)
        if cpu and not m.cpu:
            m.core = Cpu(cpu, m.cpu_log, lambda level, text: LOG.log(level, text, m.src("sysbus")))
        m.cpu = m.cpu or cpu
        m.platform = path
        return True

    def wire_reset(self, m):
        """The firmware's own reset (SYSRESETREQ) resets the machine as `machine Reset` does."""
        m.request_reset = lambda: self.reset_machine(m, Discard())  # the macro's output goes nowhere

    def register_reset_command(self, m):
        """Monitor.RegisterResetCommand (private): ResetMachine joins the machine's MachineReset event.

        The monitor subscribes it to the current emulation's MachineAdded (again on EmulationChanged), so
        machines created in the monitor get it; a machine deserialized by `Load` is never added, so it
        has none (MachineReset is [Transient]) until this is invoked for it (reflection, pyapi.py).
        Each call subscribes once more: the macro then runs once per subscription."""
        m.reset_handlers += 1

    def reset_machine(self, m, w):
        """infra Machine.cs Reset: under ObtainPausedState(true) only this machine pauses (the emulation
        stays started, the other machines run on), its peripherals are reset, then the MachineReset event:
        the monitor's handler (Monitor.cs ResetMachine) runs the "<machine>.reset" macro, if any, with that
        machine as the current one (ObtainMachineContext). Then the machine resumes, at the same virtual time.
        The stand-in holds the clock (the emulation's lock) meanwhile: the reset takes no virtual time."""
        emu = self.emu
        with emu.lock:
            was_running = emu.machines_started and not m.held
            if was_running:
                LOG.log("INFO", "Machine paused.", m.name)
            m.held += 1
            try:
                with m.lock:
                    if m.fw and m.fw.loader == "memory":
                        m.fw, m.scanned = None, False  # the CPU runs what memory holds: looked for again
                    if m.fw:
                        m.fw.reset()
                        m.fw.boot_ns = None
                    m.flash_job = None
                    for controller in m.controllers.values():
                        controller.reset()
                    for can in m.cans.values():
                        can.reset()  # STMCAN.Reset: registers (the RX FIFOs keep their messages)
                    m.out_pending = []  # what the reset CPU had not printed yet
                    if m.core:
                        m.core.reset()  # CortexM.Reset forgets VTOR and PC; BaseRiscV.Reset: PC = ResetVector
                    m.elf_lowest = None  # measured: no VTOR guess after a reset until an ELF is loaded again
                m.reset_gpios()  # measured: the button is released and the LED off after `machine Reset`
                for _ in range(m.reset_handlers):
                    outer, self.current = self.current, m
                    try:
                        macro_name = self.var_key("reset")
                        body = self.macros.get(macro_name)
                        if body is None:
                            LOG.log("WARNING", "No action for reset - macro %s is not registered." % macro_name)
                        else:
                            for line in body.split("\n"):
                                if line.strip():
                                    self.parse(line, w)
                    finally:
                        self.current = outer
            finally:
                m.held -= 1
            if was_running and emu.machines_started:
                LOG.log("INFO", "Machine resumed.", m.name)
            emu.wake.set()

    def sysbus_command(self, toks, w):  # noqa: C901 - one branch per loader and member
        m = self.current
        if len(toks) < 2:
            w.writeline("\nThe following methods are available:")
            return True
        meth, args = toks[1].value, toks[2:]
        if meth not in ("LoadELF", "LoadBinary", "LoadHEX"):
            if meth == "WhatPeripheralsAreEnabled":
                return self.cmd_peripherals(toks, w, None)
            if meth in ("ReadDoubleWord", "WriteDoubleWord"):
                return self.sysbus_word(meth, args, toks, w)
            if meth == "WhatIsAt" and len(args) == 1 and parse_number(args[0].value) is not None:
                where = m.memory.region(parse_number(args[0].value))  # memories only are modelled
                if where is not None:
                    start, size = where
                    w.writeline(
                        "%s.%s registered at <0x%08X, 0x%08X>"
                        % (m.name, m.memory.names[start], start, start + size - 1)
                    )
                return True
            if meth == "GetCPUs" and len(args) == 0:
                # An IEnumerable<ICPU>, each printed as `[CPU: <machine>.<name>[<slot>]]` (ICPU.cs GetCPUThreadName)
                names = [n for n, (t, _) in m.periphs.items() if t.startswith("CPU.")]
                w.writeline("[")
                for slot, name in enumerate(names):
                    w.writeline("[CPU: %s.%s[%d]], " % (m.name, name, slot))
                w.writeline("]")
                return True
            self.no_member(toks, "sysbus")
        # ReadFilePath conversion: a missing file makes the overload not match (FilePath.cs)
        if not args or args[0].kind not in ("path", "str"):
            raise SignatureMismatch(METHODS[meth])
        path = resolve_at_path(args[0].value) if args[0].kind == "path" else args[0].value
        if not os.path.isfile(path):
            raise SignatureMismatch(METHODS[meth])
        err = "There was an error executing command '%s'" % self.command_text(toks)
        with open(path, "rb") as f:
            data = f.read()
        sha = hashlib.sha256(data).hexdigest()
        if meth == "LoadELF":
            if len(args) > 4:
                raise SignatureMismatch(METHODS[meth])
            if not m.is_paused():  # FileLoaderExtensions.LoadELF: Machine.IsPaused
                raise CommandError(err, "Cannot load ELF on an unpaused machine.")
            try:
                e_machine, entry, segments = elf_info(path, data, "" if IS_116 else ".")
            except CommandError as e:
                raise CommandError(err, *e.lines)  # noqa: B904 - the monitor prints this text instead
            if not segments:
                raise CommandError(err, "ELF '%s' has no loadable segments." % path)
            for addr, size, offset in segments:
                LOG.log(
                    "INFO",
                    "Loading %s of %d bytes length at 0x%X." % ("block" if IS_116 else "segment", size, addr),
                    m.src("sysbus"),
                )
                m.load_image(addr, data[offset : offset + size])
            # Renode does not compare e_machine with the CPU (SystemBus.LoadELF, CortexM.InitFromElf);
            # a foreign-architecture image loads and then the CPU aborts when it runs.
            arch = cpu_arch(m.cpu)
            m.fw = Firmware(sha, "LoadELF", arch is None or arch == e_machine, entry, project_banner(data))
            m.recognise(data)
            m.elf_lowest = min(addr for addr, _, _ in segments)
            if m.core and not m.core.cortex_m:
                m.core.set_pc(entry)  # TranslationCPU.InitFromElf; CortexM's does nothing
        elif meth == "LoadBinary":
            if len(args) not in (2, 3):
                raise SignatureMismatch(METHODS[meth])
            addr = parse_number(args[1].value) if args[1].kind == "word" else None
            if addr is None:
                raise SignatureMismatch(METHODS[meth])
            LOG.log("INFO", "Loading block of %d bytes length at 0x%X." % (len(data), addr), m.src("sysbus"))
            m.load_image(addr, data)
            m.fw = Firmware(sha, "LoadBinary", True, addr, project_banner(data))
            m.recognise(data)
        else:
            if len(args) > 2:
                raise SignatureMismatch(METHODS[meth])
            try:
                chunks = parse_hex(path)
            except CommandError as e:
                raise CommandError(err, *e.lines)  # noqa: B904 - the monitor prints this text instead
            for addr, chunk in chunks:
                m.load_image(addr, chunk)
            image = b"".join(chunk for _, chunk in chunks)
            m.fw = Firmware(sha, "LoadHEX", True, 0, project_banner(image))
            m.recognise(image)
        return True

    def sysbus_word(self, meth, args, toks, w):
        """`sysbus ReadDoubleWord <addr>` prints `0xDEADBEEF` (measured on 1.16.1); writes print nothing.
        An STMCAN's registers go through the model and the bus hooks (canmodel.py)."""
        m = self.current
        values = [parse_number(a.value) for a in args]
        if None in values or len(values) != (1 if meth == "ReadDoubleWord" else 2):
            raise SignatureMismatch([("UInt32", meth, [("UInt64", "address", None)])])
        can = m.can_at(values[0])
        if can is not None:
            with self.emu.lock, m.lock:
                if meth == "WriteDoubleWord":
                    m.bus_write(*can, values[1] & 0xFFFFFFFF)
                else:
                    w.value("0x%08X" % m.bus_read(*can))
            return True
        if meth == "WriteDoubleWord":
            m.memory.write(values[0], (values[1] & 0xFFFFFFFF).to_bytes(4, "little"))
        else:
            w.value("0x%08X" % m.memory.read_u32(values[0]))
        return True

    def cpu_property(self, m, typ, toks, w):
        """`<cpu> IsHalted`, `PC`, `VectorTableOffset` (Cortex-M): read, or set with a value; False if none."""
        if toks[1].value == "IsHalted":
            if len(toks) == 2:
                w.value(str(m.core.halted))
            elif toks[2].value.lower() in ("true", "false"):
                m.core.halted = toks[2].value.lower() == "true"  # a halted CPU stays so across resets otherwise
            else:
                raise SignatureMismatch([("Void", "IsHalted", [("Boolean", "value", None)])])
            return True
        props = {"PC"} | ({"VectorTableOffset"} if typ.endswith("CortexM") else set())
        if toks[1].value in props:
            prop = toks[1].value
            if len(toks) == 2:
                w.value(m.core.show(prop))
                return True
            value = parse_number(toks[2].value)
            if value is None:
                raise CommandError(
                    "There was an error executing command '%s'" % self.command_text(toks),
                    "Could not convert %s to UInt32" % toks[2].text,
                )
            if prop == "PC":
                m.core.set_pc(value)
                if m.fw is not None and m.fw.booted and m.fw.runs:
                    m.fw.reset()  # the CPU jumps there: a firmware's entry starts it over (banner again)
                    m.fw.boot_ns = None
            else:
                m.core.set_vtor(value, m.memory)
            return True
        return False

    def peripheral_command(self, toks, periph, path, w):
        m = self.current
        typ = m.periphs[periph][0]
        if typ in (BUTTON, LED) and len(toks) >= 2:
            return self.gpio_command(toks, periph, path, typ, w)
        if typ.startswith("UART.") and len(toks) >= 2 and toks[1].value == "WriteChar":
            value = parse_number(toks[2].value) if len(toks) == 3 else None
            if value is None or not 0 <= value <= 0xFF:
                raise SignatureMismatch([("Void", "WriteChar", [("Byte", "value", None)])])
            m.uart_receive(periph, bytes([value]))  # measured on 1.16.1: `sysbus.usart3 WriteChar 0x68`
            return True
        if typ.startswith("CPU.") and m.core and len(toks) in (2, 3) and self.cpu_property(m, typ, toks, w):
            return True
        if typ.startswith("CPU.") and len(toks) >= 2:
            self.no_member(toks, periph)
        raise CommandError(
            "There was an error executing command '%s'" % self.command_text(toks),
            "stand-in: peripheral members are not modelled",
        )
