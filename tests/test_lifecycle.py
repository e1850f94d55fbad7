"""The target lifecycle (lifecycle.py): explicit states, the allowed transitions, cleanup that cannot be skipped."""

from __future__ import annotations

import os
import signal
import time

import anyio
import pytest
from conftest import no_renode_left, target
from jumpstarter.client.core import DriverError

from jumpstarter_driver_renode.errors import RenodeStateError
from jumpstarter_driver_renode.lifecycle import TRANSITIONS, Target, TargetState

S = TargetState


def test_every_state_is_reachable_and_can_get_back_to_off():
    """The transition table is closed: from every state there is a way back to OFF."""
    assert set(TRANSITIONS) == set(TargetState)
    for start in TargetState:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert S.OFF in seen or start is S.OFF, f"no way from {start} back to OFF"
    assert TRANSITIONS[S.OFF] == {S.STARTING}, "only a power-on leaves OFF"
    assert S.ON not in TRANSITIONS[S.FAILED], "a failed Renode is never reused: it is stopped first"


def test_a_transition_outside_the_table_is_a_bug_not_a_state():
    t = Target(lambda: None, {}, "unit")
    with pytest.raises(AssertionError, match="no transition off -> on"):
        t._set(S.ON)
    assert t.state is S.OFF


def test_a_call_on_a_powered_off_target_says_which_state_it_found_and_needs():
    async def call():
        async with Target(lambda: None, {}, "unit").instance("pause"):
            pass

    with pytest.raises(RenodeStateError, match="cannot pause: the target is powered off") as raised:
        anyio.run(call)
    assert (raised.value.state, raised.value.required) == ("off", "on")


def test_states_through_a_session(standin, firmware):
    fw = firmware()
    with target(standin) as (client, driver):
        assert driver.target.state is S.OFF
        client.flasher.flash(fw.elf)
        assert driver.target.state is S.OFF  # stored, loaded by the next power-on
        client.power.on()
        assert driver.target.state is S.ON
        client.power.off()
        assert driver.target.state is S.OFF
        assert driver.target.renode is None


@pytest.mark.parametrize(
    "call,words",
    [
        (lambda c: c.reset_machine(), "reset the machine"),
        (lambda c: c.pause(), "pause"),
        (lambda c: c.run_for(0.1), "run for a virtual time"),
        (lambda c: c.save_snapshot("s"), "save a snapshot"),
        (lambda c: c.virtual_time(), "read the virtual time"),
    ],
)
def test_calls_on_a_powered_off_target_say_so(standin, call, words):
    with target(standin) as (client, driver):
        with pytest.raises(DriverError, match=f"cannot {words}: the target is powered off; run `power on` first"):
            call(client)
        assert driver.target.state is S.OFF


def test_a_dead_renode_makes_the_target_failed_until_power_off_or_on(standin, firmware):
    with target(standin) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        pid = driver.target.pid
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while driver.target.renode.process.returncode is None and time.monotonic() < deadline:
            time.sleep(0.02)  # the event loop reaps the child: wait for it to notice
        with pytest.raises(DriverError, match=r"cannot pause: Renode failed \(Renode was killed by signal SIGKILL"):
            client.pause()
        assert driver.target.state is S.FAILED
        with pytest.raises(DriverError, match="run `power on`"):
            client.flasher.flash(firmware().elf)  # refused, not stored for a Renode that is gone
        client.power.off()
        assert driver.target.state is S.OFF
        client.power.on()
        assert driver.target.state is S.ON and driver.target.pid != pid
    assert no_renode_left()


def test_power_off_stops_renode_even_when_its_stdin_is_broken(standin, firmware):
    """The reproduction: Renode's stdin is broken while it lives on. Power off must still stop and reap it,
    and the target must not forget a process that is still running."""
    with target(standin) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        instance = driver.target.renode
        pid = driver.target.pid
        instance.process.stdin.close()  # every later write to Renode fails
        client.power.off()
        assert driver.target.state is S.OFF
        assert instance.process.returncode is not None, "Renode was left running"
        assert not os.path.exists(f"/proc/{pid}") or _is_zombie(pid)
    assert no_renode_left()


def test_a_failed_start_ends_off_with_nothing_left(standin, monkeypatch):
    monkeypatch.setenv("STANDIN_EXIT_AT_START", "3")
    with target(standin) as (client, driver):
        with pytest.raises(DriverError, match="Renode exited with code 3"):
            client.power.on()
        assert driver.target.state is S.OFF
        assert driver.target.renode is None
    assert no_renode_left()


def test_close_kills_whatever_the_state(standin, firmware):
    with target(standin) as (client, driver):
        client.flasher.flash(firmware().elf)
        client.power.on()
        workdir = driver.workdir
    assert driver.target.state is S.OFF
    assert not workdir.exists()
    assert no_renode_left()


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True
