"""The slice of Renode's .NET API that Python run in the monitor sees (IronPython 2.7 there, CPython here).

Fake modules `Antmicro.Renode.Core`, `Antmicro.Renode.Time`, `System`, `System.Threading`,
`System.Reflection` and `clr`,
installed in sys.modules by `install()` (no stand-in module shares these names), and facades over the
stand-in's own objects (machines.Machine, machines.Emulation, terminals.PtyTerminal):
- infra `src/Emulator/Main/Core/EmulationManager.cs`: EmulationManager.Instance.CurrentEmulation
- infra `src/Emulator/Main/Core/Emulation.cs`: IsStarted (its private setter and machLock by reflection), StartAll
  (ending with Thread.Sleep(100)) and its steps (ExternalsManager.Start, Machine.Start,
  MasterTimeSource.Start),
  PauseAll, RunFor, GetStartedStateChangedEvent(requiredStartedState, waitForTransition=True) (an
  AutoResetEvent set when IsStarted becomes the required state), ExternalsManager
- infra `src/Emulator/Extensions/UserInterface/Monitor.cs` (`monitor`): Machine, and by reflection the
  private RegisterResetCommand(IMachine) (the monitor's reset handler, which runs the `reset` macro)
- infra `src/Emulator/Main/Core/ExternalsManager.cs`: Externals, TryGetName(external) -> (found, name)
  (IronPython returns `out` parameters as a tuple after the return value), GetNames(): terminals and
  hubs (UARTHub`1 / CANHub / Switch, with IsPaused), in creation order; RemoveExternal (unregisters,
  disposes nothing) and AddExternal of a terminal, with Renode's errors
- infra `src/Emulator/Main/Core/Machine.cs`: machine[name] (GetByName; an unknown name throws
  InvalidOperationException `Could not find node '<name>', the longest matching was '<prefix>'.`),
  ElapsedVirtualTime.TimeElapsed, ScheduleAction(delay, Action<TimeInterval>, name) (the action gets
  the time it was scheduled at; a one-shot entry in ClockSource: GetAllClockEntries (LocalName,
  Handler), TryRemoveClockEntry(handler)), PauseAndRequestEmulationPause(precise) (nothing if the
  emulation is not started)
- a UART's and a terminal's `CharReceived` (event Action<byte>): `+=` / `-=` of Python callables
- infra `Peripherals/Miscellaneous/Button.cs` (Press, Release, Toggle, PressAndRelease, Reset, Pressed,
  Inverted, ReleaseOnReset, StateChanged(bool)) and `LED.cs` (State, Reset, StateChanged(led, bool)),
  at their paths (`sysbus.gpioPortA.UserButton`)
- GetType() of every facade: Name / FullName / Namespace (`STM32_UART`, `Button`, `LED`, ...)
- infra `src/Emulator/Main/Time/TimeInterval.cs`: nanosecond ticks, From*/Total*, ToString
- System.Action / Action[T] delegates, System.Object (a lock), System.Threading ManualResetEvent /
  AutoResetEvent / Monitor.Enter, Exit (a re-entrant lock per object)
- System.Reflection: BindingFlags; Type.GetMethod (None when absent), MethodInfo.Invoke(target, args
  or None) (what the member throws arrives as a TargetInvocationException).
- CAN (canmodel.py, hubs.py): infra `Main/Peripherals/CAN/CANMessageFrame.cs` (`Antmicro.Renode.Core.CAN`);
  an STMCAN's OnFrameReceived, ReadDoubleWord, WriteDoubleWord, IsSlave; a CAN hub's FrameReceived
  event (handler(hub, sender, frame)) and IsPaused; `Emulation.TryGetMachineByName` -> (found, machine);
  `SystemBus.SetHookAfterPeripheralRead[UInt32](peripheral, hook, subrange)` /
  `ClearHookAfterPeripheralRead[UInt32](peripheral)` (SystemBusGenerated.cs: setting replaces; the hook
  gets the value read and the offset in the peripheral and returns what the CPU reads);
  `System.Object.ReferenceEquals`.
- Time domains (infra Time/TimeStamp.cs, TimeDomainsManager.cs, Core/Machine.cs): TimeStamp(interval,
  domain); the emulation's master time source is the machines' one domain, `EmulationManager.ExternalWorld`
  another; `TimeDomainsManager.Instance.TryGetVirtualTimeStamp()` -> (True, TimeStamp(nearest sync point,
  domain)) on a CPU thread only (SlaveTimeSource registers that getter), else (False, default);
  `machine.HandleTimeDomainEvent[T](handler, argument, stamp, postAction)` (SynchronizedIO mode:
  LocalTimeSource.ExecuteInSyncedState: a stamp of another domain counts as 0) runs at the machine's
  first sync point (a multiple of the 100 us quantum) after now and at or after the stamp.

The facades keep one object per stand-in object, so `is` works as it does on .NET references
(expect.py compares machines with `is`). When and on which thread events fire is machines.py's part.
"""

import enum
import sys
import threading
import types

from gpios import BUTTON, LED
from hubs import QUANTUM_NS

MONITOR = None  # the stand-in's monitor.Monitor, set by install()
ULONG_MAX = 2**64 - 1


def _ulong(value):
    value = int(value)
    if not 0 <= value <= ULONG_MAX:
        raise OverflowError("Value was either too large or too small for a UInt64.")
    return value


class InvalidOperationException(Exception):
    """System.InvalidOperationException as IronPython code can catch it."""


class ArgumentNullException(Exception):
    """System.ArgumentNullException."""


class ArgumentOutOfRangeException(Exception):
    """System.ArgumentOutOfRangeException."""


class SynchronizationLockException(Exception):
    """System.Threading.SynchronizationLockException: Monitor.Exit by a thread that does not hold the lock."""


class TargetException(Exception):
    """System.Reflection.TargetException."""


class TargetParameterCountException(Exception):
    """System.Reflection.TargetParameterCountException."""


class TargetInvocationException(Exception):
    """System.Reflection.TargetInvocationException: what MethodBase.Invoke throws when the member throws."""

    def __init__(self, inner):
        super().__init__("Exception has been thrown by the target of an invocation.")
        self.InnerException = inner


# -- Antmicro.Renode.Time ---------------------------------------------------------------------------


class TimeInterval:
    TicksPerNanosecond = 1
    TicksPerMicrosecond = 1000
    TicksPerMillisecond = 1000 * 1000
    TicksPerSecond = 1000 * 1000 * 1000

    __slots__ = ("_ticks",)

    def __init__(self, ticks=0):
        self._ticks = _ulong(ticks)

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

    def __str__(self):
        seconds, decimals = divmod(self._ticks, TimeInterval.TicksPerSecond)
        hours, seconds = divmod(seconds, 3600)
        minutes, seconds = divmod(seconds, 60)
        return "%02d:%02d:%02d.%09d" % (hours, minutes, seconds, decimals)

    __repr__ = __str__


TimeInterval.Empty = TimeInterval(0)
TimeInterval.Maximal = TimeInterval(ULONG_MAX)


class TimeStamp:
    """infra Time/TimeStamp.cs: a time in a time domain (`TimeStamp()`: 0, no domain)."""

    def __init__(self, elapsed=0, domain=None):
        self.TimeElapsed = elapsed if isinstance(elapsed, TimeInterval) else TimeInterval(elapsed)
        self.Domain = domain


class TimeDomain:
    """An ITimeDomain: an emulation's master time source, or the external world."""

    def __init__(self, name):
        self._name = name

    def ToString(self):
        return self._name

    __str__ = __repr__ = ToString


def _domain(emu):
    """The master time source's domain of the stand-in's emulation (all its machines share it)."""
    domain = getattr(emu, "_time_domain", None)
    if domain is None:
        domain = emu._time_domain = TimeDomain("Antmicro.Renode.Time.MasterTimeSource")
    return domain


def _next_sync_ns(now_ns):
    return (now_ns // QUANTUM_NS + 1) * QUANTUM_NS


class TimeDomainsManager:
    def TryGetVirtualTimeStamp(self):
        emu = MONITOR.emu
        if emu.stepping is threading.current_thread():
            return True, TimeStamp(_next_sync_ns(emu.vt_ns), _domain(emu))
        return False, TimeStamp()


TimeDomainsManager.Instance = TimeDomainsManager()


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


class Object:
    """System.Object: `Object()` is a plain object, as used for a lock."""

    @staticmethod
    def ReferenceEquals(a, b):
        return a is b

    def GetType(self):
        return Type("System.Object", Object)

    def ToString(self):
        return "System.Object"

    def __repr__(self):
        return "<System.Object object at 0x%016X>" % (id(self) & 0xFFFFFFFF)

    __str__ = __repr__


class Monitor:
    """System.Threading.Monitor: one re-entrant lock per object (any reference type), as .NET's."""

    _guard = threading.Lock()
    _locks = {}  # id(obj) -> (obj, RLock) for objects that cannot hold the lock themselves

    @staticmethod
    def _lock(obj):
        if obj is None:
            raise ArgumentNullException("Value cannot be null.\nParameter name: obj")
        with Monitor._guard:
            lock = getattr(obj, "_monitor_lock", None)
            if lock is None:
                lock = threading.RLock()
                try:
                    obj._monitor_lock = lock
                except (AttributeError, TypeError):
                    lock = Monitor._locks.setdefault(id(obj), (obj, lock))[1]
            return lock

    @staticmethod
    def Enter(obj):
        Monitor._lock(obj).acquire()

    @staticmethod
    def TryEnter(obj, milliseconds=0):
        timeout = _wait_ms(milliseconds)
        return Monitor._lock(obj).acquire(timeout=-1 if timeout is None else timeout)

    @staticmethod
    def Exit(obj):
        try:
            Monitor._lock(obj).release()
        except RuntimeError:
            raise SynchronizationLockException(  # noqa: B904 - .NET's exception, not Python's
                "Object synchronization method was called from an unsynchronized block of code."
            )


class BindingFlags(enum.IntFlag):
    """System.Reflection.BindingFlags (the values .NET gives them)."""

    Default = 0
    IgnoreCase = 1
    DeclaredOnly = 2
    Instance = 4
    Static = 8
    Public = 16
    NonPublic = 32
    FlattenHierarchy = 64
    InvokeMethod = 256
    CreateInstance = 512
    GetField = 1024
    SetField = 2048
    GetProperty = 4096
    SetProperty = 8192


DEFAULT_LOOKUP = BindingFlags.Public | BindingFlags.Instance | BindingFlags.Static


def _binds(flags, public, static=False):
    """Whether a member with this visibility and kind is found with these BindingFlags (an access
    flag and a kind flag are both needed, else nothing is found)."""
    flags = BindingFlags(int(flags))
    access = BindingFlags.Public if public else BindingFlags.NonPublic
    kind = BindingFlags.Static if static else BindingFlags.Instance
    return bool(flags & access) and bool(flags & kind)


def _invoke(function, target, args, count):
    """MethodBase.Invoke(target, args): args None or a sequence of exactly the parameters; what the member
    throws arrives wrapped in a TargetInvocationException."""
    if target is None:
        raise TargetException("Non-static method requires a target.")
    args = () if args is None else tuple(args)
    if len(args) != count:
        raise TargetParameterCountException("Parameter count mismatch.")
    try:
        return function(target, *args)
    except Exception as e:
        raise TargetInvocationException(e)  # noqa: B904 - .NET wraps it, the original is InnerException


class FieldInfo:
    """System.Reflection.FieldInfo of a non-public instance field: GetValue(obj), SetValue(obj, value)."""

    def __init__(self, name, attribute):
        self.Name, self._attribute = name, attribute
        self.IsPublic, self.IsPrivate, self.IsStatic = False, True, False

    def GetValue(self, target):
        if target is None:
            raise TargetException("Non-static field requires a target.")
        return getattr(target, self._attribute)

    def SetValue(self, target, value):
        if target is None:
            raise TargetException("Non-static field requires a target.")
        setattr(target, self._attribute, value)


class MethodInfo:
    def __init__(self, name, function, count, public):
        self.Name, self._function, self._count = name, function, count
        self.IsPublic, self.IsPrivate = public, not public
        self.IsStatic = False

    def GetParameters(self):
        return [None] * self._count

    def Invoke(self, target, args=None):
        return _invoke(self._function, target, args, self._count)

    def ToString(self):
        return self.Name

    __str__ = __repr__ = ToString


def _public_members(cls):
    """A facade's public .NET members are its Python attributes that do not start with `_`."""
    members = {}
    for klass in reversed(cls.__mro__):
        for name, value in vars(klass).items():
            if not name.startswith("_") and name[0].isupper():
                members[name] = value
    return members


# -- events -------------------------------------------------------------------------------------


class Event:
    """A .NET event as IronPython shows it: `obj.Event += handler` / `obj.Event -= handler`.

    With a `sender`, the stand-in calls the handlers with its own object first (an LED's StateChanged);
    the handler gets the sender's facade instead, as a .NET handler gets the sender object."""

    def __init__(self, handlers, sender=None):
        self._handlers = handlers  # the stand-in object's list, called by machines.py / terminals.py
        self._sender = sender

    def __iadd__(self, handler):
        if not callable(handler):
            raise TypeError("event handler must be callable")
        self._handlers.append(handler if self._sender is None else _FromSender(handler, self._sender))
        return self

    def __isub__(self, handler):
        for i in range(len(self._handlers) - 1, -1, -1):
            if self._handlers[i] == handler:
                del self._handlers[i]
                break
        return self


class _FromSender:
    """A handler whose first argument (the stand-in's object) is replaced with the sender's facade."""

    def __init__(self, handler, sender):
        self.handler, self.sender = handler, sender

    def __call__(self, _obj, *args):
        return self.handler(self.sender, *args)

    def __eq__(self, other):
        return other is self or other == self.handler

    __hash__ = None


def _event_property(attribute, name="CharReceived", with_sender=False):
    def get(self):
        return Event(getattr(self, attribute), self if with_sender else None)

    def set_(self, value):
        if not isinstance(value, Event) or value._handlers is not getattr(self, attribute):
            raise AttributeError("attribute '%s' of '%s' object is read-only" % (name, type(self).__name__))

    set_.read_only = True
    return property(get, set_)


def _read_only(name, getter):
    def set_(self, value):
        raise AttributeError("attribute '%s' of '%s' object is read-only" % (name, type(self).__name__))

    set_.read_only = True  # no setter for reflection
    return property(getter, set_)


def facade(obj, factory):
    """One facade per stand-in object (kept on the object itself)."""
    existing = getattr(obj, "_facade", None)
    if existing is None:
        existing = obj._facade = factory(obj)
    return existing


# -- peripherals, terminals, machines, the emulation -------------------------------------------


class Type:
    """System.Type, as far as GetType() is used: Name, FullName, Namespace, and GetMethod over the methods
    of the facade class it describes (None when absent).

    Public methods are the facade's own; the non-public ones the driver reaches are declared in the
    facade class's `_nonpublic` = {"methods": {name: (function, parameter count)}, "fields": {name:
    Python attribute}} (GetField: non-public instance fields only, e.g. an auto-property's backing field)."""

    def __init__(self, full_name, cls=None):
        self.FullName = full_name
        self.Namespace, _, self.Name = full_name.rpartition(".")
        self._cls = cls

    def _nonpublic(self, kind):
        return (getattr(self._cls, "_nonpublic", None) or {}).get(kind, {})

    def GetMethod(self, name, flags=DEFAULT_LOOKUP):
        public = _public_members(self._cls) if self._cls else {}
        member = public.get(name)
        if callable(member) and not isinstance(member, (type, property)) and _binds(flags, True):
            count = member.__code__.co_argcount - 1 - len(member.__defaults__ or ())
            return MethodInfo(name, member, count, True)
        hidden = self._nonpublic("methods").get(name)
        if hidden is not None and _binds(flags, False):
            return MethodInfo(name, hidden[0], hidden[1], False)
        return None

    def GetField(self, name, flags=DEFAULT_LOOKUP):
        attribute = self._nonpublic("fields").get(name)
        if attribute is None or not _binds(flags, False):
            return None
        return FieldInfo(name, attribute)

    def Equals(self, other):
        return isinstance(other, Type) and other.FullName == self.FullName

    def __eq__(self, other):
        return self.Equals(other)

    def __hash__(self):
        return hash(self.FullName)

    def ToString(self):
        return self.FullName

    __str__ = __repr__ = ToString


class Peripheral:
    def __init__(self, machine, name, typ):
        self._machine, self._name, self._type = machine, name, typ

    def GetType(self):
        return Type(self.ToString(), type(self))

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

    def WriteChar(self, value):
        """IUART.WriteChar: a character received, as a terminal passes one (measured on 1.16.1 from Python and
        the monitor: the firmware gets it when it next runs)."""
        self._machine.uart_receive(self._name, bytes([value]))


class SystemBus(Peripheral):
    pass


class Button(Peripheral):
    """Miscellaneous.Button (gpios.py): the methods act at once; StateChanged(bool) is raised on the caller's thread."""

    def __init__(self, machine, name, typ):
        super().__init__(machine, name, typ)
        self._button = machine.gpios.buttons[name]
        self._handlers = self._button.handlers

    StateChanged = _event_property("_handlers", "StateChanged")
    Pressed = _read_only("Pressed", lambda self: self._button.pressed)
    Inverted = _read_only("Inverted", lambda self: self._button.inverted)

    @property
    def ReleaseOnReset(self):
        return self._button.release_on_reset

    @ReleaseOnReset.setter
    def ReleaseOnReset(self, value):
        self._button.release_on_reset = bool(value)

    def Press(self):
        self._machine.button(self._name, "Press")

    def Release(self):
        self._machine.button(self._name, "Release")

    def Toggle(self):
        self._machine.button(self._name, "Toggle")

    def PressAndRelease(self):
        self._machine.button(self._name, "PressAndRelease")

    def Reset(self):
        self._machine.button(self._name, "Reset")


class Led(Peripheral):
    """Miscellaneous.LED (gpios.py): StateChanged(led, bool) is raised only on a change, on the emulation's
    thread at the virtual time the firmware drives the pin."""

    def __init__(self, machine, name, typ):
        super().__init__(machine, name, typ)
        self._led = machine.gpios.leds[name]
        self._handlers = self._led.handlers

    StateChanged = _event_property("_handlers", "StateChanged", with_sender=True)
    State = _read_only("State", lambda self: self._led.state)

    def Reset(self):
        self._led.reset()


class Terminal:
    """renode UartPtyTerminal: CharReceived is invoked with each byte it passes from its PTY to its UART."""

    def __init__(self, term):
        self._term = term
        self._handlers = term.handlers

    CharReceived = _event_property("_handlers")

    @property
    def Name(self):
        return self._term.name

    def GetType(self):
        return Type(self.ToString(), type(self))

    def ToString(self):
        return "Antmicro.Renode.Backends.Terminals.UartPtyTerminal"

    def __repr__(self):
        return "<%s object at 0x%016X [%s]>" % (self.ToString(), id(self) & 0xFFFFFFFF, self.ToString())

    __str__ = __repr__


class HubFacade:
    """A hub (hubs.py): UARTHub`1 / CANHub / Switch, with IsPaused (infra UARTHub.cs)."""

    def __init__(self, hub):
        self._hub = hub

    @property
    def IsPaused(self):
        return not self._hub.started

    def _get_frame_received(self):
        if self._hub.kind != "CAN":
            raise AttributeError("'%s' object has no attribute 'FrameReceived'" % self._hub.type_name)
        return _FrameEvent(self._hub.frame_handlers, self)

    def _set_frame_received(self, value):
        if not isinstance(value, _FrameEvent):
            raise AttributeError("attribute 'FrameReceived' of 'CANHub' object is read-only")

    FrameReceived = property(_get_frame_received, _set_frame_received)

    def GetType(self):
        return Type(self._hub.full_type_name, type(self))

    def ToString(self):
        return self._hub.full_type_name

    __str__ = __repr__ = ToString


class _FrameEvent(Event):
    """CANHub.FrameReceived: the stand-in calls handler(hub, machine, peripheral name, message) (hubs.py); the
    Python handler gets (hub, sender peripheral, CANMessageFrame), one object for all handlers of a message,
    and what they change in it (by reflection) is what the hub goes on with."""

    def __init__(self, handlers, hub):
        super().__init__(handlers)
        self._hub = hub

    def __iadd__(self, handler):
        if not callable(handler):
            raise TypeError("event handler must be callable")
        self._handlers.append(_FrameHandler(handler, self._hub))
        return self


class _FrameHandler:
    def __init__(self, handler, hub):
        self.handler, self.hub = handler, hub

    def __call__(self, _hub, machine, periph, message):
        sender = facade(machine, MachineFacade)._by_key(periph)
        if "object" not in message:
            message["object"] = CANMessageFrame._of(message["frame"])
            message["back"] = lambda: message["object"]._tuple()
        return self.handler(self.hub, sender, message["object"])

    def __eq__(self, other):
        return other is self or other == self.handler

    __hash__ = None


class CANMessageFrame:
    """infra Main/Peripherals/CAN/CANMessageFrame.cs (the constructor with the whole id)."""

    __name__ = "CANMessageFrame"
    _nonpublic = {"fields": {"<%s>k__BackingField" % name: "_" + name for name in ("Id", "Data")}}

    def __init__(self, id, data, extendedFormat=False, remoteFrame=False, fdFormat=False, bitRateSwitch=False):
        self._Id = UInt32(id)
        self._Data = None if data is None else ByteArray(bytes(data))  # null: an STMCAN's DLC 0 frame
        self._flags = (bool(extendedFormat), bool(remoteFrame), bool(fdFormat), bool(bitRateSwitch))

    # get-only auto-properties
    Id = _read_only("Id", lambda self: self._Id)
    Data = _read_only("Data", lambda self: self._Data)
    ExtendedFormat = _read_only("ExtendedFormat", lambda self: self._flags[0])
    RemoteFrame = _read_only("RemoteFrame", lambda self: self._flags[1])
    FDFormat = _read_only("FDFormat", lambda self: self._flags[2])
    BitRateSwitch = _read_only("BitRateSwitch", lambda self: self._flags[3])

    def _tuple(self):
        return (int(self.Id), None if self.Data is None else bytes(self.Data), self.ExtendedFormat, self.RemoteFrame)

    @classmethod
    def _of(cls, frame):
        return cls(frame[0], frame[1], frame[2], frame[3])

    def GetType(self):
        return Type("Antmicro.Renode.Core.CAN.CANMessageFrame", type(self))

    def ToString(self):
        data = ", ".join("0x%02X" % b for b in self.Data or ())
        return "[Message: Data=[%s], Remote=%s, Extended=%s, BitRateSwitch=%s, FDFormat=%s, Id=%d, DataLength=%d]" % (
            data,
            self.RemoteFrame,
            self.ExtendedFormat,
            self.BitRateSwitch,
            self.FDFormat,
            self.Id,
            len(self.Data),
        )

    __str__ = __repr__ = ToString


class CanController(Peripheral):
    """An STMCAN (canmodel.STMCAN): direct accesses, no bus hooks (a bus read hook applies to the CPU's)."""

    @property
    def _model(self):
        return self._machine.cans[self._name]

    @property
    def IsSlave(self):
        return self._model.is_slave

    def OnFrameReceived(self, frame):
        with self._machine.lock:
            self._model.on_frame_received(frame._tuple())
        self._machine.emu.wake.set()

    def ReadDoubleWord(self, offset):
        with self._machine.lock:
            return UInt32(self._model.read(int(offset)))

    def WriteDoubleWord(self, offset, value):
        with self._machine.lock:
            self._model.write(int(offset), int(value) & 0xFFFFFFFF)


def _external(emu, name):
    """The facade of the external with this name (a terminal or a hub)."""
    if name in emu.terminals:
        return facade(emu.terminals[name], Terminal)
    return facade(emu.hubs[name], HubFacade)


class CpuApi:
    """The current CPU as SystemBus.TryGetCurrentCPU gives it. SyncTime reports the instructions run so far
    to the clock (TranslationCPU.SyncTime); the stand-in's events already happen at their exact times."""

    def SyncTime(self):
        pass


class _Generic:
    """A .NET generic method or type as IronPython shows it: `Name[T](...)`."""

    def __init__(self, make):
        self._make = make

    def __getitem__(self, types):
        return self._make(types)


class UInt32(int):
    def __new__(cls, value=0):
        return int.__new__(cls, int(value) & 0xFFFFFFFF)


class Int64(int):
    pass


class Byte(int):
    pass


class ByteArray(bytearray):
    """A .NET byte[]: indexable, with Length."""

    @property
    def Length(self):
        return len(self)


def _array(kind):
    return lambda items: ByteArray(items)


Array = _Generic(_array)
Func = _Generic(lambda types: lambda function: function)  # a delegate calls the Python function


class BitConverter:
    @staticmethod
    def ToUInt32(data, offset):
        if offset + 4 > len(data):
            raise ArgumentOutOfRangeException("startIndex")
        return UInt32(int.from_bytes(bytes(data[offset : offset + 4]), "little"))

    @staticmethod
    def GetBytes(value):
        return ByteArray(int(value).to_bytes(4, "little"))


class FileMode(enum.IntEnum):
    Create = 2


class File:
    @staticmethod
    def ReadAllBytes(path):
        with open(str(path), "rb") as f:
            return ByteArray(f.read())


class FileStream:
    def __init__(self, path, mode):
        self._f = open(str(path), "wb")

    def Write(self, data, offset, count):
        self._f.write(bytes(data[offset : offset + count]))

    def Close(self):
        self._f.close()


class STM32F4_FlashController:
    """The type, for `machine.GetPeripheralsOfType[STM32F4_FlashController]()` (MTD namespace)."""

    __name__ = "STM32F4_FlashController"
    renode_type = "MTD.STM32F4_FlashController"


class Memory(Peripheral):
    """infra MappedMemory: segments touched on first write, ResetByte, ZeroAll (flashmodel.Memory holds the
    bytes)."""

    @property
    def _mem(self):
        return self._machine.memory

    @property
    def _start(self):
        return int(self._machine.periphs[self._name][1].split()[1], 0)

    @property
    def Size(self):
        return dict(self._mem.regions)[self._start]

    @property
    def SegmentSize(self):
        return self._mem.segment_size(self._start)

    @property
    def SegmentCount(self):
        return -(-self.Size // self.SegmentSize)

    def IsTouched(self, index):
        return self._mem.touched(self._start, int(index))

    def get_reset_byte(self):
        return self._mem.reset_byte.get(self._start, 0)

    def set_reset_byte(self, value):
        self._mem.reset_byte[self._start] = int(value) & 0xFF

    ResetByte = property(get_reset_byte, set_reset_byte)

    def ZeroAll(self):
        self._mem.zero_all(self._start)

    def ReadBytes(self, offset, count):
        return ByteArray(self._mem.read(self._start + int(offset), int(count)))

    def WriteBytes(self, offset, data, start, count):
        self._mem.write(self._start + int(offset), bytes(data[start : start + count]))


class SystemBusApi:
    def __init__(self, machine):
        self._m = machine

    @property
    def SetHookBeforePeripheralWrite(self):
        """Generic over the access width: the stand-in's firmware writes its flash controller 32 bits at a time."""

        def set_hook(peripheral, hook, subrange=None):
            if hook is None:
                self._m.write_hooks.pop(peripheral._name, None)
            else:
                self._m.write_hooks[peripheral._name] = hook

        return _Generic(lambda width: set_hook)

    @property
    def SetHookAfterPeripheralRead(self):
        """32-bit only (the modelled peripherals are IDoubleWordPeripherals); None removes the hook."""

        def set_hook(peripheral, hook, subrange=None):
            if subrange is not None:
                raise NotImplementedError("stand-in: a hook's subrange is not modelled")
            if hook is None:
                self._m.read_hooks.pop(peripheral._name, None)
            else:
                self._m.read_hooks[peripheral._name] = lambda value, offset: hook(UInt32(value), Int64(offset))

        def of_width(width):
            if width is not UInt32:
                raise NotImplementedError("stand-in: only 32-bit read hooks are modelled")
            return set_hook

        return _Generic(of_width)

    @property
    def ClearHookAfterPeripheralRead(self):
        return _Generic(lambda width: lambda peripheral: self.SetHookAfterPeripheralRead[width](peripheral, None))

    def TryGetCurrentCPU(self):
        """(True, cpu) on the CPU thread (the one advancing the clock), else (False, None): IronPython's
        form of `bool TryGetCurrentCPU(out ICPU cpu)`."""
        if self._m.emu.stepping is threading.current_thread():
            return True, CpuApi()
        return False, None


class MachineFacade:
    def __init__(self, machine):
        self._m = machine
        self._periphs = {}

    def Start(self):
        """Machine.Start, one step of Emulation.InnerStartAll (the stand-in starts its machines together)."""
        emu = self._m.emu
        with emu.lock:
            emu.machines_started = True
            emu.run_if_ready()

    def __getitem__(self, name):
        m = self._m
        name = str(name)
        paths = m.peripheral_paths()  # sysbus.usart2, sysbus.gpioPortA.UserButton, ...
        if name == "sysbus":
            key, typ = "sysbus", "Bus.SystemBus"
        elif name in paths:
            key = paths[name]
            typ = m.periphs[key][0]
        else:
            parts, longest = name.split("."), ""
            for i in range(len(parts) - 1, 0, -1):
                prefix = ".".join(parts[:i])
                if prefix == "sysbus" or prefix in paths:
                    longest = prefix
                    break
            raise InvalidOperationException(
                "Could not find node '%s', the longest matching was '%s'." % (name, longest)
            )
        return self._by_key(key, typ)

    def _by_key(self, key, typ=None):
        """The facade of the peripheral named `key` (one per peripheral, as .NET references)."""
        typ = typ or self._m.periphs[key][0]
        found = self._periphs.get(key)
        if found is None or found._type != typ:
            if key == "sysbus":
                cls = SystemBus
            elif typ.startswith("UART."):
                cls = Uart
            else:
                cls = {BUTTON: Button, LED: Led, "Memory.MappedMemory": Memory, "CAN.STMCAN": CanController}.get(
                    typ, Peripheral
                )
            found = self._periphs[key] = cls(self._m, key, typ)
        return found

    @property
    def HandleTimeDomainEvent(self):
        """HandleTimeDomainEvent[T](handler, argument, stamp, postAction=None): at the machine's next synced
        state (at or after the stamp when it is of the emulation's domain)."""
        m = self._m

        def handle(handler, argument, stamp, post=None):
            emu = m.emu
            due = _next_sync_ns(emu.vt_ns)
            if stamp is not None and stamp.Domain is _domain(emu):
                due = max(due, -(-stamp.TimeElapsed.Ticks // QUANTUM_NS) * QUANTUM_NS)
            target = getattr(handler, "_function", handler)
            owner = getattr(target, "__self__", None)
            if (
                isinstance(owner, CanController)
                and getattr(target, "__name__", "") == "OnFrameReceived"
                and isinstance(argument, CANMessageFrame)
                and post is None
            ):
                owner._machine.can_deliver(owner._name, argument._tuple(), due)  # data: kept by a Save
            else:
                m.time_domain_event(due, None, (lambda arg: (handler(arg), post and post()), argument))

        return _Generic(lambda types: handle)

    @property
    def GetPeripheralsOfType(self):
        def of_type(kind):
            paths = self._m.peripheral_paths()
            return lambda: [self[path] for path, key in paths.items() if self._m.periphs[key][0] == kind.renode_type]

        return _Generic(of_type)

    @property
    def Name(self):
        return self._m.name

    def GetType(self):
        return Type("Antmicro.Renode.Core.Machine", type(self))

    @property
    def ElapsedVirtualTime(self):
        return TimeStamp(self._m.emu.vt_ns, _domain(self._m.emu))

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

    @property
    def SystemBus(self):
        return SystemBusApi(self._m)

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


class _MachLock:
    """Emulation.machLock as an object for Monitor.Enter/Exit: the stand-in emulation's own (re-entrant) lock."""

    def __init__(self, emu):
        self._monitor_lock = emu.lock


class MasterTimeSource:
    def __init__(self, emu):
        self._emu = emu

    def Start(self):
        self._emu.start_time_source()


class ExternalsManager:
    def __init__(self, emu):
        self._emu = emu

    def Start(self):
        """Starts (resumes) the hubs when paused."""
        with self._emu.lock:
            self._emu.externals_start()

    def _names(self):
        emu = self._emu
        return [n for n in list(emu.external_names) if n in emu.terminals or n in emu.hubs]

    @property
    def Externals(self):
        return [_external(self._emu, name) for name in self._names()]

    def GetNames(self):
        return self._names()

    def TryGetName(self, external):
        for name in self._names():
            if _external(self._emu, name) is external:
                return (True, name)
        return (False, None)

    def RemoveExternal(self, external):
        """Unregisters without disposing: a terminal stays open, and connected to its UART if it was."""
        found, name = self.TryGetName(external)
        if not found:
            raise Exception("External not registered")
        emu = self._emu
        if name in emu.hubs:  # IMassConnectable.DetachAll first
            raise Exception("stand-in: removing a hub is not modelled")
        emu.unregistered.append(emu.terminals.pop(name))
        emu.external_names.remove(name)

    def AddExternal(self, external, name):
        emu = self._emu
        if self.TryGetName(external)[0]:
            raise Exception("External already registered")
        if name in emu.terminals or name in emu.hubs:
            raise Exception("External's name already in use")
        if not isinstance(external, Terminal):
            raise Exception("stand-in: only terminals can be added back")
        term = external._term
        if term in emu.unregistered:
            emu.unregistered.remove(term)
        emu.terminals[name] = term
        emu.external_names.append(name)


class EmulationFacade:
    def __init__(self, emu):
        self._emu = emu
        self.ExternalsManager = ExternalsManager(emu)

    @property
    def IsStarted(self):
        return self._emu.started

    # Emulation.IsStarted's private setter, which the driver reaches by reflection to start the emulation
    # without StartAll's sleep (the steps of StartAll one by one: ExternalsManager.Start, each Machine.Start,
    # MasterTimeSource.Start).
    _nonpublic = {
        "methods": {"set_IsStarted": (lambda self, value: self._emu.set_started(bool(value)), 1)},
        "fields": {"machLock": "_mach_lock"},  # the lock StartAll/PauseAll hold: the stand-in's emulation lock
    }

    @property
    def _mach_lock(self):
        return _MachLock(self._emu)

    @property
    def MasterTimeSource(self):
        return MasterTimeSource(self._emu)

    def StartAll(self):
        self._emu.start_all()  # with Renode's Thread.Sleep(100) at the end

    def PauseAll(self):
        self._emu.pause()

    def RunFor(self, period):
        if self._emu.started:
            raise Exception("This action is not available when emulation is already started")
        self._emu.run_for(period.Ticks)

    def TryGetMachineByName(self, name):
        machine = self._emu.machines.get(str(name))
        return (True, facade(machine, MachineFacade)) if machine is not None else (False, None)

    def GetStartedStateChangedEvent(self, required_started_state, wait_for_transition=True):
        event = AutoResetEvent(False)
        self._emu.on_started_state(bool(required_started_state), event.Set, bool(wait_for_transition))
        return event

    @property
    def Machines(self):
        return [facade(m, MachineFacade) for m in list(self._emu.machines.values())]

    def GetType(self):
        return Type("Antmicro.Renode.Core.Emulation", type(self))


class EmulationManager:
    """EmulationManager.Instance.CurrentEmulation follows the monitor's emulation (Clear/Load replace it)."""

    @property
    def CurrentEmulation(self):
        return facade(MONITOR.emu, EmulationFacade)


EmulationManager.Instance = EmulationManager()
EmulationManager.ExternalWorld = TimeDomain("Antmicro.Renode.Time.ExternalWorldTimeDomain")


class MonitorFacade:
    """`monitor` and `self` in the monitor's Python scope."""

    @property
    def Machine(self):
        m = MONITOR.current
        return None if m is None else facade(m, MachineFacade)

    def GetType(self):
        return Type("Antmicro.Renode.UserInterface.Monitor", type(self))

    # infra UserInterface/Monitor.cs RegisterResetCommand(IMachine): ResetMachine joins MachineReset
    _nonpublic = {
        "methods": {"RegisterResetCommand": (lambda self, machine: MONITOR.register_reset_command(machine._m), 1)},
    }


def element(name):
    """Monitor.GetTokenValue for a bare word: Emulation.TryGetEmulationElementByName, else None."""
    m = MONITOR.current
    if m is not None:
        try:
            return facade(m, MachineFacade)[name]
        except InvalidOperationException:
            pass
    if name in MONITOR.emu.terminals or name in MONITOR.emu.hubs:
        return _external(MONITOR.emu, name)
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
    time_ = _module(
        "Antmicro.Renode.Time", TimeInterval=TimeInterval, TimeStamp=TimeStamp, TimeDomainsManager=TimeDomainsManager
    )
    can = _module("Antmicro.Renode.Core.CAN", CANMessageFrame=CANMessageFrame)
    core.CAN = can
    renode = _module("Antmicro.Renode", Core=core, Time=time_)
    threading_ = _module(
        "System.Threading",
        ManualResetEvent=ManualResetEvent,
        AutoResetEvent=AutoResetEvent,
        Monitor=Monitor,
        SynchronizationLockException=SynchronizationLockException,
    )
    reflection = _module(
        "System.Reflection",
        BindingFlags=BindingFlags,
        TargetException=TargetException,
        TargetInvocationException=TargetInvocationException,
        TargetParameterCountException=TargetParameterCountException,
    )
    system = _module(
        "System",
        Action=Action,
        Object=Object,
        Threading=threading_,
        Reflection=reflection,
        InvalidOperationException=InvalidOperationException,
        ArgumentNullException=ArgumentNullException,
        ArgumentOutOfRangeException=ArgumentOutOfRangeException,
    )
    io = _module("System.IO", File=File, FileMode=FileMode, FileStream=FileStream)
    system.__dict__.update(
        IO=io, Array=Array, BitConverter=BitConverter, Byte=Byte, Func=Func, Int64=Int64, UInt32=UInt32
    )
    mtd = _module("Antmicro.Renode.Peripherals.MTD", STM32F4_FlashController=STM32F4_FlashController)
    peripherals = _module("Antmicro.Renode.Peripherals", MTD=mtd)
    renode.Peripherals = peripherals
    clr = _module("clr", AddReference=lambda *names: None)
    for module in (core, can, time_, renode, threading_, reflection, system, io, mtd, peripherals, clr):
        sys.modules[module.__name__] = module
    sys.modules["Antmicro"] = _module("Antmicro", Renode=renode)
