"""Buttons and LEDs through Jumpstarter's digital I/O client interfaces, with the project firmware
(the STM32F4 Discovery's green LED, PD12, is lit exactly while the user button, PA0, is held)."""

from __future__ import annotations

import inspect

import pytest
from conftest import no_renode_left, target
from jumpstarter.client.core import DriverError
from jumpstarter_driver_gpiod.client import DigitalInputClient, DigitalOutputClient

from jumpstarter_driver_renode.driver import Renode
from jumpstarter_driver_renode.features.gpio import RenodeButton, RenodeLed
from jumpstarter_driver_renode.gpio_client import PinState, RenodeButtonClient, RenodeLedClient

GPIO = {"buttons": {"user": "sysbus.gpioPortA.UserButton"}, "leds": {"green": "sysbus.gpioPortD.UserLED"}}


def hardware_test(button, led) -> None:
    """A test written for a real board against gpiod's client interfaces only."""
    assert str(led.read()) == "inactive"
    button.on()
    led.wait_for_active(timeout=1)
    assert str(led.read()) == "active" and str(button.read()) == "active"
    button.off()
    led.wait_for_inactive(timeout=1)
    assert str(led.read()) == "inactive" and str(button.read()) == "inactive"
    button.on()
    led.wait_for_edge("rising", timeout=1)
    button.off()
    led.wait_for_edge("falling", timeout=1)


def test_a_test_written_for_gpiod_clients_passes(backend, firmware):
    # Paused: each wait runs the board from where the previous call left it, so no edge can happen
    # between a press and the wait for it (on a running board, as on hardware, it could).
    with target(backend, autostart=False, **GPIO) as (client, _):
        client.flasher.flash(firmware().elf)
        client.power.on()
        client.expect_output("BOOT", timeout=1)
        hardware_test(client.user, client.green)
        client.expect_output(r"button pressed\r\nbutton released\r\nbutton pressed\r\nbutton released\r\n", 1)


def test_gpiods_own_client_classes_drive_the_children(backend, firmware, monkeypatch):
    """The children answer the calls of jumpstarter_driver_gpiod's clients: served with those classes,
    the same hardware test passes (so an installed gpiod client works against them)."""
    monkeypatch.setattr(
        RenodeButton, "client", classmethod(lambda cls: "jumpstarter_driver_gpiod.client.DigitalOutputClient")
    )
    monkeypatch.setattr(
        RenodeLed, "client", classmethod(lambda cls: "jumpstarter_driver_gpiod.client.DigitalInputClient")
    )
    with target(backend, autostart=False, **GPIO) as (client, _):
        assert isinstance(client.user, DigitalOutputClient) and isinstance(client.green, DigitalInputClient)
        client.flasher.flash(firmware().elf)
        client.power.on()
        client.expect_output("BOOT", timeout=1)
        hardware_test(client.user, client.green)


def test_press_runs_virtual_time_and_the_led_follows_exactly(backend, firmware):
    with target(backend, autostart=False, **GPIO) as (client, _):
        client.flasher.flash(firmware().elf)
        client.power.on()
        client.expect_output("BOOT", timeout=1)
        start = client.virtual_time()
        released = client.user.press(0.25)
        assert released == pytest.approx(start + 0.25, abs=0.001)
        assert client.virtual_time() == pytest.approx(released, abs=0.001)  # paused at the release
        pressed_at = client.expect_output(r"button pressed\r\n", timeout=0)
        assert start <= pressed_at < start + 0.002
        # The LED went dark when the firmware handled the release: waiting runs the board that far.
        dark = client.green.wait_for_inactive(timeout=0.1)
        assert released <= dark < released + 0.002
        client.expect_output(r"button released\r\n", timeout=0.1)


def test_an_led_wait_times_out_in_virtual_time(backend, firmware):
    with target(backend, autostart=False, **GPIO) as (client, _):
        client.flasher.flash(firmware().elf)
        client.power.on()
        start = client.expect_output("BOOT", timeout=1)
        with pytest.raises(DriverError, match=r"LED green \(sysbus.gpioPortD.UserLED\) did not light up within 0.3 s"):
            client.green.wait_for_active(timeout=0.3)
        assert client.virtual_time() == pytest.approx(start + 0.3, abs=0.002)


def test_buttons_and_leds_survive_reset_restore_reflash_and_power_cycle(backend, firmware):
    fw = firmware()
    with target(backend, **GPIO) as (client, _):
        client.flasher.flash(fw.elf)
        client.power.on()
        client.expect_output("BOOT", timeout=1)
        client.save_snapshot("booted")
        steps = [
            client.reset_machine,
            lambda: client.restore_snapshot("booted"),
            lambda: client.flasher.flash(fw.elf),
            lambda: (client.power.off(), client.power.on()),
        ]
        for step in steps:
            step()
            client.user.on()
            client.green.wait_for_active(timeout=1)
            client.user.off()
            client.green.wait_for_inactive(timeout=1)
        client.power.off()
    assert no_renode_left()


def test_unknown_or_wrong_kind_of_peripheral_fails_power_on_naming_it(backend, firmware):
    for config, words in [
        ({"leds": {"red": "sysbus.gpioPortD.NoSuchLed"}}, "LED `red`"),
        ({"leds": {"red": "sysbus.usart2"}}, "LED `red`: sysbus.usart2 is a"),
        ({"buttons": {"b1": "sysbus.gpioPortD.UserLED"}}, "button `b1`: sysbus.gpioPortD.UserLED is a"),
    ]:
        with target(backend, **config) as (client, _):
            client.flasher.flash(firmware().elf)
            with pytest.raises(DriverError, match=words):
                client.power.on()
    assert no_renode_left()


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"buttons": {"console": "sysbus.x.b"}}, "clashes with a built-in child"),
        ({"buttons": {"a": "sysbus.x.b"}, "leds": {"a": "sysbus.x.l"}}, "also a key of buttons"),
        ({"uarts": {"a": "sysbus.usart3"}, "leds": {"a": "sysbus.x.l"}}, "also a key of uarts"),
        ({"leds": {"a": "sysbus.x l"}}, r"leds\.a\n.*peripheral must look like"),
        ({"leds": {"a b": "sysbus.x"}}, r"leds\.a b\.\[key\]\n.*child name must be"),
    ],
)
def test_config_is_checked_when_the_exporter_starts(standin, config, words):
    with pytest.raises(ValueError, match=words):
        Renode(platform=standin.platform, uart=standin.uart, renode_path=standin.renode_path, **config)


def test_bad_arguments(standin, firmware):
    with target(standin, **GPIO) as (client, _):
        with pytest.raises(DriverError, match="off"):
            client.green.read()
        client.flasher.flash(firmware().elf)
        client.power.on()
        with pytest.raises(DriverError, match="edge_type"):
            client.green.wait_for_edge("sideways", 1)
        with pytest.raises(DriverError, match="seconds"):
            client.user.press(-1)
        with pytest.raises(DriverError, match="timeout"):
            client.green.wait_for_active(-1)


@pytest.mark.parametrize(
    ("ours", "theirs", "methods"),
    [
        (RenodeButtonClient, DigitalOutputClient, ["on", "off", "read"]),
        (RenodeLedClient, DigitalInputClient, ["read", "wait_for_active", "wait_for_inactive", "wait_for_edge"]),
    ],
)
def test_clients_have_the_gpiod_clients_methods(ours, theirs, methods):
    for name in methods:
        assert list(inspect.signature(getattr(ours, name)).parameters) == list(
            inspect.signature(getattr(theirs, name)).parameters
        ), name
    assert [s.value for s in PinState] == [0, 1] and str(PinState.ACTIVE) == "active"
