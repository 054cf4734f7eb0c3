"""The package map of ``docs/design.md``, checked: which package may import which.

Each folder of ``src/moonfire`` has one job, and imports go one way only (``cli`` on top,
``moonfire_core`` at the bottom), so that a newcomer can find a concern by its folder and a
change to playback cannot reach into the durable-save protocol.  This test reads every module's
imports (top-level and inside functions) with ``ast`` and fails on an edge the map forbids.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"

#: What each part of ``moonfire`` may import from ``moonfire`` (``moonfire_core`` is open to
#: all).  A module at the top level of ``moonfire`` (``errors``, ``time``, ``sizes``) is a
#: part of its own.
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "time": {"errors"},
    "sizes": {"errors"},
    "db": {"errors", "time"},
    "codec": {"errors"},
    "storage": {"errors", "time", "sizes", "db"},
    "playback": {"errors", "time", "sizes", "db", "codec", "storage"},
    "ingest": {"errors", "time", "sizes", "db", "codec", "storage"},
    "web": {"errors", "time", "sizes", "db", "codec", "storage", "playback", "ingest"},
    "cli": {
        "errors", "time", "sizes", "db", "codec", "storage", "playback", "ingest", "web", "cli"
    },
    "__main__": {"cli"},
    "__init__": set(),
}


def _part(module: str) -> str:
    """``moonfire.storage.syncer`` -> ``storage``; ``moonfire.time`` -> ``time``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _module_name(path: Path) -> str:
    relative = path.relative_to(SRC).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            if target == "moonfire":  # ``from moonfire import time``
                found.update(f"moonfire.{alias.name}" for alias in node.names)
    return found


MODULES = sorted((SRC / "moonfire").rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(SRC)))
def test_imports_follow_the_package_map(path: Path) -> None:
    module = _module_name(path)
    part = _part(module)
    assert part in ALLOWED, f"{module}: the package map in docs/design.md has no {part!r}"
    wrong = sorted(
        target
        for target in _imports(path, module)
        if target.startswith("moonfire.")
        and _part(target) != part
        and _part(target) not in ALLOWED[part]
    )
    assert not wrong, f"{module} ({part}) may not import {wrong}"


def test_the_core_imports_nothing_from_moonfire() -> None:
    for path in sorted((SRC / "moonfire_core").glob("*.py")):
        module = _module_name(path)
        wrong = sorted(
            t for t in _imports(path, module) if t == "moonfire" or t.startswith("moonfire.")
        )
        assert not wrong, f"{module} imports {wrong}"


def test_every_part_of_the_map_exists() -> None:
    """A part renamed or removed must leave the map (and docs/design.md) too."""
    present = {_part(_module_name(p)) for p in MODULES}
    assert set(ALLOWED) == present


def _error_classes() -> list[tuple[str, type]]:
    import importlib
    import inspect

    found = []
    for path in MODULES:
        if path.name == "__main__.py":  # importing it runs the command
            continue
        module = importlib.import_module(_module_name(path))
        for name, value in vars(module).items():
            if (
                inspect.isclass(value)
                and issubclass(value, BaseException)
                and value.__module__ == module.__name__
            ):
                found.append((f"{module.__name__}.{name}", value))
    return found


def test_every_error_moonfire_defines_derives_from_moonfire_error() -> None:
    """The CLI prints a ``MoonfireError`` as bad input and anything else as a bug."""
    from moonfire.errors import MoonfireError

    classes = _error_classes()
    assert len(classes) > 20
    wrong = [name for name, cls in classes if not issubclass(cls, MoonfireError)]
    assert not wrong, f"not under MoonfireError: {wrong}"
