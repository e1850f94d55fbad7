"""Snapshots: `Save` and `Load` (infra src/Emulator/Main/Core/EmulationManager.cs), a mixin of monitor.Monitor.

A snapshot is the emulation's state as JSON (machines.Emulation.to_state), behind a magic and the version
that wrote it; what Renode does around it (paused while saving, terminals re-created at their links on
Load, hubs back stopped) is modelled in the methods below.
"""

import json
import os

from errors import CommandError, SignatureMismatch
from logs import LOG
from machines import SNAPSHOT_MAGIC, Emulation
from tokens import resolve_at_path
from versions import banner_version

SNAPSHOT_METHODS = {
    "Save": [("Void", "Save", [("String", "path", None)])],
    "Load": [("Void", "Load", [("ReadFilePath", "path", None)])],
}


class SnapshotCommands:
    def emu_Save(self, toks, w):
        if len(toks) != 2 or toks[1].kind not in ("path", "str"):
            raise SignatureMismatch(SNAPSHOT_METHODS["Save"])
        path = toks[1].value
        if not os.path.isabs(path):
            path = os.path.join(os.getcwd(), path)
        # ObtainPausedState: the state is serialized paused, so a loaded snapshot starts paused.
        was = self.emu.started
        self.emu.pause()
        try:
            # Measured on 1.16.1: a Python handler on a terminal's CharReceived, or an action a Python
            # script scheduled (ScheduleAction) and that has not run yet, cannot be serialized. A UART's
            # CharReceived is not serialized, so handlers there are no obstacle. Derived from the sources,
            # not measured: a Button's StateChanged is serialized too (an LED's is [Transient]), and so are a
            # CAN hub's FrameReceived (CANHub.cs: a plain event of an external) and a Python bus read hook
            # (the system bus keeps the hook's wrapper in its access methods).
            if (
                any(t.handlers for t in self.emu.terminals.values())
                or any(m.actions for m in self.emu.machines.values())
                or any(b.handlers for m in self.emu.machines.values() for b in m.gpios.buttons.values())
                or any(h.frame_handlers for h in self.emu.hubs.values())
                or any(m.read_hooks for m in self.emu.machines.values())
            ):
                raise CommandError(
                    "There was an error executing command '%s'" % self.command_text(toks),
                    "Error encountered during saving: Pointer or ThreadLocal or SpinLock encountered during "
                    "serialization. In order to obtain detailed information including the class path that led "
                    "here, please use the reflection-based version of the serializer.",
                    "Hint: Set 'serialization-mode = Reflection' in the Renode config file for detailed information.",
                )
            with open(path, "w") as f:
                json.dump({"magic": SNAPSHOT_MAGIC, "version": banner_version(), "emulation": self.emu.to_state()}, f)
        except OSError as e:
            raise CommandError("There was an error executing command '%s'" % self.command_text(toks), str(e))  # noqa: B904 - the monitor prints this text instead
        finally:
            if was:
                self.emu.start()
        return True

    def emu_Load(self, toks, w):
        """Load = deserialize a new Emulation, then replace (and dispose) the current one.

        Derived from sources (1.14, infra EmulationManager.Load + CurrentEmulation setter; renode
        UartPtyTerminal.cs): deserialization runs UartPtyTerminal's [PostDeserialization]
        Initialize(), which opens a NEW PTY and re-creates the symlink BEFORE the old emulation
        is disposed. So: (1) if the old terminal's link still exists and forceCreate was false,
        Load fails (deserialization error wrapping "File `X' already exists...") and the current
        emulation stays; (2) with forceCreate=true the new PTY survives and stays connected to
        its UART, but disposing the old terminal then deletes the link path, so the symlink is
        gone; (3) after `Clear` (or with no PTY terminals) the terminals come back with a new
        PTY at the same link. The snapshot is taken paused, so the emulation is paused after
        Load; machine selection, variables and macros are cleared (Monitor.cs EmulationChanged).
        Hubs come back with their connections ([PostDeserialization] in UARTHub.cs), stopped until the
        emulation runs again (measured on 1.16.1: `bus IsPaused` True after Load, and lines are forwarded
        again after `start`).
        """
        if len(toks) != 2 or toks[1].kind not in ("path", "str"):
            raise SignatureMismatch(SNAPSHOT_METHODS["Load"])
        path = resolve_at_path(toks[1].value) if toks[1].kind == "path" else toks[1].value
        if not os.path.isfile(path):
            raise SignatureMismatch(SNAPSHOT_METHODS["Load"])
        err = "There was an error executing command '%s'" % self.command_text(toks)
        try:
            with open(path) as f:
                snap = json.load(f)
            if snap.get("magic") != SNAPSHOT_MAGIC:
                raise ValueError
        except (ValueError, OSError, UnicodeDecodeError):
            raise CommandError(err, "There was an error when deserializing the emulation: WrongMagic")  # noqa: B904 - the monitor prints this text instead
        try:
            new = Emulation.from_state(snap["emulation"])
        except CommandError as e:
            raise CommandError(  # noqa: B904 - the monitor prints this text instead
                err,
                "There was an error when deserializing the emulation: StreamCorrupted",
                " Underlying exception: %s" % e.lines[0],
                "  at Antmicro.Renode.Backends.Terminals.UartPtyTerminal.CreateSymlink ()",
            )
        if snap.get("version") != banner_version():
            LOG.log(
                "WARNING",
                "Version of deserialized emulation (%s) does not match current one %s. Things may go awry!"
                % (snap.get("version"), banner_version()),
            )
        self.emu.dispose()
        self.reset_monitor_state(new)
        return True
