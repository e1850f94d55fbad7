# Runs inside Renode's monitor Python (IronPython 2.7), in the scope expect.py shares (it calls
# `_terminal`, `Refusal`). Keep it valid for Python 2.7 and 3.
#
# Snapshots without the host's PTYs. `Load` re-creates a saved UART terminal at the PTY link of the
# Renode that saved it, so a second Renode cannot load the snapshot while that one lives, and an
# in-place `Load` first needs the old terminals disposed (`Clear`), PTYs and unread bytes with them.
# So around `Save` and `Load` the driver takes its terminals out of the emulation's externals
# (disconnected; `RemoveExternal` does not dispose them) and afterwards puts them into whichever
# emulation is current: each Renode keeps its own PTYs, and a snapshot holds none.

parked = {}  # terminal name -> the terminal, while it belongs to no emulation


def mc_jumpstarter_park(terminal_name):
    terminal = _terminal(terminal_name)  # noqa: F821 (expect.py)
    EmulationManager.Instance.CurrentEmulation.ExternalsManager.RemoveExternal(terminal)  # noqa: F821
    parked[terminal_name] = terminal


def mc_jumpstarter_unpark(terminal_name):
    terminal = parked.pop(terminal_name, None)
    if terminal is None:
        raise Refusal("not-parked", "terminal %s is not parked" % terminal_name)  # noqa: F821
    EmulationManager.Instance.CurrentEmulation.ExternalsManager.AddExternal(terminal, terminal_name)  # noqa: F821
