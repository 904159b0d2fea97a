"""Example bodies shared by the schema tests (made-up people, fake postcodes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

MESSAGES = Path(__file__).parents[2] / "assets" / "messages"


def example_files() -> list[Path]:
    """``<masp_type>.json`` and variants ``<masp_type>.<variant>.json``."""
    return sorted(MESSAGES.glob("*.json"))


def masp_type_of(path: Path) -> str:
    return path.name.split(".", 1)[0]


def load_example(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((MESSAGES / f"{name}.json").read_text("utf-8"))
    return data


@pytest.fixture
def case_referral() -> dict[str, Any]:
    return load_example("case_referral")
