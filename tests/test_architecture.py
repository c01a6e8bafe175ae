"""The layers of README's map, checked on the source: imports go down only, nothing imports in a
cycle, and the engine never reaches for a face (Textual, the console, the CLI).

Every import counts, at module level or inside a function (a lazy import is still a dependency),
`TYPE_CHECKING` blocks included. A failure names the offending import and where it is.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Top to bottom. A module may import its own layer (without cycles) and any layer below.
LAYERS: list[tuple[str, ...]] = [
    ("tui",),
    ("lab.cli", "lab.__main__"),
    ("lab.entry", "lab.jobrun"),
    ("lab.queue",),
    ("lab.launch",),
    ("lab.views",),
    ("lab.explain",),
    ("lab.core",),
    ("lab.runs",),
    ("lab.data",),
    ("lab.levels",),
    ("lab.configfile",),
    ("lab.config",),
    ("lab.errors", "lab", "lab.extras"),  # lab/__init__.py holds only the version
]
# Third-party packages a layer must never import, whatever the layers allow.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "lab": ("textual", "textual_image", "tui"),
    "lab.core": ("rich", "typer", "plotext", "matplotlib"),
    "lab.runs": ("torchvision", "sklearn", "rich", "typer"),
    "lab.queue": ("torchvision", "sklearn"),  # torch only lazily, to count GPUs
}


def _modules() -> dict[str, Path]:
    mods = {}
    for top in ("lab", "tui"):
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).with_suffix("")
            name = ".".join(rel.parts).removesuffix(".__init__")
            mods[name] = path
    return mods


MODULES = _modules()


def _imports(name: str, path: Path) -> list[tuple[str, int]]:
    """(imported name, line) for every import in the file, relative ones resolved."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            found.append((base, node.lineno))
            found += [(f"{base}.{a.name}", node.lineno) for a in node.names]
    return found


def _internal(target: str) -> str | None:
    """The module of ours that `target` names (a `from pkg import name` may name a symbol)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _layer(module: str) -> int:
    best, index = -1, None
    for i, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, index = len(prefix), i
    assert index is not None, f"{module} is in no layer: add it to LAYERS"
    return index


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name, path in MODULES.items():
        for target, _line in _imports(name, path):
            t = _internal(target)
            if t and t != name:
                graph[name].add(t)
    return graph


def test_every_module_is_in_a_layer() -> None:
    for name in MODULES:
        _layer(name)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_go_down(name: str) -> None:
    mine = _layer(name)
    for target, line in _imports(name, MODULES[name]):
        t = _internal(target)
        if t is not None:
            assert _layer(t) >= mine, \
                f"{MODULES[name].relative_to(ROOT)}:{line} imports {t}, a layer above it"
        for owner, banned in FORBIDDEN.items():
            if name == owner or name.startswith(owner + "."):
                top = target.split(".")[0]
                assert top not in banned, \
                    f"{MODULES[name].relative_to(ROOT)}:{line} imports {top} ({owner} must not)"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_finder_finds_cycles() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_an_upward_import_is_caught(tmp_path: Path) -> None:
    """The check itself can fail: a core module importing the queue is a layer violation."""
    fake = tmp_path / "m.py"
    fake.write_text("def f():\n    from lab.queue import JobQueue\n")
    targets = [_internal(t) for t, _ in _imports("lab.core.fake", fake)]
    assert "lab.queue" in targets and _layer("lab.queue") < _layer("lab.core.fake")


def test_every_from_import_names_something_that_exists() -> None:
    """A lazy `from lab.x import name` inside a function fails only when that code runs; a
    module move must not leave one behind (a missing name fails here, whoever calls it)."""
    import importlib

    missing = []
    for _name, path in sorted(MODULES.items()):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.ImportFrom) and not node.level and node.module
                    and node.module.split(".")[0] in ("lab", "tui")):
                continue
            module = importlib.import_module(node.module)
            for alias in node.names:
                if hasattr(module, alias.name):
                    continue
                try:
                    importlib.import_module(f"{node.module}.{alias.name}")
                except ImportError:
                    missing.append(f"{path.relative_to(ROOT)}:{node.lineno} "
                                   f"{node.module}.{alias.name}")
    assert missing == []
