"""Every agency renders every message type it could receive, from any subset of its fields.

The DSA decides which fields arrive, so a renderer must cope with any of them missing; what
it writes must be what the agency's system imports (valid FHIR for the NHS team).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle

from adapters.formats import native_format
from broker.crypto.keys import AGENCIES

ASSETS = Path(__file__).resolve().parents[2] / "assets" / "messages"
EXAMPLES = sorted(ASSETS.glob("*.json"))
DELIVERY_ID = "01a1fe8e-53d2-7c3f-bda3-4f8335c371a0"


def received(masp_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"delivery": {"jti": DELIVERY_ID, "message_id": "01a1fe8e-5318-786d-bc6a-77c32bfbc1cc",
                         "sender": "police", "masp_type": masp_type, "iat": 1_795_000_000,
                         "dsa": {"id": "hiow-masp", "version": 1, "clause": "x"}, "withheld": 2},
            "message": {"iss": "police", "case_id": "HIOW-MASP-2026-0147",
                        "subjects": [{"ref": "19-4471023K", "category": "suspect"}]},
            "fields": fields}


def _check(agency: str, masp_type: str, fields: dict[str, Any]) -> None:
    rendered = native_format(agency).write(received(masp_type, fields))
    assert rendered and all(DELIVERY_ID in r.name for r in rendered)
    for r in rendered:
        if r.name.endswith(".fhir.json"):
            Bundle.model_validate_json(r.data)
        elif r.name.endswith(".json"):
            assert json.loads(r.data)["partnership"]["delivery_id"] == DELIVERY_ID
        elif r.name.endswith(".csv"):
            assert next(csv.DictReader(io.StringIO(r.data.decode())))["delivery_id"] == DELIVERY_ID
        else:
            assert r.name.endswith(".md") and r.data.decode().startswith("# ")


@pytest.mark.parametrize("agency", AGENCIES)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.stem)
def test_renders_the_whole_message_and_each_field_alone(agency: str, example: Path) -> None:
    masp_type = example.stem.split(".")[0]
    fields: dict[str, Any] = json.loads(example.read_text())
    _check(agency, masp_type, fields)
    _check(agency, masp_type, {})
    for name, value in fields.items():
        _check(agency, masp_type, {name: value})


def test_advocacy_headlines_say_what_changed_for_her_safety() -> None:
    from adapters.advocacy.notice import headline

    order = {"kind": "spo", "status": "full", "status_date": "2026-12-01"}
    assert headline("cj_status_update", {"orders": [order]})[0] == "Protective order granted"
    assert headline("cj_status_update", {"orders": [{**order, "status": "breached"}]})[0].startswith("URGENT")
    assert headline("cj_status_update", {"cj_status": "released"})[0].startswith("Release")
    bail = {"kind": "court_bail", "granted_on": "2026-12-01", "conditions": ["x"]}
    assert headline("cj_status_update", {"bail_conditions": bail})[0] == "Bail conditions set or changed"
