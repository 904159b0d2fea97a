"""``consent_change``: a subject gave or withdrew consent to sharing.

Whose consent it is comes from the envelope's ``subjects`` and ``consent_ref``. The body
carries the decision in the field of its kind, so the DSA can route each to those who act
on it: the victim's decision about sharing is victim_views (her wishes about contact);
the perpetrator's consent to the intervention and its information sharing is
intervention_status. The broker applies a withdrawal to every later flow (P6); partners
receive it so that they stop too.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import model_validator

from ._base import CanonicalBody, DataClass, ValueObject, classified, cross_field_error
from ._case import ConsentScope
from ._people import Practitioner

WithdrawalReason = Literal[
    "subject_request", "safety_concern", "no_longer_needed", "capacity_changed", "other"
]


class ConsentDecision(ValueObject):
    """Consent given or withdrawn, its scope, and the date it takes effect."""

    status: Literal["given", "withdrawn"]
    scope: ConsentScope
    effective_date: date
    given_by: Literal["subject", "parent_or_guardian", "legal_representative"]
    withdrawal_reason: WithdrawalReason | None = None
    recorded_by: Practitioner | None = None

    @model_validator(mode="after")
    def _reason_only_on_withdrawal(self) -> ConsentDecision:
        if self.withdrawal_reason is not None and self.status != "withdrawn":
            raise cross_field_error("reason_without_withdrawal", "withdrawal_reason")
        return self


class ConsentChange(CanonicalBody):
    """One consent decision: the victim's, or the perpetrator's to the intervention."""

    masp_type: ClassVar[str] = "consent_change"

    victim_consent: ConsentDecision | None = classified(
        DataClass.VICTIM_VIEWS,
        "The victim's decision about sharing her information",
        default=None,
    )
    intervention_consent: ConsentDecision | None = classified(
        DataClass.INTERVENTION_STATUS,
        "The perpetrator's consent to the intervention and its information sharing",
        default=None,
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ConsentChange:
        if (self.victim_consent is None) == (self.intervention_consent is None):
            raise cross_field_error(
                "exactly_one_consent_decision", "victim_consent", "intervention_consent"
            )
        return self
