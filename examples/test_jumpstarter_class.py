"""Firmware tests in Jumpstarter's own style: a `JumpstarterTest` class (jumpstarter-testing) whose `client`
fixture is the leased exporter. The same class drives a real board and a Renode one; copy and adapt.

Inside `jmp shell` (a local exporter config, or a lease from a controller) it finds the exporter by itself:

    python firmware/build.py /tmp/fw example                      # the project's test firmware
    FIRMWARE=/tmp/fw/stm32f4-example.elf \\
        jmp shell --exporter-config examples/exporter.yaml -- pytest examples/test_jumpstarter_class.py

`jmp shell --exporter-config` exits 0 whatever pytest returned (Jumpstarter 0.9): read pytest's summary, or
run the exporter with `jmp run` and the tests with `jmp shell --tls-grpc ... -- pytest ...`, which returns
pytest's exit code (README, "Deploying").
"""

import os

import pytest
from jumpstarter_testing.pytest import JumpstarterTest

FIRMWARE = os.environ.get("FIRMWARE", "firmware.elf")
# jumpstarter-testing 0.9.0's class-scoped `client` fixture is an instance method, which pytest 9 warns about.
pytestmark = pytest.mark.filterwarnings("ignore:Class-scoped fixtures defined as instance methods")


class TestBoard(JumpstarterTest):
    selector = "board=stm32f4-discovery"  # for a lease from a controller; unused inside `jmp shell`

    @pytest.fixture(scope="class")
    @classmethod
    def board(cls, client):
        """The `board` target of examples/exporter.yaml, flashed and powered for the whole class."""
        board = client.board
        board.flasher.flash(FIRMWARE)
        board.power.on()
        yield board
        board.power.off()

    def test_boots(self, board):
        # expect_output waits in virtual time: the banner is there even if the board booted before the call
        board.expect_output(r"BOOT jumpstarter-renode-fw board=stm32f4", timeout=1)

    def test_echoes_a_line(self, board):
        board.write_uart("hello\r")
        board.expect_output(r"echo: hello\r\n", timeout=1)

    def test_the_console_is_a_serial_console(self, board):
        with board.console.pexpect() as console:
            console.send(b"ping\r")
            console.expect(rb"echo: ping\r\n", timeout=30)
