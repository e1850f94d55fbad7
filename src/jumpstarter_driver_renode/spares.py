"""Spare Renodes: processes made ready in the background, so a power-on or a restore need not wait for Renode.

A spare is one Renode process with one named state (`SpareState`) and at most one background step at a
time. It comes into being in one of three ways and moves only along `TRANSITIONS`:

    new process ──▶ PREPARING ──┐
    served a board ─▶ RECYCLING ┴──▶ READY ──load──▶ LOADING ──▶ HOLDING ──load──▶ LOADING
    replaced by a restore ──────────────────────────▶ LOADING       │
                                                                    └──clear──▶ RECYCLING
    READY / HOLDING ──take──▶ TAKEN;   any other state ──discard or a failed step──▶ DISCARDED

- PREPARING: a new Renode starts and loads the platform (the slow part: Mono's JIT, ~2.5 s on 2 cores).
- RECYCLING: a Renode that served a board runs `Clear` and is built again (warm JIT: a few tenths of a s).
- READY: platform loaded, UART terminals wired, no firmware, virtual time never run. Serves a power-on.
- LOADING / HOLDING: loading / holding a snapshot, paused, to take over at that snapshot's restore.
- TAKEN: handed over; the spare owns nothing any more. DISCARDED: killed, nothing left.

A wish made while a step runs (`load`, `clear`) is kept (the last one wins) and run when the step ends, so
a spare never runs two monitor commands at once. `settled` is True when no step runs and none is wished.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import weakref
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path

from . import snapshots
from .instance import RenodeInstance
from .process import keeper_task, reap
from .spec import BoardSpec, Firmware, ProcessFiles
from .uart import UartChannel


class SpareState(enum.Enum):
    PREPARING = "preparing"
    RECYCLING = "recycling"
    READY = "ready"
    LOADING = "loading"
    HOLDING = "holding"
    TAKEN = "taken"
    DISCARDED = "discarded"


S = SpareState
TRANSITIONS: dict[SpareState, frozenset[SpareState]] = {
    S.PREPARING: frozenset({S.READY, S.DISCARDED}),
    S.RECYCLING: frozenset({S.READY, S.DISCARDED}),
    S.READY: frozenset({S.LOADING, S.TAKEN, S.DISCARDED}),
    S.LOADING: frozenset({S.HOLDING, S.DISCARDED}),
    S.HOLDING: frozenset({S.LOADING, S.RECYCLING, S.TAKEN, S.DISCARDED}),
    S.TAKEN: frozenset(),
    S.DISCARDED: frozenset(),
}
_WISHES = {"clear": S.RECYCLING, "load": S.LOADING}  # the state each wish's step runs in
_ENDS = {S.PREPARING: S.READY, S.RECYCLING: S.READY, S.LOADING: S.HOLDING}  # where each step ends


class SpareError(RuntimeError):
    """A spare was asked for something its state does not allow (a bug in the caller)."""

    def __init__(self, state: SpareState, wanted: str):
        self.state = state
        self.wanted = wanted
        super().__init__(f"a spare in state {state.value} cannot {wanted}")


class Spare:
    """One spare Renode, its state and its background step. Owns its process until `take` or `discard`."""

    def __init__(self, state: SpareState, log: logging.Logger):
        self.state = state
        self.log = log
        self.instance: RenodeInstance | None = None  # known from the spawn on: discard() must kill it at once
        self.holds: tuple[Path, int] | None = None  # the snapshot (and its version) it holds or loads
        self._wish: tuple[str, tuple[Path, int] | None, dict[str, Firmware]] | None = None
        self._task: asyncio.Task[None] | None = None

    # -- the ways a spare comes into being -----------------------------------------------------------

    @classmethod
    def start(cls, spec: BoardSpec, channels: dict[str, UartChannel], log: logging.Logger) -> Spare:
        """A new Renode, prepared up to its platform."""
        spare = cls(S.PREPARING, log)

        async def prepare() -> None:
            spare.instance = await RenodeInstance.spawn(spec, channels, log, ProcessFiles.new())
            await spare.instance.prepare()

        spare._run(prepare)
        return spare

    @classmethod
    def recycle(cls, instance: RenodeInstance, log: logging.Logger) -> Spare:
        """A Renode that served a board (powered off now): cleared and built again."""
        spare = cls(S.RECYCLING, log)
        spare.instance = instance
        spare._run(instance.recycle)
        return spare

    @classmethod
    def replaced(
        cls, instance: RenodeInstance, snapshot: tuple[Path, int], firmware: dict[str, Firmware], log: logging.Logger
    ) -> Spare:
        """A Renode a restore from the spare just replaced: it loads that snapshot to be the next spare."""
        spare = cls(S.LOADING, log)
        spare.instance, spare.holds = instance, snapshot
        spare._run(lambda: snapshots.load_as_spare(instance, snapshot[0], firmware))
        return spare

    # -- what it is ---------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None if self.instance is None else self.instance.pid

    @property
    def alive(self) -> bool:
        return self.state not in (S.TAKEN, S.DISCARDED)

    @property
    def step(self) -> asyncio.Task[None] | None:
        """The background step, while one runs (or the last one)."""
        return self._task

    @property
    def settled(self) -> bool:
        """No step runs and none is wished: the state stays as it is until someone asks for something."""
        return self._task is None or self._task.done()

    @property
    def fresh(self) -> bool:
        """READY, or will be once its step ends, with nothing else wished: it can serve a power-on."""
        if self._wish is not None:
            return self._wish[0] == "clear"
        return self.state in (S.READY, S.PREPARING, S.RECYCLING)

    @property
    def snapshot(self) -> tuple[Path, int] | None:
        """The snapshot it holds, or is on its way to (loading it, or wished to), with nothing else wished."""
        if self._wish is not None:
            return self._wish[1] if self._wish[0] == "load" else None
        return self.holds if self.state in (S.LOADING, S.HOLDING) else None

    def will_hold(self, snapshot: tuple[Path, int]) -> bool:
        return self.snapshot == snapshot

    # -- what it can be asked ----------------------------------------------------------------------

    def load(self, snapshot: tuple[Path, int], firmware: dict[str, Firmware]) -> None:
        """Hold `snapshot` (after the step that runs now, if one does)."""
        self._want("load", snapshot, firmware)

    def clear(self) -> None:
        """Forget any snapshot: be READY again (after the step that runs now, if one does)."""
        if self.state is S.READY and self.settled:
            return
        self._want("clear", None, {})

    async def wait(self, timeout: float) -> None:
        """Until settled (or `timeout` passed)."""
        if not self.settled:
            assert self._task is not None
            await asyncio.wait({self._task}, timeout=timeout)

    def take(self) -> RenodeInstance:
        """READY or HOLDING, settled: the Renode is the caller's from now on."""
        if self.state not in (S.READY, S.HOLDING) or not self.settled or self.instance is None:
            raise SpareError(self.state, "be taken")
        instance = self.instance
        self._set(S.TAKEN)
        self.instance = None
        return instance

    def discard(self) -> None:
        """Kill it now, whatever it is doing (synchronous: close() uses it)."""
        if not self.alive:
            return
        self._wish = None
        if self._task is not None and not self._task.done():
            self._task.cancel()  # its step stops what it started, and the kill below makes sure
        if self.instance is not None:
            self.instance.kill()
        self.instance = None
        self._set(S.DISCARDED)

    # -- the background step -------------------------------------------------------------------------

    def _set(self, new: SpareState) -> None:
        if new not in TRANSITIONS[self.state]:
            raise SpareError(self.state, f"become {new.value}")
        self.log.debug("spare %s: %s -> %s", self.pid, self.state.value, new.value)
        self.state = new

    def _want(self, kind: str, snapshot: tuple[Path, int] | None, firmware: dict[str, Firmware]) -> None:
        if not self.alive:
            raise SpareError(self.state, kind)
        self._wish = (kind, snapshot, dict(firmware))
        if self.settled:
            self._run(None)

    def _run(self, first: Callable[[], Awaitable[None]] | None) -> None:
        self._task = asyncio.get_running_loop().create_task(self._steps(first), name=f"renode-spare-{self.state.value}")

    async def _steps(self, first: Callable[[], Awaitable[None]] | None) -> None:
        """The step the spare was made with (if any), then each wish in turn, until none is left."""
        try:
            if first is not None:
                await first()
                self._set(_ENDS[self.state])
            while self._wish is not None:
                (kind, snapshot, firmware), self._wish = self._wish, None
                assert self.instance is not None
                if kind == "clear" and self.state is S.READY:
                    continue  # nothing to clear: it never loaded the snapshot it was once asked to
                self._set(_WISHES[kind])
                self.holds = snapshot
                if kind == "clear":
                    await self.instance.recycle()
                else:
                    await snapshots.load_as_spare(self.instance, snapshot[0], firmware)
                self._set(_ENDS[self.state])
        except asyncio.CancelledError:
            self.discard()
            raise
        except Exception as exc:  # the step stopped its Renode already; say why, once, and be gone
            self.log.warning("spare Renode unusable (%s): discarded", exc)
            self.discard()


async def first_ready(spares: Iterable[Spare], usable: Callable[[Spare], bool], timeout: float) -> Spare | None:
    """The first of `spares` to be settled and `usable` (waiting for their steps, at most `timeout`)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    candidates = list(spares)
    while candidates:
        for spare in candidates:
            if spare.settled and spare.alive and usable(spare):
                return spare
        candidates = [s for s in candidates if s.alive and not s.settled]
        remaining = deadline - loop.time()
        if not candidates or remaining <= 0:
            return None
        await asyncio.wait(
            {s.step for s in candidates if s.step}, timeout=remaining, return_when=asyncio.FIRST_COMPLETED
        )
    return None


POOL_PER_BOARD = 2  # what one target in use holds: the board's Renode and one spare


class SparePool:
    """Spares that outlive the lease that made them, for the next lease of the same board config.

    A long-lived exporter builds a new driver tree for every lease, in one event loop: a target's spares
    (and its board's Renode, cleared) go here at the end of a lease, and the next target with the same
    config adopts them, so its first power-on is warm. One pool per event loop (a Renode's pipes belong to
    the loop that started it); never shared between configs. Its spares are killed when the loop ends (its
    keeper task is cancelled) and, like every Renode, when the exporter dies (PR_SET_PDEATHSIG).
    """

    _pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SparePool] = weakref.WeakKeyDictionary()

    def __init__(self) -> None:
        self._spares: dict[str, list[Spare]] = {}
        self._keeper = keeper_task(asyncio.get_running_loop(), self._keep(), "renode-spare-pool")

    @classmethod
    def here(cls) -> SparePool | None:
        """The pool of the running event loop (made on first use), or None outside one (nothing to keep)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        if loop.is_closed():
            return None
        pool = cls._pools.get(loop)
        if pool is None or pool._keeper.done():
            pool = cls._pools[loop] = cls()
        return pool

    def put(self, key: str, spare: Spare) -> None:
        """Keep `spare` for the next target whose config is `key` (the oldest goes beyond POOL_PER_BOARD)."""
        kept = [s for s in self._spares.get(key, []) if s.alive] + [spare]
        while len(kept) > POOL_PER_BOARD:
            kept.pop(0).discard()
        self._spares[key] = kept

    def take(self, key: str) -> list[Spare]:
        """The live spares kept for `key`; the pool no longer owns them."""
        return [s for s in self._spares.pop(key, []) if s.alive]

    @property
    def pids(self) -> set[int]:
        return {s.pid for spares in self._spares.values() for s in spares if s.alive and s.pid is not None}

    def discard_all(self) -> None:
        for spares in self._spares.values():
            for spare in spares:
                spare.discard()
        self._spares.clear()

    async def _keep(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()  # until the loop ends and cancels it
        finally:
            processes = [s.instance.process for spares in self._spares.values() for s in spares if s.instance]
            self.discard_all()
            await reap(processes)  # before the loop closes (see process.Reaper)
