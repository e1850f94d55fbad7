"""Hubs between machines: `emulation CreateUARTHub` / `CreateCANHub` / `CreateSwitch`, and the connector.

Read from Renode 1.16.1's sources (renode-infrastructure add012af):
- `src/Emulator/Main/Peripherals/UART/UARTHub.cs`: `CreateUARTHub(name, loopback = false)` adds a
  `UARTHub<byte>` (Type.Name `UARTHub`1`) to the ExternalsManager. AttachTo(uart) subscribes to the
  UART's CharReceived (what the UART transmits). A transmitted character is dropped unless the hub is
  started; otherwise it is written (`WriteChar`) into every OTHER attached UART (the sender too if
  `loopback`), each through its own machine's time domain: `HandleTimeDomainEvent(WriteChar, byte, when)`
  with `when` = the sender's virtual time (STM32_UART is no IDelayableUART: no transmission delay), which
  in SynchronizedIO mode queues it for the receiving machine's next synced state at or after `when`
  (TimeSourceBase.ExecuteInSyncedState; sync points every quantum, 100 us by default). Attaching a UART
  twice: `Cannot attach to the provided UART as it is already registered in this hub.`; detaching one
  that is not attached: `Cannot detach from the provided UART as it is not registered in this hub.`.
  [PostDeserialization] re-subscribes the attached UARTs: a loaded hub forwards again.
- `src/Emulator/Main/Core/ExternalsManager.cs`: one namespace for every external (terminals and hubs):
  a taken name fails with `External's name already in use`. Start() (Emulation.InnerStartAll: `start`,
  StartAll, RunFor) starts or resumes the IHasOwnLife externals only when the manager was paused; Pause()
  (PauseAll, a Save's paused state) pauses them. AddExternal starts nothing: a hub created while the
  emulation runs stays stopped (drops everything) until the emulation is paused and started again.
- `src/Emulator/Main/Core/Connector.cs`: `connector Connect <element> <connectable>` calls the
  connectable's AttachTo with the element's runtime type; none fits -> `Could not find a way to connect
  <element type> to <connectable type>` (`disconnect ... from ...` for Disconnect).
- `src/Emulator/Extensions/Tools/Network/CANHub.cs` (`CreateCANHub(name, loopback = false,
  useNetworkByteOrderForLogging = true)`): AttachTo(ICAN) subscribes to the peripheral's FrameSent (the
  stand-in's STM32F4 has two STMCANs, canmodel.py). Transmit(sender, frame), on the sender's CPU thread:
  FrameReceived(hub, sender, frame) is raised first, even while the hub is stopped; then nothing more
  unless started; else every OTHER attached peripheral (the sender too if `loopback`) gets the frame
  through its machine's time domain: `HandleTimeDomainEvent(OnFrameReceived, frame, vts)` with vts the
  sender's virtual time stamp, which on a CPU thread is the nearest sync point (SlaveTimeSource registers
  `TimeStamp(NearestSyncPoint, Domain)`), so it reaches the receivers at the next synced state, as the
  UART hub's characters do. A frame whose Data is null (an STMCAN's DLC 0 frame) kills Renode there
  (`ToSocketCAN`, measured: firmware/README.md). DetachFrom of a peripheral never attached throws there (a dictionary lookup);
  the stand-in ignores it.
- `Switch.cs` (`CreateSwitch(name)`, IMACInterface peripherals): a named external; the stand-in's platforms
  have no Ethernet peripheral, so nothing can join it, and frames are not modelled.
"""

from errors import CommandError, SignatureMismatch
from faults import crash
from tokens import parse_bool
from versions import C_GREEN, C_YELLOW

QUANTUM_NS = 100_000  # TimeSourceBase.DefaultQuantum: 100 us between synced states

# kind -> (Type.Name, .NET namespace, peripheral type prefixes the hub's AttachTo accepts, "already" message)
KINDS = {
    "UART": (
        "UARTHub`1",
        "Antmicro.Renode.Peripherals.UART",
        ("UART.",),
        "Cannot attach to the provided UART as it is already registered in this hub.",
    ),
    "CAN": (
        "CANHub",
        "Antmicro.Renode.Tools.Network",
        ("CAN.",),
        "Cannot attach to the provided CAN periperal as it is already registered in this hub.",
    ),
    "Switch": (
        "Switch",
        "Antmicro.Renode.Tools.Network",
        ("Network.",),  # IMACInterface: the Ethernet MACs (none on the stand-in's platforms)
        "Cannot attach to the provided MAC interface as it is already registered in this switch.",
    ),
}
NAME_TAKEN = "External's name already in use"


class Hub:
    def __init__(self, name, kind, loopback=False):
        self.name, self.kind, self.loopback = name, kind, loopback
        self.started = False  # UARTHubBase.started: false until the ExternalsManager starts it
        self.members = []  # [(Machine, peripheral name)] in attach order (the UARTs' dictionary)
        self.frame_handlers = []  # CANHub.FrameReceived: callable(hub, machine, peripheral, {"frame": frame})

    @property
    def type_name(self):
        return KINDS[self.kind][0]

    @property
    def full_type_name(self):
        return "%s.%s" % (KINDS[self.kind][1], self.type_name)

    def accepts(self, periph_type):
        return periph_type.startswith(KINDS[self.kind][2])

    def attach(self, machine, periph):
        """AttachTo: None, or the RecoverableException's message."""
        if (machine, periph) in self.members:
            return KINDS[self.kind][3]
        self.members.append((machine, periph))
        return None

    def detach(self, machine, periph):
        if (machine, periph) not in self.members:
            if self.kind == "UART":
                return "Cannot detach from the provided UART as it is not registered in this hub."
            return None  # CANHub: a KeyNotFoundException in Renode, not modelled; Switch: nothing can join
        self.members.remove((machine, periph))
        return None

    def recipients(self, sender, periph):
        """The members a transmission reaches: not the sender (unless loopback), only machines still there."""
        for machine, recipient in list(self.members):
            if (machine, recipient) == (sender, periph) and not self.loopback:
                continue
            if machine.emu.machines.get(machine.name) is not machine:
                continue  # removed from the emulation
            yield machine, recipient

    def transmit(self, sender, periph, data, now_ns):
        """HandleCharReceived for each byte the sender's UART printed (on the CPU thread, at now_ns)."""
        if self.kind != "UART" or not self.started:
            return
        due = (now_ns // QUANTUM_NS + 1) * QUANTUM_NS
        for machine, recipient in self.recipients(sender, periph):
            machine.hub_receive(recipient, data, due)

    def transmit_frame(self, sender, periph, frame, now_ns):
        """CANHub.Transmit: a frame the sender's CAN controller sent (on the CPU thread, at now_ns);
        frame = (id, data bytes, extended, remote)."""
        message = {"frame": frame}  # the one CANMessageFrame of this Transmit (pyapi.py adds it)
        for handler in list(self.frame_handlers):
            sender.call(handler, self, sender, periph, message)
        if "back" in message:
            frame = message["back"]()  # a handler may have changed it (reflection on its backing fields)
        if frame[1] is None:
            # An STMCAN's DLC 0 frame (Data null): `message.ToSocketCAN` throws a NullReferenceException,
            # which nothing catches (measured on 1.16.1, firmware/README.md: "Fatal error", Renode is gone).
            crash(
                "System.NullReferenceException: Object reference not set to an instance of an object.\n"
                "   at Antmicro.Renode.Core.CAN.CANMessageFrame.ToSocketCAN (System.Boolean useNetworkByteOrder)\n"
                "   at Antmicro.Renode.Tools.Network.CANHub.Transmit (Antmicro.Renode.Peripherals.CAN.ICAN sender, "
                "Antmicro.Renode.Core.CAN.CANMessageFrame message)"
            )
        if not self.started:
            return
        due = (now_ns // QUANTUM_NS + 1) * QUANTUM_NS
        for machine, recipient in self.recipients(sender, periph):
            machine.can_deliver(recipient, frame, due)

    def state(self):
        return {
            "name": self.name,
            "kind": self.kind,
            "loopback": self.loopback,
            "started": self.started,
            "members": [[m.name, p] for m, p in self.members],
        }

    @classmethod
    def from_state(cls, st, machines):
        hub = cls(st["name"], st["kind"], st["loopback"])
        hub.started = st["started"]
        # [PostDeserialization] ReattachUARTsAfterDeserialization: the UARTs' CharReceived again
        hub.members = [(machines[m], p) for m, p in st["members"]]
        return hub


def transmit(machine, periph, data, now_ns):
    """What a UART printed reaches the hubs it is attached to (its CharReceived subscribers)."""
    for hub in list(machine.emu.hubs.values()):
        if (machine, periph) in hub.members:
            hub.transmit(machine, periph, data, now_ns)


def transmit_frame(machine, periph, frame, now_ns):
    """A CAN controller sends `frame`: its FrameSent subscribers (the hubs it is attached to). False if it has
    none (STMCAN then records a bit-dominant error)."""
    attached = [
        hub for hub in list(machine.emu.hubs.values()) if hub.kind == "CAN" and (machine, periph) in hub.members
    ]
    for hub in attached:
        hub.transmit_frame(machine, periph, frame, now_ns)
    return bool(attached)


# `emulation Create*` (the EmulationExtensions of UARTHub.cs, CANHub.cs, Switch.cs) as the monitor lists them
CREATE_METHODS = {
    "CreateUARTHub": [("Void", "CreateUARTHub", [("String", "name", None), ("Boolean", "loopback", "False")])],
    "CreateCANHub": [
        (
            "Void",
            "CreateCANHub",
            [
                ("String", "name", None),
                ("Boolean", "loopback", "False"),
                ("Boolean", "useNetworkByteOrderForLogging", "True"),
            ],
        )
    ],
    "CreateSwitch": [("Void", "CreateSwitch", [("String", "name", None)])],
}

# A UART hub's methods as the monitor lists them (measured on 1.16.1: `bus` alone, UARTHub.cs and its extensions)
HUB_METHODS = [
    ("Void", "AttachTo", [("IUART<Byte>", "uart", None)]),
    ("Void", "DebugLog", [("String", "message", None)]),
    ("Void", "DetachFrom", [("IUART<Byte>", "uart", None)]),
    ("Void", "ErrorLog", [("String", "message", None)]),
    ("Void", "InfoLog", [("String", "message", None)]),
    ("Void", "Log", [("LogLevel", "type", None), ("String", "message", None)]),
    ("Void", "NoisyLog", [("String", "message", None)]),
    ("Void", "Pause", []),
    ("Void", "Resume", []),
    ("Void", "Start", []),
    ("Void", "WarningLog", [("String", "message", None)]),
]


class HubCommands:
    """The monitor's hub commands (a mixin of monitor.Monitor): a hub's own members, and its creation."""

    def hub_command(self, toks, hub, w):
        """A hub's members (UARTHub.cs): the bare name lists them (measured on 1.16.1 for a UART hub);
        IsPaused, Start / Resume / Pause, AttachTo / DetachFrom (the connector's calls)."""
        name = toks[0].value
        if len(toks) == 1 and hub.kind == "UART":
            self.print_methods(name, HUB_METHODS, w)
            w.writeline("\nThe following properties are available:")
            w.write(" - ")
            w.write("Boolean", C_GREEN)
            w.writeline(" IsPaused")
            w.write("     available for ")
            w.write("'get'", C_YELLOW)
            w.writeline()
            w.writeline("\n\rUsage:")
            w.write(" - ")
            w.write("get", C_YELLOW)
            w.writeline(": %s PropertyName" % name)
            w.write(" - ")
            w.write("set", C_YELLOW)
            w.writeline(": %s PropertyName Value" % name)
            w.writeline()
            return True
        member = toks[1].value if len(toks) > 1 else None
        args = toks[2:]
        if member == "IsPaused":  # read-only: a value after it is ignored
            w.value("False" if hub.started else "True")
            return True
        if member in ("Start", "Resume", "Pause") and not args:
            with self.emu.lock:
                hub.started = member != "Pause"
            return True
        if member in ("AttachTo", "DetachFrom") and len(args) == 1 and hub.kind == "UART":
            found = self.element_of(args[0])
            if found is None or not isinstance(found[1], tuple) or not hub.accepts(found[1][0].periphs[found[1][1]][0]):
                raise SignatureMismatch([m for m in HUB_METHODS if m[1] == member])
            with self.emu.lock:
                problem = hub.attach(*found[1]) if member == "AttachTo" else hub.detach(*found[1])
            if problem:
                raise CommandError("There was an error executing command '%s'" % self.command_text(toks), problem)
            return True
        if member is None or member in {m[1] for m in HUB_METHODS}:
            raise CommandError(
                "There was an error executing command '%s'" % self.command_text(toks),
                "stand-in: this member of a hub is not modelled",
            )
        self.no_member(toks, name)

    def create_hub(self, meth, args, toks):
        """emulation CreateUARTHub "name" [loopback] / CreateCANHub "name" [loopback] [byteOrder] /
        CreateSwitch "name" (hubs.py)."""
        limit = {"CreateUARTHub": 2, "CreateCANHub": 3, "CreateSwitch": 1}[meth]
        if not 1 <= len(args) <= limit or args[0].kind not in ("str", "word"):
            raise SignatureMismatch(CREATE_METHODS[meth])
        flags = [parse_bool(a.value) for a in args[1:]]
        if None in flags:
            raise SignatureMismatch(CREATE_METHODS[meth])
        name = args[0].value
        if self.external_taken(name):
            raise CommandError("There was an error executing command '%s'" % self.command_text(toks), NAME_TAKEN)
        kind = {"CreateUARTHub": "UART", "CreateCANHub": "CAN", "CreateSwitch": "Switch"}[meth]
        self.emu.hubs[name] = Hub(name, kind, bool(flags and flags[0]))
        self.emu.external_names.append(name)
        return True
