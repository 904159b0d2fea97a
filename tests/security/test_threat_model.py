"""docs/security.md names a test for each threat: every name it gives must exist, so the
threat model cannot silently point at a test that was renamed or removed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from tests.security.test_jose_attacks import ATTACKS

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "security.md"


def _functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}


def test_every_test_the_threat_model_names_exists() -> None:
    text = DOC.read_text()
    missing: list[str] = []
    last_file: Path | None = None
    # `tests/x.py::test_name` and the `::test_name` shorthand for the file named just before
    for match in re.finditer(r"`(tests/[\w/]+\.py)?::(test_\w+)", text):
        if match.group(1):
            last_file = REPO / match.group(1)
        assert last_file is not None, f"{match.group(0)} names no file"
        if not last_file.exists() or match.group(2) not in _functions(last_file):
            missing.append(f"{last_file.relative_to(REPO)}::{match.group(2)}")
    attack_ids = {a.name for a in ATTACKS}
    named = set(re.findall(r"jose_attacks\[([^\]]+)\]", text))
    named = {n for n in named if "…" not in n}
    missing += [f"jose_attacks[{n}]" for n in sorted(named - attack_ids)]
    for bracket in re.findall(r"`\[([^\]`]+)\]`", text):  # the shorthand continuing a list
        if not bracket.startswith(("GET ", "POST ")) and bracket not in attack_ids:
            missing.append(f"[{bracket}]")
    assert missing == [], f"docs/security.md names tests that do not exist: {missing}"
    assert len(named) >= 20, "the JOSE attacks are mapped by name"
