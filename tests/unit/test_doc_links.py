"""The agency developer's documents hold together: every relative link resolves."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def test_relative_links_in_the_integration_guide_and_the_spec_resolve() -> None:
    pages = [REPO / "docs" / "integrating.md", REPO / "README.md",
             *sorted((REPO / "docs" / "spec").glob("*.md")),
             REPO / "examples" / "java" / "README.md", REPO / "examples" / "node" / "README.md"]
    broken = []
    for page in pages:
        for target in LINK.findall(page.read_text("utf-8")):
            if re.match(r"^[a-z]+:", target):
                continue  # an absolute URL
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(REPO)} -> {target}")
    assert broken == []
