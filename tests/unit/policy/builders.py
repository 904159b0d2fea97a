"""Small builders for DSA policy tests: agreements, requests and overrides with defaults.

Field names and their classes are written out here, not read from ``schemas/``, so these
tests pin the engine's behaviour independently of the message models.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from broker.policy import (
    DataSharingAgreement,
    DsaBundle,
    Override,
    PolicyRequest,
)
from schemas._base import DataClass as D

AT = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)
REPO = Path(__file__).resolve().parents[3]
SAMPLE_DIR = REPO / "deploy" / "dsa"
SAMPLE = SAMPLE_DIR / "hiow-masp.yaml"
EXPIRED = SAMPLE_DIR / "expired" / "hiow-masp-2024.yaml"

PART3 = "DPA 2018 Part 3 s35(2)(b): law enforcement task"
PART3_SENSITIVE = "DPA 2018 s35(5) strictly necessary + Sch 8 para 1"
GDPR_TASK = "UK GDPR Art 6(1)(e) public task"
GDPR_SENSITIVE = "UK GDPR Art 9(2)(g) + DPA 2018 Sch 1 para 10"

#: A case referral as police send it: every class of the catalogue row.
CASE_REFERRAL: dict[str, D] = {
    "perpetrator_name": D.PERPETRATOR_IDENTITY,
    "perpetrator_date_of_birth": D.PERPETRATOR_IDENTITY,
    "perpetrator_address": D.PERPETRATOR_ADDRESS,
    "victim_name": D.VICTIM_IDENTITY,
    "victim_address": D.VICTIM_LOCATION,
    "victim_phone": D.VICTIM_LOCATION,
    "victim_email": D.VICTIM_LOCATION,
    "victim_workplace": D.VICTIM_LOCATION,
    "victim_safe_contact_times": D.VICTIM_LOCATION,
    "exclusion_zones": D.VICTIM_LOCATION,
    "offence_codes": D.OFFENCE,
    "behaviour_summary": D.OFFENCE,
    "cj_status": D.CJ_STATUS,
    "bail_conditions": D.CJ_STATUS,
    "orders": D.ORDERS,
    "sdash_yes_count": D.RISK_SCREENING,
    "sash_concern_level": D.RISK_SCREENING,
    "health_flags": D.HEALTH_FLAGS,
    "children": D.CHILDREN,
    "referrer": D.REFERRER,
}


def clause_doc(**kw: Any) -> dict[str, Any]:
    """A clause as YAML would give it; police -> probation case referral by default."""
    doc: dict[str, Any] = {
        "id": "c1",
        "from": "police",
        "to": ["probation"],
        "message_types": ["case_referral"],
        "purposes": ["risk_management"],
        "regime": "dpa2018_part3",
        "lawful_basis": PART3,
        "data_classes": ["perpetrator_identity", "offence"],
        "retention_days": 30,
    }
    doc.update(kw)
    return doc


def agreement(*clauses: Mapping[str, Any], **kw: Any) -> DataSharingAgreement:
    doc: dict[str, Any] = {
        "id": "test-dsa",
        "version": 1,
        "title": "Test agreement",
        "status": "active",
        "valid_from": "2026-01-01",
        "valid_until": "2027-12-31",
        "review_date": "2027-06-30",
        "parties": ["police", "probation", "nhs", "advocacy"],
        "purposes": ["risk_management", "intervention", "victim_support", "safeguarding"],
        # Someone records each kind of consent, so a requires_consent clause lints clean.
        "consent_recorders": {"victim": ["police"], "intervention": ["probation"]},
        "clauses": [dict(c) for c in clauses] or [clause_doc()],
    }
    doc.update(kw)
    return DataSharingAgreement.model_validate(doc)


def bundle(*agreements: DataSharingAgreement) -> DsaBundle:
    return DsaBundle(agreements or (agreement(),))


def request(**kw: Any) -> PolicyRequest:
    args: dict[str, Any] = {
        "sender": "police",
        "recipient": "probation",
        "masp_type": "case_referral",
        "purpose": "risk_management",
        "fields": {"perpetrator_name": D.PERPETRATOR_IDENTITY, "offence_codes": D.OFFENCE},
        "at": AT,
    }
    args.update(kw)
    return PolicyRequest(**args)


def override(**kw: Any) -> Override:
    """A complete Caldicott Guardian override releasing clinical detail to police."""
    doc: dict[str, Any] = {
        "justification": {
            "risk_to": "victim",
            "harm": "serious_violence",
            "consent_not_sought_reason": "would_increase_risk",
        },
        "legal_basis": "UK GDPR Art 9(2)(g) + DPA 2018 Sch 1 para 10",
        "authoriser": {"id": "cg-0001", "role": "caldicott_guardian"},
        "subject_informed": False,
        "expires_at": (AT + timedelta(hours=24)).isoformat(),
        "data_classes": ["clinical_detail"],
        "recipients": ["police"],
    }
    doc.update(kw)
    return Override.model_validate(doc)
