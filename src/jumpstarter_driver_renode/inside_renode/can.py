# Runs inside Renode's monitor Python (IronPython 2.7), loaded once per process with `include`, after
# expect.py (it uses its Wait, Refusal, _now_ns, _exact_now_ns, _paused, _drop_timeouts). Keep it valid for
# Python 2.7 and 3: no f-strings, no keyword-only arguments.
#
# The host's node on each CAN hub. Renode 1.16's CANHub raises FrameReceived for every frame a peripheral
# sends, on the sender's CPU thread, before it delivers the frame to the other peripherals (CANHub.cs
# Transmit): the node records each frame there with the sender's exact virtual time. A host frame goes the
# way the hub sends one: to every peripheral on the hub, through its machine's time domain
# (HandleTimeDomainEvent), so it enters at the machines' next synced state. Every function named mc_* is a
# monitor command; arguments arrive as decimal or hex strings: nothing a client sends is ever code.

from Antmicro.Renode.Core import EmulationManager
from Antmicro.Renode.Core.CAN import CANMessageFrame
from Antmicro.Renode.Time import TimeDomainsManager, TimeInterval, TimeStamp
from System import Action, Array, Byte, Func, Int64, UInt32
from System import Object as DotNetObject
from System.Reflection import BindingFlags
from System.Threading import Monitor as Lock

QUEUE_LIMIT = 16384  # frames kept for the host (the oldest go first; the count of dropped ones is reported)
PERIODIC_NAME = "jumpstarter-can periodic"
RDT0R, RDT1R, RI0R, RI1R, RF0R, RF1R = 0x1B4, 0x1C4, 0x1B0, 0x1C0, 0x0C, 0x10
FMR, FM1R, FS1R, FFA1R, FA1R, F0R1 = 0x200, 0x204, 0x20C, 0x214, 0x21C, 0x240


def _bytes_hex(data):
    return "".join("%02x" % (int(b) & 0xFF) for b in data) or "-"


class Recorded(object):
    __slots__ = ("data", "extended", "ident", "ns", "remote")

    def __init__(self, ns, frame):
        self.ns = ns
        self.ident = int(frame.Id)
        self.extended = bool(frame.ExtendedFormat)
        self.remote = bool(frame.RemoteFrame)
        self.data = _bytes_hex(frame.Data)

    def line(self):
        flags = ("e" if self.extended else "") + ("r" if self.remote else "") or "-"
        return "%d %x %s %s" % (self.ns, self.ident, flags, self.data)


def _mend(frame):
    """STMCAN sends a frame without data bytes (DLC 0) with `Data` null; CANHub.Transmit turns it into a
    SocketCAN frame right after raising FrameReceived, and the NullReferenceException that follows kills
    Renode 1.16.1. The node sees the frame first: it gives it an empty array (`Data` has no setter)."""
    if frame.Data is not None:
        return
    field = frame.GetType().GetField("<Data>k__BackingField", BindingFlags.NonPublic | BindingFlags.Instance)
    if field is not None:
        field.SetValue(frame, Array[Byte]([]))


def _matches(filters, frame):
    """python-can's rule: (id ^ can_id) & can_mask == 0, and the id kind if the filter names one."""
    if not filters:
        return True
    for ident, mask, extended in filters:
        if (frame.ident ^ ident) & mask == 0 and (extended is None or extended == frame.extended):
            return True
    return False


def _parse_filters(text):
    filters = []
    for item in str(text).split(","):
        if not item or item == "-":
            continue
        ident, mask, extended = item.split(":")
        filters.append((int(ident, 16), int(mask, 16), None if extended == "-" else extended == "1"))
    return filters


class HostNode(object):
    """The host on one hub: the frames the hub carried since power-on (bounded), and the host's sends."""

    def __init__(self, hub, members):
        self.hub = hub
        self.members = members  # [(machine, peripheral)] on the hub
        self.lock = DotNetObject()
        self.frames = []
        self.dropped = 0
        self.wait = None  # (Wait, filters) of the receive in progress
        self.periodic = {}  # task id -> Periodic
        self.hooked = False
        self.hook()

    def hook(self):
        if not self.hooked:
            self.hub.FrameReceived += self.carried
            self.hooked = True

    def unhook(self):
        if self.hooked:
            self.hub.FrameReceived -= self.carried
            self.hooked = False

    def machine_of(self, peripheral):
        for machine, member in self.members:
            if DotNetObject.ReferenceEquals(member, peripheral):
                return machine
        return self.members[0][0]

    def carried(self, hub, sender, frame):
        """On the sender's CPU thread, as the hub takes the frame."""
        _mend(frame)
        if self.hub.IsPaused:  # the hub drops what it gets while stopped (CANHub.Transmit)
            return
        machine = self.machine_of(sender)
        recorded = Recorded(_exact_now_ns(machine), frame)  # noqa: F821
        found = None
        Lock.Enter(self.lock)
        try:
            self.frames.append(recorded)
            if len(self.frames) > QUEUE_LIMIT:
                del self.frames[0]
                self.dropped += 1
            if self.wait is not None and self.wait[0].result is None and _matches(self.wait[1], recorded):
                found = self.wait[0]
        finally:
            Lock.Exit(self.lock)
        if found is not None:
            found.finish(("frame", recorded.ns), machine)

    def take(self, filters, until_ns=None):
        """The oldest recorded frame that passes `filters` (those before it that do not are dropped), sent
        at or before `until_ns` if given (later ones stay for the next receive)."""
        Lock.Enter(self.lock)
        try:
            while self.frames and (until_ns is None or self.frames[0].ns <= until_ns):
                frame = self.frames.pop(0)
                if _matches(filters, frame):
                    return frame
            return None
        finally:
            Lock.Exit(self.lock)

    def take_dropped(self):
        """How many frames were dropped unread since the last call."""
        Lock.Enter(self.lock)
        try:
            dropped, self.dropped = self.dropped, 0
            return dropped
        finally:
            Lock.Exit(self.lock)

    def deliver(self, frame, stamp):
        """What the hub does with a frame: each peripheral gets it in its machine's time domain."""
        for machine, peripheral in self.members:
            machine.HandleTimeDomainEvent[CANMessageFrame](
                Action[CANMessageFrame](peripheral.OnFrameReceived), frame, stamp, None
            )


class Periodic(object):
    """A host frame (or a cycle of them) sent every `period` of virtual time, on the first machine's clock."""

    def __init__(self, node, frames, period_ns, duration_ns):
        self.node = node
        self.frames = frames
        self.period_ns = period_ns
        self.end_ns = None  # set at the first start: the virtual time the task stops
        self.duration_ns = duration_ns  # negative: no end
        self.index = 0
        self.running = False
        self.machine = node.members[0][0]
        self.due_ns = None  # the virtual time of its next frame
        self.resume_ns = None  # while a `Save` holds it: the delay to its next frame

    def start(self, delay_ns):
        """Send the first frame after `delay_ns` (0: now, from the monitor thread, as python-can's tasks do)."""
        if self.running:
            return
        self.running = True
        now = _now_ns(self.machine)  # noqa: F821
        if self.duration_ns >= 0 and self.end_ns is None:
            self.end_ns = now + self.duration_ns
        if delay_ns > 0:
            self.arm(delay_ns)
        else:
            self.send(now, _external_stamp())

    def arm(self, delay_ns):
        self.due_ns = _now_ns(self.machine) + delay_ns  # noqa: F821
        self.machine.ScheduleAction(
            TimeInterval.FromNanoseconds(int(delay_ns)), Action[TimeInterval](self.fire), PERIODIC_NAME
        )

    def fire(self, _):
        """On the machine's thread, when a period is over."""
        if self.running:
            found, stamp = TimeDomainsManager.Instance.TryGetVirtualTimeStamp()
            self.send(_exact_now_ns(self.machine), stamp if found else _external_stamp())  # noqa: F821

    def send(self, now, stamp):
        if self.end_ns is not None and now >= self.end_ns:
            self.running = False
            for task, periodic in list(self.node.periodic.items()):  # its duration is over: forget it
                if periodic is self:
                    del self.node.periodic[task]
            return
        frame = self.frames[self.index % len(self.frames)]
        self.index += 1
        self.node.deliver(frame, stamp)
        self.arm(self.period_ns)

    def stop(self):
        self.running = False


def _external_stamp():
    """A host thread's time stamp (TimeDomainExtensions.GetEffectiveVirtualTimeStamp off the CPU threads)."""
    return TimeStamp(TimeInterval.Empty, EmulationManager.ExternalWorld)


nodes = {}  # hub name -> HostNode


def _node(hub_name):
    node = nodes.get(str(hub_name))
    if node is None:
        raise Refusal("no-can-hub", "no CAN hub %s with a host node" % hub_name)  # noqa: F821
    return node


def _hub(name):
    hub = _external(name)  # noqa: F821
    if hub is None:
        raise Refusal("no-can-hub", "no CAN hub %s" % name)  # noqa: F821
    return hub


def mc_jumpstarter_can_attach(hub_name, members):
    """Put the host's node on a hub; `members` lists its `machine:peripheral`s (comma-separated)."""
    emulation = EmulationManager.Instance.CurrentEmulation
    wired = []
    for item in str(members).split(","):
        machine_name, peripheral_name = item.split(":", 1)
        found, machine = emulation.TryGetMachineByName(machine_name)
        if not found:
            raise Refusal("no-such-machine", "no machine %s" % machine_name)  # noqa: F821
        peripheral = _peripheral(machine, peripheral_name, "a CAN controller", ("OnFrameReceived",))  # noqa: F821
        wired.append((machine, peripheral))
    old = nodes.get(str(hub_name))
    if old is not None:
        old.unhook()
    nodes[str(hub_name)] = HostNode(_hub(str(hub_name)), wired)


def mc_jumpstarter_can_unhook():
    """Before `Save`: no handler or clock entry of ours may be in what Renode serializes."""
    for node in nodes.values():
        node.unhook()
        for task in node.periodic.values():
            if task.running:  # at least 1 ns: the frame due is sent by the clock, as it would have been
                task.resume_ns = max(1, task.due_ns - _now_ns(task.machine))  # noqa: F821
            task.running = False
        _drop_periodic(node)
    for peripheral, machine in list(fmi_fixed):
        machine.SystemBus.ClearHookAfterPeripheralRead[UInt32](peripheral)


def mc_jumpstarter_can_hook():
    """After `Save` (the same machines)."""
    for node in nodes.values():
        node.hook()
        for task in node.periodic.values():
            if task.resume_ns is not None:
                task.start(task.resume_ns)
                task.resume_ns = None
    for peripheral, machine in list(fmi_fixed):
        _set_fmi_hook(machine, peripheral)


def _drop_periodic(node):
    for machine in set(m for m, _ in node.members):
        _drop_entries(machine, PERIODIC_NAME)  # noqa: F821


def _frame(ident, flags, data_hex):
    data = bytearray() if data_hex == "-" else bytearray.fromhex(str(data_hex))
    return CANMessageFrame(UInt32(int(ident, 16)), Array[Byte](data), "e" in flags, "r" in flags, False, False)


def mc_jumpstarter_can_send(hub_name, ident, flags, data_hex):
    """The host sends one frame: every peripheral on the hub gets it at its machine's next synced state.

    Prints `jumpstarter-can sent <virtual ns now>`.
    """
    node = _node(hub_name)
    node.deliver(_frame(ident, str(flags), data_hex), _external_stamp())
    print("jumpstarter-can sent %d" % _now_ns(node.members[0][0]))  # noqa: F821


def mc_jumpstarter_can_recv(hub_name, filters, timeout_ns, host_ms):
    """The oldest frame the hub carried that passes `filters`, waiting in virtual time if there is none yet.

    Prints `jumpstarter-can <frame|timeout|host-timeout> <now ns> <dropped> [<ns> <id hex> <flags> <data hex>]`
    (<dropped>: frames the node let go of unread since the last receive).
    A paused emulation runs until the frame is sent and ends paused exactly there; a running one keeps running.
    """
    node = _node(hub_name)
    machine = node.members[0][0]
    wanted = _parse_filters(filters)
    deadline = _now_ns(machine) + int(timeout_ns)  # noqa: F821
    frame = node.take(wanted)
    wait = None
    if frame is None and int(timeout_ns) > 0:
        wait = Wait(machine, _paused())  # noqa: F821
        Lock.Enter(node.lock)
        node.wait = (wait, wanted)
        Lock.Exit(node.lock)
        try:
            frame = node.take(wanted)  # sent between the first look and the wait being armed
            if frame is None:
                wait.run(timeout_ns, host_ms, lambda: ("timeout", _now_ns(machine)))  # noqa: F821
                frame = node.take(wanted, deadline)  # not one another machine sent past the timeout
        finally:
            node.wait = None
    dropped = node.take_dropped()
    if frame is not None:
        print("jumpstarter-can frame %d %d %s" % (_now_ns(machine), dropped, frame.line()))  # noqa: F821
    else:
        ended = wait.result if wait is not None else None
        outcome = "host-timeout" if ended and ended[0] == "host-timeout" else "timeout"
        print("jumpstarter-can %s %d %d" % (outcome, _now_ns(machine), dropped))  # noqa: F821


def mc_jumpstarter_can_periodic(hub_name, task, frames, period_ns, duration_ns):
    """Start sending `frames` (`id/flags/data` items, comma-separated) in turn every `period_ns`."""
    node = _node(hub_name)
    items = [_frame(*item.split("/")) for item in str(frames).split(",")]
    old = node.periodic.pop(str(task), None)
    if old is not None:
        old.stop()
    periodic = Periodic(node, items, int(period_ns), int(duration_ns))
    node.periodic[str(task)] = periodic
    periodic.start(0)


def mc_jumpstarter_can_stop(hub_name, task):
    """Stop a periodic send (no error if it ended or never was)."""
    periodic = _node(hub_name).periodic.pop(str(task), None)
    if periodic is not None:
        periodic.stop()


# -- STMCAN's filter match index, as RM0090 defines it ------------------------------------------------
# Renode 1.16.1's STMCAN builds CAN_RDTxR when the frame arrives, before the filters are matched: FMI reads
# 0 for every frame. It also numbers the two halves of a 16-bit bank the other way round and looks at
# only the first filter of a 16-bit mask bank. A read hook on CAN_RDT0R/RDT1R puts in the index of the
# filter that matches the frame at the FIFO's head, numbered and prioritised as on silicon.

fmi_fixed = []  # [(peripheral, machine)] with the hook


def _bit(register, bank):
    return (register >> bank) & 1


def _filters_of_bank(scale32, list_mode, first, fr1, fr2):
    """[(number, kind, id, mask)] of one bank; kind 32 or 16 (the width of what is compared)."""
    if scale32:
        if list_mode:
            return [(first, 32, fr1, 0xFFFFFFFE), (first + 1, 32, fr2, 0xFFFFFFFE)]
        return [(first, 32, fr1, fr2 & 0xFFFFFFFE)]
    low1, high1, low2, high2 = fr1 & 0xFFFF, fr1 >> 16, fr2 & 0xFFFF, fr2 >> 16
    if list_mode:
        return [(first + i, 16, value, 0xFFFF) for i, value in enumerate((low1, high1, low2, high2))]
    return [(first, 16, low1, high1), (first + 1, 16, low2, high2)]


def silicon_fmi(rir, fifo, registers):
    """The FMI RM0090 gives the frame `rir` in `fifo`, or None if no active filter of it matches."""
    fm1r, fs1r, ffa1r, fa1r, banks, read_bank = registers
    rir &= 0xFFFFFFFE
    stid, exid = (rir >> 21) & 0x7FF, (rir >> 3) & 0x3FFFF
    ide, rtr = (rir >> 2) & 1, (rir >> 1) & 1
    as16 = (stid << 5) | (rtr << 4) | (ide << 3) | ((exid >> 15) & 7)
    number, best = 0, None
    for bank in range(banks):
        if _bit(ffa1r, bank) != fifo:
            continue
        scale32, list_mode = _bit(fs1r, bank), _bit(fm1r, bank)
        fr1, fr2 = read_bank(bank)
        filters = _filters_of_bank(scale32, list_mode, number, fr1, fr2)
        number += len(filters)
        if not _bit(fa1r, bank):
            continue
        for index, width, ident, mask in filters:
            value = rir if width == 32 else as16
            if (value ^ ident) & mask == 0:
                rank = (0 if width == 32 else 1, 0 if list_mode else 1, index)  # silicon's priority
                if best is None or rank < best:
                    best = rank
    return None if best is None else best[2]


def _fmi_hook(peripheral):
    def hook(value, offset):
        value = int(value)
        if offset not in (RDT0R, RDT1R):
            return UInt32(value)
        fifo = 0 if offset == RDT0R else 1
        if not int(peripheral.ReadDoubleWord(RF0R if fifo == 0 else RF1R)) & 3:  # FMP: nothing pending
            return UInt32(value)
        rir = int(peripheral.ReadDoubleWord(RI0R if fifo == 0 else RI1R))
        can2_start = (int(peripheral.ReadDoubleWord(FMR)) >> 8) & 0x3F
        registers = (
            int(peripheral.ReadDoubleWord(FM1R)),
            int(peripheral.ReadDoubleWord(FS1R)),
            int(peripheral.ReadDoubleWord(FFA1R)),
            int(peripheral.ReadDoubleWord(FA1R)),
            min(28, can2_start) or 28,
            lambda bank: (
                int(peripheral.ReadDoubleWord(F0R1 + 8 * bank)),
                int(peripheral.ReadDoubleWord(F0R1 + 8 * bank + 4)),
            ),
        )
        fmi = silicon_fmi(rir, fifo, registers)
        if fmi is None:
            return UInt32(value)
        return UInt32((value & ~0xFF00) | ((fmi & 0xFF) << 8))

    return hook


def _set_fmi_hook(machine, peripheral):
    machine.SystemBus.SetHookAfterPeripheralRead[UInt32](
        peripheral, Func[UInt32, Int64, UInt32](_fmi_hook(peripheral)), None
    )


def mc_jumpstarter_can_fmi_fix(peripheral_name):
    """Correct the filter match index an STMCAN of the selected machine reports (a no-op for other models).

    Prints `jumpstarter-can fmi <fixed|not-stmcan>`.
    """
    machine = monitor.Machine  # noqa: F821
    peripheral = _peripheral(machine, peripheral_name, "a CAN controller", ("OnFrameReceived",))  # noqa: F821
    if peripheral.GetType().Name != "STMCAN" or getattr(peripheral, "IsSlave", False):
        print("jumpstarter-can fmi not-stmcan")
        return
    alive = list(EmulationManager.Instance.CurrentEmulation.Machines)
    for key in [key for key in fmi_fixed if key[1] not in alive or DotNetObject.ReferenceEquals(key[0], peripheral)]:
        fmi_fixed.remove(key)  # peripherals of machines a `Load` replaced, or this one hooked before
    _set_fmi_hook(machine, peripheral)
    fmi_fixed.append((peripheral, machine))
    print("jumpstarter-can fmi fixed")
