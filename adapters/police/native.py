"""The police records system's occurrence export (JSON) read as canonical messages.

One export file is one occurrence with the events recorded since the last export::

    {"export": {"system": "...", "generated_at": "..."},
     "occurrence": {"masp_case_id", "crime_references", "offences", "mo_summary", "suspect",
                    "victim", "risk": {"sdash", "sash_concern"}, "orders", "officer_in_case", ...},
     "events": [{"event_id", "type", "date", ...}, ...]}

Event types and what each sends (docs/adapters.md has every field):
``MASP_REFERRAL`` -> case_referral; ``VICTIM_ADVOCACY_REFERRAL`` -> the victim's consent
(consent_change) then victim_advocacy_referral; ``ARREST``, ``BAIL``, ``CHARGE``, ``NFA``,
``CONVICTION``, ``SENTENCE``, ``SPO_APPLIED``, ``SPO_GRANTED``, ``SPO_VARIED``,
``SPO_DISCHARGED``, ``SPO_BREACHED`` -> cj_status_update.
"""

from __future__ import annotations

import json
from typing import Any

from adapters.fields import (
    METHODS,
    Fields,
    address,
    contact_window,
    drop_none,
    person_name,
    practitioner,
    subject_ref,
)
from adapters.native import NativeRecordInvalid, Outgoing, Problem, Rendered
from adapters.police import AGENCY
from adapters.police.codes import (
    BAIL_KIND,
    CJ_STATUS,
    CONCERN,
    CONSENT_PURPOSES,
    EVENT_STATUS,
    HEALTH,
    HEALTH_SOURCE,
    ORDER_KIND,
    ORDER_STATUS,
    PNC,
    RELATIONSHIP,
    SDASH,
    SHARE_WITH,
    SOURCES,
    SPO_EVENTS,
)
from adapters.police.outbox import render


class PoliceExport:
    """``NativeFormat`` of the police occurrence export."""

    agency = AGENCY

    def read(self, source: str, data: bytes) -> list[Outgoing]:
        problems: list[Problem] = []
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise NativeRecordInvalid(source, [Problem(source, "<file>", "not_json")]) from None
        root = Fields(source, doc, problems)
        occ = root.nested("occurrence", required=True)
        events = root.items("events", required=True)
        out: list[Outgoing] = []
        if occ is not None:
            case = _Occurrence(occ)
            for i, event in enumerate(events):
                label = f"event {event.text('event_id') or i + 1}"
                ev = Fields(label, event.data, problems, "")
                out += case.messages(ev)
        if problems:
            raise NativeRecordInvalid(source, problems)
        return out

    def write(self, received: dict[str, Any]) -> list[Rendered]:
        return render(received)


class _Occurrence:
    def __init__(self, occ: Fields) -> None:
        self.f = occ
        self.case_id = occ.text("masp_case_id", required=True) or ""
        suspect = occ.nested("suspect", required=True)
        victim = occ.nested("victim", required=True)
        self.suspect = suspect or Fields(occ.record, {}, occ.problems)
        self.victim = victim or Fields(occ.record, {}, occ.problems)
        self.pnc = self.suspect.text("pnc_id", required=True, pattern=PNC)
        self.victim_ref = self.victim.text("nominal_ref", required=True)

    def subjects(self) -> list[dict[str, str]]:
        return [
            {"ref": subject_ref(self.pnc or ""), "category": "suspect"},
            {"ref": subject_ref(self.victim_ref or ""), "category": "victim"},
        ]

    def consent_ref(self) -> str | None:
        consent = self.victim.nested("consent")
        if consent is None or consent.text("status") != "GIVEN":
            return None
        return consent.text("ref")

    def messages(self, ev: Fields) -> list[Outgoing]:
        kind = ev.text("type", required=True)
        # the occurrence's fields are reported under the event that needed them
        self.rebind(ev.record)
        if kind == "MASP_REFERRAL":
            return [self.envelope(ev, "case_referral", self.case_referral(ev), "risk_management")]
        if kind == "VICTIM_ADVOCACY_REFERRAL":
            return self.advocacy_referral(ev)
        if kind in EVENT_STATUS or kind in SPO_EVENTS:
            return [
                self.envelope(
                    ev,
                    "cj_status_update",
                    self.cj_update(ev, kind),
                    "risk_management",
                    consent_ref=self.consent_ref(),
                )
            ]
        if kind is not None:
            ev.problem("type", "unknown_event_type")
        return []

    def rebind(self, record: str) -> None:
        for f in (self.f, self.suspect, self.victim):
            f.record = record

    def envelope(
        self, ev: Fields, masp_type: str, body: dict[str, Any], purpose: str, consent_ref: str | None = None
    ) -> Outgoing:
        override = ev.raw("override")
        return Outgoing(
            ev.record,
            masp_type,
            drop_none(body),
            self.case_id,
            purpose,
            self.subjects(),
            consent_ref=consent_ref,
            override=override if isinstance(override, dict) else None,
            sources=SOURCES,
        )

    # --- bodies --------------------------------------------------------------------------

    def case_referral(self, ev: Fields) -> dict[str, Any]:
        s, v, occ = self.suspect, self.victim, self.f
        risk = occ.nested("risk", required=True)
        answers, yes = self.sdash(risk)
        return {
            "perpetrator_name": person_name(s),
            "perpetrator_aliases": s.texts("aliases") or None,
            "perpetrator_date_of_birth": s.date("dob"),
            "perpetrator_police_id": self.pnc,
            "perpetrator_probation_id": s.text("probation_crn", code=True),
            "perpetrator_description": s.raw("description"),
            "perpetrator_address": address(s.nested("address")),
            "victim_name": person_name(v),
            "victim_date_of_birth": v.date("dob"),
            "victim_relationship_to_perpetrator": v.code("relationship", RELATIONSHIP),
            **self.victim_contact(v),
            "exclusion_zones": None,
            "offence_codes": self.offences(occ),
            "crime_reference": self.crime_reference(occ),
            "behaviour_summary": occ.text("mo_summary"),
            "chronology": [
                drop_none({"on": c.date("date", required=True), "summary": c.text("summary", required=True)})
                for c in occ.items("chronology")
            ]
            or None,
            "cj_status": ev.code("cj_status", CJ_STATUS, required=True),
            "orders": self.orders(occ) or None,
            "sdash_yes_count": yes,
            "sdash_answers": answers,
            "sash_concern_level": risk.code("sash_concern", CONCERN) if risk else None,
            "risk_assessed_on": risk.date("assessed_on") if risk else None,
            "health_flags": [
                drop_none(
                    {
                        "kind": h.code("marker", HEALTH, required=True),
                        "source": h.code("source", HEALTH_SOURCE, required=True),
                        "detail": h.text("detail"),
                    }
                )
                for h in occ.items("health_markers")
            ]
            or None,
            "children": occ.raw("children"),
            "referrer": practitioner(occ.nested("officer_in_case", required=True), AGENCY),
        }

    def advocacy_referral(self, ev: Fields) -> list[Outgoing]:
        v, occ = self.victim, self.f
        consent = v.nested("consent", required=True)
        if consent is None:
            return []
        if consent.text("status", required=True) != "GIVEN":
            consent.problem("status", "consent_not_given")
        ref = consent.text("ref", required=True)
        decision = drop_none(
            {
                "status": "given",
                "effective_date": consent.date("given_on", required=True),
                "given_by": "subject",
                "scope": drop_none(
                    {
                        "purposes": [
                            CONSENT_PURPOSES.get(p, p) for p in consent.texts("purposes", required=True)
                        ],
                        "recipients": [
                            SHARE_WITH.get(a, a) for a in consent.texts("share_with", required=True)
                        ],
                        "message_types": consent.texts("message_types") or None,
                    }
                ),
                "recorded_by": practitioner(consent.nested("recorded_by"), AGENCY),
            }
        )
        risk = occ.nested("risk", required=True)
        answers, yes = self.sdash(risk)
        views = v.nested("views")
        body = {
            "victim_name": person_name(v),
            "victim_date_of_birth": v.date("dob"),
            "victim_relationship_to_perpetrator": v.code("relationship", RELATIONSHIP),
            **self.victim_contact(v),
            "victim_preferred_contact_method": v.code("preferred_contact", METHODS),
            "victim_views": drop_none(
                {
                    "summary": views.text("summary", required=True),
                    "recorded_on": views.date("recorded_on", required=True),
                    "on_orders": views.text("on_orders"),
                    "on_bail": views.text("on_bail"),
                    "on_contact": views.text("on_contact"),
                    "supports_prosecution": views.flag("supports_prosecution"),
                }
            )
            if views
            else None,
            "sdash_yes_count": yes,
            "sdash_answers": answers,
            "sash_concern_level": risk.code("sash_concern", CONCERN) if risk else None,
            "risk_assessed_on": risk.date("assessed_on") if risk else None,
            "perpetrator_name": person_name(self.suspect),
            "offence_codes": self.offences(occ),
            "crime_reference": self.crime_reference(occ),
            "behaviour_summary": ev.text("summary") or occ.text("mo_summary", required=True),
        }
        return [
            self.envelope(
                ev, "consent_change", {"victim_consent": decision}, "case_management", consent_ref=ref
            ),
            self.envelope(ev, "victim_advocacy_referral", body, "victim_support", consent_ref=ref),
        ]

    def cj_update(self, ev: Fields, kind: str) -> dict[str, Any]:
        bail = ev.nested("bail")
        hearing = ev.nested("next_hearing")
        status = ev.code("cj_status", CJ_STATUS) or EVENT_STATUS.get(kind)
        if status is None:
            status = ev.code("cj_status", CJ_STATUS, required=True)
        orders = [self.order(o) for o in ev.items("orders")]
        return {
            "cj_status": status,
            "effective_date": ev.date("date", required=True),
            "bail_conditions": drop_none(
                {
                    "kind": bail.code("type", BAIL_KIND, required=True),
                    "granted_on": bail.date("granted_on", required=True),
                    "return_date": bail.date("return_date"),
                    "conditions": bail.texts("conditions", required=True),
                }
            )
            if bail
            else None,
            "exclusion_zones": [
                drop_none(
                    {
                        "description": z.text("description", required=True),
                        "imposed_by": (z.text("imposed_by") or "bail").lower(),
                        "reference": z.text("reference"),
                    }
                )
                for z in ev.items("exclusion_zones")
            ]
            or None,
            "next_hearing": drop_none(
                {
                    "on": hearing.date("date", required=True),
                    "court": hearing.text("court", required=True),
                    "kind": (hearing.text("kind", required=True) or "").lower(),
                }
            )
            if hearing
            else None,
            "orders": orders or None,
            "offence_codes": [
                c for c in (o.text("ho_code", required=True, code=True) for o in ev.items("offences")) if c
            ]
            or None,
            "crime_reference": ev.text("crime_reference"),
            "event_summary": ev.text("summary"),
        }

    # --- pieces --------------------------------------------------------------------------

    def victim_contact(self, v: Fields) -> dict[str, Any]:
        work = v.nested("workplace")
        return {
            "victim_address": address(v.nested("address")),
            "victim_phone": v.text("phone"),
            "victim_email": v.text("email"),
            "victim_workplace": drop_none(
                {
                    "employer": work.text("employer", required=True),
                    "address": address(work.nested("address")),
                    "working_pattern": work.text("pattern"),
                }
            )
            if work
            else None,
            "victim_safe_contact_times": [contact_window(w) for w in v.items("safe_contact")] or None,
        }

    @staticmethod
    def sdash(risk: Fields | None) -> tuple[list[str] | None, int | None]:
        if risk is None:
            return None, None
        sdash = risk.nested("sdash")
        if sdash is None:
            return None, None
        raw = sdash.texts("answers", required=True)
        answers = [SDASH.get(a.upper()) for a in raw]
        if None in answers:
            sdash.problem("answers", "unknown_code")
            return None, None
        if len(answers) != 11:
            sdash.problem("answers", "not_eleven_answers")
        return [a for a in answers if a], sum(1 for a in answers if a == "yes")

    @staticmethod
    def offences(occ: Fields) -> list[str]:
        return [
            c for c in (o.text("ho_code", required=True, code=True)
                        for o in occ.items("offences", required=True)) if c
        ]

    @staticmethod
    def crime_reference(occ: Fields) -> str | None:
        refs = occ.texts("crime_references")
        return refs[0].replace(" ", "") if refs else None

    def orders(self, occ: Fields) -> list[dict[str, Any]]:
        return [self.order(o) for o in occ.items("orders")]

    @staticmethod
    def order(o: Fields) -> dict[str, Any]:
        breach = o.nested("breach")
        return drop_none(
            {
                "kind": o.code("kind", ORDER_KIND, required=True),
                "status": o.code("status", ORDER_STATUS, required=True),
                "status_date": o.date("status_date", required=True),
                "reference": o.text("reference"),
                "court": o.text("court"),
                "made_on": o.date("made_on"),
                "expires_on": o.date("expires_on"),
                "conditions": o.texts("conditions") or None,
                "breach": drop_none(
                    {
                        "occurred_on": breach.date("date", required=True),
                        "summary": breach.text("summary", required=True),
                        "reported_by": (breach.text("reported_by") or "").lower() or None,
                    }
                )
                if breach
                else None,
            }
        )
