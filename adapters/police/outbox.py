"""What the police records system imports from the partnership: one JSON task per delivery.

Risk alerts become priority tasks for the officer in case; victim safety updates become a
safeguarding update with any new address flagged for a location marker; every other
message type is filed as a partner update on the occurrence.
"""

from __future__ import annotations

from typing import Any

from adapters.native import Rendered
from adapters.render import as_json, file_name, meta, name_text

PRIORITY = {"immediate": "P1_IMMEDIATE", "same_day": "P2_SAME_DAY", "routine": "P3_ROUTINE"}
CATEGORY = {
    "risk_concern_alert": "RISK_ALERT",
    "victim_safety_update": "VICTIM_SAFETY_UPDATE",
    "intervention_status_update": "INTERVENTION_STATUS",
    "offender_management_update": "OFFENDER_MANAGEMENT",
    "consent_change": "CONSENT",
    "case_referral": "PARTNER_REFERRAL",
}


def render(received: dict[str, Any]) -> list[Rendered]:
    fields: dict[str, Any] = received["fields"]
    masp_type = received["delivery"]["masp_type"]
    task: dict[str, Any] = {
        "import": "MASP_PARTNER_UPDATE",
        "category": CATEGORY.get(masp_type, "PARTNER_UPDATE"),
        "partnership": meta(received),
    }
    if masp_type == "risk_concern_alert":
        task |= _risk_alert(fields)
    elif masp_type == "victim_safety_update":
        task |= _safety_update(fields)
    else:
        task |= {"priority": "P4_INFORMATION", "details": fields}
    return [Rendered(file_name(received, "json"), as_json(task))]


def _risk_alert(f: dict[str, Any]) -> dict[str, Any]:
    return {
        "priority": PRIORITY.get(str(f.get("disclosure_urgency")), "P2_SAME_DAY"),
        "nominal": {
            "name": name_text(f.get("perpetrator_name")),
            "dob": f.get("perpetrator_date_of_birth"),
            "pnc_id": f.get("perpetrator_police_id"),
            "probation_crn": f.get("perpetrator_probation_id"),
        },
        "victim": name_text(f.get("victim_name")),
        "disclosure": {
            "kinds": f.get("disclosure_kinds"),
            "summary": f.get("disclosure_summary"),
            "at": f.get("disclosed_at"),
            "persons_at_risk": f.get("persons_at_risk"),
        },
        "recommended_action": f.get("recommended_action"),
        "call_back": f.get("reported_by"),
        # present only when the sender's override let it through: marked so it is handled as such
        "clinical_note_under_override": f.get("clinical_note"),
    }


def _safety_update(f: dict[str, Any]) -> dict[str, Any]:
    contact = {
        k.removeprefix("victim_"): f[k]
        for k in (
            "victim_address",
            "victim_phone",
            "victim_email",
            "victim_workplace",
            "victim_safe_contact_times",
        )
        if k in f
    }
    markers = [m for m in f.get("safety_measures", []) if m.get("kind") == "police_address_marker"]
    return {
        "priority": "P2_SAME_DAY" if f.get("new_incidents") or contact else "P3_ROUTINE",
        "victim_views": f.get("victim_views"),
        "safety_plan": {
            "measures": f.get("safety_measures"),
            "review_date": f.get("safety_plan_review_date"),
        },
        "new_incidents": f.get("new_incidents"),
        "victim_contact_update": contact or None,
        "location_marker_requested": bool(markers) and "victim_address" in f,
    }
