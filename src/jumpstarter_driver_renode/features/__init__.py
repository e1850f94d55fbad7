"""Board features, each one module: see `base.Feature` for the hooks. `FEATURES` is the order their steps
run in (park runs in reverse): consoles before hubs (hubs are created after the UART terminals) and
before the expect watches (a watch counts what a terminal delivers); the flash's saved contents before
extra commands and the firmware write over them; GDB servers once the images are in; the CAN host node
after the hubs and the expect helper (its waits are expect's)."""

from __future__ import annotations

from .base import Feature
from .can import CanBus
from .consoles import Consoles
from .expect import Expect
from .extra import ExtraCommands
from .flasher import Flasher
from .gdb import Gdb
from .gpio import Gpio
from .hubs import Hubs
from .nvm import NonVolatile

FEATURES: tuple[type[Feature], ...] = (Consoles, Hubs, Expect, CanBus, Gpio, NonVolatile, ExtraCommands, Flasher, Gdb)

__all__ = ["FEATURES", "Feature"]
