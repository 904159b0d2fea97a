"""``case_closure``: police or probation close the case; retention clocks start.

Coded only: the narrative of the case already sits in the earlier messages. The fields
are cj_status: where the case ends is the last step of its status.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from ._base import CanonicalBody, DataClass, classified

_C = DataClass.CJ_STATUS

ClosureReason = Literal[
    "nfa_no_further_risk",
    "convicted_and_managed",
    "order_in_place_risk_reduced",
    "risk_reduced",
    "victim_disengaged",
    "perpetrator_deceased",
    "perpetrator_moved_out_of_area",
    "transferred_to_other_partnership",
    "duplicate_referral",
    "other",
]


class CaseClosure(CanonicalBody):
    """The partnership case is closed."""

    masp_type: ClassVar[str] = "case_closure"

    closure_reason: ClosureReason = classified(_C, "Why the case closed (coded)")
    closure_date: date = classified(_C, "Date of closure; retention periods run from it")
    reopen_review_date: date | None = classified(
        _C, "A date on which partners agreed to look again, if any", default=None
    )
