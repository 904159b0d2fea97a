"""One table per rule: the request that trips it, and what the decision must say."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from broker.policy import ConsentState, ConsentStatus, Outcome, evaluate
from schemas._base import DataClass as D
from tests.unit.policy.builders import (
    AT,
    GDPR_SENSITIVE,
    GDPR_TASK,
    PART3_SENSITIVE,
    agreement,
    bundle,
    clause_doc,
    override,
    request,
)


@dataclass
class Case:
    name: str
    outcome: Outcome
    rule: str | None = None
    clause: dict[str, Any] = field(default_factory=dict)
    dsa: dict[str, Any] = field(default_factory=dict)
    req: dict[str, Any] = field(default_factory=dict)
    withheld: dict[str, str] = field(default_factory=dict)
    disclosed: set[str] | None = None

    def run(self, **options: bool) -> Any:
        b = bundle(agreement(clause_doc(**self.clause), **self.dsa))
        return evaluate(b, request(**self.req), **options)


def check(case: Case, **options: bool) -> None:
    decision = case.run(**options)
    assert decision.outcome is case.outcome, decision.reason
    if case.rule is not None:
        assert case.rule in decision.rules
    for name, rule in case.withheld.items():
        assert decision.withheld_reasons[name] == rule
    if case.disclosed is not None:
        assert set(decision.disclosed) == case.disclosed
    if case.outcome in (Outcome.DENY, Outcome.REQUIRE_OVERRIDE):
        assert decision.disclosed == ()
        assert decision.retention_until is None


P1 = [
    Case("expired", Outcome.DENY, "P1.validity", dsa={"valid_until": "2026-06-30"}),
    Case("not yet valid", Outcome.DENY, "P1.validity", dsa={"valid_from": "2027-01-01"}),
    Case("suspended", Outcome.DENY, "P1.validity", dsa={"status": "suspended"}),
    Case("terminated", Outcome.DENY, "P1.validity", dsa={"status": "terminated"}),
    Case("last valid day", Outcome.PERMIT, dsa={"valid_until": "2026-11-21"}),
    Case("review passed warns", Outcome.PERMIT, "P1.validity", dsa={"review_date": "2026-06-01"}),
]


@pytest.mark.parametrize("case", P1, ids=lambda c: c.name)
def test_p1_validity(case: Case) -> None:
    check(case)


def test_p1_review_passed_warning_and_option_to_deny() -> None:
    case = P1[-1]
    assert any("review date" in w for w in case.run().warnings)
    denied = case.run(deny_after_review_date=True)
    assert denied.outcome is Outcome.DENY
    assert denied.rules == ("P1.validity",)


def test_p1_deny_names_the_agreement_and_clause() -> None:
    decision = P1[0].run()
    assert decision.clause is not None
    assert (decision.clause.dsa_id, decision.clause.clause_id) == ("test-dsa", "c1")
    assert "expired" in decision.reason


P2 = [
    Case("purpose not in clause", Outcome.DENY, "P2.purpose", req={"purpose": "victim_support"}),
    Case(
        "purpose in clause but not declared by the DSA",
        Outcome.DENY,
        "P2.purpose",
        clause={"purposes": ["risk_management", "marketing"]},
        req={"purpose": "marketing"},
    ),
    Case("purpose fits", Outcome.PERMIT),
]


@pytest.mark.parametrize("case", P2, ids=lambda c: c.name)
def test_p2_purpose(case: Case) -> None:
    check(case)


_WITH_VICTIM = {
    "perpetrator_name": D.PERPETRATOR_IDENTITY,
    "victim_address": D.VICTIM_LOCATION,
    "victim_safety_measures": D.VICTIM_SAFETY_PLAN,
    "offence_codes": D.OFFENCE,
}
_TO_NHS = {"to": ["nhs"], "data_classes": ["perpetrator_identity", "offence", "victim_location"]}

P4 = [
    Case(
        "fields outside the clause are withheld",
        Outcome.PERMIT_WITH_REDACTION,
        "P4.minimisation",
        req={"fields": _WITH_VICTIM},
        withheld={
            "victim_address": "P4.minimisation",
            "victim_safety_measures": "P4.minimisation",
        },
        disclosed={"perpetrator_name", "offence_codes"},
    ),
    Case(
        "hard rule beats a clause that lists victim_location for nhs",
        Outcome.PERMIT_WITH_REDACTION,
        "P4.hard_rule",
        clause=_TO_NHS,
        req={"recipient": "nhs", "fields": _WITH_VICTIM},
        withheld={"victim_address": "P4.hard_rule", "victim_safety_measures": "P4.hard_rule"},
        disclosed={"perpetrator_name", "offence_codes"},
    ),
    Case(
        "an override asking victim_location for nhs denies the whole flow",
        Outcome.DENY,
        "P4.hard_rule",
        clause={**_TO_NHS, "override_authoriser_roles": ["caldicott_guardian"]},
        req={
            "recipient": "nhs",
            "fields": _WITH_VICTIM,
            "override": override(data_classes=["victim_location"], recipients=["nhs"]),
        },
        withheld={"perpetrator_name": "P4.hard_rule", "victim_address": "P4.hard_rule"},
    ),
    Case(
        "even an expired or unauthorised override asking for it denies",
        Outcome.DENY,
        "P4.hard_rule",
        clause=_TO_NHS,
        req={
            "recipient": "nhs",
            "fields": _WITH_VICTIM,
            "override": override(
                data_classes=["victim_safety_plan"],
                recipients=["nhs"],
                expires_at=(AT - timedelta(days=1)).isoformat(),
            ),
        },
    ),
    Case(
        "an override naming another recipient leaves nhs to the hard rule",
        Outcome.PERMIT_WITH_REDACTION,
        "P4.hard_rule",
        clause=_TO_NHS,
        req={
            "recipient": "nhs",
            "fields": _WITH_VICTIM,
            "override": override(data_classes=["victim_location"], recipients=["probation"]),
        },
        withheld={"victim_address": "P4.hard_rule"},
    ),
    Case(
        "nothing passes: deny",
        Outcome.DENY,
        "P4.minimisation",
        req={"fields": {"victim_address": D.VICTIM_LOCATION}},
    ),
]


@pytest.mark.parametrize("case", P4, ids=lambda c: c.name)
def test_p4_minimisation_and_hard_rule(case: Case) -> None:
    check(case)


_HEALTH = {"perpetrator_name": D.PERPETRATOR_IDENTITY, "health_flags": D.HEALTH_FLAGS}
P5 = [
    Case(
        "special category without a condition is withheld",
        Outcome.PERMIT_WITH_REDACTION,
        "P5.special_category",
        clause={"data_classes": ["perpetrator_identity", "health_flags"]},
        req={"fields": _HEALTH},
        withheld={"health_flags": "P5.special_category"},
    ),
    Case(
        "special category with a condition passes",
        Outcome.PERMIT,
        "P5.special_category",
        clause={
            "data_classes": ["perpetrator_identity", "health_flags"],
            "special_category_condition": PART3_SENSITIVE,
        },
        req={"fields": _HEALTH},
        disclosed={"perpetrator_name", "health_flags"},
    ),
]


@pytest.mark.parametrize("case", P5, ids=lambda c: c.name)
def test_p5_special_category(case: Case) -> None:
    check(case)


def test_p5_classification_follows_what_is_disclosed() -> None:
    permitted = P5[1].run()
    assert permitted.classification == "OFFICIAL-SENSITIVE"
    assert permitted.special_category_condition == PART3_SENSITIVE
    withheld = P5[0].run()
    assert withheld.classification == "OFFICIAL"
    assert withheld.special_category_condition is None


_GATED = {
    "to": ["advocacy"],
    "requires_consent": True,
    "regime": "uk_gdpr",
    "lawful_basis": GDPR_TASK,
}
P6 = [
    Case(
        "no consent record",
        Outcome.DENY,
        "P6.consent",
        clause=_GATED,
        req={"recipient": "advocacy"},
    ),
    Case(
        "consent withdrawn",
        Outcome.DENY,
        "P6.consent",
        clause=_GATED,
        req={"recipient": "advocacy", "consent": ConsentState(status=ConsentStatus.WITHDRAWN)},
    ),
    Case(
        "consent out of scope",
        Outcome.DENY,
        "P6.consent",
        clause=_GATED,
        req={"recipient": "advocacy", "consent": ConsentState(status="given", in_scope=False)},
    ),
    Case(
        "consent not recorded",
        Outcome.DENY,
        "P6.consent",
        clause=_GATED,
        req={"recipient": "advocacy", "consent": ConsentState(status="given", recorded=False)},
    ),
    Case(
        "unknown status is not consent",
        Outcome.DENY,
        "P6.consent",
        clause=_GATED,
        req={"recipient": "advocacy", "consent": ConsentState(status="pending")},
    ),
    Case(
        "current consent",
        Outcome.PERMIT,
        clause=_GATED,
        req={"recipient": "advocacy", "consent": ConsentState(status="given", ref="c-1")},
    ),
    Case(
        "ungated clause ignores a withdrawal elsewhere",
        Outcome.PERMIT,
        req={"consent": ConsentState(status="withdrawn")},
    ),
]


@pytest.mark.parametrize("case", P6, ids=lambda c: c.name)
def test_p6_consent(case: Case) -> None:
    check(case)


_NHS_ALERT = {
    "id": "rca",
    "from": "nhs",
    "to": ["police", "probation"],
    "message_types": ["risk_concern_alert"],
    "regime": "uk_gdpr",
    "lawful_basis": GDPR_TASK,
    "special_category_condition": GDPR_SENSITIVE,
    "data_classes": ["perpetrator_identity", "risk_disclosure"],
    "override_authoriser_roles": ["caldicott_guardian"],
}
_ALERT = {
    "perpetrator_name": D.PERPETRATOR_IDENTITY,
    "disclosure_summary": D.RISK_DISCLOSURE,
    "clinical_note": D.CLINICAL_DETAIL,
}
_ALERT_REQ = {
    "sender": "nhs",
    "recipient": "police",
    "masp_type": "risk_concern_alert",
    "fields": _ALERT,
}
_CLINICAL_WITHHELD = {"clinical_note": "P7.override"}

P7 = [
    Case(
        "no override: clinical detail stays in nhs",
        Outcome.PERMIT_WITH_REDACTION,
        "P7.override",
        clause=_NHS_ALERT,
        req=_ALERT_REQ,
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "valid Caldicott override",
        Outcome.PERMIT,
        "P7.override",
        clause=_NHS_ALERT,
        req={**_ALERT_REQ, "override": override()},
        disclosed={"perpetrator_name", "disclosure_summary", "clinical_note"},
    ),
    Case(
        "expired override",
        Outcome.PERMIT_WITH_REDACTION,
        "P7.override",
        clause=_NHS_ALERT,
        req={**_ALERT_REQ, "override": override(expires_at=AT.isoformat())},
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "wrong authoriser role",
        Outcome.PERMIT_WITH_REDACTION,
        "P7.override",
        clause=_NHS_ALERT,
        req={**_ALERT_REQ, "override": override(authoriser={"id": "m-1", "role": "team_manager"})},
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "free-text justification is not a code",
        Outcome.PERMIT_WITH_REDACTION,
        "P7.override",
        clause=_NHS_ALERT,
        req={
            **_ALERT_REQ,
            "override": override(
                justification={
                    "risk_to": "victim",
                    "harm": "he said he would hurt Jane",
                    "consent_not_sought_reason": "urgent",
                }
            ),
        },
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "unknown risk_to code",
        Outcome.PERMIT_WITH_REDACTION,
        "P7.override",
        clause=_NHS_ALERT,
        req={
            **_ALERT_REQ,
            "override": override(
                justification={
                    "risk_to": "neighbour",
                    "harm": "x",
                    "consent_not_sought_reason": "urgent",
                }
            ),
        },
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "blank legal basis",
        Outcome.PERMIT_WITH_REDACTION,
        "P7.override",
        clause=_NHS_ALERT,
        req={**_ALERT_REQ, "override": override(legal_basis=" ")},
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "override for another recipient does not apply",
        Outcome.PERMIT_WITH_REDACTION,
        "P7.override",
        clause=_NHS_ALERT,
        req={**_ALERT_REQ, "recipient": "probation", "override": override()},
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "only clinical detail: require_override",
        Outcome.REQUIRE_OVERRIDE,
        "P7.override",
        clause=_NHS_ALERT,
        req={**_ALERT_REQ, "fields": {"clinical_note": D.CLINICAL_DETAIL}},
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "only clinical detail and no override route: deny",
        Outcome.DENY,
        "P7.override",
        clause={**_NHS_ALERT, "override_authoriser_roles": []},
        req={**_ALERT_REQ, "fields": {"clinical_note": D.CLINICAL_DETAIL}},
    ),
    Case(
        "clinical detail in the clause still needs an override",
        Outcome.PERMIT_WITH_REDACTION,
        "P7.override",
        clause={
            **_NHS_ALERT,
            "data_classes": ["perpetrator_identity", "risk_disclosure", "clinical_detail"],
        },
        req=_ALERT_REQ,
        withheld=_CLINICAL_WITHHELD,
    ),
    Case(
        "override beyond a police clause",
        Outcome.PERMIT,
        "P7.override",
        clause={"override_authoriser_roles": ["duty_inspector"]},
        req={
            "fields": {
                "perpetrator_name": D.PERPETRATOR_IDENTITY,
                "victim_address": D.VICTIM_LOCATION,
            },
            "override": override(
                authoriser={"id": "i-7", "role": "duty_inspector"},
                data_classes=["victim_location"],
                recipients=["probation"],
            ),
        },
        disclosed={"perpetrator_name", "victim_address"},
    ),
]


@pytest.mark.parametrize("case", P7, ids=lambda c: c.name)
def test_p7_override(case: Case) -> None:
    check(case)


def test_p7_records_use_and_why_an_override_was_not_relied_on() -> None:
    used = P7[1].run()
    assert used.override_used
    assert used.classification == "OFFICIAL-SENSITIVE"
    assert used.special_category_condition == GDPR_SENSITIVE
    expired = P7[2].run()
    assert not expired.override_used
    assert any("expired" in w for w in expired.warnings)
    wrong_role = P7[3].run()
    assert any("team_manager" in w for w in wrong_role.warnings)
    assert not P7[0].run().override_used


def test_p7_override_not_needed_is_not_used() -> None:
    case = Case(
        "n",
        Outcome.PERMIT,
        clause=_NHS_ALERT,
        req={
            **_ALERT_REQ,
            "fields": {"perpetrator_name": D.PERPETRATOR_IDENTITY},
            "override": override(),
        },
    )
    decision = case.run()
    assert decision.outcome is Outcome.PERMIT
    assert not decision.override_used
    assert any("not needed" in w for w in decision.warnings)


_IR = {"to": ["nhs"], "message_types": ["intervention_referral"], "purposes": ["intervention"]}
_IR_REQ = {"recipient": "nhs", "masp_type": "intervention_referral", "purpose": "intervention"}
P8 = [
    Case(
        "under investigation",
        Outcome.DENY,
        "P8.eligibility",
        clause=_IR,
        req={**_IR_REQ, "facts": {"cj_status": "under_investigation", "case_holder": True}},
    ),
    Case(
        "spelled as in docs/domain.md",
        Outcome.DENY,
        "P8.eligibility",
        clause=_IR,
        req={**_IR_REQ, "facts": {"cj_status": "Under investigation", "case_holder": True}},
    ),
    Case(
        "pre-charge bail",
        Outcome.DENY,
        "P8.eligibility",
        clause=_IR,
        req={**_IR_REQ, "facts": {"cj_status": "bailed", "case_holder": True}},
    ),
    Case(
        "no cj_status",
        Outcome.DENY,
        "P8.eligibility",
        clause=_IR,
        req={**_IR_REQ, "facts": {"case_holder": True}},
    ),
    Case(
        "no case holder",
        Outcome.DENY,
        "P8.eligibility",
        clause=_IR,
        req={**_IR_REQ, "facts": {"cj_status": "charged"}},
    ),
    Case(
        "case holder must be True, not truthy",
        Outcome.DENY,
        "P8.eligibility",
        clause=_IR,
        req={**_IR_REQ, "facts": {"cj_status": "charged", "case_holder": "yes"}},
    ),
    Case(
        "charged with a case holder",
        Outcome.PERMIT,
        clause=_IR,
        req={**_IR_REQ, "facts": {"cj_status": "charged", "case_holder": True}},
    ),
    Case(
        "other message types ignore P8",
        Outcome.PERMIT,
        req={"facts": {"cj_status": "under_investigation"}},
    ),
]


@pytest.mark.parametrize("case", P8, ids=lambda c: c.name)
def test_p8_eligibility(case: Case) -> None:
    check(case)


NO_CLAUSE = [
    Case("recipient no clause names", Outcome.DENY, "clause.none", req={"recipient": "advocacy"}),
    Case(
        "message type no clause names",
        Outcome.DENY,
        "clause.none",
        req={"masp_type": "victim_safety_update"},
    ),
    Case("sender no clause names", Outcome.DENY, "clause.none", req={"sender": "nhs"}),
    Case(
        "clause naming a non-party covers nothing",
        Outcome.DENY,
        "clause.none",
        dsa={"parties": ["police", "nhs"]},
    ),
]


@pytest.mark.parametrize("case", NO_CLAUSE, ids=lambda c: c.name)
def test_no_clause(case: Case) -> None:
    check(case)
    decision = case.run()
    assert decision.clause is None
    assert decision.lawful_basis is None
    assert decision.rules == ("clause.none",)
    assert set(decision.withheld_reasons.values()) == {"clause.none"}


def test_sender_supplied_text_never_reaches_the_decision() -> None:
    """Purposes, types and roles come from the sender; only codes are echoed back."""
    free_text = "Jane Doe at 1 High St"
    refused = Case("p", Outcome.DENY, req={"purpose": free_text}).run()
    no_clause = Case("t", Outcome.DENY, req={"masp_type": free_text}).run()
    bad_role = Case(
        "r",
        Outcome.PERMIT_WITH_REDACTION,
        clause=_NHS_ALERT,
        req={**_ALERT_REQ, "override": override(authoriser={"id": "x", "role": free_text})},
    ).run()
    for decision in (refused, no_clause, bad_role):
        text = decision.reason + " ".join(decision.warnings)
        assert "Jane" not in text and "High St" not in text
        assert "\n" not in decision.reason
