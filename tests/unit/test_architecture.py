"""The package plan of docs/architecture.md holds: imports point down the layers, aiokafka stays in its room.

Read from the source with `ast`, so a new import that points up (or a stray aiokafka import) fails here
rather than in a review."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "mirror"

# Lowest first: a module may import its own room and the rooms listed before it, never after.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("mirror.errors", "mirror.metrics", "mirror.retry", "mirror.types"),
    ("mirror.mm2",),
    ("mirror.config",),
    ("mirror.kafka",),
    ("mirror.replication",),
    ("mirror.jobs",),
    ("mirror.client",),
    ("mirror.migration",),
    ("mirror.service",),
    ("mirror.local",),
    ("mirror.cli", "mirror.__main__"),
)


def _room(module: str) -> int | None:
    for level, rooms in enumerate(LAYERS):
        if any(module == room or module.startswith(room + ".") for room in rooms):
            return level
    return None


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found.append((name, path))
    return found


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "mirror":
                names.extend(f"mirror.{alias.name}" for alias in node.names)
            else:
                names.append(node.module)
    return names


MODULES = _modules()


def test_every_module_has_a_room() -> None:
    homeless = [name for name, _ in MODULES if name != "mirror" and _room(name) is None]
    assert homeless == [], f"add these to LAYERS and docs/architecture.md: {homeless}"


@pytest.mark.parametrize(("module", "path"), MODULES, ids=[name for name, _ in MODULES])
def test_imports_point_down(module: str, path: Path) -> None:
    own = _room(module)
    if own is None:
        return  # the package's own __init__ (version only)
    upward = [
        imported
        for imported in _imports(path)
        if imported.startswith("mirror.") and (level := _room(imported)) is not None and level > own
    ]
    assert upward == [], f"{module} imports from a higher layer: {upward}"


def test_only_the_kafka_room_imports_aiokafka() -> None:
    importers = sorted(
        name
        for name, path in MODULES
        if any(i == "aiokafka" or i.startswith("aiokafka.") for i in _imports(path))
        and not name.startswith("mirror.kafka")
    )
    assert importers == []


def test_every_module_is_described_in_docs_architecture() -> None:
    """docs/architecture.md lists every module of the package under its room."""
    text = (PACKAGE.parent / "docs" / "architecture.md").read_text()
    sections = dict(re.findall(r"### `(mirror[\w/]*)/`\n\n((?:- .*\n)+)", text))
    missing = []
    for path in sorted(PACKAGE.rglob("*.py")):
        room = str(path.parent.relative_to(PACKAGE.parent))
        if path.name != "__main__.py" and f"- `{path.name}`:" not in sections.get(room, ""):
            missing.append(str(path.relative_to(PACKAGE.parent)))
    assert missing == [], f"describe these in docs/architecture.md: {missing}"
