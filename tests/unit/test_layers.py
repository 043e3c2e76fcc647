"""The shape of the code (issue #10): centralino -> cti -> queue_manager -> tickets -> ivr,
the domain imports no I/O library, and no two modules import each other, even for types."""

from __future__ import annotations

import ast
import sys
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each may import only those before it.
LAYERS = ["ivr", "tickets", "mail", "queue_manager", "cti", "centralino"]
DOMAIN = LAYERS[:5]
# What the domain may import: the standard library (no sockets, no files served) and pure
# data/validation libraries.
# (email_validator is used with check_deliverability off: its DNS lookup is never imported)
PURE = {"pydantic", "yaml", "ruamel", "phonenumbers", "holidays", "dateutil", "annotated_types",
        "email_validator", "stdnum", "nh3"}
IO = {"asyncio", "socket", "aiohttp", "sqlalchemy", "asyncpg", "aiosqlite", "alembic",
      "subprocess", "urllib", "http", "ssl", "prometheus_client", "soundfile", "numpy"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def modules() -> dict[str, Path]:
    return {module_name(p): p for layer in LAYERS for p in (ROOT / layer).rglob("*.py")
            if "migrations" not in p.parts}


@cache
def imports(module: str) -> frozenset[str]:
    """Every module `module` imports, at any depth of its code (TYPE_CHECKING included)."""
    found = set()
    for node in ast.walk(ast.parse(modules()[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return frozenset(found)


def test_each_layer_imports_only_the_layers_below_it():
    wrong = []
    for module in modules():
        layer = LAYERS.index(module.split(".")[0])
        for name in imports(module):
            top = name.split(".")[0]
            if top in LAYERS and LAYERS.index(top) > layer:
                wrong.append(f"{module} imports {name}")
    assert wrong == []


@pytest.mark.parametrize("package", DOMAIN)
def test_the_domain_imports_no_io_library(package):
    wrong = sorted(f"{m} imports {name}" for m in modules() if m.split(".")[0] == package
                   for name in imports(m) if name.split(".")[0] in IO)
    assert wrong == []
    third_party = {name.split(".")[0] for m in modules() if m.split(".")[0] == package
                   for name in imports(m)} - set(sys.stdlib_module_names) - set(LAYERS)
    assert third_party <= PURE, third_party - PURE


def cycles(graph: dict[str, set[str]]) -> list[str]:
    """The modules from which a path of imports leads back to themselves."""
    found = []
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            node = todo.pop()
            if node == start:
                found.append(start)
                break
            if node not in seen:
                seen.add(node)
                todo.extend(graph.get(node, ()))
    return found


def test_no_two_modules_import_each_other_even_for_types():
    graph = {m: {n for n in imports(m) if n in modules() and n != m} for m in modules()}
    assert cycles(graph) == []
    # The root builds the web app; the web layer never imports it back.
    assert "centralino.web.app" in graph["centralino.service"]


def test_a_cycle_through_several_modules_is_found():
    graph = {"web.app": {"web.common"}, "web.common": {"service"}, "service": {"web.app"},
             "desk": set(), "calls": {"desk"}}
    assert sorted(cycles(graph)) == ["service", "web.app", "web.common"]
