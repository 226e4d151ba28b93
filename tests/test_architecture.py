"""The rules of DESIGN.md that a tool can keep: imports inside engine point one way, and nothing
outside engine reaches into its private parts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = ("desktop", "bench", "tests", "packaging", "resources")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def engine_import_graph() -> dict[str, set[str]]:
    """module → the engine modules it imports anywhere in its text: at the top, inside a
    function (lazily) or under TYPE_CHECKING alike, since each is an arrow of the design."""
    graph: dict[str, set[str]] = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        name = _module_name(path)
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                # `from package import module` is an arrow to that module only: Python runs the
                # package's face first by itself, which is no dependency of the importer's.
                subs = [f"{base}.{a.name}" for a in node.names]
                targets = subs if all(_is_module(s) for s in subs) else [base]
            else:
                continue
            deps.update(t for t in targets if t.startswith("engine.") and _is_module(t))
        deps.discard(name)
        graph[name] = deps
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, …, a], or None; the package face `engine` is left out (it
    re-exports the public API, so every module is reachable through it)."""
    graph = {m: {d for d in deps if d != "engine"} for m, deps in graph.items() if m != "engine"}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 1
        path.append(module)
        for dep in sorted(graph.get(module, ())):
            if state.get(dep) == 1:
                return path[path.index(dep):] + [dep]
            if dep not in state and (found := visit(dep)):
                return found
        path.pop()
        state[module] = 2
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_the_graph_sees_every_kind_of_import():
    graph = engine_import_graph()
    assert "engine.catalog" in graph["engine.engine"]          # at the top
    assert "engine.watch" in graph["engine.service"]
    assert "engine.engine" in graph["engine.service"]           # under TYPE_CHECKING
    assert "engine.evaluate" in graph["engine.cli"]             # inside a function


def test_find_cycle_finds_one():
    assert find_cycle({"engine.a": {"engine.b"}, "engine.b": {"engine.c"}, "engine.c": {"engine.a"}}) == \
        ["engine.a", "engine.b", "engine.c", "engine.a"]
    assert find_cycle({"engine.a": {"engine.b"}, "engine.b": set()}) is None


def test_no_import_cycle_in_engine():
    cycle = find_cycle(engine_import_graph())
    assert cycle is None, "import cycle in engine: " + " → ".join(cycle or [])


def test_the_facade_never_imports_its_clients():
    clients = {m for m in engine_import_graph() if m.startswith(("engine.finetune", "engine.service",
                                                                  "engine.evaluate", "engine.cli",
                                                                  "engine.selftest"))}
    assert not engine_import_graph()["engine.engine"] & clients


# Built from pieces so that this file does not match itself.
_REACHES = {
    "a private of the engine": re.compile(r"\bengine\." + "_"),
    "the catalog's own connection": re.compile(r"\.catalog\." + r"conn\b"),
    "a probe of the engine's API": re.compile("hasattr" + r"\(\s*engine\b"),
}


def test_nothing_outside_engine_reaches_into_it():
    found = []
    for folder in OUTSIDE:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                for what, pattern in _REACHES.items():
                    if pattern.search(line):
                        found.append(f"{path.relative_to(ROOT)}:{n}: {what}: {line.strip()}")
    assert not found, "\n".join(found)
