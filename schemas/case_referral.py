"""``case_referral``: police or probation refer a stalking case to the partnership.

Every partner receives it, each minimised by its DSA clause: the fields are split so that
what one recipient may see (the perpetrator's identity) never shares a claim with what it
may not (the victim's address).
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import model_validator

from ._base import CanonicalBody, DataClass, classified
from ._case import BailConditions, ChronologyEntry, ExclusionZone, Order, check_sdash
from ._people import (
    Address,
    Child,
    ContactWindow,
    HealthFlag,
    PersonName,
    PhysicalDescription,
    Referrer,
    Workplace,
)
from ._types import (
    CjStatus,
    ConcernLevel,
    CrimeReference,
    Email,
    LongText,
    OffenceCode,
    Phone,
    PncId,
    ProbationCrn,
    Relationship,
    RiskLevel,
    SdashAnswer,
    ShortText,
)

_P = DataClass.PERPETRATOR_IDENTITY
_V = DataClass.VICTIM_IDENTITY
_L = DataClass.VICTIM_LOCATION
_O = DataClass.OFFENCE
_R = DataClass.RISK_SCREENING


class CaseReferral(CanonicalBody):
    """A stalking case referred to the partnership for multi-agency review."""

    masp_type: ClassVar[str] = "case_referral"

    # perpetrator identity
    perpetrator_name: PersonName = classified(_P, "The perpetrator's legal name")
    perpetrator_aliases: tuple[ShortText, ...] | None = classified(
        _P, "Other names, nicknames and online handles", default=None, max_length=20
    )
    perpetrator_date_of_birth: date | None = classified(_P, "Date of birth", default=None)
    perpetrator_police_id: PncId | None = classified(_P, "PNC id", default=None)
    perpetrator_probation_id: ProbationCrn | None = classified(
        _P, "Probation case reference number", default=None
    )
    perpetrator_description: PhysicalDescription | None = classified(
        _P, "Appearance and vehicles, for recognition", default=None
    )
    # perpetrator address
    perpetrator_address: Address | None = classified(
        DataClass.PERPETRATOR_ADDRESS, "The perpetrator's home address", default=None
    )
    # victim identity
    victim_name: PersonName | None = classified(_V, "The victim's name", default=None)
    victim_date_of_birth: date | None = classified(_V, "The victim's date of birth", default=None)
    victim_relationship_to_perpetrator: Relationship | None = classified(
        _V, "How the victim knows the perpetrator", default=None
    )
    # victim location: never to the NHS team
    victim_address: Address | None = classified(_L, "The victim's home address", default=None)
    victim_phone: Phone | None = classified(_L, "A safe phone number for the victim", default=None)
    victim_email: Email | None = classified(_L, "A safe email address for the victim", default=None)
    victim_workplace: Workplace | None = classified(_L, "Where the victim works", default=None)
    victim_safe_contact_times: tuple[ContactWindow, ...] | None = classified(
        _L, "When and how the victim may safely be contacted", default=None, max_length=14
    )
    exclusion_zones: tuple[ExclusionZone, ...] | None = classified(
        _L,
        "Places the perpetrator must avoid; they locate the victim",
        default=None,
        max_length=20,
    )
    # offence
    offence_codes: tuple[OffenceCode, ...] = classified(
        _O, "CJS offence codes under investigation or charged", min_length=1, max_length=20
    )
    crime_reference: CrimeReference | None = classified(_O, "Crime reference", default=None)
    behaviour_summary: LongText | None = classified(
        _O,
        "The stalking behaviour in summary (fixation, obsession, unwanted, repeated)",
        default=None,
    )
    chronology: tuple[ChronologyEntry, ...] | None = classified(
        _O, "Dated incidents, oldest first", default=None, max_length=200
    )
    # criminal-justice status and orders
    cj_status: CjStatus = classified(DataClass.CJ_STATUS, "Criminal-justice status today")
    bail_conditions: BailConditions | None = classified(
        DataClass.CJ_STATUS, "Bail and its conditions, when bailed", default=None
    )
    orders: tuple[Order, ...] | None = classified(
        DataClass.ORDERS, "Protective orders and licence conditions", default=None, max_length=20
    )
    # risk screening
    sdash_yes_count: int | None = classified(
        _R, "Number of 'yes' answers on the S-DASH (11 questions)", default=None, ge=0, le=11
    )
    sdash_answers: tuple[SdashAnswer, ...] | None = classified(
        _R, "The 11 S-DASH answers in question order", default=None, min_length=11, max_length=11
    )
    sash_concern_level: ConcernLevel | None = classified(_R, "SASH concern level", default=None)
    rosh_level: RiskLevel | None = classified(_R, "Risk of serious harm (RoSH)", default=None)
    risk_assessed_on: date | None = classified(_R, "Date of the screening", default=None)
    # special category, children, referrer
    health_flags: tuple[HealthFlag, ...] | None = classified(
        DataClass.HEALTH_FLAGS,
        "Mental-health or substance issues the referrer knows of",
        default=None,
        max_length=10,
    )
    children: tuple[Child, ...] | None = classified(
        DataClass.CHILDREN,
        "Children in the victim's or perpetrator's household",
        default=None,
        max_length=15,
    )
    referrer: Referrer = classified(DataClass.REFERRER, "The referring officer and the case holder")

    @model_validator(mode="after")
    def _sdash_consistent(self) -> CaseReferral:
        check_sdash(self.sdash_yes_count, self.sdash_answers)
        return self
