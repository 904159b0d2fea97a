"""``offender_management_update``: probation report release, recall, licence, address, RoSH.

Sent to police, and to the NHS team while the perpetrator is in the intervention.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import model_validator

from ._base import CanonicalBody, DataClass, classified, cross_field_error
from ._case import ExclusionZone, Order
from ._people import Accommodation, Address
from ._types import CjStatus, RiskLevel

_CJ = DataClass.CJ_STATUS
_A = DataClass.PERPETRATOR_ADDRESS
_R = DataClass.RISK_SCREENING

RecallReason = Literal[
    "licence_breach",
    "contact_with_victim",
    "further_offence",
    "risk_escalation",
    "failure_to_reside",
    "non_compliance",
    "other",
]


class OffenderManagementUpdate(CanonicalBody):
    """What probation's management of the perpetrator changed."""

    masp_type: ClassVar[str] = "offender_management_update"

    effective_date: date = classified(_CJ, "Date the change took effect")
    cj_status: CjStatus | None = classified(
        _CJ, "Criminal-justice status after the change (released, recalled...)", default=None
    )
    release_date: date | None = classified(_CJ, "Release date, past or planned", default=None)
    recall_reason: RecallReason | None = classified(_CJ, "Why recalled (coded)", default=None)
    orders: tuple[Order, ...] | None = classified(
        DataClass.ORDERS,
        "Licence conditions and other orders as now in force",
        default=None,
        max_length=20,
    )
    exclusion_zones: tuple[ExclusionZone, ...] | None = classified(
        DataClass.VICTIM_LOCATION,
        "Licence exclusion zones; they locate the victim",
        default=None,
        max_length=20,
    )
    perpetrator_address: Address | None = classified(
        _A, "The perpetrator's new or confirmed address", default=None
    )
    perpetrator_accommodation: Accommodation | None = classified(
        _A, "Kind of accommodation (settled, approved premises...)", default=None
    )
    rosh_level: RiskLevel | None = classified(_R, "Risk of serious harm (RoSH)", default=None)
    risk_assessed_on: date | None = classified(_R, "Date of the RoSH assessment", default=None)

    @model_validator(mode="after")
    def _consistent(self) -> OffenderManagementUpdate:
        if self.recall_reason is not None and self.cj_status is not CjStatus.RECALLED:
            raise cross_field_error("recall_reason_without_recall", "recall_reason")
        if self.cj_status is CjStatus.RECALLED and self.recall_reason is None:
            raise cross_field_error("recall_reason_missing", "recall_reason")
        news = self.present_fields() - {"effective_date", "risk_assessed_on"}
        if not news:
            raise cross_field_error("nothing_to_report", "cj_status", "orders", "rosh_level")
        return self
