"""Scalar types and coded vocabularies shared by the message bodies.

Free text is always length-capped; identifiers and codes carry a pattern so that a value
in the wrong field (a phone number where a postcode belongs) is refused at the edge.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError


def _only_true(value: object) -> object:
    # Literal[True] alone admits 1 and 1.0 (they compare equal to True), even when strict
    if value is not True:
        raise PydanticCustomError("literal_error", "must be true")
    return value


#: A declaration that must be made: JSON ``true`` and nothing that merely equals it.
JsonTrue = Annotated[Literal[True], BeforeValidator(_only_true)]


# --- free text -------------------------------------------------------------------------

#: A label or short phrase (a role, a court, a school).
ShortText = Annotated[str, Field(min_length=1, max_length=200)]
#: A sentence or a condition.
Text = Annotated[str, Field(min_length=1, max_length=1000)]
#: A narrative (behaviour summary, rationale, disclosure).
LongText = Annotated[str, Field(min_length=1, max_length=8000)]
#: One part of a person's name.
NamePart = Annotated[str, Field(min_length=1, max_length=100)]

# --- identifiers -------------------------------------------------------------------------

#: UK postcode, in upper case (the canonical form: the broker forwards values as written).
Postcode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{1,2}[0-9][A-Z0-9]? ?[0-9][A-Z]{2}$", max_length=8),
]
#: Telephone number: digits, spaces, an optional leading +.
Phone = Annotated[str, Field(pattern=r"^\+?[0-9][0-9 ]{6,18}[0-9]$", max_length=21)]
Email = Annotated[str, Field(pattern=r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$", max_length=254)]
#: Police National Computer id, e.g. ``09/123456X`` or ``2009/123456X``.
PncId = Annotated[
    str,
    Field(pattern=r"^[0-9]{2}(?:[0-9]{2})?/[0-9]{1,7}[A-Z]$", max_length=13),
]
#: Probation case reference number (CRN), e.g. ``X123456``.
ProbationCrn = Annotated[
    str, Field(pattern=r"^[A-Z][0-9]{6}$")
]
#: CJS offence code, e.g. ``PH97003`` or ``COML025``.
OffenceCode = Annotated[
    str,
    Field(pattern=r"^[A-Z]{2,4}[0-9]{3,5}[A-Z]?$", max_length=10),
]
#: A force's crime reference number.
CrimeReference = Annotated[str, Field(pattern=r"^[A-Z0-9][A-Z0-9/-]{3,29}$")]
#: A vehicle registration mark, e.g. ``HX19 ABC``.
VehicleRegistration = Annotated[
    str, Field(pattern=r"^[A-Z0-9 ]{2,10}$")
]
#: A purpose code as DSA files spell them.
PurposeCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{1,63}$")]

AgencyId = Literal["police", "probation", "nhs", "advocacy"]

#: The message catalogue of docs/domain.md section 2 (schema v1).
MaspType = Literal[
    "case_referral",
    "intervention_referral",
    "intervention_status_update",
    "risk_concern_alert",
    "cj_status_update",
    "offender_management_update",
    "victim_advocacy_referral",
    "victim_safety_update",
    "risk_level_change",
    "consent_change",
    "correction_notice",
    "case_closure",
]

# --- criminal justice --------------------------------------------------------------------


class CjStatus(StrEnum):
    """Where the perpetrator stands in the criminal-justice process."""

    UNDER_INVESTIGATION = "under_investigation"
    ARRESTED = "arrested"
    BAILED = "bailed"
    CHARGED = "charged"
    NFA = "nfa"
    CONVICTED = "convicted"
    SENTENCED = "sentenced"
    RELEASED = "released"
    RECALLED = "recalled"


class OrderKind(StrEnum):
    SPO = "spo"
    INTERIM_SPO = "interim_spo"
    RESTRAINING_ORDER = "restraining_order"
    NON_MOLESTATION_ORDER = "non_molestation_order"
    DOMESTIC_ABUSE_PROTECTION_ORDER = "domestic_abuse_protection_order"
    LICENCE_CONDITIONS = "licence_conditions"
    COMMUNITY_ORDER = "community_order"


class OrderStatus(StrEnum):
    APPLIED = "applied"
    INTERIM = "interim"
    FULL = "full"
    VARIED = "varied"
    DISCHARGED = "discharged"
    BREACHED = "breached"


BailKind = Literal["pre_charge_police_bail", "post_charge_police_bail", "court_bail"]
HearingKind = Literal[
    "first_appearance", "plea", "trial", "sentencing", "order_application", "breach", "other"
]
SentenceKind = Literal[
    "immediate_custody",
    "suspended_sentence",
    "community_order",
    "fine",
    "discharge",
    "hospital_order",
]

# --- risk ------------------------------------------------------------------------------


class ConcernLevel(StrEnum):
    """A three-step concern level: SASH screening and SRP domain ratings."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"


class RiskLevel(StrEnum):
    """A graded risk (RoSH, SRP domains, and levels in a risk_level_change)."""

    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    VERY_HIGH = "very_high"


SdashAnswer = Literal["yes", "no", "not_known"]
RiskTool = Literal["sash", "sdash", "srp", "rosh", "dash", "other"]

# --- people ----------------------------------------------------------------------------

Relationship = Literal[
    "current_partner",
    "ex_partner",
    "family_member",
    "friend",
    "acquaintance",
    "colleague",
    "neighbour",
    "client_or_customer",
    "online_contact",
    "stranger",
    "other",
]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
ContactMethod = Literal["phone_call", "text_message", "email", "letter", "in_person"]
