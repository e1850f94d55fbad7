"""Buttons, LEDs and the GPIO links between peripherals.

infra `src/Emulator/Peripherals/Peripherals/Miscellaneous/Button.cs` and `.../LED.cs` (as in 1.16.1):
- Button: Press / Release set `Pressed` and the button's GPIO output (`!Inverted` while pressed), then
  raise StateChanged(bool) at once, on the caller's thread, even on a paused machine, and on every call
  (a Press of a pressed button raises it again). Toggle = Release if pressed, else Press;
  PressAndRelease = Press, Release; Reset (a machine reset too) = Press, Release when ReleaseOnReset
  (the default), else Toggle twice. Its event is serialized with the machine (no [Transient]).
- LED: State follows its GPIO input 0 (`!value` if inverted); StateChanged(led, bool) is raised only
  on a change, on the thread that drives the pin (the emulation's); it is [Transient]. Reset puts
  State back to `inverted` without raising it.
`invert` is never set by the stand-in's platforms: both are created not inverted.

A platform's single GPIO links (platforms.py) say which button drives which port's input pin
(`UserButton: ... -> gpioPortA@0`) and which LEDs a port's output pin drives (`gpioPortD: 12 -> UserLED@0`).
What a firmware does with the pins is machines.py's part.
"""

from errors import CommandError, SignatureMismatch
from tokens import parse_bool

BUTTON = "Miscellaneous.Button"
LED = "Miscellaneous.LED"


class Button:
    def __init__(self, inverted=False):
        self.inverted = inverted
        self.pressed = False
        self.release_on_reset = True
        self.handlers = []  # StateChanged (Action<bool>), called by machines.Machine.button_set

    def level(self):
        return self.pressed != self.inverted

    def reset_steps(self):
        """The presses (True) and releases (False) of Button.Reset."""
        return [True, False] if self.release_on_reset else [not self.pressed, self.pressed]

    def to_state(self):
        return {"inverted": self.inverted, "pressed": self.pressed, "release_on_reset": self.release_on_reset}

    @classmethod
    def from_state(cls, st):
        button = cls(st["inverted"])
        button.pressed, button.release_on_reset = st["pressed"], st["release_on_reset"]
        return button


class Led:
    def __init__(self, inverted=False):
        self.inverted = inverted
        self.state = inverted
        self.handlers = []  # StateChanged (Action<ILed, bool>), called by machines.Machine.led_set

    def reset(self):
        self.state = self.inverted

    def to_state(self):
        return {"inverted": self.inverted, "state": self.state}

    @classmethod
    def from_state(cls, st):
        led = cls(st["inverted"])
        led.state = st["state"]
        return led


class Gpios:
    """A machine's buttons and LEDs (by peripheral name) and the platform's GPIO links."""

    def __init__(self):
        self.buttons = {}
        self.leds = {}
        self.links = []  # [source, source pin or None (its only output), target, target pin]

    def add_platform(self, periphs, links):
        for name, (typ, _) in periphs.items():
            if typ == BUTTON and name not in self.buttons:
                self.buttons[name] = Button()
            elif typ == LED and name not in self.leds:
                self.leds[name] = Led()
        self.links += [list(link) for link in links]

    def pins_of(self, button):
        """The (port, pin) inputs a button's output drives."""
        return [(t, tp) for s, sp, t, tp in self.links if s == button and sp is None]

    def level(self, port, pin):
        """The level on a port's input pin: that of the button linked to it (low when none is)."""
        for s, sp, t, tp in self.links:
            if sp is None and (t, tp) == (port, pin) and s in self.buttons:
                return self.buttons[s].level()
        return False

    def driven(self, port, pin):
        """Names of the LEDs a port's output pin drives."""
        return [t for s, sp, t, tp in self.links if (s, sp) == (port, pin) and tp == 0 and t in self.leds]

    def state(self):
        return {
            "buttons": {n: b.to_state() for n, b in self.buttons.items()},
            "leds": {n: led.to_state() for n, led in self.leds.items()},
            "links": self.links,
        }

    @classmethod
    def from_state(cls, st):
        gpios = cls()
        gpios.buttons = {n: Button.from_state(b) for n, b in st["buttons"].items()}
        gpios.leds = {n: Led.from_state(led) for n, led in st["leds"].items()}
        gpios.links = [list(link) for link in st["links"]]
        return gpios


# Miscellaneous.Button's methods without parameters (Button.cs); members of Button.cs / LED.cs the stand-in
# does not model (the others are no member at all).
BUTTON_METHODS = ("Press", "Release", "Toggle", "PressAndRelease", "Reset")
GPIO_UNMODELLED = ("IRQ", "OnGPIO", "GetMachine")


class GpioCommands:
    """The monitor's commands on a button or an LED (a mixin of monitor.Monitor)."""

    def gpio_command(self, toks, periph, path, typ, w):
        """Members of a Miscellaneous.Button or Miscellaneous.LED (gpios.py). Measured on 1.16.1: the
        methods print nothing, a property prints `True`/`False`, and a value after a read-only property
        is ignored (MonitorCommands.cs: it is set only if settable, else read)."""
        m = self.current
        member, args = toks[1].value, toks[2:]
        header = "There was an error executing command '%s'" % self.command_text(toks)
        if typ == BUTTON:
            button = m.gpios.buttons[periph]
            if member in BUTTON_METHODS:
                if args:
                    raise SignatureMismatch([("Void", member, [])])
                try:
                    m.button(periph, member)
                except Exception as e:  # a Python StateChanged handler failed
                    raise CommandError(header, str(e) or type(e).__name__)  # noqa: B904 - the monitor prints this text instead
                return True
            if member == "ReleaseOnReset" and args:
                value = parse_bool(args[0].value)
                if value is None:
                    raise CommandError(header, "Could not convert %s to Boolean" % args[0].text)
                button.release_on_reset = value
                return True
            values = {"Pressed": button.pressed, "Inverted": button.inverted, "ReleaseOnReset": button.release_on_reset}
        else:
            led = m.gpios.leds[periph]
            if member == "Reset":
                if args:
                    raise SignatureMismatch([("Void", member, [])])
                led.reset()
                return True
            values = {"State": led.state}
        if member in values:
            w.value("True" if values[member] else "False")
            return True
        if member in GPIO_UNMODELLED:
            raise CommandError(header, "stand-in: peripheral members are not modelled")
        self.no_member(toks, path)
