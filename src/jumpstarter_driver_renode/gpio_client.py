"""Client side of buttons and LEDs: the methods and CLI of jumpstarter_driver_gpiod's digital I/O clients."""

from __future__ import annotations

from enum import Enum

import click
from jumpstarter.client import DriverClient
from jumpstarter.client.decorators import driver_click_group


class PinState(Enum):
    """A digital pin's state, with the values and names of jumpstarter_driver_gpiod's PinState."""

    INACTIVE = 0
    ACTIVE = 1

    def __str__(self) -> str:
        return self.name.lower()


class RenodeButtonClient(DriverClient):
    """A button of the board, with the methods and CLI of jumpstarter_driver_gpiod's DigitalOutputClient
    (on = pressed, off = released), plus `press(seconds)`."""

    def on(self) -> None:
        """Press the button and keep it pressed."""
        self.call("on")

    def off(self) -> None:
        """Release the button."""
        self.call("off")

    def read(self) -> PinState:
        return PinState(int(self.call("read_pin")))

    def press(self, seconds: float = 0.1) -> float:
        """Press for `seconds` of virtual time (the board runs meanwhile), then release; returns the virtual
        time of the release. A paused board stays paused there."""
        return self.call("press", seconds)

    def cli(self):
        @driver_click_group(self)
        def gpio():
            """Button of the emulated board (on = pressed)"""

        @gpio.command()
        def on():
            """Press and hold"""
            self.on()

        @gpio.command()
        def off():
            """Release"""
            self.off()

        @gpio.command()
        def read():
            """Print active (pressed) or inactive"""
            click.echo(str(self.read()))

        @gpio.command()
        @click.option("--seconds", "-s", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True)
        def press(seconds):
            """Press for SECONDS of virtual time, then release"""
            click.echo(f"{self.press(seconds):.9f}")

        return gpio


class RenodeLedClient(DriverClient):
    """An LED of the board, with the methods and CLI of jumpstarter_driver_gpiod's DigitalInputClient.

    Timeouts are in *virtual* seconds: the board runs for at most that long (a paused board stays paused
    where the wait ended). Each wait returns the virtual time it ended at and raises `DriverError`
    (from the driver's TimeoutError) on timeout.
    """

    def read(self) -> PinState:
        return PinState(int(self.call("read_pin")))

    def wait_for_active(self, timeout: float | None = None) -> float:
        return self.call("wait_for_active", timeout)

    def wait_for_inactive(self, timeout: float | None = None) -> float:
        return self.call("wait_for_inactive", timeout)

    def wait_for_edge(self, edge_type: str, timeout: float | None = None) -> float:
        return self.call("wait_for_edge", edge_type, timeout)

    def cli(self):
        @driver_click_group(self)
        def gpio():
            """LED of the emulated board"""

        @gpio.command()
        def read():
            """Print active (lit) or inactive"""
            click.echo(str(self.read()))

        timeout = click.option("--timeout", "-t", type=float, default=3600, show_default=True, help="Virtual seconds")

        @gpio.command(name="wait-for-active")
        @timeout
        def wait_for_active(timeout):
            """Wait until the LED is lit"""
            click.echo(f"{self.wait_for_active(timeout):.9f}")

        @gpio.command(name="wait-for-inactive")
        @timeout
        def wait_for_inactive(timeout):
            """Wait until the LED is dark"""
            click.echo(f"{self.wait_for_inactive(timeout):.9f}")

        @gpio.command(name="wait-for-edge")
        @click.argument("edge_type", type=click.Choice(["rising", "falling"]))
        @timeout
        def wait_for_edge(edge_type, timeout):
            """Wait for the next rising or falling edge"""
            click.echo(f"{self.wait_for_edge(edge_type, timeout):.9f}")

        return gpio
