# Runs inside Renode's monitor Python (IronPython 2.7), in the scope expect.py shares (it calls `Wait`,
# `_now_ns`, `_paused`, `_peripheral`, `Refusal`). Keep it valid for Python 2.7 and 3.
#
# Buttons (Renode's Miscellaneous.Button) and LEDs (any ILed, e.g. Miscellaneous.LED). An LED wait
# listens to the LED's StateChanged event, which Renode raises on the emulation's thread when the
# firmware drives the pin: no change is missed, however short, and a paused machine stops right there.

KINDS = {
    "button": ("a button (Miscellaneous.Button)", ("Press", "Release", "Pressed")),
    "led": ("an LED (Miscellaneous.LED)", ("State", "StateChanged")),
}


def _gpio(name, kind):
    machine = monitor.Machine  # noqa: F821 (set by Renode)
    return machine, _peripheral(machine, name, *KINDS[kind])  # noqa: F821


def _report(outcome, state, when, machine):
    print("jumpstarter-gpio %s %d %d %d" % (outcome, 1 if state else 0, when, _now_ns(machine)))  # noqa: F821


def mc_jumpstarter_gpio_check(name, kind):
    """Fail unless `name` is a peripheral of that kind in the selected machine."""
    _gpio(name, kind)


def mc_jumpstarter_button(name, action):
    """`press`, `release` or `read`; prints the button's state."""
    machine, button = _gpio(name, "button")
    if action == "press":
        button.Press()
    elif action == "release":
        button.Release()
    _report(action, button.Pressed, _now_ns(machine), machine)  # noqa: F821


def mc_jumpstarter_button_hold(name, hold_ns, host_ms):
    """Press, let the emulation run for hold_ns of virtual time, release exactly then."""
    machine, button = _gpio(name, "button")
    button.Press()
    wait = Wait(machine, _paused())  # noqa: F821

    def release():
        button.Release()
        return ("released", None, _now_ns(machine))  # noqa: F821

    try:
        outcome, _, when = wait.run(hold_ns, host_ms, release)
    finally:
        if button.Pressed:  # the wait ended some other way (host time limit, an error)
            button.Release()
    _report(outcome, button.Pressed, when, machine)


def mc_jumpstarter_led(name):
    machine, led = _gpio(name, "led")
    _report("read", led.State, _now_ns(machine), machine)  # noqa: F821


def _wanted(edge, state):
    return {"active": state, "rising": state, "inactive": not state, "falling": not state, "any": True}[edge]


def mc_jumpstarter_led_wait(name, edge, timeout_ns, host_ms):
    """Run until the LED is (`active`/`inactive`) or becomes (`rising`/`falling`/`any`) what `edge` says.

    Prints `jumpstarter-gpio <level|edge|timeout|host-timeout> <state> <ns> <now ns>`.
    """
    machine, led = _gpio(name, "led")
    if edge not in ("active", "inactive", "rising", "falling", "any"):
        raise Refusal("bad-argument", "unknown edge %s" % edge)  # noqa: F821
    wait = Wait(machine, _paused())  # noqa: F821

    def changed(_, state):
        if _wanted(edge, state):
            wait.finish(("edge", None, _exact_now_ns(machine)))  # noqa: F821

    # Listen first, then look at the level: a change in between is seen one way or the other.
    led.StateChanged += changed
    try:
        if edge in ("active", "inactive") and _wanted(edge, led.State):
            wait.finish(("level", None, _now_ns(machine)))  # noqa: F821
        elif int(timeout_ns) == 0:
            wait.finish(("timeout", None, _now_ns(machine)))  # noqa: F821
        result = wait.result
        if result is None:
            result = wait.run(timeout_ns, host_ms, lambda: ("timeout", None, _now_ns(machine)))  # noqa: F821
    finally:
        led.StateChanged -= changed
    outcome, _, when = result
    _report(outcome, led.State, when, machine)
