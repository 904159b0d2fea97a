"""Value objects about the case: orders, bail, court events, incidents, risk, consent."""

from __future__ import annotations

from datetime import date
from typing import Literal

from pydantic import Field, model_validator

from ._base import ValueObject, cross_field_error
from ._types import (
    AgencyId,
    BailKind,
    ConcernLevel,
    CrimeReference,
    HearingKind,
    MaspType,
    OrderKind,
    OrderStatus,
    PurposeCode,
    SdashAnswer,
    SentenceKind,
    ShortText,
    Text,
)

_NO_PLACES = (
    "Write places that reveal where the victim lives, works or goes in the separate "
    "exclusion_zones field (victim_location), never here: this text may reach the NHS team."
)


class OrderBreach(ValueObject):
    occurred_on: date
    summary: Text
    reported_by: Literal["victim", "police", "probation", "advocacy", "third_party"] | None = None


class Order(ValueObject):
    """A protective order or a set of licence conditions, at its latest status."""

    kind: OrderKind
    status: OrderStatus
    status_date: date = Field(description="Date the order reached its current status")
    reference: ShortText | None = Field(default=None, description="Court or order reference")
    court: ShortText | None = None
    made_on: date | None = None
    expires_on: date | None = None
    conditions: tuple[Text, ...] | None = Field(default=None, max_length=30, description=_NO_PLACES)
    breach: OrderBreach | None = Field(default=None, description="Required when breached")

    @model_validator(mode="after")
    def _consistent(self) -> Order:
        if self.status is OrderStatus.BREACHED and self.breach is None:
            raise cross_field_error("breach_details_missing", "breach")
        if self.made_on and self.expires_on and self.expires_on < self.made_on:
            raise cross_field_error("order_expires_before_made", "made_on", "expires_on")
        return self


class BailConditions(ValueObject):
    kind: BailKind
    granted_on: date
    return_date: date | None = Field(default=None, description="Answer-bail or court date")
    conditions: tuple[Text, ...] = Field(min_length=1, max_length=30, description=_NO_PLACES)


class ExclusionZone(ValueObject):
    """A place the perpetrator must keep away from; it locates the victim."""

    description: Text = Field(description="e.g. 'Not to enter Larkspur Road, Shirley'")
    imposed_by: Literal["bail", "order", "licence"]
    reference: ShortText | None = Field(default=None, description="Order or bail reference")


class Hearing(ValueObject):
    on: date
    court: ShortText
    kind: HearingKind


class Sentence(ValueObject):
    kind: SentenceKind
    sentenced_on: date
    court: ShortText | None = None
    custody_months: int | None = Field(default=None, ge=1, le=600)
    expected_release_date: date | None = None

    @model_validator(mode="after")
    def _custody_only(self) -> Sentence:
        custodial = ("immediate_custody", "suspended_sentence")
        if self.custody_months is not None and self.kind not in custodial:
            raise cross_field_error("custody_term_without_custody", "custody_months")
        return self


class ChronologyEntry(ValueObject):
    on: date
    summary: Text
    crime_reference: CrimeReference | None = None


class Incident(ValueObject):
    """A new incident the victim reported to her advocate."""

    occurred_on: date
    summary: Text
    reported_to_police: bool
    crime_reference: CrimeReference | None = None


class SrpRatings(ValueObject):
    """Stalking Risk Profile domain ratings."""

    violence: ConcernLevel
    persistence: ConcernLevel
    recurrence: ConcernLevel
    victim_psychosocial_damage: ConcernLevel
    stalker_psychosocial_damage: ConcernLevel


class SafetyMeasure(ValueObject):
    kind: Literal[
        "personal_alarm",
        "target_hardening",
        "cctv_or_doorbell_camera",
        "police_address_marker",
        "safe_route_plan",
        "phone_and_online_safety",
        "workplace_plan",
        "relocation_support",
        "other",
    ]
    status: Literal["planned", "in_place", "declined", "removed"]
    since: date | None = None
    detail: Text | None = None


class ConsentScope(ValueObject):
    """What a consent covers: purposes, recipient agencies and (optionally) message types."""

    purposes: tuple[PurposeCode, ...] = Field(min_length=1, max_length=20)
    recipients: tuple[AgencyId, ...] = Field(min_length=1, max_length=4)
    message_types: tuple[MaspType, ...] | None = Field(
        default=None, min_length=1, description="Absent: every message type for the purposes"
    )


def check_sdash(yes_count: int | None, answers: tuple[SdashAnswer, ...] | None) -> None:
    """S-DASH answers, when given, must add up to the stated count of 'yes'."""
    if answers is not None and sum(1 for a in answers if a == "yes") != yes_count:
        raise cross_field_error("sdash_count_mismatch", "sdash_yes_count", "sdash_answers")
