"""The envelope's schema: every clear claim a code, a number or a reference, nothing else."""

from __future__ import annotations

import typing
from typing import Any

import pydantic
import pytest

from schemas import Subject, SubjectCategory
from schemas.envelope import Envelope

VALID: dict[str, Any] = {
    "iss": "police", "jti": "018f0000-0000-7000-8000-000000000000", "iat": 1_800_000_000,
    "exp": 1_800_003_600, "masp_type": "case_referral", "masp_schema": "1",
    "case_id": "HIOW-MASP-2026-0147", "purpose": "risk_management",
    "subjects": [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}],
    "consent_ref": "CONSENT-HIOW-0147-V1",
}


def test_subject_categories() -> None:
    assert [c.value for c in SubjectCategory] == [
        "suspect", "convicted", "victim", "witness", "child", "other",
    ]
    # the model's literal and the enum are one list
    literal = typing.get_args(Subject.model_fields["category"].annotation)
    assert literal == tuple(c.value for c in SubjectCategory)


def test_subject_is_a_reference_and_a_category() -> None:
    subject = Subject.model_validate({"ref": "psn:3f9a1c2b7d", "category": "victim"})
    assert subject.category == SubjectCategory.VICTIM
    assert subject.model_dump(mode="json") == {"ref": "psn:3f9a1c2b7d", "category": "victim"}


@pytest.mark.parametrize(
    "raw",
    [
        {"ref": "psn:3f9a1c2b7d", "category": "perpetrator"},
        {"ref": "Claire Hutton", "category": "victim"},
        {"ref": "Jane Smith, 14 Larkspur Road", "category": "victim"},
        {"ref": " VIC-1", "category": "victim"},
        {"ref": "x" * 65, "category": "victim"},
        {"ref": "psn:3f9a1c2b7d", "category": "victim", "name": "Claire"},
        {"ref": 12345678, "category": "victim"},
        {"category": "victim"},
    ],
)
def test_bad_subjects_are_refused(raw: dict[str, Any]) -> None:
    with pytest.raises(pydantic.ValidationError):
        Subject.model_validate(raw)


def test_a_valid_envelope() -> None:
    env = Envelope.model_validate(VALID)
    assert env.case_id == "HIOW-MASP-2026-0147" and len(env.subjects) == 2


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("case_id", "JANE-SMITH"),  # no digit: a name cannot pass for a case reference
        ("case_id", "Jane Smith 14 Larkspur Road"),
        ("case_id", "c-1"),
        ("case_id", "C--1"),
        ("case_id", "C-" + "1" * 40),
        ("purpose", "Risk Management"),
        ("purpose", "risk management; see notes"),
        ("consent_ref", "given by Jane"),
        ("consent_ref", "CONSENT"),
        ("iss", "janes-agency"),
        ("jti", "not-a-uuid"),
        ("jti", "018f0000-0000-4000-8000-000000000000"),  # a UUIDv4, not v7
        ("iat", "1800000000"),
        ("iat", True),
        ("masp_type", "note_to_nhs"),
        ("masp_schema", "2"),
        ("subjects", []),
        ("subjects", [{"ref": "VIC-1", "category": "victim"}] * 17),
        ("override", "break glass"),
    ],
)
def test_each_claim_is_refused_out_of_shape(claim: str, value: object) -> None:
    with pytest.raises(pydantic.ValidationError):
        Envelope.model_validate({**VALID, claim: value})


def test_an_unknown_claim_is_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        Envelope.model_validate({**VALID, "note": "Jane Smith lives at 14 Larkspur Road"})
