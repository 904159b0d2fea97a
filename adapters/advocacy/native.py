"""The advocacy service's client update (JSON, written by the advocate) as canonical messages.

Victim-centred: the record is about the client (the victim), in her words where it can be::

    {"record_type": "client_update", "update_id": "...",
     "client": {"client_id", "partnership": {"case_id", "victim_ref", "perpetrator_ref", "consent_ref"}},
     "consent": {...},            -> consent_change (her decision about sharing, to police/probation)
     "views": {...}, "safety_plan": {...}, "incidents": [...], "new_contact_details": {...}
                                  -> victim_safety_update (police get all of it; the DSA decides)}

docs/adapters.md lists every field.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.advocacy import AGENCY
from adapters.advocacy.notice import render
from adapters.fields import Fields, address, contact_window, drop_none, practitioner, subject_ref
from adapters.native import NativeRecordInvalid, Outgoing, Problem, Rendered

MEASURES = {
    "PERSONAL_ALARM": "personal_alarm",
    "TARGET_HARDENING": "target_hardening",
    "CAMERA": "cctv_or_doorbell_camera",
    "POLICE_MARKER": "police_address_marker",
    "SAFE_ROUTE": "safe_route_plan",
    "ONLINE_SAFETY": "phone_and_online_safety",
    "WORKPLACE_PLAN": "workplace_plan",
    "RELOCATION": "relocation_support",
    "OTHER": "other",
}
STATUS = {"PLANNED": "planned", "IN_PLACE": "in_place", "DECLINED": "declined", "REMOVED": "removed"}
CONSENT = {"GIVEN": "given", "WITHDRAWN": "withdrawn"}
WITHDRAWAL = {
    "CLIENT_REQUEST": "subject_request",
    "SAFETY": "safety_concern",
    "NO_LONGER_NEEDED": "no_longer_needed",
    "OTHER": "other",
}


class AdvocacyIntake:
    """``NativeFormat`` of the advocacy service's client update."""

    agency = AGENCY

    def read(self, source: str, data: bytes) -> list[Outgoing]:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise NativeRecordInvalid(source, [Problem(source, "<file>", "not_json")]) from None
        problems: list[Problem] = []
        label = f"update {doc.get('update_id', '?')}" if isinstance(doc, dict) else source
        f = Fields(label, doc, problems)
        if f.text("record_type", required=True) not in (None, "client_update"):
            f.problem("record_type", "unknown_record_type")
        out = _Update(f).messages()
        if problems:
            raise NativeRecordInvalid(source, problems)
        return out

    def write(self, received: dict[str, Any]) -> list[Rendered]:
        return render(received)


class _Update:
    def __init__(self, f: Fields) -> None:
        self.f = f
        client = f.nested("client", required=True)
        link = client.nested("partnership", required=True) if client else None
        self.link = link or Fields(f.record, {}, f.problems, "client.partnership.")
        self.case_id = self.link.text("case_id", required=True) or ""
        self.subjects = [
            {"ref": subject_ref(self.link.text(key, required=True) or ""), "category": cat}
            for key, cat in (("perpetrator_ref", "suspect"), ("victim_ref", "victim"))
        ]
        self.consent_ref = self.link.text("consent_ref")

    def messages(self) -> list[Outgoing]:
        out = []
        consent = self.f.nested("consent")
        if consent is not None:
            self.consent_ref = consent.text("ref") or self.consent_ref
            out.append(
                self.outgoing(
                    "consent_change",
                    {"victim_consent": self.consent(consent)},
                    "case_management",
                    consent.text("ref") or self.consent_ref,
                )
            )
        safety = self.safety_update()
        if safety:
            out.append(self.outgoing("victim_safety_update", safety, "safeguarding", self.consent_ref))
        if not out:
            self.f.problem("", "nothing_to_send")
        return out

    def outgoing(
        self, masp_type: str, body: dict[str, Any], purpose: str, consent_ref: str | None
    ) -> Outgoing:
        return Outgoing(
            self.f.record,
            masp_type,
            drop_none(body),
            self.case_id,
            purpose,
            self.subjects,
            consent_ref=consent_ref,
            sources=SOURCES,
        )

    def consent(self, c: Fields) -> dict[str, Any]:
        scope = c.nested("scope", required=True)
        return drop_none(
            {
                "status": c.code("status", CONSENT, required=True),
                "effective_date": c.date("date", required=True),
                "given_by": "subject",
                "withdrawal_reason": c.code("withdrawal_reason", WITHDRAWAL),
                "scope": drop_none(
                    {
                        "purposes": [p.lower() for p in scope.texts("purposes", required=True)],
                        "recipients": [a.lower() for a in scope.texts("agencies", required=True)],
                    }
                )
                if scope
                else None,
                "recorded_by": practitioner(c.nested("recorded_by"), AGENCY),
            }
        )

    def safety_update(self) -> dict[str, Any]:
        f = self.f
        views, plan, contact = f.nested("views"), f.nested("safety_plan"), f.nested("new_contact_details")
        body: dict[str, Any] = {
            "victim_views": drop_none(
                {
                    "summary": views.text("in_her_words", required=True),
                    "recorded_on": views.date("recorded_on", required=True),
                    "on_orders": views.text("about_orders"),
                    "on_bail": views.text("about_bail"),
                    "on_contact": views.text("about_contact"),
                    "supports_prosecution": views.flag("supports_prosecution"),
                    "preferred_language": views.text("language"),
                }
            )
            if views
            else None,
            "safety_measures": [
                drop_none(
                    {
                        "kind": m.code("code", MEASURES, required=True),
                        "status": m.code("status", STATUS, required=True),
                        "since": m.date("since"),
                        "detail": m.text("notes"),
                    }
                )
                for m in plan.items("measures")
            ]
            or None
            if plan
            else None,
            "safety_plan_review_date": plan.date("review_date") if plan else None,
            "new_incidents": [
                drop_none(
                    {
                        "occurred_on": i.date("date", required=True),
                        "summary": i.text("what_happened", required=True),
                        "reported_to_police": i.flag("reported_to_police", required=True),
                        "crime_reference": (i.text("crime_ref") or "").replace(" ", "") or None,
                    }
                )
                for i in f.items("incidents")
            ]
            or None,
        }
        if contact is not None:
            body |= {
                "victim_address": address(contact.nested("address")),
                "victim_phone": contact.text("phone"),
                "victim_email": contact.text("email"),
                "victim_safe_contact_times": [contact_window(w) for w in contact.items("safe_times")] or None,
            }
        return drop_none(body)


SOURCES = {
    "victim_views": "views",
    "safety_measures": "safety_plan.measures",
    "safety_plan_review_date": "safety_plan.review_date",
    "new_incidents": "incidents",
    "victim_address": "new_contact_details.address",
    "victim_phone": "new_contact_details.phone",
    "victim_email": "new_contact_details.email",
    "victim_safe_contact_times": "new_contact_details.safe_times",
    "victim_consent": "consent",
}
