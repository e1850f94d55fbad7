"""pytest plugin (entry point `jumpstarter_renode`): deterministic firmware tests on a Renode target.

Fixtures:

- `renode_target` (session): the `RenodeClient`, from the lease of the `jmp shell` the tests run in
  (JUMPSTARTER_HOST), or served in this process from an exporter config (`--renode-exporter`).
- `renode_booted` (session): flashed (`--renode-firmware`), powered on, booted (`--renode-boot-pattern`
  seen on the console within `--renode-boot-timeout` virtual seconds), paused and saved as snapshot
  `pytest-booted`; powered off at the end of the session.
- `renode` (function): the booted target, restored to that snapshot before every test. The restored
  emulation is paused, so `expect_output` waits start from the same virtual instant in every test.

A failing test that used them gets two report sections: "UART output" (the console's last lines)
and "Renode log".

The plugin is installed with the package and costs nothing until a test asks for a fixture (Jumpstarter
is imported then); `-p no:jumpstarter_renode` disables it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .client import RenodeClient

SNAPSHOT = "pytest-booted"
DEFAULT_BOOT_PATTERN = "BOOT"
DEFAULT_BOOT_TIMEOUT = 5.0
REPORT_LINES = 40
JUMPSTARTER_HOST = "JUMPSTARTER_HOST"  # set by `jmp shell`; the same name as jumpstarter.config.env's
TARGET_FIXTURES = frozenset({"renode", "renode_booted", "renode_target"})

NOT_CONFIGURED = (
    "no Renode target: run the tests inside `jmp shell` (JUMPSTARTER_HOST set), or give an exporter config "
    "with --renode-exporter PATH (or `renode_exporter = PATH` in the pytest ini file)"
)


class RenodeTargetError(Exception):
    """The lease or the exporter config has no usable Renode target (the message says what to change)."""


@dataclass(frozen=True)
class RenodeSettings:
    """The plugin's options, resolved: command line first, then the ini file, then the defaults.

    `exporter` wins over a `jmp shell` lease only when it comes from the command line: a project can keep
    a local exporter config in its ini file and still run against the leased board inside `jmp shell`.
    """

    exporter: Path | None
    lease: bool
    child: str | None
    firmware: Path | None
    boot_pattern: str
    boot_timeout: float

    @property
    def source(self) -> str:
        if self.exporter is not None:
            return f"exporter config {self.exporter}"
        return "the lease of this `jmp shell`" if self.lease else "nothing"


_SETTINGS = pytest.StashKey[RenodeSettings]()
_TARGET = pytest.StashKey["RenodeClient"]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("renode", "Renode targets (jumpstarter-driver-renode)")
    group.addoption(
        "--renode-exporter",
        dest="renode_exporter",
        metavar="PATH",
        help="exporter config (YAML) whose Renode target is served in this process; "
        "wins over the lease of a `jmp shell` (ini: renode_exporter, which does not)",
    )
    group.addoption(
        "--renode-child",
        dest="renode_child",
        metavar="NAME",
        help="the Renode target's name in the lease or exporter config when there are several "
        "(dotted for nested composites: rack.board) (ini: renode_child)",
    )
    group.addoption(
        "--renode-firmware",
        dest="renode_firmware",
        metavar="PATH",
        help="flash this image (ELF, Intel HEX, raw binary) before power-on (ini: renode_firmware)",
    )
    group.addoption(
        "--renode-boot-pattern",
        dest="renode_boot_pattern",
        metavar="REGEX",
        help=f"console output that means the board booted (default: {DEFAULT_BOOT_PATTERN}) (ini: renode_boot_pattern)",
    )
    group.addoption(
        "--renode-boot-timeout",
        dest="renode_boot_timeout",
        metavar="SECONDS",
        help=f"virtual seconds to wait for the boot pattern (default: {DEFAULT_BOOT_TIMEOUT:g}) "
        "(ini: renode_boot_timeout)",
    )
    parser.addini("renode_exporter", "exporter config for the Renode target (relative to the ini file)", default="")
    parser.addini("renode_child", "the Renode target's name in the lease or exporter config", default="")
    parser.addini("renode_firmware", "image flashed before power-on (relative to the ini file)", default="")
    parser.addini("renode_boot_pattern", "regex that means the board booted", default=DEFAULT_BOOT_PATTERN)
    parser.addini("renode_boot_timeout", "virtual seconds to wait for the boot pattern", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SETTINGS] = settings(config)


def settings(config: pytest.Config, environ: dict[str, str] | None = None) -> RenodeSettings:
    """Resolve the options; a bad value is a usage error naming the option."""
    environ = os.environ if environ is None else environ
    cli_dir = Path(config.invocation_params.dir)
    ini_dir = config.inipath.parent if config.inipath is not None else Path(config.rootpath)

    def path(option: str) -> Path | None:
        value = config.getoption(option)
        if value:
            return _resolve(value, cli_dir)
        value = config.getini(option)
        return _resolve(value, ini_dir) if value else None

    def text(option: str) -> str:
        value = config.getoption(option)
        return value if value is not None else config.getini(option)

    cli_exporter = config.getoption("renode_exporter")
    lease = bool(environ.get(JUMPSTARTER_HOST)) and not cli_exporter
    exporter = None if lease else path("renode_exporter")

    boot_pattern = text("renode_boot_pattern") or DEFAULT_BOOT_PATTERN
    try:
        re.compile(boot_pattern)
    except re.error as exc:
        raise pytest.UsageError(f"--renode-boot-pattern {boot_pattern!r} is not a valid regex: {exc}") from None

    raw_timeout = text("renode_boot_timeout") or str(DEFAULT_BOOT_TIMEOUT)
    try:
        boot_timeout = float(raw_timeout)
    except ValueError:
        boot_timeout = -1.0
    if not 0 < boot_timeout < float("inf"):
        raise pytest.UsageError(f"--renode-boot-timeout must be a positive number of virtual seconds: {raw_timeout!r}")

    return RenodeSettings(
        exporter=exporter,
        lease=lease,
        child=text("renode_child") or None,
        firmware=path("renode_firmware"),
        boot_pattern=boot_pattern,
        boot_timeout=boot_timeout,
    )


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else base / path


# -- choosing the Renode target in a tree of clients ------------------------------------------------


def _is_renode(client: Any) -> bool:
    from .client import RenodeClient

    return isinstance(client, RenodeClient)


def choose_target(root: Any, child: str | None, origin: str, is_target: Callable[[Any], bool] = _is_renode) -> Any:
    """The Renode client in a lease's or exporter config's client tree.

    `child` (dotted for nested composites) names it; without it, the root itself or the only Renode
    target in the tree. Raises `RenodeTargetError` saying what is there and what to pass.
    """
    if child:
        node, walked = root, []
        for part in child.split("."):
            children = getattr(node, "children", {})
            if part not in children:
                where = f"{origin}, under {'.'.join(walked)}," if walked else origin
                raise RenodeTargetError(
                    f"--renode-child {child}: {where} has no child {part!r} (it has: {_names(children)})"
                )
            node = children[part]
            walked.append(part)
        if not is_target(node):
            raise RenodeTargetError(
                f"--renode-child {child}: {child!r} in {origin} is a {type(node).__name__}, not a Renode target"
            )
        return node
    if is_target(root):
        return root
    found = _find_targets(root, is_target)
    if len(found) == 1:
        return found[0][1]
    if not found:
        raise RenodeTargetError(
            f"{origin} has no Renode target (a jumpstarter_driver_renode.driver.Renode driver); "
            f"its children: {_names(getattr(root, 'children', {}))}"
        )
    raise RenodeTargetError(
        f"{origin} has several Renode targets ({', '.join(name for name, _ in found)}): "
        "choose one with --renode-child NAME (or `renode_child = NAME` in the pytest ini file)"
    )


def _find_targets(node: Any, is_target: Callable[[Any], bool], prefix: str = "") -> list[tuple[str, Any]]:
    found = []
    for name, child in getattr(node, "children", {}).items():
        if is_target(child):
            found.append((prefix + name, child))
        else:  # a Renode target's own children (power, console, ...) are not targets
            found.extend(_find_targets(child, is_target, f"{prefix}{name}."))
    return found


def _names(children: Iterable[str]) -> str:
    return ", ".join(sorted(children)) or "none"


# -- serving ---------------------------------------------------------------------------------------


@contextmanager
def serve_exporter_config(path: Path) -> Iterator[Any]:
    """Serve every driver an exporter config exports, in this process, as `jmp shell --exporter-config` does:
    one composite root whose children are the `export:` entries. Yields the root client."""
    import yaml
    from jumpstarter.common.utils import serve
    from jumpstarter.config.exporter import ExporterConfigV1Alpha1
    from jumpstarter_driver_composite.driver import Composite

    if not path.is_file():
        raise RenodeTargetError(f"--renode-exporter: no such file: {path}")
    try:
        config = ExporterConfigV1Alpha1.load_path(path)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RenodeTargetError(f"--renode-exporter: {path} is not a valid exporter config: {exc}") from None
    if not config.export:
        raise RenodeTargetError(f"--renode-exporter: {path} exports nothing (its `export:` is empty)")
    children = {}
    for name, entry in config.export.items():
        try:
            children[name] = entry.instantiate()
        except Exception as exc:  # the drivers' own config checks: their message names the key
            for made in children.values():
                made.close()
            raise RenodeTargetError(f"--renode-exporter: {path}: cannot create export {name!r}: {exc}") from None
    root = Composite(description=config.description, children=children)
    try:
        with serve(root) as client:
            yield client
    finally:
        root.close()  # idempotent; also covers a serve() that failed before its session took the tree


@contextmanager
def _lease_root() -> Iterator[Any]:
    from jumpstarter.utils.env import env

    with env() as client:
        yield client


# -- fixtures --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def renode_target(pytestconfig: pytest.Config) -> Iterator[RenodeClient]:
    """The Renode target's client, from the `jmp shell` lease or served from `--renode-exporter`."""
    options = pytestconfig.stash[_SETTINGS]
    if options.exporter is not None:
        root_cm = serve_exporter_config(options.exporter)
    elif options.lease:
        root_cm = _lease_root()
    else:
        pytest.skip(NOT_CONFIGURED)
    problem = None
    try:
        with root_cm as root:
            client = choose_target(root, options.child, options.source)
            pytestconfig.stash[_TARGET] = client
            try:
                yield client
            finally:
                del pytestconfig.stash[_TARGET]
    except RenodeTargetError as exc:
        problem = str(exc)
    if problem is not None:  # outside the except block: the report shows the message alone, no chained traceback
        pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def renode_booted(request: pytest.FixtureRequest, renode_target: RenodeClient) -> RenodeClient:
    """The target flashed, powered on, booted, paused and saved as snapshot `pytest-booted`.

    Powered off at the end of the session, also when booting failed: until then the failure report can
    still read the console and Renode's log.
    """
    options = request.config.stash[_SETTINGS]
    client = renode_target
    if "flasher" not in client.children:  # `machines`: each machine has its own flasher and console
        pytest.fail(
            f"{options.source}: the target has several machines ({_names(client.children.keys() - {'power'})}); `renode_booted` and "
            "`renode` drive one-machine targets: use `renode_target` and its machine children",
            pytrace=False,
        )
    if options.firmware is not None and not options.firmware.is_file():
        pytest.fail(f"--renode-firmware: no such file: {options.firmware}", pytrace=False)
    client.power.off()  # a leased board may be on already (used in the shell): boot it from power-on
    if options.firmware is not None:
        client.flasher.flash(str(options.firmware))
    request.addfinalizer(client.power.off)
    client.power.on()
    problem = None
    try:
        client.expect_output(options.boot_pattern, timeout=options.boot_timeout)
    except AssertionError as exc:  # ExpectTimeout / ExpectFailed: the message has the output so far
        problem = (
            f"the target did not boot: --renode-boot-pattern {options.boot_pattern!r} not seen within "
            f"{options.boot_timeout:g} virtual seconds of power-on ({options.source})\n{exc}"
        )
    if problem is not None:  # outside the except block: no chained traceback in the report
        pytest.fail(problem, pytrace=False)
    client.pause()
    client.save_snapshot(SNAPSHOT)
    return client


@pytest.fixture
def renode(renode_booted: RenodeClient) -> RenodeClient:
    """The booted target, restored to snapshot `pytest-booted` (paused, just after boot) for this test.

    Whatever the previous test did: resumed the board (a restore keeps the run state, so it is paused
    first), powered it off or left it failed (powered on again; the snapshot stays in its work dir).
    """
    from jumpstarter.client.core import DriverError

    try:
        renode_booted.pause()
    except DriverError:  # off, or its Renode died: a power-on starts a new one
        renode_booted.power.off()
        renode_booted.power.on()
        renode_booted.pause()
    renode_booted.restore_snapshot(SNAPSHOT)
    return renode_booted


# -- failure reports -------------------------------------------------------------------------------


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[Any]:
    report = yield
    if report.failed and report.when in ("setup", "call") and TARGET_FIXTURES & set(getattr(item, "fixturenames", ())):
        client = item.config.stash.get(_TARGET, None)
        if client is not None:
            report.sections.extend(failure_sections(client))
    return report


def failure_sections(client: Any, lines: int = REPORT_LINES) -> list[tuple[str, str]]:
    """("UART output", ...) and ("Renode log", ...) for a failure report; a call that fails says why instead."""
    return [
        _section("UART output", "the console output", lambda: client.output_tail(uart=None, lines=lines)),
        _section("Renode log", "the Renode log", lambda: client.log(lines)),
    ]


def _section(title: str, what: str, fetch: Callable[[], str]) -> tuple[str, str]:
    try:
        text = fetch()
    except Exception as exc:  # a report must never fail because the board is off or gone
        return title, f"(could not read {what}: {type(exc).__name__}: {exc})"
    return title, text if text else "(empty)"
