"""The repository is its own contract: nothing in it cites a file outside it."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The documents the contract once lived in, outside the repository, and paths that leave it.
OUTSIDE = re.compile(r"DESIGN\.md|DESIGN §|DOMAIN\.md|DOMAIN §|\.\./shared/|/work/shared")


def test_no_tracked_file_points_outside_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True,  # noqa: S607
                             check=True).stdout.split()
    offenders = []
    for name in tracked:
        path = REPO / name
        if path.suffix in (".png", ".jwk", ".lock", ".jwe") or not path.is_file():
            continue
        try:
            text = path.read_text("utf-8")
        except UnicodeDecodeError:
            continue
        offenders += [f"{name}:{n}" for n, line in enumerate(text.splitlines(), 1)
                      if OUTSIDE.search(line) and name != "tests/unit/test_self_contained.py"]
    assert offenders == [], "cite docs/spec/ or docs/domain.md instead: " + ", ".join(offenders)
