# Runs inside Renode's monitor Python (IronPython 2.7). Keep it valid for Python 2.7 and 3.
#
# After `Load`, a machine reset no longer runs the `reset` macro: the monitor hooks its reset handler
# (Monitor.RegisterResetCommand) to machines as they are added to an emulation, and a machine that
# comes out of a snapshot is never added. Its CPU then stays halted at address 0 after any reset
# (measured on 1.16.1), so the driver re-registers the hook on the restored machine.

from Antmicro.Renode.Core import EmulationManager
from System import DateTime
from System.Reflection import BindingFlags
from System.Threading import Monitor as Lock
from System.Threading import Thread


def mc_jumpstarter_rearm_reset():
    register = monitor.GetType().GetMethod(  # noqa: F821 (set by Renode)
        "RegisterResetCommand", BindingFlags.NonPublic | BindingFlags.Instance
    )
    if register is None:
        print("jumpstarter-rearm unavailable")
        return
    register.Invoke(monitor, (monitor.Machine,))  # noqa: F821
    print("jumpstarter-rearm done")


# `start` (Emulation.StartAll) ends with a 100 ms sleep, "a hacky workaround for s;p problem" (infra
# commit 563b429ad, 2018): a `pause` right after a `start`. Every power-on, restore and re-flash paid
# it. jumpstarter_start starts the emulation the way StartAll does, without the sleep, and records
# when; jumpstarter_settle, run before anything that pauses or replaces the emulation, waits out what
# is left of those 100 ms, so a pause never follows a start sooner than Renode's own `start` allows.
# Where Renode's internals differ from 1.16.1's, it falls back to StartAll.

SETTLE_MS = 100
last_start = [None]


def _start_without_sleep(emulation):
    kind = emulation.GetType()
    hidden = BindingFlags.NonPublic | BindingFlags.Instance
    lock = kind.GetField("machLock", hidden)
    inner = kind.GetMethod("InnerStartAll", hidden)
    started = kind.GetProperty("IsStarted")
    setter = started.GetSetMethod(True) if started is not None else None
    if lock is None or inner is None or setter is None:
        return False
    lock = lock.GetValue(emulation)
    Lock.Enter(lock)
    try:
        inner.Invoke(emulation, None)
        emulation.MasterTimeSource.Start()
        setter.Invoke(emulation, (True,))
    finally:
        Lock.Exit(lock)
    return True


def mc_jumpstarter_start():
    emulation = EmulationManager.Instance.CurrentEmulation
    if emulation.IsStarted:
        return
    try:
        quick = _start_without_sleep(emulation)
    except Exception:  # another Renode's internals: the public way always works
        quick = False
    if quick:
        last_start[0] = DateTime.UtcNow
    else:
        emulation.StartAll()


def mc_jumpstarter_settle():
    if last_start[0] is None:
        return
    left = SETTLE_MS - (DateTime.UtcNow - last_start[0]).TotalMilliseconds
    last_start[0] = None
    if left > 0:
        Thread.Sleep(int(left))
