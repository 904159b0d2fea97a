"""Which deliveries get a safeguarding timer, and how long it runs."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from broker.policy import DsaBundle, load_bundle
from broker.policy.engine import ClauseRef
from broker.policy.escalation import DEFAULT_ESCALATION, escalation_for

SAMPLE_DIR = Path(__file__).resolve().parents[3] / "deploy" / "dsa"


@pytest.fixture(scope="module")
def sample() -> DsaBundle:
    return load_bundle(SAMPLE_DIR)


def _ref(bundle: DsaBundle, clause_id: str) -> ClauseRef:
    for agreement in bundle.agreements:
        for clause in agreement.clauses:
            if clause.id == clause_id:
                return ClauseRef(agreement.id, agreement.version, clause.id)
    raise AssertionError(clause_id)


def test_the_clause_sets_the_deadline(sample: DsaBundle) -> None:
    found = escalation_for(sample, _ref(sample, "rca-nhs"), "risk_concern_alert", {})
    assert found is not None and found.after == timedelta(hours=2) and found.clause == "rca-nhs"


def test_high_sash_concern_without_clause_hours_gets_the_default(sample: DsaBundle) -> None:
    ref = _ref(sample, next(c.id for a in sample.agreements for c in a.clauses
                            if "case_referral" in c.message_types and c.escalation_hours is None))
    found = escalation_for(sample, ref, "case_referral", {"sash_concern_level": "high"})
    assert found is not None and found.after == DEFAULT_ESCALATION and found.clause is None
    assert escalation_for(sample, ref, "case_referral", {"sash_concern_level": "medium"}) is None


def test_an_urgent_type_escalates_even_without_a_clause(sample: DsaBundle) -> None:
    found = escalation_for(sample, None, "risk_concern_alert", {})
    assert found is not None and found.after == DEFAULT_ESCALATION
    assert escalation_for(sample, None, "cj_status_update", {}) is None
