"""Spares (spares.py): one named state each, the allowed transitions, wishes kept for after a step, and a
kill that cannot be skipped. Unit tests with a fake Renode; the real processes are in test_warm_start.py."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from jumpstarter_driver_renode import snapshots
from jumpstarter_driver_renode.spares import TRANSITIONS, Spare, SpareError, SpareState, first_ready

pytestmark = pytest.mark.anyio
S = SpareState
LOG = logging.getLogger("test.spares")
SNAP = (Path("/snapshots/s.save"), 1)


@pytest.fixture
def anyio_backend():
    return "asyncio"


@pytest.fixture(autouse=True)
def _fake_loads(monkeypatch):
    """A spare loads a snapshot through snapshots.load_as_spare: here, the fake's own step."""

    async def load_as_spare(instance, path: Path, firmware: dict) -> None:
        await instance.load_as_spare(path, firmware)

    monkeypatch.setattr(snapshots, "load_as_spare", load_as_spare)


class FakeRenode:
    """What a Spare asks of a RenodeInstance; each step waits until the test releases it."""

    def __init__(self, fail: str | None = None):
        self.pid = 4242
        self.healthy = True
        self.calls: list[str] = []
        self.killed = False
        self.go = asyncio.Event()
        self.fail = fail

    async def _step(self, name: str) -> None:
        self.calls.append(name)
        await self.go.wait()
        self.go.clear()
        if self.fail == name:
            raise RuntimeError(f"{name} broke")

    async def recycle(self) -> None:
        await self._step("recycle")

    async def load_as_spare(self, path: Path, firmware: dict) -> None:
        await self._step(f"load {path.name}")

    def kill(self) -> None:
        self.killed = True


async def settle(spare: Spare, renode: FakeRenode) -> None:
    """Let every step the spare has (and will have) run to its end."""
    while not spare.settled:
        renode.go.set()
        await asyncio.sleep(0)


def test_the_table_is_closed_and_only_taken_and_discarded_are_final():
    assert set(TRANSITIONS) == set(SpareState)
    for state, nexts in TRANSITIONS.items():
        if state in (S.TAKEN, S.DISCARDED):
            assert not nexts
        else:
            assert S.DISCARDED in nexts, f"{state} cannot be discarded"
    assert {s for s, n in TRANSITIONS.items() if S.TAKEN in n} == {S.READY, S.HOLDING}, "only a ready Renode serves"


async def test_a_recycled_renode_becomes_ready():
    renode = FakeRenode()
    spare = Spare.recycle(renode, LOG)
    assert spare.state is S.RECYCLING and spare.fresh and not spare.settled
    await settle(spare, renode)
    assert spare.state is S.READY and renode.calls == ["recycle"]
    assert spare.take() is renode and spare.state is S.TAKEN and not spare.alive


async def test_a_load_wished_during_a_step_runs_after_it():
    renode = FakeRenode()
    spare = Spare.recycle(renode, LOG)
    spare.load(SNAP, {})
    assert not spare.fresh and spare.will_hold(SNAP)
    await settle(spare, renode)
    assert renode.calls == ["recycle", "load s.save"]
    assert spare.state is S.HOLDING and spare.holds == SNAP


async def test_the_last_wish_wins_and_clearing_what_never_loaded_costs_nothing():
    renode = FakeRenode()
    spare = Spare.recycle(renode, LOG)
    spare.load(SNAP, {})
    spare.clear()  # power off before the load started
    await settle(spare, renode)
    assert renode.calls == ["recycle"] and spare.state is S.READY


async def test_clearing_a_held_snapshot_recycles_it():
    renode = FakeRenode()
    spare = Spare.replaced(renode, SNAP, {}, LOG)
    assert spare.state is S.LOADING
    await settle(spare, renode)
    assert spare.state is S.HOLDING
    spare.clear()
    assert spare.fresh and not spare.settled
    await settle(spare, renode)
    assert renode.calls == ["load s.save", "recycle"] and spare.state is S.READY


async def test_a_failed_step_discards_and_kills(caplog):
    renode = FakeRenode(fail="recycle")
    spare = Spare.recycle(renode, LOG)
    await settle(spare, renode)
    assert spare.state is S.DISCARDED and renode.killed
    assert "recycle broke" in caplog.text
    with pytest.raises(SpareError) as raised:
        spare.load(SNAP, {})
    assert raised.value.state is S.DISCARDED


async def test_discard_mid_step_cancels_it_and_kills_at_once():
    renode = FakeRenode()
    spare = Spare.recycle(renode, LOG)
    await asyncio.sleep(0)  # the step has begun
    spare.discard()
    assert spare.state is S.DISCARDED and renode.killed  # synchronous: close() relies on it
    await asyncio.sleep(0)
    assert spare.step is not None and spare.step.done()


async def test_only_a_settled_ready_or_holding_spare_can_be_taken():
    renode = FakeRenode()
    spare = Spare.replaced(renode, SNAP, {}, LOG)
    with pytest.raises(SpareError) as raised:
        spare.take()
    assert raised.value.state is S.LOADING and raised.value.wanted == "be taken"
    spare.discard()


async def test_first_ready_takes_whichever_is_ready_first_and_gives_up_at_the_timeout():
    slow, fast = FakeRenode(), FakeRenode()
    first, second = Spare.recycle(slow, LOG), Spare.recycle(fast, LOG)
    await asyncio.sleep(0)
    fast.go.set()
    assert await first_ready([first, second], lambda s: s.state is S.READY, timeout=5) is second
    assert await first_ready([first], lambda s: s.state is S.READY, timeout=0.05) is None
    first.discard()
    assert await first_ready([first], lambda s: True, timeout=5) is None  # a discarded spare is nobody's
