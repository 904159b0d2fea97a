"""``victim_advocacy_referral``: police refer a victim to the advocacy service.

Only with the victim's recorded consent (the envelope's ``consent_ref``; the policy
engine checks it, P6). The perpetrator appears minimally: enough to recognise him.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import model_validator

from ._base import CanonicalBody, DataClass, classified, cross_field_error
from ._case import check_sdash
from ._people import Address, ContactWindow, PersonName, VictimViews, Workplace
from ._types import (
    ConcernLevel,
    ContactMethod,
    CrimeReference,
    Email,
    LongText,
    OffenceCode,
    Phone,
    Relationship,
    SdashAnswer,
)

_V = DataClass.VICTIM_IDENTITY
_L = DataClass.VICTIM_LOCATION
_R = DataClass.RISK_SCREENING
_O = DataClass.OFFENCE
_P = DataClass.PERPETRATOR_IDENTITY


class VictimAdvocacyReferral(CanonicalBody):
    """A victim referred for independent stalking advocacy."""

    masp_type: ClassVar[str] = "victim_advocacy_referral"

    victim_name: PersonName = classified(_V, "The victim's name")
    victim_date_of_birth: date | None = classified(_V, "The victim's date of birth", default=None)
    victim_relationship_to_perpetrator: Relationship | None = classified(
        _V, "How the victim knows the perpetrator", default=None
    )
    victim_address: Address | None = classified(_L, "The victim's home address", default=None)
    victim_phone: Phone | None = classified(_L, "A safe phone number for the victim", default=None)
    victim_email: Email | None = classified(_L, "A safe email address for the victim", default=None)
    victim_workplace: Workplace | None = classified(_L, "Where the victim works", default=None)
    victim_safe_contact_times: tuple[ContactWindow, ...] | None = classified(
        _L, "When and how the victim may safely be contacted", default=None, max_length=14
    )
    victim_preferred_contact_method: ContactMethod | None = classified(
        _L, "How the victim prefers to be contacted", default=None
    )
    victim_views: VictimViews | None = classified(
        DataClass.VICTIM_VIEWS,
        "The victim's wishes about orders, bail and contact",
        default=None,
    )
    sdash_yes_count: int | None = classified(
        _R, "Number of 'yes' answers on the S-DASH (11 questions)", default=None, ge=0, le=11
    )
    sdash_answers: tuple[SdashAnswer, ...] | None = classified(
        _R, "The 11 S-DASH answers in question order", default=None, min_length=11, max_length=11
    )
    sash_concern_level: ConcernLevel | None = classified(_R, "SASH concern level", default=None)
    risk_assessed_on: date | None = classified(_R, "Date of the screening", default=None)
    perpetrator_name: PersonName | None = classified(
        _P, "The perpetrator's name, so the advocate can recognise him", default=None
    )
    offence_codes: tuple[OffenceCode, ...] | None = classified(
        _O,
        "CJS offence codes under investigation or charged",
        default=None,
        min_length=1,
        max_length=20,
    )
    crime_reference: CrimeReference | None = classified(_O, "Crime reference", default=None)
    behaviour_summary: LongText = classified(
        _O, "The stalking behaviour in summary, as the advocate needs it"
    )

    @model_validator(mode="after")
    def _consistent(self) -> VictimAdvocacyReferral:
        if not {"victim_phone", "victim_email", "victim_address"} & self.present_fields():
            raise cross_field_error(
                "no_way_to_contact_victim", "victim_phone", "victim_email", "victim_address"
            )
        check_sdash(self.sdash_yes_count, self.sdash_answers)
        return self
