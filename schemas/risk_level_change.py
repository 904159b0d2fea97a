"""``risk_level_change``: any partner tells the others a risk level moved, and why."""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from pydantic import model_validator

from ._base import CanonicalBody, DataClass, classified, cross_field_error
from ._case import SrpRatings, check_sdash
from ._types import ConcernLevel, LongText, RiskLevel, RiskTool, SdashAnswer

_R = DataClass.RISK_SCREENING


class RiskLevelChange(CanonicalBody):
    """A reassessment that moved the case's risk level on one tool."""

    masp_type: ClassVar[str] = "risk_level_change"

    risk_tool: RiskTool = classified(_R, "The tool or judgement the level comes from")
    previous_risk_level: RiskLevel | None = classified(
        _R, "The level before this assessment (absent on a first assessment)", default=None
    )
    new_risk_level: RiskLevel = classified(_R, "The level after this assessment")
    risk_rationale: LongText = classified(_R, "Why the level changed")
    risk_assessed_on: date = classified(_R, "Date of the assessment")
    sdash_yes_count: int | None = classified(
        _R, "Number of 'yes' answers on the S-DASH (11 questions)", default=None, ge=0, le=11
    )
    sdash_answers: tuple[SdashAnswer, ...] | None = classified(
        _R, "The 11 S-DASH answers in question order", default=None, min_length=11, max_length=11
    )
    sash_concern_level: ConcernLevel | None = classified(_R, "SASH concern level", default=None)
    srp_ratings: SrpRatings | None = classified(
        _R, "Stalking Risk Profile domain ratings, if assessed", default=None
    )

    @model_validator(mode="after")
    def _a_change(self) -> RiskLevelChange:
        if self.previous_risk_level == self.new_risk_level:
            raise cross_field_error("level_unchanged", "previous_risk_level", "new_risk_level")
        if self.risk_tool == "sash" and self.new_risk_level is RiskLevel.VERY_HIGH:
            raise cross_field_error("level_not_on_tool", "new_risk_level")
        check_sdash(self.sdash_yes_count, self.sdash_answers)
        return self
