"""The pytest plugin (entry point `jumpstarter_renode`): options, target choice, skips, failure reports, and
examples/test_firmware.py run through it with pytester against both backends."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from conftest import Backend, board_config, no_renode_left

from jumpstarter_driver_renode import pytest_plugin
from jumpstarter_driver_renode.pytest_plugin import RenodeTargetError, choose_target, failure_sections

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "test_firmware.py"
# pytester points HOME at its temporary directory; Renode keeps its download cache (the platforms' SVD
# files) under the real one, and an exporter without network access needs it.
REAL_HOME = os.environ.get("HOME")


@pytest.fixture(autouse=True)
def _no_lease(monkeypatch):
    """Inner runs must not pick up the lease of a `jmp shell` the outer run happens to be in."""
    monkeypatch.delenv("JUMPSTARTER_HOST", raising=False)


INNER_INI = "asyncio_default_fixture_loop_scope = function\n"


@pytest.fixture
def pytester(pytester):
    """Inner runs have an ini of their own: pytest-asyncio (jumpstarter-testing's dependency) warns when its
    loop scope is unset, and this suite takes a warning for a failure."""
    pytester.makeini("[pytest]\n" + INNER_INI)
    return pytester


def exporter_yaml(export: dict[str, dict]) -> str:
    lines = [
        "apiVersion: jumpstarter.dev/v1alpha1",
        "kind: ExporterConfig",
        "metadata: {namespace: default, name: pytest-plugin-test}",
        'endpoint: ""',
        'token: ""',
        "export:" if export else "export: {}",
    ]
    for name, (kind, config) in export.items():
        lines += [f"  {name}:", f"    type: {kind}", "    config:"]
        lines += [f"      {key}: {value}" for key, value in config.items()] or ["      {}"]
    return "\n".join(lines) + "\n"


RENODE = "jumpstarter_driver_renode.driver.Renode"


def renode_config(backend: Backend, **extra) -> dict:
    return board_config(backend, warm_start="false", **extra)


# -- the plugin is installed and its options parse -------------------------------------------------


def test_plugin_is_registered_by_its_entry_point(pytestconfig):
    assert pytestconfig.pluginmanager.get_plugin("jumpstarter_renode") is pytest_plugin


def test_help_lists_the_options(pytester):
    result = pytester.runpytest("--help")
    result.stdout.fnmatch_lines(
        [
            "*Renode targets (jumpstarter-driver-renode)*",
            "*--renode-exporter=PATH*",
            "*--renode-child=NAME*",
            "*--renode-firmware=PATH*",
            "*--renode-boot-pattern=REGEX*",
            "*--renode-boot-timeout=SECONDS*",
        ]
    )


def test_defaults(pytester):
    pytester.makepyfile(
        """
        from jumpstarter_driver_renode.pytest_plugin import settings

        def test_settings(pytestconfig):
            s = settings(pytestconfig, environ={})
            assert (s.exporter, s.lease, s.child, s.firmware) == (None, False, None, None)
            assert (s.boot_pattern, s.boot_timeout) == ("BOOT", 5.0)
        """
    )
    pytester.runpytest().assert_outcomes(passed=1)


def test_ini_paths_are_relative_to_the_ini_file_and_command_line_wins(pytester):
    pytester.mkdir("sub")
    (pytester.path / "sub" / "pytest.ini").write_text(
        textwrap.dedent(
            """
            [pytest]
            renode_exporter = boards.yaml
            renode_firmware = fw/app.elf
            renode_child = board
            renode_boot_timeout = 2.5
            renode_boot_pattern = Hello
            """
        )
        + INNER_INI
    )
    pytester.makepyfile(
        test_settings=f"""
        from pathlib import Path
        from jumpstarter_driver_renode.pytest_plugin import settings

        SUB = Path({str(pytester.path / "sub")!r})

        def test_settings(pytestconfig):
            s = settings(pytestconfig, environ={{}})
            assert s.exporter == SUB / "boards.yaml"
            assert s.firmware == Path({str(pytester.path)!r}) / "other.elf"   # command line: relative to cwd
            assert (s.child, s.boot_timeout, s.boot_pattern) == ("board", 2.5, r"READY \\d+")
            assert not s.lease

        def test_a_lease_wins_over_the_ini_exporter(pytestconfig):
            s = settings(pytestconfig, environ={{"JUMPSTARTER_HOST": "/tmp/jmp.sock"}})
            assert s.lease and s.exporter is None
        """
    )
    result = pytester.runpytest(
        "-c", "sub/pytest.ini", "--rootdir", str(pytester.path),
        "--renode-firmware", "other.elf", "--renode-boot-pattern", r"READY \d+", "test_settings.py",
    )  # fmt: skip
    result.assert_outcomes(passed=2)


def test_an_exporter_on_the_command_line_wins_over_a_lease(pytester, tmp_path):
    pytester.makepyfile(
        f"""
        from pathlib import Path
        from jumpstarter_driver_renode.pytest_plugin import settings

        def test_settings(pytestconfig):
            s = settings(pytestconfig, environ={{"JUMPSTARTER_HOST": "/tmp/jmp.sock"}})
            assert not s.lease and s.exporter == Path({str(tmp_path / "boards.yaml")!r})
        """
    )
    pytester.runpytest("--renode-exporter", str(tmp_path / "boards.yaml")).assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--renode-boot-timeout", "soon"], "*--renode-boot-timeout must be a positive number*'soon'*"),
        (["--renode-boot-timeout", "0"], "*--renode-boot-timeout must be a positive number*"),
        (["--renode-boot-pattern", "BOOT("], "*--renode-boot-pattern 'BOOT(' is not a valid regex*"),
    ],
)
def test_bad_options_are_usage_errors(pytester, args, message):
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


# -- without a target, or with a wrong one ---------------------------------------------------------


def test_skips_saying_what_to_set_without_a_lease_or_exporter(pytester):
    pytester.makepyfile("def test_needs_a_board(renode):\n    pass\n")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*no Renode target: run the tests inside `jmp shell`*--renode-exporter PATH*"])


@pytest.mark.parametrize(
    ("export", "args", "message"),
    [
        (None, [], "*--renode-exporter: no such file: *missing.yaml*"),
        ({}, [], "*exports nothing*"),
        (
            {"power": ("jumpstarter_driver_power.driver.MockPower", {})},
            [],
            "*has no Renode target (a jumpstarter_driver_renode.driver.Renode driver); its children: power*",
        ),
        ("metadata: {}\n", [], "*boards.yaml is not a valid exporter config:*"),
        ("two", [], "*has several Renode targets (a, b): choose one with --renode-child NAME*"),
        ("two", ["--renode-child", "c"], "*--renode-child c: exporter config * has no child 'c' (it has: a, b)*"),
        (
            {"a": (RENODE, {"platform": "platforms/boards/x.repl", "uart": "sysbus.usart2", "bogus": 1})},
            [],
            "*boards.yaml: cannot create export 'a': 1 validation error for Renode*",
        ),
    ],
    ids=["missing", "empty", "no-renode", "not-an-exporter-config", "two", "unknown-child", "bad-driver-config"],
)
def test_exporter_config_problems_fail_with_what_to_change(pytester, standin, export, args, message):
    config = pytester.path / ("missing.yaml" if export is None else "boards.yaml")
    if export == "two":
        export = {"a": (RENODE, renode_config(standin)), "b": (RENODE, renode_config(standin))}
    if isinstance(export, str):
        config.write_text(export)
    elif export is not None:
        config.write_text(exporter_yaml(export))
    pytester.makepyfile("def test_needs_a_board(renode_target):\n    pass\n")
    result = pytester.runpytest("--renode-exporter", str(config), *args)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])


def test_renode_child_chooses_among_several_targets(pytester, standin):
    config = pytester.path / "boards.yaml"
    config.write_text(
        exporter_yaml(
            {
                "a": (RENODE, renode_config(standin, machine_name="first")),
                "b": (RENODE, renode_config(standin, machine_name="second")),
            }
        )
    )
    pytester.makepyfile(
        """
        from jumpstarter_driver_renode.client import RenodeClient

        def test_chosen(renode_target):
            assert isinstance(renode_target, RenodeClient)
            assert renode_target.machine_name == "second"
        """
    )
    pytester.runpytest("--renode-exporter", str(config), "--renode-child", "b").assert_outcomes(passed=1)


def test_the_example_exporter_config_serves_a_renode_target(pytester):
    pytester.makepyfile(
        """
        def test_board(renode_target):
            assert (renode_target.platform, renode_target.uart) == (
                "platforms/boards/stm32f4_discovery-kit.repl", "sysbus.usart2"
            )
        """
    )
    result = pytester.runpytest("--renode-exporter", str(EXAMPLE.parent / "pytest-exporter.yaml"))
    result.assert_outcomes(passed=1)


def test_a_board_that_does_not_boot_fails_its_tests_with_output_and_log_then_is_powered_off(
    pytester, monkeypatch, standin, firmware
):
    fw = firmware()
    config = pytester.path / "exporter.yaml"
    config.write_text(exporter_yaml({"board": (RENODE, renode_config(standin, platform=fw.platform, uart=fw.console))}))
    pytester.makepyfile("def test_one(renode):\n    pass\n\ndef test_two(renode):\n    pass\n")
    result = pytester.runpytest_subprocess(
        "--renode-exporter", str(config), "--renode-firmware", str(fw.elf),
        "--renode-boot-pattern", "READY", "--renode-boot-timeout", "0.5", "-p", "no:cacheprovider",
        timeout=120,
    )  # fmt: skip
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(
        [
            "*the target did not boot: --renode-boot-pattern 'READY' not seen within 0.5 virtual seconds*",
            "*waiting for 'READY' on console*",
            "*- UART output -*",
            "BOOT jumpstarter-renode-fw board=stm32f4 build=test*",
            "*- Renode log -*",
        ]
    )
    assert no_renode_left(), "the plugin left a Renode running after a failed boot"


def test_a_missing_firmware_file_fails_before_power_on(pytester, standin):
    config = pytester.path / "exporter.yaml"
    config.write_text(exporter_yaml({"board": (RENODE, renode_config(standin))}))
    pytester.makepyfile("def test_one(renode):\n    pass\n")
    result = pytester.runpytest("--renode-exporter", str(config), "--renode-firmware", "nowhere.elf")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*--renode-firmware: no such file: *nowhere.elf*"])


# -- choosing a target and the report sections, without Jumpstarter ---------------------------------


class Node:
    def __init__(self, kind: str, **children: Node):
        self.kind = kind
        self.children = children


def is_renode(node: Node) -> bool:
    return node.kind == "renode"


def test_choose_target():
    board = Node("renode", power=Node("power"), console=Node("serial"))
    assert choose_target(board, None, "lease", is_renode) is board
    rack = Node("composite", psu=Node("power"), shelf=Node("composite", board=board))
    assert choose_target(rack, None, "lease", is_renode) is board
    assert choose_target(rack, "shelf.board", "lease", is_renode) is board
    with pytest.raises(RenodeTargetError, match=r"'shelf\.board\.power' in lease is a Node, not a Renode target"):
        choose_target(rack, "shelf.board.power", "lease", is_renode)
    with pytest.raises(RenodeTargetError, match=r"lease, under shelf, has no child 'bord' \(it has: board\)"):
        choose_target(rack, "shelf.bord", "lease", is_renode)
    two = Node("composite", x=board, shelf=Node("composite", y=Node("renode")))
    with pytest.raises(RenodeTargetError, match=r"several Renode targets \(x, shelf\.y\)"):
        choose_target(two, None, "lease", is_renode)
    with pytest.raises(RenodeTargetError, match=r"lease has no Renode target .*its children: psu"):
        choose_target(Node("composite", psu=Node("power")), None, "lease", is_renode)


def test_failure_sections_say_why_when_the_board_cannot_answer():
    class Off:
        def output_tail(self, uart=None, lines=50):
            raise RuntimeError("cannot read output: the target is powered off")

        def log(self, lines=50):
            return ""

    assert failure_sections(Off()) == [
        (
            "UART output",
            "(could not read the console output: RuntimeError: cannot read output: the target is powered off)",
        ),
        ("Renode log", "(empty)"),
    ]

    class On:
        def output_tail(self, uart=None, lines=50):
            assert uart is None
            return f"last {lines} lines"

        def log(self, lines=50):
            return f"log {lines}"

    assert failure_sections(On(), lines=7) == [("UART output", "last 7 lines"), ("Renode log", "log 7")]


# -- the example, through the plugin, on both backends ---------------------------------------------

FAILS_ON_PURPOSE = """
def test_fails_on_purpose(renode):
    renode.write_uart("marker-for-the-report\\r")
    renode.expect_output(r"echo: marker-for-the-report", timeout=1)
    assert False, "failing on purpose"
"""


@pytest.mark.timeout(600)
def test_example_through_the_plugin(pytester, monkeypatch, backend, firmware):
    if REAL_HOME is not None:
        monkeypatch.setenv("HOME", REAL_HOME)
    fw = firmware()
    config = pytester.path / "exporter.yaml"
    config.write_text(exporter_yaml({"board": (RENODE, renode_config(backend, platform=fw.platform, uart=fw.console))}))
    pytester.makepyfile(test_firmware=EXAMPLE.read_text(), test_fails_on_purpose=FAILS_ON_PURPOSE)
    result = pytester.runpytest_subprocess(
        "--renode-exporter", str(config), "--renode-firmware", str(fw.elf),
        "--renode-boot-pattern", r"BOOT jumpstarter-renode-fw board=stm32f4",
        "-p", "no:cacheprovider", "-v",
        timeout=backend.timeout(120, 480),
    )  # fmt: skip
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*test_firmware.py::test_ticks_every_100ms_of_virtual_time PASSED*",
            "*test_firmware.py::test_echo PASSED*",
            "*test_firmware.py::test_fail_on_ends_the_wait_early PASSED*",
            "*AssertionError: failing on purpose*",
            "*- UART output -*",
            "*echo: marker-for-the-report*",
            "*- Renode log -*",
        ]
    )
    assert no_renode_left(), "the plugin left a Renode running after the session"


def test_inside_jmp_shell_the_plugin_uses_the_lease(pytester, monkeypatch, standin, firmware):
    """What `jmp shell --exporter-config FILE -- pytest ...` does: serve the config on a Unix socket and run
    the tests with JUMPSTARTER_HOST pointing at it. The lease's root is a composite: the plugin finds the
    Renode target in it."""
    from jumpstarter.config.exporter import ExporterConfigV1Alpha1

    if REAL_HOME is not None:
        monkeypatch.setenv("HOME", REAL_HOME)
    fw = firmware()
    config_path = pytester.path / "exporter.yaml"
    config_path.write_text(
        exporter_yaml(
            {
                "psu": ("jumpstarter_driver_power.driver.MockPower", {}),
                "board": (RENODE, renode_config(standin, platform=fw.platform, uart=fw.console)),
            }
        )
    )
    pytester.makepyfile(test_firmware=EXAMPLE.read_text())
    with ExporterConfigV1Alpha1.load_path(config_path).serve_unix() as host:
        monkeypatch.setenv("JUMPSTARTER_HOST", str(host))
        monkeypatch.setenv("JMP_DRIVERS_ALLOW", "UNSAFE")  # as `jmp shell` sets it for a local exporter config
        result = pytester.runpytest_subprocess(
            "--renode-firmware", str(fw.elf), "-p", "no:cacheprovider", "-v", timeout=120
        )
    result.assert_outcomes(passed=3)
    assert no_renode_left(), "the plugin left a Renode running after the session"


def test_a_multi_machine_target_is_refused_by_the_boot_fixtures_saying_what_to_use(pytester, standin):
    machines = "{a: {platform: %s, uart: %s}, b: {platform: %s, uart: %s}}" % ((standin.platform, standin.uart) * 2)
    config = pytester.path / "exporter.yaml"
    config.write_text(exporter_yaml({"ecus": (RENODE, {"machines": machines, "renode_path": standin.renode_path})}))
    pytester.makepyfile("def test_one(renode):\n    pass\n\ndef test_two(renode_target):\n    assert renode_target.a\n")
    result = pytester.runpytest("--renode-exporter", str(config))
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(
        ["*the target has several machines (*a*b*)*use `renode_target` and its machine children*"]
    )
