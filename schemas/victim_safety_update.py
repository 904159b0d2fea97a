"""``victim_safety_update``: the advocacy service updates police on the victim's safety.

Her views, her safety plan, new incidents she reported (risk_disclosure: a breach or an
escalation disclosed to a professional), and new contact details. The contact details and
the safety plan are never for the NHS team (P4 hard rule); the DSA sends them to police
only.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import model_validator

from ._base import CanonicalBody, DataClass, classified, cross_field_error
from ._case import Incident, SafetyMeasure
from ._people import Address, ContactWindow, VictimViews, Workplace
from ._types import Email, Phone

_L = DataClass.VICTIM_LOCATION
_S = DataClass.VICTIM_SAFETY_PLAN


class VictimSafetyUpdate(CanonicalBody):
    """What changed for the victim: views, safety plan, incidents, contact details."""

    masp_type: ClassVar[str] = "victim_safety_update"

    victim_views: VictimViews | None = classified(
        DataClass.VICTIM_VIEWS,
        "The victim's wishes about orders, bail and contact",
        default=None,
    )
    safety_measures: tuple[SafetyMeasure, ...] | None = classified(
        _S,
        "Safety measures, markers and target hardening, with their status",
        default=None,
        max_length=30,
    )
    safety_plan_review_date: date | None = classified(
        _S, "When the safety plan is next reviewed", default=None
    )
    new_incidents: tuple[Incident, ...] | None = classified(
        DataClass.RISK_DISCLOSURE,
        "Incidents the victim reported to her advocate",
        default=None,
        max_length=50,
    )
    victim_address: Address | None = classified(_L, "The victim's new home address", default=None)
    victim_phone: Phone | None = classified(_L, "A new safe phone number", default=None)
    victim_email: Email | None = classified(_L, "A new safe email address", default=None)
    victim_workplace: Workplace | None = classified(_L, "Where the victim now works", default=None)
    victim_safe_contact_times: tuple[ContactWindow, ...] | None = classified(
        _L, "When and how the victim may safely be contacted", default=None, max_length=14
    )

    @model_validator(mode="after")
    def _not_empty(self) -> VictimSafetyUpdate:
        if not self.present_fields() - {"safety_plan_review_date"}:
            raise cross_field_error("nothing_to_report", "victim_views", "safety_measures")
        return self
