# Runs inside Renode's monitor Python (IronPython 2.7), loaded once per process with `include`, in the
# scope the other helpers share (gpio.py uses its `Wait`, all use `Refusal`, when called). Keep it valid
# for Python 2.7 and 3: no f-strings, no keyword-only arguments.
#
# Waits for UART output in virtual time. Each watched UART records what it prints with the virtual
# time of every character; a wait lets the emulation run until a pattern has been printed or a
# virtual timeout passes, checking on the CPU thread at each character, so the match time and the
# place a paused machine stops at are exact. Every function named mc_* is a monitor command.
#
# Arguments arrive as hex (patterns) or decimal strings: nothing a client sends is ever code.

import re

from Antmicro.Renode.Core import EmulationManager
from Antmicro.Renode.Time import TimeInterval
from System import Action, Object
from System.Reflection import BindingFlags
from System.Threading import ManualResetEvent
from System.Threading import Monitor as Lock

PENDING_LIMIT = 65536  # characters kept for matching (trimmed back to this at twice as many)
LIVE_WINDOW = 4096  # while the machine runs, a match is looked for in the last this many characters
LOOK_BEHIND = 256  # ...with this much before them, so `^`, `\b` and lookbehinds see what precedes
TAIL_LINES = 10
TIMEOUT_NAME = "jumpstarter-expect timeout"


class Refusal(Exception):
    """A helper's refusal, read by the driver as `jumpstarter-error <reason>: <text>` (protocol.classify_error)."""

    def __init__(self, reason, text):
        Exception.__init__(self, "jumpstarter-error %s: %s" % (reason, text))


def _peripheral(machine, name, what, members):
    """machine[name], refused (no-such-peripheral, wrong-kind) unless it is there with every member."""
    missing = None
    try:
        peripheral = machine[name]
    except Exception as e:  # Renode says why: `Could not find node 'x', the longest matching was 'y'.`
        missing = str(e) or "no such peripheral in this machine: %s" % name
    if missing is not None:
        raise Refusal("no-such-peripheral", missing)
    if not all(hasattr(peripheral, member) for member in members):
        raise Refusal("wrong-kind", "%s is a %s, not %s" % (name, peripheral.GetType().Name, what))
    return peripheral


# Output is kept one character per byte (latin-1), so patterns are too: a pattern's UTF-8 bytes,
# one character each, match the same bytes printed by the firmware.
def _unhex(text):
    return bytearray.fromhex(str(text)).decode("latin-1")


def _hex(text):
    return "".join("%02x" % b for b in bytearray(text.encode("latin-1"))) or "-"


def _now_ns(machine):
    return int(machine.ElapsedVirtualTime.TimeElapsed.TotalNanoseconds)


def _exact_now_ns(machine):
    """The virtual time of the instruction running now. On the CPU thread the clock lags the
    instructions run in this quantum: sync it first (as Machine.ScheduleAction does)."""
    on_cpu, cpu = machine.SystemBus.TryGetCurrentCPU()
    if on_cpu:
        cpu.SyncTime()
    return _now_ns(machine)


def _earliest(patterns, text):
    """(index, end) of the pattern whose match is complete in the shortest prefix of text, or None."""
    best = None
    for index, pattern in enumerate(patterns):
        found = pattern.search(text)
        if found is None:
            continue
        low, high = 0, found.end()
        while low < high:  # the shortest prefix that holds a match: when the output first matched
            middle = (low + high) // 2
            if pattern.search(text, 0, middle) is None:
                low = middle + 1
            else:
                high = middle
        if best is None or high < best[1]:
            best = (index, high)
    return best


class Wait(object):
    """One wait that lets the emulation run until something happens on its CPU thread, or a timeout."""

    def __init__(self, machine, pause):
        self.machine = machine
        self.pause = pause  # stop the machine exactly where the wait ends
        self.result = None  # a tuple whose last item is the virtual time in ns
        self.done = ManualResetEvent(False)

    def finish(self, result, machine=None):
        """On the emulation's thread (a UART character, a GPIO change, the timeout). `machine`: the one
        whose CPU thread this is, if not the wait's (a precise pause works only on the machine's own)."""
        if self.result is not None:
            return
        self.result = result
        if self.pause:
            (machine or self.machine).PauseAndRequestEmulationPause(True)
        self.done.Set()

    def run(self, timeout_ns, host_ms, timed_out):
        """Let the emulation run until finish() or the virtual timeout; then `timed_out()` is the result.

        A paused emulation ends paused exactly there; a running one keeps running.
        """
        machine = self.machine
        emulation = EmulationManager.Instance.CurrentEmulation
        machine.ScheduleAction(
            TimeInterval.FromNanoseconds(int(timeout_ns)),
            Action[TimeInterval](lambda _: self.finish(timed_out())),
            TIMEOUT_NAME,
        )
        # The machine pauses itself where the wait ends (on its CPU thread); the rest of the
        # emulation follows at the next sync point, which this event reports.
        paused = emulation.GetStartedStateChangedEvent(False) if self.pause else None
        try:
            if not emulation.IsStarted:
                _start(emulation)
            if not self.done.WaitOne(int(host_ms)):
                self.result = ("host-timeout", None, _now_ns(machine))
                if self.pause:
                    emulation.PauseAll()
            elif paused is not None and not paused.WaitOne(int(host_ms)):
                self.result = ("host-timeout", None, _now_ns(machine))
                emulation.PauseAll()
        finally:
            _drop_timeouts(machine)
        return self.result


def _start(emulation):
    """Emulation.StartAll without the 100 ms host sleep it ends with (Emulation.cs, a workaround for the
    monitor's `s;p`), which every wait on a paused board would pay: its steps, in its order, under its lock
    (machLock, private: reached by reflection, as is IsStarted's private setter)."""
    flags = BindingFlags.NonPublic | BindingFlags.Instance
    kind = emulation.GetType()
    lock_field, setter = kind.GetField("machLock", flags), kind.GetMethod("set_IsStarted", flags)
    if lock_field is None or setter is None:  # not the Renode this was measured on: its own start
        emulation.StartAll()
        return
    lock = lock_field.GetValue(emulation)
    Lock.Enter(lock)
    try:
        emulation.ExternalsManager.Start()
        for machine in list(emulation.Machines):
            machine.Start()
        emulation.MasterTimeSource.Start()
        setter.Invoke(emulation, (True,))
    finally:
        Lock.Exit(lock)


def mc_jumpstarter_start():
    """The monitor's `start` (Emulation.StartAll) without its 100 ms host sleep: the driver's resume."""
    _start(EmulationManager.Instance.CurrentEmulation)


def _paused():
    return not EmulationManager.Instance.CurrentEmulation.IsStarted


class Watch(object):
    """One UART's output since the last match, and the input its terminal delivered.

    The emulation's thread appends (printed); the monitor's thread reads and consumes, under `lock`.
    Positions are absolute (`base` is the position of text[0]): trimming never moves a match's end.
    """

    def __init__(self, machine, uart, terminal):
        self.machine = machine
        self.uart = uart
        self.terminal = terminal
        self.lock = Object()
        self.text = []
        self.times = []
        self.base = 0
        self.delivered = 0
        self.wait = None
        self.patterns = []  # [wanted, failing...] of the wait in progress
        self.hook()

    # Some peripherals serialize their event handlers (a terminal's CharReceived always is): `Save`
    # fails on a Python handler in them, so the driver unhooks everything around `Save`.
    def hook(self):
        self.uart.CharReceived += self.printed
        if self.terminal is not None:
            self.terminal.CharReceived += self.typed

    def unhook(self):
        self.uart.CharReceived -= self.printed
        if self.terminal is not None:
            self.terminal.CharReceived -= self.typed

    def typed(self, value):
        self.delivered += 1

    def printed(self, value):
        now = _exact_now_ns(self.machine)
        found = None
        Lock.Enter(self.lock)
        try:
            self.text.append(chr(int(value)))
            self.times.append(now)
            if len(self.text) > 2 * PENDING_LIMIT:
                cut = len(self.text) - PENDING_LIMIT
                del self.text[:cut]
                del self.times[:cut]
                self.base += cut
            wait = self.wait
            if wait is not None and wait.result is None:
                # Nothing matched before this character, so a match now ends here: search the recent
                # output only (the whole backlog was searched when the wait began).
                recent = "".join(self.text[-(LIVE_WINDOW + LOOK_BEHIND) :])
                start = max(0, len(recent) - LIVE_WINDOW)
                for index, pattern in enumerate(self.patterns):
                    if pattern.search(recent, start) is not None:
                        outcome = "match" if index == 0 else "fail%d" % (index - 1)
                        found = (wait, (outcome, self.base + len(self.text), now))
                        break
        finally:
            Lock.Exit(self.lock)
        if found is not None:
            found[0].finish(found[1])

    def snapshot(self):
        Lock.Enter(self.lock)
        try:
            return "".join(self.text), list(self.times), self.base
        finally:
            Lock.Exit(self.lock)

    def consume(self, end):
        """Forget the output up to absolute position `end`."""
        Lock.Enter(self.lock)
        try:
            count = max(0, min(end - self.base, len(self.text)))
            del self.text[:count]
            del self.times[:count]
            self.base += count
        finally:
            Lock.Exit(self.lock)

    def start_wait(self, wait, patterns):
        """Arm the live check, then look at the backlog: no character falls between the two."""
        Lock.Enter(self.lock)
        try:
            self.patterns = patterns
            self.wait = wait
            return "".join(self.text), list(self.times), self.base
        finally:
            Lock.Exit(self.lock)


watches = {}  # (machine, UART name) -> Watch: machines of one emulation may have UARTs of the same name


def _watch(uart_name):
    watch = watches.get((monitor.Machine, uart_name))  # noqa: F821 (set by Renode)
    if watch is None:
        raise Refusal("not-watched", "UART %s is not watched in this machine" % uart_name)
    return watch


def _external(name):
    """The emulation's external (terminal, hub) of that name, or None."""
    manager = EmulationManager.Instance.CurrentEmulation.ExternalsManager
    for external in manager.Externals:
        found, external_name = manager.TryGetName(external)
        if found and external_name == name:
            return external
    return None


def _terminal(name):
    terminal = _external(name)
    if terminal is None:
        raise Refusal("no-terminal", "no terminal %s" % name)
    return terminal


def mc_jumpstarter_watch(uart_name, terminal_name):
    """Record a UART's output (and count its terminal's input) from now on, in the selected machine."""
    machine = monitor.Machine  # noqa: F821
    alive = list(EmulationManager.Instance.CurrentEmulation.Machines)
    for key in [key for key in watches if key[0] not in alive]:  # machines of an emulation Load replaced
        del watches[key]
    watches[(machine, uart_name)] = Watch(
        machine, machine[uart_name], _terminal(terminal_name) if terminal_name else None
    )


def mc_jumpstarter_unhook():
    """Before `Save`: no handler of ours may be in what Renode serializes."""
    for watch in watches.values():
        watch.unhook()


def mc_jumpstarter_hook():
    """After `Save`."""
    for watch in watches.values():
        watch.hook()


def _drop_entries(machine, name):
    """Remove the machine's clock entries of that name (ScheduleAction's): `Save` would try to serialize
    their Python actions."""
    clock = machine.ClockSource
    for entry in list(clock.GetAllClockEntries()):
        if entry.LocalName == name:
            clock.TryRemoveClockEntry(entry.Handler)


def _drop_timeouts(machine):
    """A timeout's clock entry outlives the wait it was for."""
    _drop_entries(machine, TIMEOUT_NAME)


def mc_jumpstarter_forget(uart_name):
    """Forget the output recorded so far (the board was reset or re-flashed)."""
    watch = _watch(uart_name)
    watch.consume(watch.base + len(watch.text) + 2 * PENDING_LIMIT)


def mc_jumpstarter_expect(uart_name, pattern_hex, failing_hex, timeout_ns, host_ms, delivered):
    """Run until the pattern is printed, a failing pattern is, or the virtual timeout passes.

    Prints one line: `jumpstarter-expect <outcome> <ns> <now ns> <matched hex> <tail hex> <delivered>`:
    outcome `match`, `fail<i>` (the i-th failing pattern), `timeout` or `host-timeout`; <ns> the virtual
    time the match completed (or the wait ended); `-` for empty text; <delivered> input bytes counted.
    A paused emulation ends paused exactly there; a running one keeps running.
    """
    watch = _watch(uart_name)
    machine = watch.machine
    host_deadline = ManualResetEvent(False)
    # Input written to the terminal before the wait reaches the UART before the machine runs.
    for _ in range(min(int(host_ms), 5000) // 10):
        if watch.delivered >= int(delivered):
            break
        host_deadline.WaitOne(10)
    patterns = [re.compile(_unhex(pattern_hex))]
    patterns += [re.compile(_unhex(item)) for item in str(failing_hex).split(",") if item and item != "-"]
    wait = Wait(machine, pause=_paused())
    try:
        text, times, base = watch.start_wait(wait, patterns)
        found = _earliest(patterns, text)
        if found is not None:
            outcome = "match" if found[0] == 0 else "fail%d" % (found[0] - 1)
            wait.finish((outcome, base + found[1], times[found[1] - 1] if found[1] else _now_ns(machine)))
        elif int(timeout_ns) == 0:
            wait.finish(("timeout", None, _now_ns(machine)))
        result = wait.result
        if result is None:
            result = wait.run(timeout_ns, host_ms, lambda: ("timeout", None, _now_ns(machine)))
    finally:
        watch.wait = None
    outcome, end, when = result
    text, _, base = watch.snapshot()
    matched = ""
    if end is not None:
        index = 0 if outcome == "match" else 1 + int(outcome[4:])
        found = patterns[index].search(text, 0, max(0, end - base))
        matched = found.group(0) if found is not None else ""
        if outcome == "match":
            watch.consume(end)
            text = text[max(0, end - base) :]
    tail = "\n".join(text.splitlines()[-TAIL_LINES:])
    print(
        "jumpstarter-expect %s %d %d %s %s %d"
        % (outcome, when, _now_ns(machine), _hex(matched), _hex(tail), watch.delivered)
    )
