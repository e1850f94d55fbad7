"""The package's shape, which keeps it growable: no import cycles (type-only imports included), small modules
and classes, the server side free of the client, and a core that names no board feature."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from jumpstarter_driver_renode.client import RenodeClient, RenodeMachineClient
from jumpstarter_driver_renode.config import RESERVED_CHILDREN

PACKAGE = Path(__file__).parent.parent / "src" / "jumpstarter_driver_renode"
MAX_MODULE_LINES = 450
MAX_CLASS_LINES = 250
SERVER = ("config", "driver", "instance", "lifecycle", "session", "snapshots", "spares", "warm", "features")
CORE = ("instance", "lifecycle", "session", "snapshots", "spares", "warm")  # they call features by their hooks


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        if "inside_renode" in path.parts:  # runs inside Renode, imported by nothing
            continue
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(p for p in parts if p != "__init__")] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that `name` imports, anywhere in it (also under `if TYPE_CHECKING:`)."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)] + ([node.module] if node.module else [])
            target = ".".join(p for p in base if p)
            for alias in node.names:
                sub = f"{target}.{alias.name}" if target else alias.name
                found.add(sub if sub in known else target)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("jumpstarter_driver_renode"):
            found.add(node.module.removeprefix("jumpstarter_driver_renode").lstrip("."))
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {name: imports(name, path, set(mods)) for name, path in mods.items()}


def test_no_import_cycles():
    edges = graph()
    cycles = []

    def visit(node: str, stack: list[str]) -> None:
        for nxt in sorted(edges[node]):
            if nxt in stack:
                cycles.append(" -> ".join([*stack[stack.index(nxt) :], nxt]))
            elif nxt not in done:
                visit(nxt, [*stack, nxt])
        done.add(node)

    done: set[str] = set()
    for start in sorted(edges):
        if start not in done:
            visit(start, [start])
    assert not cycles, cycles


def test_modules_and_classes_stay_small():
    too_big = []
    for name, path in modules().items():
        source = path.read_text()
        if len(source.splitlines()) > MAX_MODULE_LINES:
            too_big.append(f"module {name}: {len(source.splitlines())} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ClassDef) and node.end_lineno - node.lineno + 1 > MAX_CLASS_LINES:
                too_big.append(f"class {name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert not too_big, too_big


def test_the_server_side_never_imports_the_client():
    edges = graph()
    for name, targets in edges.items():
        if name.split(".")[0] in SERVER:
            assert not {t for t in targets if t.endswith("client")}, f"{name} imports {targets}"


@pytest.mark.parametrize("core", CORE)
def test_the_core_names_no_feature(core):
    """A new feature is one module in features/ plus its place in FEATURES: the core calls hooks only."""
    assert not {t for t in graph()[core] if t.startswith("features.") and t != "features.base"}


def test_no_child_name_hides_a_client_attribute():
    """A child named like a client attribute would hide it: every public attribute of the clients is reserved."""
    for client in (RenodeClient, RenodeMachineClient):
        public = {name for name in dir(client) if not name.startswith("_")}
        assert public <= RESERVED_CHILDREN, public - RESERVED_CHILDREN
