"""Deterministic firmware tests with the jumpstarter-driver-renode pytest plugin: copy and adapt.

Every test gets the `renode` fixture: the board booted once per session, restored to its just-booted
snapshot before each test and paused there, so each wait below starts from the same virtual instant.
`expect_output` waits in *virtual* time (the emulation's clock, not the host's): a slow or busy host
changes how long a test takes, never what it sees.

    python firmware/build.py /tmp/fw pytest          # the project's test firmware (needs the cross compilers)
    pytest examples/test_firmware.py --renode-exporter examples/pytest-exporter.yaml \\
        --renode-firmware /tmp/fw/stm32f4-pytest.elf

or inside `jmp shell` on a leased Renode board: `pytest examples/test_firmware.py --renode-firmware ...`.

The firmware (firmware/README.md) prints `BOOT jumpstarter-renode-fw ...` at boot, answers every line
with `echo: <line>`, and after `ticks on` prints `tick <n>` every 100 ms of virtual time.
"""

import pytest

from jumpstarter_driver_renode.client import ExpectFailed


def test_ticks_every_100ms_of_virtual_time(renode):
    typed = renode.virtual_time()  # the board is paused: input typed now reaches the firmware at this instant
    renode.write_uart("ticks on\r")
    echoed = renode.expect_output(r"echo: ticks on\r\n", timeout=1)
    tick3 = renode.expect_output(r"tick 3\r\n", timeout=1)
    assert typed <= echoed < typed + 0.01
    # The timer starts when the firmware handles the line: tick 3 comes 300 ms of virtual time later,
    # on every run and every host.
    assert tick3 - echoed == pytest.approx(0.3, abs=0.01)


def test_echo(renode):
    renode.write_uart("hello\r")
    # fail_on: a second boot banner means the firmware crashed and rebooted; fail at once, not at the timeout.
    renode.expect_output(r"echo: hello\r\n", timeout=1, fail_on=[r"BOOT jumpstarter-renode-fw"])


def test_fail_on_ends_the_wait_early(renode):
    renode.write_uart("ticks on\r")
    renode.expect_output(r"echo: ticks on", timeout=1)
    # The firmware must not get to tick 2 before printing "ready": it never prints it, so the wait
    # fails at tick 2 (0.2 virtual seconds) rather than timing out after 1 s.
    with pytest.raises(ExpectFailed, match="tick 2"):
        renode.expect_output(r"ready", timeout=1, fail_on=[r"tick 2\r\n"])
