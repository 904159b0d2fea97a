"""Value objects about people and places: names, addresses, contact, practitioners."""

from __future__ import annotations

from datetime import date, time
from typing import Literal

from pydantic import Field, model_validator

from ._base import ValueObject, cross_field_error
from ._types import (
    AgencyId,
    ContactMethod,
    Email,
    NamePart,
    Phone,
    Postcode,
    ShortText,
    Text,
    VehicleRegistration,
    Weekday,
)


class PersonName(ValueObject):
    given: NamePart
    middle: NamePart | None = None
    family: NamePart


class Address(ValueObject):
    lines: tuple[ShortText, ...] = Field(min_length=1, max_length=4)
    town: ShortText
    county: ShortText | None = None
    postcode: Postcode


class ContactDetails(ValueObject):
    phone: Phone | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _some_contact(self) -> ContactDetails:
        if self.phone is None and self.email is None:
            raise cross_field_error("contact_missing", "phone", "email")
        return self


class Accommodation(ValueObject):
    kind: Literal[
        "settled", "approved_premises", "temporary", "hostel", "no_fixed_abode", "custody"
    ]
    since: date | None = None


class Vehicle(ValueObject):
    make: ShortText | None = None
    colour: ShortText | None = None
    registration: VehicleRegistration | None = None


class PhysicalDescription(ValueObject):
    summary: Text
    height_cm: int | None = Field(default=None, ge=50, le=250)
    build: ShortText | None = None
    distinguishing_features: Text | None = None
    vehicles: tuple[Vehicle, ...] | None = Field(default=None, max_length=10)


class Workplace(ValueObject):
    employer: ShortText
    address: Address | None = None
    working_pattern: ShortText | None = None


class ContactWindow(ValueObject):
    """When and how the victim can safely be contacted."""

    days: tuple[Weekday, ...] = Field(min_length=1, max_length=7)
    start: time
    end: time
    methods: tuple[ContactMethod, ...] = Field(min_length=1, max_length=5)
    note: ShortText | None = Field(default=None, description="e.g. 'do not leave voicemail'")

    @model_validator(mode="after")
    def _ordered(self) -> ContactWindow:
        if (self.start.tzinfo is None) != (self.end.tzinfo is None):
            # Python cannot order a local time against one with an offset (TypeError): refused,
            # typed, before the comparison is tried
            raise cross_field_error("window_mixes_offsets", "start", "end")
        if self.end <= self.start:
            raise cross_field_error("window_ends_before_start", "start", "end")
        return self


class Practitioner(ValueObject):
    """A named professional and how to reach them (referrer, case holder, alert raiser)."""

    name: ShortText
    role: ShortText
    agency: AgencyId
    team: ShortText | None = None
    staff_ref: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9/-]{1,20}$", description="Collar or staff number"
    )
    phone: Phone | None = None
    email: Email | None = None

    @model_validator(mode="after")
    def _reachable(self) -> Practitioner:
        if self.phone is None and self.email is None:
            raise cross_field_error("contact_missing", "phone", "email")
        return self


class Referrer(Practitioner):
    """The referring practitioner, who names the case holder partners report back to."""

    case_holder: Practitioner | None = Field(
        default=None,
        description="The case holder, when not the referrer; P8 refuses an "
        "intervention_referral that names none",
    )


class Child(ValueObject):
    given_name: NamePart
    family_name: NamePart | None = None
    age: int = Field(ge=0, le=17)
    relationship: Literal[
        "child_of_victim", "child_of_perpetrator", "shared_child", "other_child_in_household"
    ]
    lives_with: Literal["victim", "perpetrator", "both", "other"]
    school: ShortText | None = None


class HealthFlag(ValueObject):
    """A mental-health or substance issue as stated by a referrer (not a diagnosis)."""

    kind: Literal[
        "mental_health",
        "substance_misuse",
        "alcohol_misuse",
        "neurodevelopmental",
        "learning_disability",
        "self_harm_or_suicidal_ideation",
        "other",
    ]
    source: Literal["self_reported", "referrer_observation", "professional_record"]
    detail: Text | None = None


class VictimViews(ValueObject):
    """The victim's own wishes, in her words as recorded by the practitioner."""

    summary: Text
    recorded_on: date
    on_orders: Text | None = None
    on_bail: Text | None = None
    on_contact: Text | None = Field(
        default=None, description="Her wishes about contact from the partnership agencies"
    )
    supports_prosecution: bool | None = None
    preferred_language: ShortText | None = None
