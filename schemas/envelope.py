"""The clear part of an agency message that is not body: subjects and envelope claim names.

The envelope travels in clear inside the signed JWT (DESIGN.md 3.1); body fields are
selectively disclosable and must never reuse an envelope claim's name.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field

from ._base import ValueObject

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


class Subject(ValueObject):
    """One entry of the ``subjects`` claim: a keyed pseudonym, never a name."""

    ref: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.:-]{8,128}$")] = Field(
        description="Pseudonymous subject id (no personal data)"
    )
    category: SubjectCategory
