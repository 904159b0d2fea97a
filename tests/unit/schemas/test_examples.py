"""The example bodies under tests/assets/messages/ (reused by the demo and integration
tests) are valid, canonical, and cover the catalogue."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydantic
import pytest

from schemas import MESSAGE_TYPES, SCHEMA_VERSION, CaseReferral, SchemaInvalid, validate_body

from .conftest import example_files, load_example, masp_type_of


def test_every_message_type_has_an_example() -> None:
    assert {masp_type_of(p) for p in example_files()} == set(MESSAGE_TYPES)


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_validates_against_its_model(path: Path) -> None:
    claims = json.loads(path.read_text("utf-8"))
    body = validate_body(masp_type_of(path), SCHEMA_VERSION, claims)
    assert isinstance(body, MESSAGE_TYPES[masp_type_of(path)])


@pytest.mark.parametrize("path", example_files(), ids=lambda p: p.name)
def test_example_is_canonical(path: Path) -> None:
    """Claims -> model -> claims is the identity: what is signed is what is validated."""
    claims = json.loads(path.read_text("utf-8"))
    assert validate_body(masp_type_of(path), SCHEMA_VERSION, claims).to_claims() == claims


def test_case_referral_example_is_the_demo_case(case_referral: dict[str, Any]) -> None:
    body = validate_body("case_referral", "1", case_referral)
    assert isinstance(body, CaseReferral)
    assert body.perpetrator_name.family == "Marsh"
    assert body.victim_name is not None
    assert body.victim_name.family == "Hutton"
    assert body.sdash_yes_count == 9
    assert body.sash_concern_level == "high"
    assert body.referrer.case_holder is not None


def test_spo_breach_example_carries_the_breach() -> None:
    body = validate_body("cj_status_update", "1", load_example("cj_status_update.spo_breach"))
    orders = body.to_claims()["orders"]
    assert orders[0]["kind"] == "spo"
    assert orders[0]["status"] == "breached"


def test_intervention_status_example_is_three_of_four() -> None:
    claims = load_example("intervention_status_update")
    assert (claims["sessions_offered"], claims["sessions_attended"]) == (4, 3)


def test_bodies_are_frozen(case_referral: dict[str, Any]) -> None:
    body = validate_body("case_referral", "1", case_referral)
    with pytest.raises(pydantic.ValidationError):
        body.cj_status = "nfa"  # type: ignore[attr-defined]


def test_values_are_checked_as_written_never_cleaned_up(case_referral: dict[str, Any]) -> None:
    """A value is forwarded exactly as the sender signed it, so it is checked exactly so: one
    accepted only after normalising would reach a recipient as a value the published schema
    refuses. Writing the canonical form is the sender's job (the adapters do it)."""
    case_referral["victim_address"]["postcode"] = "  po99   4lt "
    case_referral["perpetrator_police_id"] = "19/482913k"
    with pytest.raises(SchemaInvalid) as caught:
        validate_body("case_referral", "1", case_referral)
    assert set(caught.value.fields) == {"victim_address.postcode", "perpetrator_police_id"}
    case_referral["victim_address"]["postcode"] = "PO99 4LT"
    case_referral["perpetrator_police_id"] = "19/482913K"
    case_referral["victim_name"]["given"] = "  Claire "  # free text: as written, as JSON Schema has it
    claims = validate_body("case_referral", "1", case_referral).to_claims()
    assert claims["victim_name"]["given"] == "  Claire "


def test_absent_optional_fields_are_not_claims(case_referral: dict[str, Any]) -> None:
    minimal = {k: case_referral[k] for k in ("perpetrator_name", "offence_codes", "cj_status")}
    minimal["referrer"] = {k: v for k, v in case_referral["referrer"].items() if k != "case_holder"}
    body = validate_body("case_referral", "1", minimal)
    assert body.to_claims() == minimal
    assert body.present_fields() == set(minimal)
