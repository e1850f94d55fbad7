"""The slice of Renode's .NET API that Python run in the monitor sees (IronPython 2.7 there, CPython here).

Fake modules `Antmicro.Renode.Core`, `Antmicro.Renode.Time`, `System`, `System.Threading` and `clr`,
installed in sys.modules by `install()` (no stand-in module shares these names), and facades over the
stand-in's own objects (machines.Machine, machines.Emulation, terminals.PtyTerminal):
- infra `src/Emulator/Main/Core/EmulationManager.cs`: EmulationManager.Instance.CurrentEmulation
- infra `src/Emulator/Main/Core/Emulation.cs`: IsStarted, StartAll, PauseAll, RunFor,
  GetStartedStateChangedEvent(requiredStartedState, waitForTransition=True) (an AutoResetEvent set
  when IsStarted becomes the required state), ExternalsManager
- infra `src/Emulator/Main/Core/ExternalsManager.cs`: Externals, TryGetName(external) -> (found, name)
  (IronPython returns `out` parameters as a tuple after the return value), GetNames()
- infra `src/Emulator/Main/Core/Machine.cs`: machine[name] (GetByName; an unknown name throws
  InvalidOperationException `Could not find node '<name>', the longest matching was '<prefix>'.`),
  ElapsedVirtualTime.TimeElapsed, ScheduleAction(delay, Action<TimeInterval>, name) (the action gets
  the time it was scheduled at; a one-shot entry in ClockSource: GetAllClockEntries (LocalName,
  Handler), TryRemoveClockEntry(handler)), PauseAndRequestEmulationPause(precise) (nothing if the
  emulation is not started)
- a UART's and a terminal's `CharReceived` (event Action<byte>): `+=` / `-=` of Python callables
- infra `src/Emulator/Main/Time/TimeInterval.cs`: nanosecond ticks, From*/Total*, ToString
- System.Action / Action[T] delegates, System.Threading ManualResetEvent / AutoResetEvent.

The facades keep one object per stand-in object, so `is` works as it does on .NET references
(expect.py compares machines with `is`). When and on which thread events fire is machines.py's part.
"""

import sys
import threading
import types

MONITOR = None  # the stand-in's monitor.Monitor, set by install()
ULONG_MAX = 2**64 - 1


def _ulong(value):
    value = int(value)
    if not 0 <= value <= ULONG_MAX:
        raise OverflowError("Value was either too large or too small for a UInt64.")
    return value


class InvalidOperationException(Exception):
    """System.InvalidOperationException as IronPython code can catch it."""


# -- Antmicro.Renode.Time ---------------------------------------------------------------------------


class TimeInterval:
    TicksPerNanosecond = 1
    TicksPerMicrosecond = 1000
    TicksPerMillisecond = 1000 * 1000
    TicksPerSecond = 1000 * 1000 * 1000

    __slots__ = ("_ticks",)

    def __init__(self, ticks=0):
        self._ticks = _ulong(ticks)

    @staticmethod
    def FromTicks(ticks):
        return TimeInterval(ticks)

    @staticmethod
    def FromNanoseconds(value):
        return TimeInterval(_ulong(value))

    @staticmethod
    def FromMicroseconds(value):
        return TimeInterval(_ulong(value) * TimeInterval.TicksPerMicrosecond)

    @staticmethod
    def FromMilliseconds(value):
        # the ulong overload for integers, the float one (truncating) otherwise
        if isinstance(value, float):
            return TimeInterval(_ulong(value * TimeInterval.TicksPerMillisecond))
        return TimeInterval(_ulong(value) * TimeInterval.TicksPerMillisecond)

    @staticmethod
    def FromSeconds(value):
        if isinstance(value, float):
            return TimeInterval(_ulong(value * TimeInterval.TicksPerSecond))
        return TimeInterval(_ulong(value) * TimeInterval.TicksPerSecond)

    @property
    def Ticks(self):
        return self._ticks

    @property
    def TotalNanoseconds(self):
        return self._ticks

    @property
    def TotalMicroseconds(self):
        return self._ticks / 1e3

    @property
    def TotalMilliseconds(self):
        return self._ticks / 1e6

    @property
    def TotalSeconds(self):
        return self._ticks / 1e9

    def __add__(self, other):
        return TimeInterval(self._ticks + other._ticks)

    def __sub__(self, other):
        return TimeInterval(self._ticks - other._ticks)

    def __eq__(self, other):
        return isinstance(other, TimeInterval) and self._ticks == other._ticks

    def __lt__(self, other):
        return self._ticks < other._ticks

    def __le__(self, other):
        return self._ticks <= other._ticks

    def __gt__(self, other):
        return self._ticks > other._ticks

    def __ge__(self, other):
        return self._ticks >= other._ticks

    def __hash__(self):
        return hash(self._ticks)

    def __str__(self):
        seconds, decimals = divmod(self._ticks, TimeInterval.TicksPerSecond)
        hours, seconds = divmod(seconds, 3600)
        minutes, seconds = divmod(seconds, 60)
        return "%02d:%02d:%02d.%09d" % (hours, minutes, seconds, decimals)

    __repr__ = __str__


TimeInterval.Empty = TimeInterval(0)
TimeInterval.Maximal = TimeInterval(ULONG_MAX)


class TimeStamp:
    """infra Time/TimeStamp.cs: a time in a time domain."""

    def __init__(self, ns):
        self.TimeElapsed = TimeInterval(ns)
        self.Domain = None


# -- System, System.Threading -------------------------------------------------------------------


class Action:
    """System.Action (`Action(fn)`) and its generic forms (`Action[TimeInterval](fn)`): callable delegates."""

    arity = 0

    def __init__(self, function):
        if not callable(function):
            raise TypeError("expected a callable, got %s" % type(function).__name__)
        self._function = function

    def __call__(self, *args):
        if len(args) != self.arity:
            raise TypeError("%s takes exactly %d arguments (%d given)" % (type(self).__name__, self.arity, len(args)))
        return self._function(*args)

    def Invoke(self, *args):
        return self(*args)

    def __class_getitem__(cls, params):
        params = params if isinstance(params, tuple) else (params,)
        name = "Action[%s]" % ", ".join(getattr(p, "__name__", str(p)) for p in params)
        return type(name, (Action,), {"arity": len(params)})


def _wait_ms(ms):
    """.NET WaitOne(int millisecondsTimeout): -1 (Timeout.Infinite) waits forever."""
    if ms is None:
        return None
    ms = int(ms)
    if ms < -1:
        raise ValueError("Number must be either non-negative and less than or equal to Int32.MaxValue or -1.")
    return None if ms == -1 else ms / 1000.0


class ManualResetEvent:
    def __init__(self, initial_state=False):
        self._event = threading.Event()
        if initial_state:
            self._event.set()

    def Set(self):
        self._event.set()
        return True

    def Reset(self):
        self._event.clear()
        return True

    def WaitOne(self, milliseconds=None):
        return self._event.wait(_wait_ms(milliseconds))


class AutoResetEvent:
    """Released waiters reset it: one Set lets one WaitOne through."""

    def __init__(self, initial_state=False):
        self._cond = threading.Condition()
        self._set = bool(initial_state)

    def Set(self):
        with self._cond:
            self._set = True
            self._cond.notify()
        return True

    def Reset(self):
        with self._cond:
            self._set = False
        return True

    def WaitOne(self, milliseconds=None):
        with self._cond:
            if not self._cond.wait_for(lambda: self._set, _wait_ms(milliseconds)):
                return False
            self._set = False
            return True


# -- events -------------------------------------------------------------------------------------


class Event:
    """A .NET event as IronPython shows it: `obj.Event += handler` / `obj.Event -= handler`."""

    def __init__(self, handlers):
        self._handlers = handlers  # the stand-in object's list, called by machines.py / terminals.py

    def __iadd__(self, handler):
        if not callable(handler):
            raise TypeError("event handler must be callable")
        self._handlers.append(handler)
        return self

    def __isub__(self, handler):
        for i in range(len(self._handlers) - 1, -1, -1):
            if self._handlers[i] == handler:
                del self._handlers[i]
                break
        return self


def _event_property(attribute):
    def get(self):
        return Event(getattr(self, attribute))

    def set_(self, value):
        if not isinstance(value, Event) or value._handlers is not getattr(self, attribute):
            raise AttributeError("attribute 'CharReceived' of '%s' object is read-only" % type(self).__name__)

    return property(get, set_)


def facade(obj, factory):
    """One facade per stand-in object (kept on the object itself)."""
    existing = getattr(obj, "_facade", None)
    if existing is None:
        existing = obj._facade = factory(obj)
    return existing


# -- peripherals, terminals, machines, the emulation -------------------------------------------


class Peripheral:
    def __init__(self, machine, name, typ):
        self._machine, self._name, self._type = machine, name, typ

    def ToString(self):
        return "Antmicro.Renode.Peripherals.%s" % self._type

    def __repr__(self):  # IronPython's form for a .NET object (measured: print(machine['sysbus.usart2']))
        return "<%s object at 0x%016X [%s]>" % (self.ToString(), id(self) & 0xFFFFFFFF, self.ToString())

    __str__ = __repr__


class Uart(Peripheral):
    """A UART (IUART): CharReceived is invoked with each byte it prints, at the virtual time it prints it."""

    def __init__(self, machine, name, typ):
        super().__init__(machine, name, typ)
        self._handlers = machine.uart_handlers.setdefault(name, [])

    CharReceived = _event_property("_handlers")


class SystemBus(Peripheral):
    pass


class Terminal:
    """renode UartPtyTerminal: CharReceived is invoked with each byte it passes from its PTY to its UART."""

    def __init__(self, term):
        self._term = term
        self._handlers = term.handlers

    CharReceived = _event_property("_handlers")

    @property
    def Name(self):
        return self._term.name

    def ToString(self):
        return "Antmicro.Renode.Backends.Terminals.UartPtyTerminal"

    def __repr__(self):
        return "<%s object at 0x%016X [%s]>" % (self.ToString(), id(self) & 0xFFFFFFFF, self.ToString())

    __str__ = __repr__


class MachineFacade:
    def __init__(self, machine):
        self._m = machine
        self._periphs = {}

    def __getitem__(self, name):
        m = self._m
        name = str(name)
        head, _, rest = name.partition(".")
        if head == "sysbus" and not rest:
            key, typ = "sysbus", "Bus.SystemBus"
        elif head == "sysbus" and rest in m.periphs:
            key, typ = rest, m.periphs[rest][0]
        else:
            longest = ""
            if head == "sysbus":
                first = rest.split(".")[0]
                longest = "sysbus.%s" % first if first in m.periphs else "sysbus"
            raise InvalidOperationException(
                "Could not find node '%s', the longest matching was '%s'." % (name, longest)
            )
        found = self._periphs.get(key)
        if found is None or found._type != typ:
            cls = SystemBus if key == "sysbus" else Uart if typ.startswith("UART.") else Peripheral
            found = self._periphs[key] = cls(m, key, typ)
        return found

    @property
    def Name(self):
        return self._m.name

    @property
    def ElapsedVirtualTime(self):
        return TimeStamp(self._m.emu.vt_ns)

    def ScheduleAction(self, delay, action, name=None):
        if not isinstance(delay, TimeInterval):
            raise TypeError("expected TimeInterval, got %s" % type(delay).__name__)
        m = self._m

        def run(at_ns):
            action(TimeInterval(at_ns))

        # ClockEntry.Handler: invoking it runs the action and removes the entry, as Renode's does
        handler = Action(lambda: m.unschedule(handler) and run(m.emu.vt_ns))
        m.schedule(delay.Ticks, run, name, handler)

    @property
    def ClockSource(self):
        return ClockSource(self._m)

    def PauseAndRequestEmulationPause(self, precise=False):
        self._m.emu.request_pause(bool(precise))

    def ToString(self):
        return self._m.name

    __str__ = __repr__ = ToString


class ClockEntry:
    """infra Time/ClockEntry.cs, for an action from ScheduleAction (one-shot; the platform's own timers
    are not modelled): LocalName is the name it was scheduled with, Handler identifies it."""

    def __init__(self, owner, due_ns, at_ns, name, handler):
        self.Period = due_ns - at_ns
        self.Frequency = TimeInterval.TicksPerSecond
        self.Handler = handler
        self.Owner = owner
        self.LocalName = name
        self.Enabled = True
        self.WorkMode = "OneShot"
        self.Step = 1


class ClockSource:
    """A machine's clock source (infra Time/BaseClockSource.cs), as far as ScheduleAction uses it."""

    def __init__(self, machine):
        self._m = machine

    def GetAllClockEntries(self):
        owner = facade(self._m, MachineFacade)
        return [ClockEntry(owner, *entry) for entry in self._m.scheduled()]

    def TryRemoveClockEntry(self, handler):
        return self._m.unschedule(handler)

    @property
    def CurrentValue(self):
        return TimeInterval(self._m.emu.vt_ns)


class ExternalsManager:
    def __init__(self, emu):
        self._emu = emu

    @property
    def Externals(self):
        return [facade(t, Terminal) for t in list(self._emu.terminals.values())]

    def GetNames(self):
        return list(self._emu.terminals)

    def TryGetName(self, external):
        for name, term in list(self._emu.terminals.items()):
            if getattr(external, "_term", None) is term:
                return (True, name)
        return (False, None)


class EmulationFacade:
    def __init__(self, emu):
        self._emu = emu
        self.ExternalsManager = ExternalsManager(emu)

    @property
    def IsStarted(self):
        return self._emu.started

    def StartAll(self):
        self._emu.start()

    def PauseAll(self):
        self._emu.pause()

    def RunFor(self, period):
        if self._emu.started:
            raise Exception("This action is not available when emulation is already started")
        self._emu.run_for(period.Ticks)

    def GetStartedStateChangedEvent(self, required_started_state, wait_for_transition=True):
        event = AutoResetEvent(False)
        self._emu.on_started_state(bool(required_started_state), event.Set, bool(wait_for_transition))
        return event

    @property
    def Machines(self):
        return [facade(m, MachineFacade) for m in list(self._emu.machines.values())]


class EmulationManager:
    """EmulationManager.Instance.CurrentEmulation follows the monitor's emulation (Clear/Load replace it)."""

    @property
    def CurrentEmulation(self):
        return facade(MONITOR.emu, EmulationFacade)


EmulationManager.Instance = EmulationManager()


class MonitorFacade:
    """`monitor` and `self` in the monitor's Python scope."""

    @property
    def Machine(self):
        m = MONITOR.current
        return None if m is None else facade(m, MachineFacade)


def element(name):
    """Monitor.GetTokenValue for a bare word: Emulation.TryGetEmulationElementByName, else None."""
    m = MONITOR.current
    if m is not None:
        try:
            return facade(m, MachineFacade)[name]
        except InvalidOperationException:
            pass
    if name in MONITOR.emu.terminals:
        return facade(MONITOR.emu.terminals[name], Terminal)
    if name in MONITOR.emu.machines:
        return facade(MONITOR.emu.machines[name], MachineFacade)
    return None


def _module(name, **attributes):
    module = types.ModuleType(name)
    module.__dict__.update(attributes)
    return module


def install(monitor):
    """Makes the fake .NET namespaces importable (the monitor scope's `import` finds them in sys.modules)."""
    global MONITOR
    MONITOR = monitor
    core = _module("Antmicro.Renode.Core", EmulationManager=EmulationManager)
    time_ = _module("Antmicro.Renode.Time", TimeInterval=TimeInterval, TimeStamp=TimeStamp)
    renode = _module("Antmicro.Renode", Core=core, Time=time_)
    threading_ = _module("System.Threading", ManualResetEvent=ManualResetEvent, AutoResetEvent=AutoResetEvent)
    system = _module("System", Action=Action, Threading=threading_, InvalidOperationException=InvalidOperationException)
    clr = _module("clr", AddReference=lambda *names: None)
    for module in (core, time_, renode, threading_, system, clr):
        sys.modules[module.__name__] = module
    sys.modules["Antmicro"] = _module("Antmicro", Renode=renode)
