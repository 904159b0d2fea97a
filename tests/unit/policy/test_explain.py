"""``explain`` answers for every clause of the sample DSA, and says why not elsewhere."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from broker.policy import DsaBundle, Outcome, explain, load_bundle
from schemas._base import NEVER_TO_NHS, SPECIAL_CATEGORY
from schemas._base import DataClass as D
from tests.unit.policy.builders import AT, EXPIRED, SAMPLE_DIR

SAMPLE_BUNDLE = load_bundle(SAMPLE_DIR)
FLOWS = [
    (clause.id, clause.from_, recipient, masp_type, purpose)
    for _, clause in SAMPLE_BUNDLE.clauses()
    for recipient in clause.to
    for masp_type in clause.message_types
    for purpose in clause.purposes
]


@pytest.fixture(scope="module")
def sample() -> DsaBundle:
    return SAMPLE_BUNDLE


def test_every_clause_is_explained() -> None:
    assert {f[0] for f in FLOWS} == {c.id for _, c in SAMPLE_BUNDLE.clauses()}


@pytest.mark.parametrize(
    ("clause_id", "sender", "recipient", "masp_type", "purpose"), FLOWS, ids=["/".join(f) for f in FLOWS]
)
def test_explain_each_flow(
    sample: DsaBundle, clause_id: str, sender: str, recipient: str, masp_type: str, purpose: str
) -> None:
    e = explain(sample, sender, recipient, masp_type, purpose, AT)
    clause = next(c for _, c in sample.clauses() if c.id == clause_id)
    assert e.clause is not None and e.clause.clause_id == clause_id
    assert e.outcome in (Outcome.PERMIT, Outcome.PERMIT_WITH_REDACTION), e.reason
    expected = set(clause.data_classes)
    if recipient == "nhs":
        expected -= NEVER_TO_NHS
    if sender == "nhs":
        expected.discard(D.CLINICAL_DETAIL)
    if not clause.special_category_condition:
        expected -= SPECIAL_CATEGORY
    assert set(e.allowed) == expected
    assert set(e.allowed) | set(e.withheld) == set(D)
    assert e.lawful_basis == clause.lawful_basis
    assert e.retention_days == clause.retention_days
    assert purpose in e.purposes
    if clause.requires_consent:
        assert any(c.startswith("P6.consent") for c in e.conditions)
    if masp_type == "intervention_referral":
        assert any(c.startswith("P8.eligibility") for c in e.conditions)
    if recipient == "nhs":
        assert e.withheld[D.VICTIM_LOCATION] == "P4.hard_rule"
    json.dumps(e.as_dict())


def test_nhs_alert_explains_the_override_route(sample: DsaBundle) -> None:
    e = explain(sample, "nhs", "police", "risk_concern_alert", None, AT)
    assert e.purpose == "risk_management"
    assert e.override_authoriser_roles == ("caldicott_guardian",)
    assert D.CLINICAL_DETAIL in e.overridable
    assert e.withheld[D.CLINICAL_DETAIL] == "P7.override"
    assert any("caldicott_guardian" in c for c in e.conditions)


def test_explain_why_not(sample: DsaBundle) -> None:
    nothing = explain(sample, "nhs", "advocacy", "case_referral", None, AT)
    assert nothing.outcome is Outcome.DENY
    assert nothing.clause is None
    assert nothing.rules == ("clause.none",)
    assert nothing.allowed == ()

    wrong_purpose = explain(sample, "police", "nhs", "case_referral", "victim_support", AT)
    assert wrong_purpose.outcome is Outcome.DENY
    assert wrong_purpose.rules == ("P2.purpose",)
    assert wrong_purpose.purposes == ("risk_management", "intervention")

    old = explain(load_bundle(EXPIRED), "police", "probation", "case_referral", None, AT)
    assert old.outcome is Outcome.DENY
    assert old.rules == ("P1.validity",)
    assert old.clause is not None and old.clause.dsa_version == 0
    then = explain(
        load_bundle(EXPIRED), "police", "probation", "case_referral", None, datetime(2025, 3, 1, tzinfo=UTC)
    )
    assert then.outcome is Outcome.PERMIT_WITH_REDACTION


@pytest.mark.parametrize("purpose", [None, "victim_support"], ids=["purpose assumed", "purpose given"])
def test_explain_names_a_disagreeing_overlap(sample: DsaBundle, purpose: str | None) -> None:
    """``explain`` works on a bundle lint refuses: it is how the IG officer sees the conflict."""
    dsa = sample.agreements[0]
    gated = next(c for c in dsa.clauses if c.id == "cr-police-advocacy")
    added = gated.model_copy(update={"id": "aa-police-advocacy", "requires_consent": False})
    b = DsaBundle((dsa.model_copy(update={"clauses": [*dsa.clauses, added]}),))
    e = explain(b, "police", "advocacy", "case_referral", purpose, AT)
    assert e.outcome is Outcome.DENY
    assert e.rules == ("clause.overlap",)
    assert e.clause is None and e.lawful_basis is None and e.retention_days is None
    assert e.allowed == () and e.conditions == ()
    assert "aa-police-advocacy" in e.reason and "cr-police-advocacy" in e.reason


def test_explain_names_the_consent_kind(sample: DsaBundle) -> None:
    e = explain(sample, "police", "advocacy", "case_referral", "victim_support", AT)
    assert "P6.consent: needs a current, in-scope victim consent record" in e.conditions
