"""The part of an agency message that is not body: the envelope claims and their shapes.

The envelope travels in the signed JWT (docs/spec/message.md); body fields are selectively
disclosable and must never reuse an envelope claim's name. Every envelope claim has a
schema here, and the broker refuses a message whose envelope does not match it before any
policy runs: a claim is a code, a number or a pseudonymous reference, never free text, so
nothing a sender types into one can reach a recipient or the audit log as prose.
``subjects`` and ``consent_ref`` are themselves selectively disclosable: the broker passes
each to the recipients entitled to it only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from ._types import AgencyId, MaspType, PurposeCode

#: Claims of the issuer-signed JWT payload that are not body fields.
ENVELOPE_CLAIMS: frozenset[str] = frozenset(
    {
        "iss",
        "jti",
        "iat",
        "exp",
        "masp_type",
        "masp_schema",
        "case_id",
        "purpose",
        "subjects",
        "consent_ref",
        "override",
        "_sd",
        "_sd_alg",
    }
)


class SubjectCategory(StrEnum):
    """The role a data subject has in the case."""

    SUSPECT = "suspect"
    CONVICTED = "convicted"
    VICTIM = "victim"
    WITNESS = "witness"
    CHILD = "child"
    OTHER = "other"


_CODE = r"^[A-Z0-9]+(?:-[A-Z0-9]+)*$"


def _has_digit(value: str) -> str:
    if not any(c.isdigit() for c in value):
        raise PydanticCustomError("reference_without_digit", "a reference has at least one digit")
    return value


#: A partnership case reference: upper-case letters and digits in hyphen-separated groups,
#: with at least one digit (``HIOW-MASP-2026-0147``), so a name cannot pass for one.
CaseId = Annotated[str, Field(pattern=_CODE, max_length=40), AfterValidator(_has_digit)]
#: The reference under which the recording agency holds a consent decision (``CONSENT-0147-V1``).
ConsentRef = Annotated[str, Field(pattern=_CODE, max_length=64), AfterValidator(_has_digit)]
#: A subject reference: the sending agency's own identifier for the person (a PNC id, a
#: CRN, a nominal reference) or a pseudonym. Letters, digits and ``_.:/-``, no spaces.
SubjectReference = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{1,63}$")]
#: A UUIDv7 string (the message id).
Uuid7 = Annotated[
    str, Field(pattern=r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
]

_ENVELOPE_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)


class Subject(BaseModel):
    """One entry of the ``subjects`` claim: a reference and the person's role in the case."""

    model_config = _ENVELOPE_CONFIG

    ref: SubjectReference = Field(description="The sender's reference for the subject (no names)")
    category: Literal["suspect", "convicted", "victim", "witness", "child", "other"]


class Envelope(BaseModel):
    """The envelope of an agency message as the broker reads it: the clear claims of the
    issuer-signed JWT with ``subjects`` and ``consent_ref`` taken from their disclosures.

    ``override`` is checked here for shape only (an object); its contents are the P7
    rule's to judge, with every string a code (``broker.policy.rules.Override``).
    """

    model_config = _ENVELOPE_CONFIG

    iss: AgencyId
    jti: Uuid7
    iat: int
    exp: int
    masp_type: MaspType
    masp_schema: Literal["1"]
    case_id: CaseId
    purpose: PurposeCode
    subjects: list[Subject] = Field(min_length=1, max_length=16)
    consent_ref: ConsentRef | None = None
    override: dict[str, Any] | None = None
