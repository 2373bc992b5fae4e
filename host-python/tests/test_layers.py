"""The package's one-way structure (docs/architecture.md, "Layers"), checked.

Every module of ``raceway`` belongs to one layer. A module may import from its own layer and
from the layers below it, never from a layer above: the boundary does not know the client,
the client does not know the middleware. Imports are read from the source (``ast``), all of
them: at module level, inside functions, and under ``TYPE_CHECKING``.

Two more rules keep modules off each other's private members: no module but the client's
own reads ``client._x`` (helpers use `raceway._recorder.recorder_of`), and no module imports a
private name through `raceway.concurrency` (the public face of the modules it re-exports).

Arrows that break a rule in a file whose owner has not moved it yet are listed in the
allow-lists below, each with the owner and the way out. An entry that no longer occurs is
reported as a warning (its owner may move it while this file is someone else's to edit):
remove it then, so the lists only shrink.
"""

from __future__ import annotations

import ast
import pathlib
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

PACKAGE = pathlib.Path(__file__).resolve().parents[1] / "raceway"

# Bottom to top. A module's layer is the first entry whose name is the module or a package
# above it ("raceway.report" covers "raceway.report.text").
LAYERS: List[Tuple[str, List[str]]] = [
    ("boundary: the component and its answers", [
        "_fastcall", "_core_types", "_core",
    ]),
    ("foundations: values, locations, contexts, configuration, delivery parts", [
        "_values", "_location", "_headers", "_stats", "_priority", "_spool", "_backlog", "_sink", "_transport",
        "_annotations", "races", "config", "types", "context",
    ]),
    ("pipeline and findings: the flusher's side, the detector, reports", [
        "_records", "_flusher", "_detector", "report", "_analysis",
    ]),
    ("recording: what a client lends its helpers, and the process-wide hooks", [
        "_client_protocol", "_recorder", "_incoming", "_lifecycle", "_auto", "_recording", "trace_context",
    ]),
    ("instrumentation: helpers that take a client (ClientLike)", [
        "_joins", "_threads", "_asyncio_loop", "_handoffs", "_continue_trace", "concurrency", "sync",
        "decorators", "lock_helpers", "background", "primitives", "strands", "shared_state",
        "_shared_object", "attributes", "stress",
    ]),
    ("the client", [
        "client", "_client_races", "_client_propagation", "_client_lifecycle",
    ]),
    ("integrations and the public surface", [
        "", "__main__", "http", "middleware", "pytest_plugin", "testing", "cli", "_doctor", "demo",
    ]),
]
"""``""`` is the package itself (raceway/__init__.py)."""

ALLOWED_UPWARD: Dict[Tuple[str, str], str] = {
    # (importer, imported): owner, and the way out. Empty: every arrow runs down.
}

ALLOWED_PRIVATE_CLIENT_ACCESS: Dict[Tuple[str, str], str] = {
    # (module, attribute): owner, and the way out. Empty: no helper reads client._x.
}

ALLOWED_CONCURRENCY_PRIVATES: Dict[str, str] = {
    # module: owner, and the way out. Empty: concurrency is only its public names.
}

CLIENT_MODULES = {"client", "_client_races", "_client_propagation", "_client_lifecycle", "_recorder"}
"""The client's own modules, and the accessor's: they may read the client's private members."""

CLIENT_NAMES = {"client", "tracker", "own"}
"""Names the helpers give a client."""


# ----------------------------------------------------------------------------------------------
# Reading the package
# ----------------------------------------------------------------------------------------------
def _module_name(path: pathlib.Path, root: pathlib.Path) -> str:
    """``raceway/report/text.py`` -> ``report.text``; ``raceway/__init__.py`` -> ``""``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(root: pathlib.Path) -> Dict[str, pathlib.Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py")) if "__pycache__" not in p.parts}


def _from_module(node: ast.ImportFrom, package: List[str]) -> Optional[str]:
    """The package module a ``from X import ...`` in ``package`` reads (``""``: the package
    itself), or None when X lies outside the package."""
    if node.level:
        if node.level - 1 > len(package):
            return None  # beyond the package: not ours
        base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
        return ".".join(base + ([node.module] if node.module else []))
    if node.module and (node.module == "raceway" or node.module.startswith("raceway.")):
        return node.module[len("raceway.") :] if node.module != "raceway" else ""
    return None


def _imports(name: str, path: pathlib.Path, known: Set[str]) -> Iterator[Tuple[str, int]]:
    """The package modules ``name`` imports, with the line: every ``import``/``from`` in the
    file, wherever it stands. ``from . import x`` names module ``x`` when there is one, else
    the package (an attribute of it)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    package = [p for p in package if p]
    for node in ast.walk(tree):
        targets: List[str] = []
        if isinstance(node, ast.ImportFrom):
            prefix = _from_module(node, package)
            if prefix is None:
                continue
            for alias in node.names:
                sub = f"{prefix}.{alias.name}" if prefix else alias.name
                targets.append(sub if sub in known else prefix)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "raceway" or alias.name.startswith("raceway."):
                    targets.append(alias.name[len("raceway."):] if alias.name != "raceway" else "")
        for target in targets:
            while target not in known and "." in target:
                target = target.rsplit(".", 1)[0]
            if target not in known and target != "":
                target = ""  # an attribute of the package itself (`from raceway import __version__`)
            if target != name:
                yield target, node.lineno


def _layer_of(name: str) -> Optional[int]:
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if name == member or (member and name.startswith(member + ".")):
                return index
    return None


def upward_arrows(root: pathlib.Path) -> Tuple[List[str], List[Tuple[str, str, int]]]:
    """``(modules with no layer, arrows (importer, imported, line) that run up a layer)``."""
    modules = _modules(root)
    known = set(modules)
    unplaced = sorted(m for m in modules if _layer_of(m) is None)
    arrows = []
    for name, path in modules.items():
        mine = _layer_of(name)
        for target, line in _imports(name, path, known):
            theirs = _layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                arrows.append((name, target, line))
    return unplaced, arrows


def private_client_access(root: pathlib.Path) -> List[Tuple[str, str, int]]:
    """``(module, attribute, line)`` for each ``client._x`` (or ``self.client._x``,
    ``getattr(client, "_x")``) outside the client's own modules."""
    found = []
    for name, path in _modules(root).items():
        if name in CLIENT_MODULES:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            attr: Optional[str] = None
            owner: Optional[ast.expr] = None
            if isinstance(node, ast.Attribute):
                attr, owner = node.attr, node.value
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr"
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str)):
                attr, owner = node.args[1].value, node.args[0]
            if attr is None or not attr.startswith("_") or attr.startswith("__"):
                continue
            is_client = (isinstance(owner, ast.Name) and owner.id in CLIENT_NAMES) or (
                isinstance(owner, ast.Attribute) and owner.attr == "client")
            if is_client:
                found.append((name, attr, node.lineno))
    return found


def concurrency_private_imports(root: pathlib.Path) -> List[Tuple[str, str, int]]:
    """``(module, name, line)`` for each private name imported from `raceway.concurrency`."""
    found = []
    for name, path in _modules(root).items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] == "concurrency":
                for alias in node.names:
                    if alias.name.startswith("_"):
                        found.append((name, alias.name, node.lineno))
    return found


def private_name_imports(root: pathlib.Path) -> List[Tuple[str, str, int]]:
    """``(module, name, line)`` for each private name (``_x``, not a module) a package module
    imports from another: what several modules share is given a public name in its module."""
    modules = _modules(root)
    known = set(modules)
    found = []
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        package = [p for p in package if p]
        for node in ast.walk(tree):
            prefix = _from_module(node, package) if isinstance(node, ast.ImportFrom) else None
            if prefix is None:
                continue
            for alias in node.names:
                sub = f"{prefix}.{alias.name}" if prefix else alias.name
                if alias.name.startswith("_") and not alias.name.startswith("__") and sub not in known:
                    found.append((name, alias.name, node.lineno))
    return found


def _stale(entries: Set[object], name: str) -> None:
    assert not entries, f"no longer needed: remove from {name}: {sorted(map(str, entries))}"


# ----------------------------------------------------------------------------------------------
# The package
# ----------------------------------------------------------------------------------------------
def test_every_module_has_a_layer() -> None:
    unplaced, _ = upward_arrows(PACKAGE)
    assert unplaced == [], f"give these modules a layer in LAYERS (and docs/architecture.md): {unplaced}"


def test_imports_run_down_the_layers() -> None:
    _, arrows = upward_arrows(PACKAGE)
    names = [layer for layer, _ in LAYERS]
    unexpected = [
        f"raceway/{a.replace('.', '/') or '__init__'}.py:{line} imports {b or 'raceway'} "
        f"({names[_layer_of(a) or 0]} -> {names[_layer_of(b) or 0]})"
        for a, b, line in arrows if (a, b) not in ALLOWED_UPWARD
    ]
    assert unexpected == [], "imports running up a layer:\n" + "\n".join(unexpected)
    _stale(set(ALLOWED_UPWARD) - {(a, b) for a, b, _ in arrows}, "ALLOWED_UPWARD")


def test_helpers_do_not_touch_a_clients_private_members() -> None:
    found = private_client_access(PACKAGE)
    unexpected = [f"raceway/{m.replace('.', '/')}.py:{line}: client.{attr}" for m, attr, line in found
                  if (m, attr) not in ALLOWED_PRIVATE_CLIENT_ACCESS]
    assert unexpected == [], "use raceway._recorder.recorder_of(client) instead:\n" + "\n".join(unexpected)
    gone = set(ALLOWED_PRIVATE_CLIENT_ACCESS) - {(m, attr) for m, attr, _ in found}
    _stale(gone, "ALLOWED_PRIVATE_CLIENT_ACCESS")


def test_no_module_imports_the_private_names_concurrency_keeps() -> None:
    found = concurrency_private_imports(PACKAGE)
    unexpected = [f"raceway/{m}.py:{line}: {n}" for m, n, line in found if m not in ALLOWED_CONCURRENCY_PRIVATES]
    assert unexpected == [], "import these from their own modules:\n" + "\n".join(unexpected)
    _stale(set(ALLOWED_CONCURRENCY_PRIVATES) - {m for m, _, _ in found}, "ALLOWED_CONCURRENCY_PRIVATES")


def test_no_module_imports_another_modules_private_names() -> None:
    found = [f"raceway/{m}.py:{line}: {n}" for m, n, line in private_name_imports(PACKAGE)]
    assert found == [], "give these a public name in their module:\n" + "\n".join(found)


# ----------------------------------------------------------------------------------------------
# The checks can fail
# ----------------------------------------------------------------------------------------------
def test_a_private_name_import_is_found_and_a_private_module_is_not(tmp_path: pathlib.Path) -> None:
    root = _fake_package(tmp_path, {"__init__.py": "", "_impl.py": "_x = 1\n",
                                    "user.py": "from . import _impl\nfrom ._impl import _x\n"})
    assert [(m, n) for m, n, _ in private_name_imports(root)] == [("user", "_x")]


def _fake_package(tmp_path: pathlib.Path, files: Dict[str, str]) -> pathlib.Path:
    root = tmp_path / "raceway"
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root


def test_an_arrow_up_a_layer_is_found_even_inside_a_function(tmp_path: pathlib.Path) -> None:
    root = _fake_package(tmp_path, {
        "__init__.py": "",
        "_core.py": "def f():\n    from .client import RacewayClient\n",
        "client.py": "from ._core import f\nfrom .middleware import wsgi\n",
        "middleware/__init__.py": "",
        "middleware/wsgi.py": "from .. import client\nfrom raceway.context import x\n",
        "context.py": "if False:\n    import raceway.concurrency\n",
        "concurrency.py": "",
    })
    unplaced, arrows = upward_arrows(root)
    assert unplaced == []
    assert sorted((a, b) for a, b, _ in arrows) == [
        ("_core", "client"), ("client", "middleware.wsgi"), ("context", "concurrency"),
    ]


def test_a_module_without_a_layer_is_reported(tmp_path: pathlib.Path) -> None:
    root = _fake_package(tmp_path, {"__init__.py": "", "_new_thing.py": ""})
    assert upward_arrows(root)[0] == ["_new_thing"]


def test_private_client_access_is_found(tmp_path: pathlib.Path) -> None:
    root = _fake_package(tmp_path, {
        "__init__.py": "",
        "sync.py": "def f(client, self):\n    client._record(1)\n    self.client._codec\n"
                   "    getattr(client, '_warn_once')\n    client.track_custom('x')\n    client.__class__\n",
        "client.py": "def g(client):\n    client._queue\n",
    })
    assert sorted((m, a) for m, a, _ in private_client_access(root)) == [
        ("sync", "_codec"), ("sync", "_record"), ("sync", "_warn_once"),
    ]


@pytest.mark.parametrize("line", ["from .concurrency import _fork", "from raceway.concurrency import _Joins"])
def test_a_private_import_from_concurrency_is_found(tmp_path: pathlib.Path, line: str) -> None:
    root = _fake_package(tmp_path, {"__init__.py": "", "strands.py": line + "\n", "concurrency.py": ""})
    assert [m for m, _, _ in concurrency_private_imports(root)] == ["strands"]
