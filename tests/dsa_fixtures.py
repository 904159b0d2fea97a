"""DSA directories for tests of the lint gate: the real agreement plus a clause that overlaps it.

The addendum is the attack the gate exists for: an agreement in force beside the real one
whose clause ``aa-police-advocacy`` copies ``cr-police-advocacy`` but drops its consent
gate. Its agreement id sorts first, so an engine that ranked overlaps by id would send a
case referral to advocacy without the victim's consent. It is built from the real clause,
so it keeps overlapping whatever else the real clause says.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "deploy" / "dsa" / "hiow-masp.yaml"
ADDED_CLAUSE = "aa-police-advocacy"


def addendum() -> dict[str, Any]:
    real = yaml.safe_load(SAMPLE.read_text())
    gated = next(c for c in real["clauses"] if c["id"] == "cr-police-advocacy")
    added = {k: v for k, v in gated.items() if k != "requires_consent"} | {"id": ADDED_CLAUSE}
    return {
        "id": "aa-addendum",
        "version": 1,
        "title": "Addendum",
        "status": "active",
        "valid_from": real["valid_from"],
        "valid_until": real["valid_until"],
        "review_date": real["review_date"],
        "parties": ["police", "advocacy"],
        "purposes": added["purposes"],
        "clauses": [added],
    }


def overlapping_dsa_dir(target: Path) -> Path:
    """``target`` holding a copy of the real DSA and the addendum; returns ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLE, target / SAMPLE.name)
    (target / "aa-addendum.yaml").write_text(yaml.safe_dump(addendum(), sort_keys=False))
    return target
