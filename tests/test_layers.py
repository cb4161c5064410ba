"""The library's layering, read from its source: no import cycle between its packages and modules,
and the process environment read or written in settings.py only."""

from __future__ import annotations

import ast
from pathlib import Path

import estampille

SOURCE = Path(estampille.__file__).parent


def _modules():
    for path in sorted(SOURCE.rglob("*.py")):
        parts = path.relative_to(SOURCE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield path, name, (name if parts[-1] == "__init__" else name.rsplit(".", 1)[0])


def _unit(module: str) -> str:
    """The layer a module belongs to: a top-level module (`estampille.brand`) or a package (`estampille.text`)."""
    return ".".join(module.split(".")[:2])


def _imports() -> dict[str, set[str]]:
    """layer -> the other layers it imports, at module level or inside functions."""
    edges: dict[str, set[str]] = {}
    for path, name, package in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                if target.startswith("estampille.") and _unit(target) != _unit(name):
                    if (SOURCE.parent / Path(*_unit(target).split("."))).exists() or (
                        SOURCE.parent / (Path(*_unit(target).split(".")).as_posix() + ".py")
                    ).exists():
                        edges.setdefault(_unit(name), set()).add(_unit(target))
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_cycle_between_the_library_s_packages_and_modules():
    edges = _imports()
    assert "estampille.text" in edges["estampille.stages"]  # the walk sees real imports
    assert _cycle(edges) is None, " -> ".join(_cycle(edges) or [])


def test_a_cycle_is_found_when_there_is_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_environment_is_read_and_written_in_settings_only():
    touching = []
    for path, name, _ in _modules():
        if name == "estampille.settings":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "os"
                and node.attr in ("environ", "getenv", "putenv", "unsetenv")
            ):
                touching.append(f"{name}:{node.lineno}")
    assert touching == []
