"""``intervention_referral``: probation or police refer a perpetrator to the NHS team's
psychologist-led stalking intervention.

Eligibility is the policy engine's (P8): it refuses, and audits the refusal, while the
perpetrator is under active investigation or when the referrer names no case holder
(``referrer.case_holder``). The schema
only insists on what makes a referral a referral: who, where they stand, and consent.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import model_validator

from ._base import CanonicalBody, DataClass, classified
from ._case import BailConditions, Order, SrpRatings, check_sdash
from ._people import Accommodation, Address, ContactDetails, PersonName, Referrer
from ._types import CjStatus, ConcernLevel, JsonTrue, PncId, ProbationCrn, RiskLevel, SdashAnswer, ShortText

_P = DataClass.PERPETRATOR_IDENTITY
_A = DataClass.PERPETRATOR_ADDRESS
_R = DataClass.RISK_SCREENING
_I = DataClass.INTERVENTION_STATUS


class InterventionReferral(CanonicalBody):
    """A request that the NHS team assess and treat a stalking perpetrator."""

    masp_type: ClassVar[str] = "intervention_referral"

    perpetrator_name: PersonName = classified(_P, "The perpetrator's legal name")
    perpetrator_aliases: tuple[ShortText, ...] | None = classified(
        _P, "Other names, nicknames and online handles", default=None, max_length=20
    )
    perpetrator_date_of_birth: date = classified(_P, "Date of birth")
    perpetrator_police_id: PncId | None = classified(_P, "PNC id", default=None)
    perpetrator_probation_id: ProbationCrn | None = classified(
        _P, "Probation case reference number", default=None
    )
    perpetrator_address: Address | None = classified(
        _A, "Where the perpetrator lives (for appointments)", default=None
    )
    perpetrator_contact: ContactDetails | None = classified(
        _A, "How the NHS team can reach the perpetrator", default=None
    )
    perpetrator_accommodation: Accommodation | None = classified(
        _A, "Kind of accommodation (settled, approved premises...)", default=None
    )
    cj_status: CjStatus = classified(DataClass.CJ_STATUS, "Criminal-justice status today")
    bail_conditions: BailConditions | None = classified(
        DataClass.CJ_STATUS, "Bail and its conditions, when bailed", default=None
    )
    orders: tuple[Order, ...] | None = classified(
        DataClass.ORDERS, "Protective orders and licence conditions", default=None, max_length=20
    )
    sdash_yes_count: int | None = classified(
        _R, "Number of 'yes' answers on the S-DASH (11 questions)", default=None, ge=0, le=11
    )
    sdash_answers: tuple[SdashAnswer, ...] | None = classified(
        _R, "The 11 S-DASH answers in question order", default=None, min_length=11, max_length=11
    )
    sash_concern_level: ConcernLevel | None = classified(_R, "SASH concern level", default=None)
    rosh_level: RiskLevel | None = classified(_R, "Risk of serious harm (RoSH)", default=None)
    srp_ratings: SrpRatings | None = classified(
        _R, "Stalking Risk Profile domain ratings, if assessed", default=None
    )
    risk_assessed_on: date | None = classified(_R, "Date of the screening", default=None)
    perpetrator_consents_to_referral: JsonTrue = classified(
        _I, "The perpetrator has agreed to be referred (a referral needs it)"
    )
    confidentiality_limits_acknowledged: JsonTrue = classified(
        _I,
        "The perpetrator was told that risk disclosures in treatment are shared with "
        "police and probation",
    )
    referrer: Referrer = classified(
        DataClass.REFERRER,
        "The referring practitioner and the case holder the NHS team reports to "
        "(P8 refuses the referral without one)",
    )

    @model_validator(mode="after")
    def _sdash_consistent(self) -> InterventionReferral:
        check_sdash(self.sdash_yes_count, self.sdash_answers)
        return self
