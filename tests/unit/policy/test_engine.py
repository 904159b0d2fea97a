"""The engine over the sample DSA (the demonstration case) and its fail-closed seams."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from broker.policy import (
    ConsentState,
    DsaBundle,
    Outcome,
    PolicyRequest,
    candidate_recipients,
    evaluate,
    load_bundle,
)
from broker.policy import engine as engine_module
from broker.policy.engine import PolicyEngine
from broker.policy.rules import DEFAULT_RULES, RuleContext, RuleResult
from schemas._base import NEVER_TO_NHS
from schemas._base import DataClass as D
from tests.unit.policy.builders import (
    AT,
    CASE_REFERRAL,
    EXPIRED,
    SAMPLE_DIR,
    agreement,
    bundle,
    clause_doc,
    override,
    request,
)

GIVEN = ConsentState(status="given", ref="consent-1")


@pytest.fixture(scope="module")
def sample() -> DsaBundle:
    return load_bundle(SAMPLE_DIR)


def decide(
    b: DsaBundle, sender: str, recipient: str, masp_type: str, purpose: str, fields: dict[str, D], **kw: Any
) -> Any:
    return evaluate(b, PolicyRequest(sender, recipient, masp_type, purpose, fields, AT, **kw))


def names_of(fields: dict[str, D], *classes: D) -> set[str]:
    return {n for n, c in fields.items() if c in classes}


# --- the demonstration case (docs/domain.md section 5) ------------------------------------


def test_step1_case_referral_each_partner_minimised(sample: DsaBundle) -> None:
    assert candidate_recipients(sample, "police", "case_referral") == (
        "advocacy",
        "nhs",
        "probation",
    )
    to = {
        r: decide(sample, "police", r, "case_referral", "risk_management", CASE_REFERRAL)
        for r in candidate_recipients(sample, "police", "case_referral")
    }

    probation = to["probation"]
    assert probation.outcome is Outcome.PERMIT
    assert set(probation.disclosed) == set(CASE_REFERRAL)
    assert probation.classification == "OFFICIAL-SENSITIVE"  # health_flags
    assert probation.special_category_condition is not None
    assert probation.regime == "dpa2018_part3"

    nhs = to["nhs"]
    assert nhs.outcome is Outcome.PERMIT_WITH_REDACTION
    victim_location = names_of(CASE_REFERRAL, D.VICTIM_LOCATION)
    assert len(victim_location) == 6
    assert victim_location <= set(nhs.withheld)
    assert all(nhs.withheld_reasons[n] == "P4.hard_rule" for n in victim_location)
    assert set(nhs.disclosed) == names_of(
        CASE_REFERRAL,
        D.PERPETRATOR_IDENTITY,
        D.OFFENCE,
        D.ORDERS,
        D.RISK_SCREENING,
        D.CJ_STATUS,
    )
    assert "victim_name" in nhs.withheld
    assert nhs.clause is not None and nhs.clause.clause_id == "cr-police-nhs"

    advocacy = to["advocacy"]
    assert advocacy.outcome is Outcome.DENY
    assert advocacy.rules[0] == "P6.consent"
    assert advocacy.disclosed == ()
    assert set(advocacy.withheld) == set(CASE_REFERRAL)


def test_step1_advocacy_gets_its_view_once_consent_exists(sample: DsaBundle) -> None:
    d = decide(sample, "police", "advocacy", "case_referral", "risk_management", CASE_REFERRAL, consent=GIVEN)
    assert d.outcome is Outcome.PERMIT_WITH_REDACTION
    assert names_of(CASE_REFERRAL, D.VICTIM_LOCATION, D.VICTIM_IDENTITY) <= set(d.disclosed)
    assert {"health_flags", "children", "perpetrator_address", "referrer"} <= set(d.withheld)
    assert d.classification == "OFFICIAL"


VICTIM_REFERRAL = {
    "victim_name": D.VICTIM_IDENTITY,
    "victim_phone": D.VICTIM_LOCATION,
    "victim_safe_contact_times": D.VICTIM_LOCATION,
    "victim_views": D.VICTIM_VIEWS,
    "sash_concern_level": D.RISK_SCREENING,
    "perpetrator_name": D.PERPETRATOR_IDENTITY,
    "behaviour_summary": D.OFFENCE,
}


def test_step2_victim_advocacy_referral_needs_consent(sample: DsaBundle) -> None:
    assert candidate_recipients(sample, "police", "victim_advocacy_referral") == ("advocacy",)
    refused = decide(
        sample, "police", "advocacy", "victim_advocacy_referral", "victim_support", VICTIM_REFERRAL
    )
    assert refused.outcome is Outcome.DENY
    d = decide(
        sample,
        "police",
        "advocacy",
        "victim_advocacy_referral",
        "victim_support",
        VICTIM_REFERRAL,
        consent=GIVEN,
    )
    assert d.outcome is Outcome.PERMIT
    assert {"victim_phone", "victim_safe_contact_times"} <= set(d.disclosed)


INTERVENTION_REFERRAL = {
    "perpetrator_name": D.PERPETRATOR_IDENTITY,
    "perpetrator_address": D.PERPETRATOR_ADDRESS,
    "cj_status": D.CJ_STATUS,
    "bail_conditions": D.CJ_STATUS,
    "orders": D.ORDERS,
    "rosh_level": D.RISK_SCREENING,
    "perpetrator_consents_to_referral": D.INTERVENTION_STATUS,
    "referrer": D.REFERRER,
}
CJ_UPDATE = {
    "cj_status": D.CJ_STATUS,
    "bail_conditions": D.CJ_STATUS,
    "orders": D.ORDERS,
    "exclusion_zones": D.VICTIM_LOCATION,
    "event_summary": D.OFFENCE,
}


def test_step3_intervention_referral_waits_for_charge(sample: DsaBundle) -> None:
    assert candidate_recipients(sample, "probation", "intervention_referral") == ("nhs",)
    early = decide(
        sample,
        "probation",
        "nhs",
        "intervention_referral",
        "intervention",
        INTERVENTION_REFERRAL,
        facts={"cj_status": "under_investigation", "case_holder": True},
    )
    assert early.outcome is Outcome.DENY
    assert early.rules == ("P8.eligibility",)
    later = decide(
        sample,
        "probation",
        "nhs",
        "intervention_referral",
        "intervention",
        INTERVENTION_REFERRAL,
        facts={"cj_status": "charged", "case_holder": True},
    )
    assert later.outcome is Outcome.PERMIT
    assert set(later.disclosed) == set(INTERVENTION_REFERRAL)


def test_step3_charge_update_reaches_advocacy_with_bail_conditions(sample: DsaBundle) -> None:
    assert candidate_recipients(sample, "police", "cj_status_update") == (
        "advocacy",
        "nhs",
        "probation",
    )
    advocacy = decide(
        sample, "police", "advocacy", "cj_status_update", "risk_management", CJ_UPDATE, consent=GIVEN
    )
    assert advocacy.delivers
    assert {"cj_status", "bail_conditions", "orders"} <= set(advocacy.disclosed)
    assert "event_summary" in advocacy.withheld


def test_step4_status_update_and_overridden_alert(sample: DsaBundle) -> None:
    status = {"sessions_offered": D.INTERVENTION_STATUS, "sessions_attended": D.INTERVENTION_STATUS}
    assert candidate_recipients(sample, "nhs", "intervention_status_update") == (
        "police",
        "probation",
    )
    for r in ("police", "probation"):
        d = decide(sample, "nhs", r, "intervention_status_update", "intervention", status)
        assert d.outcome is Outcome.PERMIT
    alert = {
        "perpetrator_name": D.PERPETRATOR_IDENTITY,
        "disclosure_summary": D.RISK_DISCLOSURE,
        "persons_at_risk": D.RISK_DISCLOSURE,
        "clinical_note": D.CLINICAL_DETAIL,
    }
    police = decide(
        sample, "nhs", "police", "risk_concern_alert", "risk_management", alert, override=override()
    )
    assert police.outcome is Outcome.PERMIT
    assert police.override_used
    assert "clinical_note" in police.disclosed
    assert police.classification == "OFFICIAL-SENSITIVE"
    probation = decide(
        sample, "nhs", "probation", "risk_concern_alert", "risk_management", alert, override=override()
    )
    assert probation.withheld_reasons == {"clinical_note": "P7.override"}
    assert not probation.override_used


def test_step5_spo_breach_and_new_address(sample: DsaBundle) -> None:
    to = {
        r: decide(sample, "police", r, "cj_status_update", "risk_management", CJ_UPDATE, consent=GIVEN)
        for r in candidate_recipients(sample, "police", "cj_status_update")
    }
    assert "exclusion_zones" in to["probation"].disclosed
    assert to["nhs"].withheld_reasons["exclusion_zones"] == "P4.hard_rule"
    assert all(d.delivers for d in to.values())

    update = {"victim_address": D.VICTIM_LOCATION, "safety_measures": D.VICTIM_SAFETY_PLAN}
    assert candidate_recipients(sample, "advocacy", "victim_safety_update") == (
        "police",
        "probation",
    )
    police = decide(sample, "advocacy", "police", "victim_safety_update", "safeguarding", update)
    assert police.outcome is Outcome.PERMIT
    probation = decide(
        sample, "advocacy", "probation", "victim_safety_update", "safeguarding", update, consent=GIVEN
    )
    assert probation.outcome is Outcome.DENY  # nothing in it probation may see
    assert probation.disclosed == ()


def test_step6_victim_location_to_nhs_under_override_refused(sample: DsaBundle) -> None:
    crafted = override(data_classes=["victim_location"], recipients=["nhs"])
    d = decide(sample, "police", "nhs", "case_referral", "risk_management", CASE_REFERRAL, override=crafted)
    assert d.outcome is Outcome.DENY
    assert d.rules[0] == "P4.hard_rule"
    assert d.disclosed == ()
    # The rest of the partnership is unaffected by an override naming only nhs.
    probation = decide(
        sample, "police", "probation", "case_referral", "risk_management", CASE_REFERRAL, override=crafted
    )
    assert probation.outcome is Outcome.PERMIT


def test_nothing_ever_sends_victim_location_to_nhs(sample: DsaBundle) -> None:
    every = {c.value: c for c in D}
    for sender in ("police", "probation", "advocacy"):
        for _, clause in sample.clauses():
            if clause.from_ != sender or "nhs" not in clause.to:
                continue
            for masp_type in clause.message_types:
                for purpose in clause.purposes:
                    d = decide(
                        sample,
                        sender,
                        "nhs",
                        masp_type,
                        purpose,
                        every,
                        consent=GIVEN,
                        facts={"cj_status": "charged", "case_holder": True},
                    )
                    assert not {every[n] for n in d.disclosed} & NEVER_TO_NHS


# --- P1 with the expired agreement ------------------------------------------------------


def test_expired_agreement_refuses_and_is_named() -> None:
    old = load_bundle(EXPIRED)
    d = decide(old, "police", "probation", "case_referral", "risk_management", CASE_REFERRAL)
    assert d.outcome is Outcome.DENY
    assert d.rules == ("P1.validity",)
    assert d.clause is not None and d.clause.dsa_version == 0
    assert "expired 2025-12-31" in d.reason


def test_version_in_force_is_chosen_by_date() -> None:
    both = load_bundle([SAMPLE_DIR, EXPIRED])
    now = decide(both, "police", "probation", "case_referral", "risk_management", CASE_REFERRAL)
    assert now.clause is not None and now.clause.dsa_version == 1
    then = evaluate(
        both,
        PolicyRequest(
            "police",
            "probation",
            "case_referral",
            "risk_management",
            CASE_REFERRAL,
            datetime(2025, 3, 1, tzinfo=UTC),
        ),
    )
    assert then.delivers
    assert then.clause is not None and then.clause.dsa_version == 0
    assert "children" in then.withheld  # v0 did not list children


def test_candidates_include_recipients_of_inactive_agreements() -> None:
    old = load_bundle(EXPIRED)
    assert candidate_recipients(old, "police", "case_referral") == ("nhs", "probation")
    assert candidate_recipients(old, "nhs", "case_referral") == ()


# --- engine mechanics -----------------------------------------------------------------


def test_overlapping_clauses_first_wins_with_warning() -> None:
    b = bundle(agreement(clause_doc(id="b-clause"), clause_doc(id="a-clause")))
    d = evaluate(b, request())
    assert d.outcome is Outcome.PERMIT
    assert d.clause is not None and d.clause.clause_id == "a-clause"
    assert any("overlapping" in w and "b-clause" in w for w in d.warnings)


def with_added_clause(sample: DsaBundle, clause_id: str, **change: Any) -> DsaBundle:
    """The sample with a copy of ``clause_id`` added under an ``aa-`` id (sorts first)."""
    dsa = sample.agreements[0]
    original = next(c for c in dsa.clauses if c.id == clause_id)
    added = original.model_copy(update={"id": "aa-" + clause_id.split("-", 1)[1], **change})
    return DsaBundle((dsa.model_copy(update={"clauses": [*dsa.clauses, added]}),))


@pytest.mark.parametrize("consent", [None, GIVEN], ids=["no consent", "consent given"])
def test_added_clause_dropping_the_consent_gate_denies(sample: DsaBundle, consent: Any) -> None:
    """The attack: ``aa-police-advocacy`` sorted before ``cr-police-advocacy`` and sent a
    case referral to advocacy without the victim's consent. Now nothing is sent either way."""
    b = with_added_clause(sample, "cr-police-advocacy", requires_consent=False)
    d = decide(b, "police", "advocacy", "case_referral", "victim_support", CASE_REFERRAL, consent=consent)
    assert d.outcome is Outcome.DENY
    assert d.rules == ("clause.overlap",)
    assert d.clause is None and d.lawful_basis is None
    assert d.disclosed == () and set(d.withheld) == set(CASE_REFERRAL)
    assert set(d.withheld_reasons.values()) == {"clause.overlap"}
    assert d.reason == (
        "clause.overlap: clauses that disagree on requires_consent all apply "
        "(hiow-masp v1 clause aa-police-advocacy, hiow-masp v1 clause cr-police-advocacy)"
    )


def test_the_other_flows_of_a_conflicting_bundle_are_untouched(sample: DsaBundle) -> None:
    b = with_added_clause(sample, "cr-police-advocacy", requires_consent=False)
    d = decide(b, "police", "probation", "case_referral", "risk_management", CASE_REFERRAL)
    assert d.delivers and d.clause is not None and d.clause.clause_id == "cr-police-probation"


@pytest.mark.parametrize(
    "change",
    [
        {"data_classes": ["perpetrator_identity"]},
        {"requires_consent": True},
        {"retention_days": 3650},
        {"lawful_basis": "UK GDPR Art 6(1)(e)"},
        {"override_authoriser_roles": ["duty_inspector"]},
    ],
    ids=lambda change: next(iter(change)),
)
def test_disagreeing_overlap_denies_whatever_the_term(change: dict[str, Any]) -> None:
    b = bundle(agreement(clause_doc(id="b-clause"), clause_doc(id="a-clause", **change)))
    d = evaluate(b, request(consent=GIVEN))
    assert d.outcome is Outcome.DENY
    assert d.rules == ("clause.overlap",)
    assert f"disagree on {next(iter(change))} all apply" in d.reason


def test_overlap_across_agreements_denies_only_where_both_apply() -> None:
    main = agreement(clause_doc(id="c1"))
    addendum = agreement(clause_doc(id="c1", requires_consent=True), id="addendum")
    d = evaluate(bundle(main, addendum), request(consent=GIVEN))
    assert d.rules == ("clause.overlap",)
    assert "addendum v1 clause c1, test-dsa v1 clause c1" in d.reason
    later = agreement(clause_doc(id="c1", requires_consent=True), id="addendum",
                      valid_from="2027-01-01", review_date="2027-06-30")
    assert evaluate(bundle(main, later), request()).outcome is Outcome.PERMIT
    other_purpose = agreement(clause_doc(id="c1", requires_consent=True, purposes=["safeguarding"]),
                              id="addendum")
    assert evaluate(bundle(main, other_purpose), request()).outcome is Outcome.PERMIT


def test_consent_kind_counts_only_behind_a_consent_gate() -> None:
    gated = bundle(agreement(clause_doc(id="a", requires_consent=True),
                             clause_doc(id="b", requires_consent=True, consent_kind="intervention")))
    assert evaluate(gated, request(consent=GIVEN)).rules == ("clause.overlap",)
    ungated = bundle(agreement(clause_doc(id="a"), clause_doc(id="b", consent_kind="intervention")))
    d = evaluate(ungated, request())
    assert d.outcome is Outcome.PERMIT and d.clause is not None and d.clause.clause_id == "a"


class Boom:
    id = "boom"

    def check(self, ctx: RuleContext) -> RuleResult:
        raise RuntimeError("secret victim address 1 High St")


class Liar:
    id = "liar"

    def check(self, ctx: RuleContext) -> RuleResult:
        return RuleResult("someone-else")


@pytest.mark.parametrize("bad_rule", [Boom(), Liar()], ids=["raises", "wrong-result"])
def test_a_failing_rule_denies(bad_rule: Any) -> None:
    d = PolicyEngine(rules=(*DEFAULT_RULES, bad_rule)).evaluate(bundle(), request())
    assert d.outcome is Outcome.DENY
    assert d.rules[-1] == bad_rule.id
    assert "High St" not in d.reason
    assert d.disclosed == ()


def test_engine_failure_denies(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise KeyError("x")

    monkeypatch.setattr(engine_module, "select_clause", broken)
    d = evaluate(bundle(), request())
    assert d.outcome is Outcome.DENY
    assert d.rules == ("engine.error",)


def test_hard_rule_and_minimisation_hold_without_any_rule() -> None:
    """Defence in depth: the engine's own guard, with every rule removed."""
    b = bundle(agreement(clause_doc(to=["nhs"], data_classes=["perpetrator_identity", "victim_location"])))
    fields = {
        "perpetrator_name": D.PERPETRATOR_IDENTITY,
        "victim_address": D.VICTIM_LOCATION,
        "offence_codes": D.OFFENCE,
    }
    d = PolicyEngine(rules=()).evaluate(b, request(recipient="nhs", fields=fields))
    assert d.disclosed == ("perpetrator_name",)
    assert d.withheld_reasons == {"offence_codes": "P4.minimisation", "victim_address": "P4.hard_rule"}
    assert {"P4.hard_rule", "P4.minimisation"} <= set(d.rules)


def test_retention_and_decision_as_json() -> None:
    d = evaluate(bundle(), request())
    assert d.retention_until == AT + timedelta(days=30)
    doc = json.loads(json.dumps(d.as_dict()))
    assert doc["outcome"] == "permit"
    assert doc["clause"] == {"id": "test-dsa", "version": 1, "clause": "c1"}
    assert doc["retention_until"] == (AT + timedelta(days=30)).isoformat()


def test_reason_is_one_line_of_names() -> None:
    d = decide(load_bundle(SAMPLE_DIR), "police", "nhs", "case_referral", "risk_management", CASE_REFERRAL)
    assert "\n" not in d.reason
    assert "victim_address (P4.hard_rule)" in d.reason


def test_request_needs_an_aware_time_and_known_classes() -> None:
    with pytest.raises(ValueError, match="timezone"):
        request(at=datetime(2026, 11, 21, 10, 0))
    with pytest.raises(ValueError, match="data_class_that_does_not_exist"):
        request(fields={"x": "data_class_that_does_not_exist"})
    shifted = request(at=datetime(2026, 11, 21, 11, 0, tzinfo=UTC).astimezone())
    assert shifted.at.tzinfo == UTC


def test_empty_message_is_metadata_only_permit() -> None:
    d = evaluate(bundle(), request(fields={}))
    assert d.outcome is Outcome.PERMIT
    assert d.disclosed == () and d.withheld == ()
