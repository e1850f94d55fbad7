"""What a board feature is: one capability (consoles, firmware, GDB, buttons and LEDs, hubs, ...) with its
steps on the Renode side and its children on the driver side. The core (instance.py, snapshots.py) calls
these hooks for every feature in `FEATURES` order and never learns a feature's name.

Renode side, on a `Board` (one Renode process serving, or ready to serve, one target):

    helpers      scripts of inside_renode/ the feature needs, included once per Renode build
    relays       ports inside Renode's private network namespace, reached through a Unix socket
    prepare      a new or cleared Renode, machines created, nothing run yet (a warm spare stops here)
    finish       at power-on: before the emulation starts
    park/unpark  around `Save` and `Load`: take out what a snapshot must not hold, and put it back
                 (parked in reverse order, put back in order; `replacing`: a `Load` is about to replace
                 the emulation; `replaced`: it did)
    after_load   a snapshot replaced the emulation: set up again what `Load` forgets
    catch_up     a spare holding a snapshot is about to serve the target: bring it up to the target's
                 images (flashed since it loaded the snapshot)
    reflash      an image was flashed (None: the flash erased) on a machine while the board runs
    power_off    the board is paused and stops serving the target: save what outlives it (flash)
    before_reset a machine is about to reset
    hand_over    at a restore from a spare: `successor` serves the target from now on
    release      the process stops serving the target (power off, end of lease): let go of its resources
    teardown     the process is going away (synchronous: `close()` uses it); after `release`

Driver side: `children(root, machine, spec)`, the children a machine gets for this feature, and
`board_children(root, spec)`, the children of the whole target (a CAN hub's bus).
"""

from __future__ import annotations

import logging
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    from jumpstarter.driver import Driver

    from ..flashstore import FlashStore
    from ..session import RenodeSession
    from ..spec import BoardSpec, Firmware, MachineSpec, ProcessFiles
    from ..uart import UartChannel


F = TypeVar("F", bound="Feature")


def helper_script(name: str) -> Path:
    """A script Renode runs for the driver (a file inside this package, `inside_renode/`)."""
    return Path(str(resources.files(__package__).parent / "inside_renode" / name))


class Board(Protocol):
    """What features see of a target's Renode (`instance.RenodeInstance`)."""

    spec: BoardSpec
    session: RenodeSession
    channels: dict[str, UartChannel]  # the target's UART channels, by key
    firmware: dict[str, Firmware]  # machine -> the image it boots
    flash: FlashStore | None  # the target's images and saved flash contents (from power-on)
    log: logging.Logger
    features: list[Feature]

    @property
    def files(self) -> ProcessFiles: ...

    async def reset(self, machine: str) -> None: ...

    def feature(self, kind: type[F]) -> F: ...


class Lifecycle(Protocol):
    """What children see of the target's lifecycle (`lifecycle.Target`)."""

    channels: dict[str, UartChannel]

    def instance(self, action: str): ...  # an async context manager yielding the Board, under the target's lock

    def serving(self, action: str) -> Board: ...  # the Board while on, without the lock

    async def cut_power(self, cut) -> bool: ...  # run `cut` on the Board; power off if it returns True


class Root(Protocol):
    """What children see of the Renode driver (`driver.Renode`)."""

    command_timeout: float
    expect_host_timeout: float

    @property
    def target(self) -> Lifecycle: ...

    async def store_firmware(self, chunks, address: str | int | None, machine: str) -> str: ...

    async def erase_flash(self, machine: str) -> None: ...


class Feature:
    """A board feature's Renode-side steps; one object per Renode build (a cleared Renode gets new ones)."""

    helpers: ClassVar[tuple[str, ...]] = ()  # scripts of inside_renode/ it runs in Renode (included at prepare)

    @staticmethod
    def children(root: Root, machine: MachineSpec, spec: BoardSpec) -> dict[str, Driver]:
        return {}

    @staticmethod
    def board_children(root: Root, spec: BoardSpec) -> dict[str, Driver]:
        return {}

    @staticmethod
    def relays(spec: BoardSpec, files: ProcessFiles) -> list[tuple[Path, int]]:
        """(Unix socket, port) pairs: ports inside Renode's private network namespace, reached through a
        relay at the socket (any feature listed here puts Renode in such a namespace)."""
        return []

    async def prepare(self, board: Board) -> None:
        pass

    async def finish(self, board: Board) -> None:
        pass

    async def park(self, board: Board, replacing: bool) -> None:
        pass

    async def unpark(self, board: Board, replaced: bool) -> None:
        pass

    async def after_load(self, board: Board) -> None:
        pass

    async def catch_up(self, board: Board, firmware: dict[str, Firmware]) -> None:
        pass

    async def reflash(self, board: Board, machine: str, firmware: Firmware | None) -> None:
        pass

    async def power_off(self, board: Board) -> None:
        pass

    async def before_reset(self, board: Board, machine: str) -> None:
        pass

    async def hand_over(self, board: Board, successor: Board) -> None:
        pass

    def release(self, board: Board) -> None:
        pass

    def teardown(self, board: Board) -> None:
        pass
