# Runs inside Renode's monitor Python (IronPython 2.7). Keep it valid for Python 2.7 and 3.
#
# After `Load`, a machine reset no longer runs the `reset` macro: the monitor hooks its reset handler
# (Monitor.RegisterResetCommand) to machines as they are added to an emulation, and a machine that
# comes out of a snapshot is never added. Its CPU then stays halted at address 0 after any reset
# (measured on 1.16.1), so the driver re-registers the hook on the restored machine.

from System.Reflection import BindingFlags


def mc_jumpstarter_rearm_reset():
    register = monitor.GetType().GetMethod(  # noqa: F821 (set by Renode)
        "RegisterResetCommand", BindingFlags.NonPublic | BindingFlags.Instance
    )
    if register is None:
        print("jumpstarter-rearm unavailable")
        return
    register.Invoke(monitor, (monitor.Machine,))  # noqa: F821
    print("jumpstarter-rearm done")
