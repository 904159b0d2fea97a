"""Properties that hold for any DSA, any message and any override.

The oracles here restate the DSA rules independently of the engine's code: what a clause
grants, when an override is valid, when an agreement is in force.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.policy import (
    Clause,
    ConsentState,
    DataSharingAgreement,
    Decision,
    DsaBundle,
    Outcome,
    Override,
    PolicyRequest,
    evaluate,
)
from broker.policy.dsa import DsaStatus, parse_agreement
from schemas._base import NEVER_TO_NHS, SPECIAL_CATEGORY, DataClass

AGENCIES = ("police", "probation", "nhs", "advocacy")
TYPES = ("case_referral", "risk_concern_alert", "intervention_referral")
PURPOSES = ("risk_management", "safeguarding", "intervention")
ROLES = ("caldicott_guardian", "duty_inspector")
CLASSES = tuple(DataClass)
RULE_IDS = {
    "clause.none",
    "clause.overlap",
    "P1.validity",
    "P2.purpose",
    "P4.minimisation",
    "P4.hard_rule",
    "P5.special_category",
    "P6.consent",
    "P7.override",
    "P8.eligibility",
}
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

dates = st.dates(min_value=date(2025, 1, 1), max_value=date(2027, 12, 31))
instants = st.datetimes(  # naive bounds, then UTC: hypothesis's way to draw aware times
    min_value=datetime(2025, 1, 1), max_value=datetime(2028, 6, 30), timezones=st.just(UTC)
)


#: Seven times in eight: hypothesis favours small integers, so a plain range would not do.
AIMED = st.sampled_from([True] * 7 + [False])


def subset(items: tuple[str, ...], min_size: int = 1) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(items), min_size=min_size, max_size=len(items), unique=True)


@st.composite
def clauses(draw: st.DrawFn, index: int) -> dict[str, Any]:
    return {
        "id": f"c{index}",
        "from": draw(st.sampled_from(AGENCIES)),
        "to": draw(subset(AGENCIES)),
        "message_types": draw(subset(TYPES)),
        "purposes": draw(subset(PURPOSES)),
        "regime": draw(st.sampled_from(["uk_gdpr", "dpa2018_part3"])),
        "lawful_basis": "UK GDPR Art 6(1)(e)",
        "special_category_condition": draw(st.none() | st.just("Art 9(2)(g) + Sch 1 para 10")),
        "data_classes": draw(st.lists(st.sampled_from(CLASSES), min_size=1, unique=True)),
        "requires_consent": draw(st.booleans()),
        "consent_kind": draw(st.sampled_from(["victim", "intervention"])),
        "retention_days": draw(st.integers(1, 4000)),
        "override_authoriser_roles": ["caldicott_guardian"]
        if draw(AIMED)
        else draw(subset(ROLES, min_size=0)),
    }


@st.composite
def agreements(draw: st.DrawFn, version: int) -> DataSharingAgreement:
    start = draw(dates)
    end = start + timedelta(days=draw(st.integers(0, 900)))
    n = draw(st.integers(1, 6))
    return DataSharingAgreement.model_validate(
        {
            "id": draw(st.sampled_from(["dsa-a", "dsa-b"])),
            "version": version,
            "title": "random",
            "status": "active" if draw(AIMED) else draw(st.sampled_from(["suspended", "terminated"])),
            "valid_from": start,
            "valid_until": end,
            "review_date": start + (end - start) / 2,
            "parties": list(AGENCIES) if draw(AIMED) else ["police", "probation", "nhs"],
            "purposes": list(PURPOSES) if draw(AIMED) else draw(subset(PURPOSES)),
            "clauses": [draw(clauses(i)) for i in range(n)],
        }
    )


@st.composite
def bundles(draw: st.DrawFn) -> DsaBundle:
    count = draw(st.integers(1, 3))
    return DsaBundle(tuple(draw(agreements(version)) for version in range(count)))


@st.composite
def overrides(draw: st.DrawFn, around: datetime, recipient: str, roles: list[str]) -> Override:
    """Mostly well-formed, for this recipient, by an allowed role; sometimes not."""
    valid = draw(st.booleans())  # otherwise one part of it is broken
    broken = draw(st.sampled_from(["risk_to", "harm", "legal_basis", "role", "expiry"]))
    role = draw(st.sampled_from(roles)) if draw(AIMED) and roles else "duty_inspector"
    return Override.model_validate(
        {
            "justification": {
                "risk_to": "pet" if not valid and broken == "risk_to" else "victim",
                "harm": "Free Text!" if not valid and broken == "harm" else "serious_violence",
                "consent_not_sought_reason": "would_increase_risk",
            },
            "legal_basis": "" if not valid and broken == "legal_basis" else "Art 9(2)(g)",
            "authoriser": {"id": "a-1", "role": "nobody" if not valid and broken == "role" else role},
            "subject_informed": draw(st.booleans()),
            "expires_at": around
            + timedelta(
                hours=-draw(st.integers(0, 24))
                if not valid and broken == "expiry"
                else draw(st.integers(1, 72))
            ),
            "data_classes": draw(
                st.lists(st.sampled_from(CLASSES), min_size=1 if valid else 0, max_size=4, unique=True)
            ),
            "recipients": draw(st.sampled_from([[recipient], [recipient, "police"], []]))
            if draw(AIMED)
            else draw(subset(AGENCIES, min_size=0)),
        }
    )


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[DsaBundle, PolicyRequest]:
    """A bundle and a request, mostly aimed at one of its clauses so that some flows pass."""
    b = draw(bundles())
    agreement, clause = draw(st.sampled_from(list(b.clauses())))
    if draw(AIMED):
        sender = clause.from_
        recipient = draw(st.sampled_from(clause.to))
        masp_type = draw(st.sampled_from(clause.message_types))
        purpose = draw(st.sampled_from(clause.purposes)) if draw(AIMED) else "marketing"
        day = agreement.valid_from + timedelta(
            days=draw(st.integers(-5, (agreement.valid_until - agreement.valid_from).days + 5))
        )
        at = datetime.combine(day, datetime.min.time(), UTC) + timedelta(minutes=draw(st.integers(0, 1439)))
    else:
        sender, recipient = draw(st.sampled_from(AGENCIES)), draw(st.sampled_from(AGENCIES))
        masp_type, purpose = draw(st.sampled_from(TYPES)), draw(st.sampled_from(PURPOSES))
        at = draw(instants)
    roles = list(clause.override_authoriser_roles)
    ov = draw(st.none() | overrides(at, recipient, roles))
    # Fields lean towards the classes in play, so grants and refusals both get exercised.
    in_play = [*clause.data_classes, *(ov.data_classes if ov else ()), *sorted(SPECIAL_CATEGORY)]
    names = [f"f{i}" for i in range(12)]
    fields = draw(
        st.dictionaries(
            st.sampled_from(names), st.sampled_from(in_play) | st.sampled_from(CLASSES), max_size=12
        )
    )
    consent = draw(
        st.none()
        | st.builds(
            ConsentState,
            status=st.sampled_from(["given", "given", "withdrawn"]),
            recorded=st.booleans() | st.just(True),
            in_scope=st.booleans() | st.just(True),
        )
    )
    req = PolicyRequest(
        sender=sender,
        recipient=recipient,
        masp_type=masp_type,
        purpose=purpose,
        fields=fields,
        at=at,
        consent=consent,
        override=ov,
        facts={
            "cj_status": draw(st.sampled_from(["charged", "charged", "under_investigation", None])),
            "case_holder": draw(st.booleans() | st.just(True)),
        },
    )
    return b, req


@st.composite
def override_scenarios(draw: st.DrawFn) -> tuple[DsaBundle, PolicyRequest]:
    """One in-force clause that permits the flow; an override, valid or broken in one way."""
    sender = draw(st.sampled_from(["nhs", "nhs", "police", "advocacy"]))
    recipient = draw(st.sampled_from([a for a in AGENCIES if a != sender]))
    clause: dict[str, Any] = {
        "id": "c0",
        "from": sender,
        "to": [recipient],
        "message_types": ["risk_concern_alert"],
        "purposes": ["risk_management"],
        "regime": "uk_gdpr",
        "lawful_basis": "Art 6(1)(e)",
        "special_category_condition": draw(st.sampled_from(["Art 9(2)(g) + Sch 1", None])),
        "data_classes": draw(st.lists(st.sampled_from(CLASSES), min_size=1, unique=True)),
        "retention_days": 7,
        "override_authoriser_roles": ["caldicott_guardian"],
    }
    b = DsaBundle(
        (
            DataSharingAgreement.model_validate(
                {
                    "id": "dsa-o",
                    "version": 1,
                    "title": "t",
                    "status": "active",
                    "valid_from": "2026-01-01",
                    "valid_until": "2026-12-31",
                    "review_date": "2026-12-31",
                    "parties": list(AGENCIES),
                    "purposes": ["risk_management"],
                    "clauses": [clause],
                }
            ),
        )
    )
    at = datetime(2026, 6, 1, 12, tzinfo=UTC)
    valid = draw(st.booleans())
    broken = draw(st.sampled_from(["risk_to", "harm", "legal_basis", "role", "expiry", "to"]))
    ov = Override.model_validate(
        {
            "justification": {
                "risk_to": "pet" if not valid and broken == "risk_to" else "child",
                "harm": "Free Text!" if not valid and broken == "harm" else "serious_harm",
                "consent_not_sought_reason": "urgent",
            },
            "legal_basis": " " if not valid and broken == "legal_basis" else "Art 9(2)(g)",
            "authoriser": {
                "id": "a-9",
                "role": "team_lead" if not valid and broken == "role" else "caldicott_guardian",
            },
            "subject_informed": False,
            "expires_at": at
            + timedelta(
                minutes=-draw(st.integers(0, 600))
                if not valid and broken == "expiry"
                else draw(st.integers(1, 600))
            ),
            "data_classes": draw(st.lists(st.sampled_from(CLASSES), min_size=1, unique=True)),
            "recipients": ["probation"] if not valid and broken == "to" else [recipient],
        }
    )
    in_play = [*clause["data_classes"], *ov.data_classes, DataClass.CLINICAL_DETAIL]
    fields = draw(
        st.dictionaries(st.sampled_from([f"f{i}" for i in range(8)]), st.sampled_from(in_play), min_size=1)
    )
    req = PolicyRequest(sender, recipient, "risk_concern_alert", "risk_management", fields, at, override=ov)
    return b, req


def applied(b: DsaBundle, d: Decision) -> tuple[DataSharingAgreement, Clause]:
    assert d.clause is not None
    for agreement, clause in b.clauses():
        if (agreement.id, agreement.version, clause.id) == (
            d.clause.dsa_id,
            d.clause.dsa_version,
            d.clause.clause_id,
        ):
            return agreement, clause
    raise AssertionError("decision cites a clause the bundle does not hold")


def applicable(b: DsaBundle, req: PolicyRequest) -> list[Clause]:
    """Every clause of an agreement in force that covers the flow, for its purpose."""
    day = req.at.date()
    return [
        clause
        for agreement, clause in b.clauses()
        if agreement.status is DsaStatus.ACTIVE
        and agreement.valid_from <= day <= agreement.valid_until
        and {req.sender, req.recipient} <= set(agreement.parties)
        and clause.from_ == req.sender
        and req.recipient in clause.to
        and req.masp_type in clause.message_types
        and req.purpose in clause.purposes
        and req.purpose in agreement.purposes
    ]


def outcome_terms(clause: Clause) -> tuple[object, ...]:
    """What a clause decides or records; the consent kind only matters behind a consent gate."""
    return (
        frozenset(clause.data_classes),
        clause.requires_consent,
        clause.consent_kind if clause.requires_consent else None,
        clause.regime,
        clause.lawful_basis,
        clause.special_category_condition,
        clause.retention_days,
        clause.escalation_hours,
        frozenset(clause.override_authoriser_roles),
        clause.subjects_at_risk,
    )


def valid_override_classes(req: PolicyRequest, clause: Clause) -> set[DataClass]:
    ov = req.override
    if ov is None or req.recipient not in ov.recipients:
        return set()
    j = ov.justification
    valid = (
        j.risk_to in {"victim", "public", "child", "staff"}
        and bool(_CODE.match(j.harm))
        and bool(_CODE.match(j.consent_not_sought_reason))
        and bool(ov.legal_basis.strip())
        and bool(ov.authoriser.id.strip())
        and ov.authoriser.role in clause.override_authoriser_roles
        and req.at < ov.expires_at
    )
    return set(ov.data_classes) if valid else set()


PROPERTY_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(scenario=scenarios())
def test_decision_invariants(scenario: tuple[DsaBundle, PolicyRequest]) -> None:
    assert_invariants(*scenario)


@PROPERTY_SETTINGS
@given(scenario=override_scenarios())
def test_override_invariants(scenario: tuple[DsaBundle, PolicyRequest]) -> None:
    assert_invariants(*scenario)


def assert_invariants(b: DsaBundle, req: PolicyRequest) -> None:
    d = evaluate(b, req)
    fields = req.fields
    disclosed, withheld = set(d.disclosed), set(d.withheld)

    # Partition: every field is disclosed or withheld, never both, and has a reason.
    assert not disclosed & withheld
    assert disclosed | withheld == set(fields)
    assert set(d.withheld_reasons) == withheld
    assert set(d.withheld_reasons.values()) <= RULE_IDS
    assert set(d.rules) <= RULE_IDS

    # The hard rule.
    if req.recipient == "nhs":
        assert not {fields[n] for n in disclosed} & NEVER_TO_NHS

    if not d.delivers:
        assert disclosed == set()
        assert d.retention_until is None
        assert not d.override_used
        return

    agreement, clause = applied(b, d)
    # Only an in-force agreement, for its purpose, with consent where required, permits.
    assert agreement.in_force_on(req.at.date())
    assert req.purpose in clause.purposes and req.purpose in agreement.purposes
    assert clause.from_ == req.sender and req.recipient in clause.to
    # ...and only if every other clause that applies would decide it the same way.
    for other in applicable(b, req):
        assert outcome_terms(other) == outcome_terms(clause)
    if clause.requires_consent:
        assert req.consent is not None and req.consent.current
    if req.masp_type == "intervention_referral":
        assert req.facts["cj_status"] == "charged" and req.facts["case_holder"] is True

    # Minimisation: disclosed classes are the clause's or a valid override's.
    extra = valid_override_classes(req, clause)
    granted = set(clause.data_classes) | extra
    assert {fields[n] for n in disclosed} <= granted
    if req.sender == "nhs" and DataClass.CLINICAL_DETAIL not in extra:
        assert DataClass.CLINICAL_DETAIL not in {fields[n] for n in disclosed}
    if not clause.special_category_condition:
        assert not {fields[n] for n in disclosed} & SPECIAL_CATEGORY
    if d.override_used:
        assert extra
    sensitive = bool({fields[n] for n in disclosed} & SPECIAL_CATEGORY)
    assert (d.classification == "OFFICIAL-SENSITIVE") is sensitive
    assert d.retention_until == req.at + timedelta(days=clause.retention_days)


@PROPERTY_SETTINGS
@given(scenario=scenarios(), day_offset=st.integers(0, 2000))
def test_nothing_flows_outside_an_agreement_in_force(
    scenario: tuple[DsaBundle, PolicyRequest], day_offset: int
) -> None:
    b, req = scenario
    suspended = DsaBundle(tuple(a.model_copy(update={"status": DsaStatus.SUSPENDED}) for a in b.agreements))
    assert evaluate(suspended, req).outcome is Outcome.DENY
    last = max(a.valid_until for a in b.agreements)
    later = datetime.combine(last, datetime.min.time(), UTC) + timedelta(days=1 + day_offset)
    expired = PolicyRequest(
        req.sender,
        req.recipient,
        req.masp_type,
        req.purpose,
        req.fields,
        later,
        req.consent,
        req.override,
        req.facts,
    )
    assert evaluate(b, expired).outcome is Outcome.DENY


@settings(max_examples=100, deadline=None)
@given(scenario=scenarios())
def test_evaluation_is_deterministic(scenario: tuple[DsaBundle, PolicyRequest]) -> None:
    b, req = scenario
    assert evaluate(b, req) == evaluate(b, req)


@settings(max_examples=60, deadline=None)
@given(a=agreements(0), flow=st.booleans(), width=st.integers(40, 200))
def test_policy_hash_ignores_file_layout(a: DataSharingAgreement, flow: bool, width: int) -> None:
    doc = a.model_dump(mode="json", by_alias=True)
    compact = yaml.safe_dump(doc, default_flow_style=flow, width=width, sort_keys=False)
    spread = "# a comment\n\n" + yaml.safe_dump(doc, default_flow_style=False, indent=4)
    h1 = DsaBundle((parse_agreement(compact),)).policy_hash
    h2 = DsaBundle((parse_agreement(spread),)).policy_hash
    assert h1 == h2 == DsaBundle((a,)).policy_hash
