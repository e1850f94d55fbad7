"""What was written for `jumpstarter-driver-renode` 0.9.0 (PyPI) keeps working: its README's exporter config
and its programmatic example, unchanged (the stand-in needs `renode_path`; real Renode is found on PATH as
0.9.0 finds it), its client properties, `monitor_cmd` and the `monitor` CLI. One difference, on purpose:
raw monitor commands need `allow_raw_monitor: true` on the exporter (the monitor reads and writes host
files), and without it the refusal names that key."""

from __future__ import annotations

import re

import pytest
import yaml
from click.testing import CliRunner
from conftest import no_renode_left
from jumpstarter.client.core import DriverError
from jumpstarter.common.utils import serve

from jumpstarter_driver_renode.driver import Renode

# 0.9.0's README, "STM32F407 Discovery": the exporter config as users wrote it
EXPORTER_090 = """
export:
  ecu:
    type: jumpstarter_driver_renode.driver.Renode
    config:
      platform: "platforms/boards/stm32f4_discovery-kit.repl"
      uart: "sysbus.usart2"
"""


def renode_of(backend, **more) -> Renode:
    config = yaml.safe_load(EXPORTER_090)["export"]["ecu"]["config"]
    if backend.standin:
        config["renode_path"] = backend.renode_path
    return Renode(**config, **more)


def test_the_090_readme_example_runs_unchanged(backend, firmware):
    fw = firmware()
    with serve(renode_of(backend)) as renode:
        renode.flasher.flash(str(fw.elf))
        renode.power.on()

        with renode.console.pexpect() as p:
            p.expect(re.escape(fw.banner.decode()), timeout=backend.timeout(30, 60))

        renode.power.off()
    assert no_renode_left()


def test_the_090_client_properties_and_config_keys(backend):
    driver = renode_of(backend, machine_name="ecu0", monitor_port=0, extra_commands=["version"])
    try:
        with serve(driver) as renode:
            assert (renode.platform, renode.uart, renode.machine_name) == (
                "platforms/boards/stm32f4_discovery-kit.repl",
                "sysbus.usart2",
                "ecu0",
            )
    finally:
        driver.close()


def test_monitor_cmd_and_the_monitor_cli_with_raw_access_allowed(backend, firmware):
    driver = renode_of(backend, allow_raw_monitor=True)
    try:
        with serve(driver) as renode:
            renode.flasher.flash(str(firmware().elf))
            renode.power.on()
            response = renode.monitor_cmd("sysbus ReadDoubleWord 0x08000000")
            assert response.strip() == "0x20020000"  # the image's initial stack pointer: the flashed bytes
            result = CliRunner().invoke(renode.cli(), ["monitor", "version"], catch_exceptions=False)
            assert result.exit_code == 0 and "Renode" in result.output, result.output
            renode.power.off()
    finally:
        driver.close()
    assert no_renode_left()


def test_without_raw_access_monitor_cmd_is_refused_naming_the_key(backend):
    driver = renode_of(backend)
    try:
        with serve(driver) as renode, pytest.raises(DriverError, match="allow_raw_monitor: true"):
            renode.monitor_cmd("sysbus GetRegistrationPoints sysbus.usart2")
    finally:
        driver.close()
