"""docs/claims.md names the tests that prove the README's claims: each of them must exist."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _tests_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test_")
    }


def test_every_test_named_in_the_claims_table_exists() -> None:
    named = re.findall(r"`(tests/[\w/]+\.py)::(\w+)`", (ROOT / "docs" / "claims.md").read_text())
    assert len(named) >= 30
    missing = [f"{file}::{name}" for file, name in named if name not in _tests_in(ROOT / file)]
    assert missing == []
