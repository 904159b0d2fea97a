"""Each lint finding, from the clause that provokes it; the sample DSAs lint clean."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from broker.policy import LintFinding, lint, load_bundle
from broker.policy.dsa import OUTCOME_TERMS
from tests.unit.policy.builders import (
    EXPIRED,
    GDPR_SENSITIVE,
    GDPR_TASK,
    PART3,
    PART3_SENSITIVE,
    SAMPLE,
    SAMPLE_DIR,
    agreement,
    clause_doc,
)


def rules_of(findings: list[LintFinding], severity: str) -> set[str]:
    return {f.rule for f in findings if f.severity == severity}


def lint_clause(**kw: Any) -> list[LintFinding]:
    return lint([agreement(clause_doc(**kw))])


def test_samples_lint_clean() -> None:
    findings = lint(load_bundle(SAMPLE_DIR), today=date(2026, 11, 21))
    assert findings == []
    expired = lint(load_bundle(EXPIRED), today=date(2026, 11, 21))
    assert [(f.severity, f.rule) for f in expired] == [("warning", "P1.validity")]
    assert "expired" in expired[0].message
    assert expired[0].file == str(EXPIRED)


def test_baseline_clause_is_clean() -> None:
    assert lint_clause() == []


ERRORS = [
    ("P4.hard_rule", {"to": ["nhs"], "data_classes": ["offence", "victim_location"]}),
    ("P4.hard_rule", {"to": ["probation", "nhs"], "data_classes": ["victim_safety_plan"]}),
    (
        "P7.override",
        {
            "from": "nhs",
            "to": ["police"],
            "regime": "uk_gdpr",
            "lawful_basis": GDPR_TASK,
            "special_category_condition": GDPR_SENSITIVE,
            "data_classes": ["clinical_detail"],
        },
    ),
    ("P3.special_category", {"data_classes": ["health_flags"]}),
    ("P3.special_category", {"data_classes": ["health_flags"], "special_category_condition": "Sch 8 para 1"}),
    (
        "P3.special_category",
        {"data_classes": ["health_flags"], "special_category_condition": "s35(5) strictly necessary"},
    ),
    (
        "P3.special_category",
        {
            "regime": "uk_gdpr",
            "lawful_basis": GDPR_TASK,
            "data_classes": ["health_flags"],
            "special_category_condition": "DPA 2018 Sch 1 para 10",
        },
    ),
    (
        "P3.special_category",
        {
            "regime": "uk_gdpr",
            "lawful_basis": GDPR_TASK,
            "data_classes": ["health_flags"],
            "special_category_condition": "UK GDPR Art 9(2)(g)",
        },
    ),
    (
        "P3.individuals_at_risk",
        {
            "regime": "uk_gdpr",
            "lawful_basis": GDPR_TASK,
            "data_classes": ["health_flags"],
            "special_category_condition": "Art 9(2)(g) + DPA 2018 Sch 1 para 18 (individuals at risk)",
        },
    ),
    (
        "P3.individuals_at_risk",
        {
            "data_classes": ["health_flags"],
            "special_category_condition": "s35(5) strictly necessary + Schedule 8 paragraph 4",
        },
    ),
    ("P3.lawful_basis", {"lawful_basis": ""}),
    ("P3.lawful_basis", {"lawful_basis": "common law policing purposes"}),
    ("P3.lawful_basis", {"regime": "uk_gdpr", "lawful_basis": "public task"}),
    ("P3.regime", {"from": "advocacy"}),
    ("P6.consent", {"regime": "uk_gdpr", "lawful_basis": "UK GDPR Art 6(1)(a) consent"}),
    ("P6.consent", {"lawful_basis": "DPA 2018 s35(2)(a) consent"}),
    ("catalogue.message_type", {"message_types": ["case_referral", "gossip"]}),
    ("P2.purpose", {"purposes": ["risk_management", "research"]}),
]


@pytest.mark.parametrize(("rule", "clause"), ERRORS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(ERRORS)])
def test_errors(rule: str, clause: dict[str, Any]) -> None:
    findings = lint_clause(**clause)
    assert rule in rules_of(findings, "error"), findings
    hit = next(f for f in findings if f.rule == rule)
    assert (hit.dsa_id, hit.clause_id) == ("test-dsa", "c1")


WARNINGS = [
    (
        "P3.lawful_basis",
        {"from": "nhs", "regime": "uk_gdpr", "lawful_basis": "UK GDPR Art 6(1)(f) legitimate interests"},
    ),
    (
        "P6.consent",
        {"message_types": ["risk_concern_alert"], "requires_consent": True, "escalation_hours": 2},
    ),
    ("escalation", {"message_types": ["risk_concern_alert"]}),
    ("parties", {"to": ["police", "probation"]}),
    (
        "P5.special_category",
        {
            "from": "nhs",
            "to": ["police"],
            "regime": "uk_gdpr",
            "lawful_basis": GDPR_TASK,
            "override_authoriser_roles": ["caldicott_guardian"],
        },
    ),
]


@pytest.mark.parametrize(("rule", "clause"), WARNINGS, ids=[r for r, _ in WARNINGS])
def test_warnings(rule: str, clause: dict[str, Any]) -> None:
    findings = lint_clause(**clause)
    assert rule in rules_of(findings, "warning"), findings
    assert not rules_of(findings, "error"), findings


def test_at_risk_conditions_pass_when_flagged() -> None:
    assert (
        lint_clause(
            data_classes=["health_flags", "children"],
            subjects_at_risk=True,
            special_category_condition=PART3_SENSITIVE + " and Sch 8 para 4",
        )
        == []
    )
    assert (
        lint_clause(
            regime="uk_gdpr",
            lawful_basis=GDPR_TASK,
            subjects_at_risk=True,
            data_classes=["health_flags"],
            special_category_condition="Art 9(2)(g) + Sch 1 para 18",
        )
        == []
    )


def test_explicit_consent_condition_needs_no_schedule_1() -> None:
    assert (
        lint_clause(
            regime="uk_gdpr",
            lawful_basis="UK GDPR Art 6(1)(a)",
            requires_consent=True,
            data_classes=["health_flags"],
            special_category_condition="UK GDPR Art 9(2)(a) explicit consent",
        )
        == []
    )


def test_parties_outside_the_agreement() -> None:
    findings = lint([agreement(clause_doc(to=["probation", "advocacy"]), parties=["police", "probation"])])
    parties = [f for f in findings if f.rule == "parties"]
    assert parties and parties[0].severity == "error"
    assert "advocacy" in parties[0].message


def test_dates() -> None:
    backwards = lint([agreement(valid_from="2027-01-01", valid_until="2026-01-01", review_date="2026-06-01")])
    assert ("error", "P1.validity") in {(f.severity, f.rule) for f in backwards}
    review = lint([agreement(review_date="2026-06-30")], today=date(2026, 11, 21))
    assert [(f.severity, f.rule) for f in review] == [("warning", "P1.validity")]
    assert "review date" in review[0].message
    assert lint([agreement(review_date="2026-06-30")]) == []  # no clock, no date checks
    outside = lint([agreement(review_date="2029-01-01")])
    assert [(f.severity, f.rule) for f in outside] == [("warning", "P1.validity")]
    suspended = lint(
        [agreement(status="suspended", valid_until="2026-03-31", review_date="2026-02-01")],
        today=date(2026, 11, 21),
    )
    assert suspended == []


def test_overlapping_clauses() -> None:
    differ = lint([agreement(clause_doc(id="a"), clause_doc(id="b", data_classes=["offence"]))])
    assert [(f.severity, f.rule, f.clause_id) for f in differ] == [("error", "clause.overlap", "b")]
    assert "disagree on data_classes" in differ[0].message
    same = lint([agreement(clause_doc(id="a"), clause_doc(id="b"))])
    assert [(f.severity, f.rule) for f in same] == [("warning", "clause.overlap")]
    disjoint = lint([agreement(clause_doc(id="a"), clause_doc(id="b", purposes=["safeguarding"]))])
    assert disjoint == []


#: One change per outcome term (`broker.policy.dsa.OUTCOME_TERMS`) to the baseline clause.
DISAGREEMENTS = [
    ("data_classes", {"data_classes": ["perpetrator_identity"]}),
    ("requires_consent", {"requires_consent": True}),
    ("regime", {"regime": "uk_gdpr"}),
    ("lawful_basis", {"lawful_basis": PART3 + " (as amended)"}),
    ("special_category_condition", {"special_category_condition": PART3_SENSITIVE}),
    ("retention_days", {"retention_days": 31}),
    ("escalation_hours", {"escalation_hours": 4}),
    ("override_authoriser_roles", {"override_authoriser_roles": ["duty_inspector"]}),
    ("subjects_at_risk", {"subjects_at_risk": True}),
]


@pytest.mark.parametrize(("term", "change"), DISAGREEMENTS, ids=[t for t, _ in DISAGREEMENTS])
def test_overlap_disagreeing_on_any_outcome_term_is_an_error(term: str, change: dict[str, Any]) -> None:
    findings = [f for f in lint([agreement(clause_doc(id="a"), clause_doc(id="b", **change))])
                if f.rule == "clause.overlap"]
    assert [(f.severity, f.clause_id) for f in findings] == [("error", "b")]
    assert findings[0].message.endswith(f"disagree on {term}")


def test_covers_every_outcome_term() -> None:
    assert {t for t, _ in DISAGREEMENTS} | {"consent_kind"} == set(OUTCOME_TERMS)


def test_consent_kind_disagrees_only_behind_a_consent_gate() -> None:
    gated = lint([agreement(clause_doc(id="a", requires_consent=True),
                            clause_doc(id="b", requires_consent=True, consent_kind="intervention"))])
    assert [(f.severity, f.rule) for f in gated] == [("error", "clause.overlap")]
    assert gated[0].message.endswith("disagree on consent_kind")
    ungated = lint([agreement(clause_doc(id="a"), clause_doc(id="b", consent_kind="intervention"))])
    assert [(f.severity, f.rule) for f in ungated] == [("warning", "clause.overlap")]


def test_list_order_is_not_a_disagreement() -> None:
    same = lint([agreement(clause_doc(id="a", data_classes=["offence", "perpetrator_identity"]),
                           clause_doc(id="b", data_classes=["perpetrator_identity", "offence"]))])
    assert [(f.severity, f.rule) for f in same] == [("warning", "clause.overlap")]


def test_an_added_clause_without_the_consent_gate_is_an_error() -> None:
    """The attack: ``aa-police-advocacy`` sorts before ``cr-police-advocacy`` and drops consent."""
    sample = load_bundle(SAMPLE).agreements[0]
    gated = next(c for c in sample.clauses if c.id == "cr-police-advocacy")
    added = gated.model_copy(update={"id": "aa-police-advocacy", "requires_consent": False})
    findings = lint([sample.model_copy(update={"clauses": [*sample.clauses, added]})],
                    today=date(2026, 11, 21))
    errors = [f for f in findings if f.severity == "error"]
    assert [(f.rule, f.clause_id) for f in errors] == [("clause.overlap", "aa-police-advocacy")]
    assert "clause cr-police-advocacy" in errors[0].message
    assert errors[0].message.endswith("disagree on requires_consent")


def test_overlap_across_agreements_only_when_both_can_apply() -> None:
    v1 = agreement(clause_doc(id="a"))
    v2_same_window = agreement(clause_doc(id="a", data_classes=["offence"]), version=2)
    assert "clause.overlap" in rules_of(lint([v1, v2_same_window]), "error")
    v2_later = agreement(
        clause_doc(id="a", data_classes=["offence"]),
        version=2,
        valid_from="2028-01-01",
        valid_until="2029-12-31",
        review_date="2029-06-30",
    )
    assert lint([v1, v2_later]) == []
    v2_suspended = agreement(clause_doc(id="a", data_classes=["offence"]), version=2, status="suspended")
    assert lint([v1, v2_suspended]) == []


def test_consent_recorder_must_be_a_party() -> None:
    findings = lint([agreement(parties=["police", "probation"],
                               consent_recorders={"victim": ["police", "advocacy"]})])
    assert [(f.severity, f.rule, f.clause_id) for f in findings] == [
        ("error", "P6.consent_recorder", None)
    ]
    assert "consent_recorders.victim names advocacy, not parties" in findings[0].message


@pytest.mark.parametrize("kind", ["victim", "intervention"])
def test_consent_needed_but_no_one_may_record_it(kind: str) -> None:
    other = "intervention" if kind == "victim" else "victim"
    gated = clause_doc(id="gated", requires_consent=True, consent_kind=kind)
    findings = lint([agreement(gated, consent_recorders={other: ["police"]})])
    assert [(f.severity, f.rule, f.clause_id) for f in findings] == [
        ("error", "P6.consent_recorder", None)
    ]
    assert f"clauses gated need {kind} consent" in findings[0].message
    empty = lint([agreement(gated, consent_recorders={kind: []})])
    assert rules_of(empty, "error") == {"P6.consent_recorder"}
    assert lint([agreement(gated, consent_recorders={kind: ["probation"]})]) == []


def test_no_recorder_needed_without_a_consent_gate() -> None:
    assert lint([agreement(clause_doc(), consent_recorders={})]) == []


def test_correction_clause_wider_than_the_pair() -> None:
    findings = lint(
        [
            agreement(
                clause_doc(id="cr"),
                clause_doc(
                    id="cn",
                    message_types=["correction_notice"],
                    data_classes=["perpetrator_identity", "offence", "victim_identity"],
                ),
            )
        ]
    )
    assert [(f.severity, f.rule, f.clause_id) for f in findings] == [
        ("warning", "P10.correction_scope", "cn")
    ]
    assert "victim_identity" in findings[0].message


def test_finding_reads_as_one_line() -> None:
    findings = lint(load_bundle(EXPIRED), today=date(2026, 11, 21))
    text = str(findings[0])
    assert text.startswith(str(EXPIRED)) and "warning" in text and "\n" not in text
