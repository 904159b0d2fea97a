"""``intervention_status_update``: the NHS team reports progress on an intervention.

Coded values and counts only, no free text: clinical detail (diagnosis, therapy content,
psychometrics) has no field to travel in, so it cannot leave the team by this route.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import model_validator

from ._base import CanonicalBody, DataClass, classified, cross_field_error

_I = DataClass.INTERVENTION_STATUS

Stage = Literal[
    "referral_received",
    "assessment",
    "awaiting_start",
    "in_treatment",
    "follow_up",
    "completed",
    "discharged",
    "declined",
]
DeclineReason = Literal[
    "under_active_investigation",
    "no_case_holder",
    "perpetrator_declined",
    "not_suitable",
    "out_of_area",
    "already_engaged_elsewhere",
    "other",
]
DischargeReason = Literal[
    "completed",
    "disengaged",
    "consent_withdrawn",
    "recalled_to_custody",
    "moved_out_of_area",
    "risk_unmanageable_in_community",
    "other",
]


class InterventionStatusUpdate(CanonicalBody):
    """Where a perpetrator is in the intervention: decision, attendance, engagement."""

    masp_type: ClassVar[str] = "intervention_status_update"

    status_date: date = classified(_I, "Date this status was recorded")
    intervention_stage: Stage = classified(_I, "Stage of the intervention pathway")
    referral_decision: Literal["pending", "accepted", "declined"] | None = classified(
        _I, "Decision on the referral", default=None
    )
    decline_reason: DeclineReason | None = classified(
        _I, "Why the referral was declined (coded)", default=None
    )
    sessions_offered: int | None = classified(
        _I, "Sessions offered so far", default=None, ge=0, le=100
    )
    sessions_attended: int | None = classified(
        _I, "Sessions attended so far", default=None, ge=0, le=100
    )
    sessions_missed: int | None = classified(
        _I, "Sessions missed so far", default=None, ge=0, le=100
    )
    engagement: Literal["good", "partial", "poor", "disengaged"] | None = classified(
        _I, "Engagement as rated by the treating team", default=None
    )
    next_session_date: date | None = classified(_I, "Date of the next session", default=None)
    discharge_reason: DischargeReason | None = classified(
        _I, "Why the perpetrator was discharged (coded)", default=None
    )

    @model_validator(mode="after")
    def _consistent(self) -> InterventionStatusUpdate:
        if self.decline_reason is not None and self.referral_decision != "declined":
            raise cross_field_error("reason_without_decline", "decline_reason")
        if self.referral_decision == "declined" and self.decline_reason is None:
            raise cross_field_error("decline_reason_missing", "decline_reason")
        if self.intervention_stage == "discharged" and self.discharge_reason is None:
            raise cross_field_error("discharge_reason_missing", "discharge_reason")
        counted = (self.sessions_attended or 0) + (self.sessions_missed or 0)
        if counted and (self.sessions_offered is None or counted > self.sessions_offered):
            raise cross_field_error(
                "sessions_exceed_offered",
                "sessions_offered",
                "sessions_attended",
                "sessions_missed",
            )
        return self
