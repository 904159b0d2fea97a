"""Canonical message bodies of the MASP catalogue (schema v1), each field tagged with its
data class, and the one entry point the broker and adapters validate bodies through.

    body = validate_body("case_referral", "1", claims)   # raises SchemaInvalid
    classes = data_classes("case_referral")              # field -> DataClass
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType

from pydantic import ValidationError

from ._base import (
    DATA_CLASS_KEY,
    NEVER_TO_NHS,
    SPECIAL_CATEGORY,
    CanonicalBody,
    DataClass,
    SchemaInvalid,
    check_mapping,
)
from .case_closure import CaseClosure
from .case_referral import CaseReferral
from .cj_status_update import CjStatusUpdate
from .consent_change import ConsentChange
from .correction_notice import CorrectionNotice, CorrectionNoticeBase
from .envelope import ENVELOPE_CLAIMS, Subject, SubjectCategory
from .intervention_referral import InterventionReferral
from .intervention_status_update import InterventionStatusUpdate
from .offender_management_update import OffenderManagementUpdate
from .risk_concern_alert import RiskConcernAlert
from .risk_level_change import RiskLevelChange
from .victim_advocacy_referral import VictimAdvocacyReferral
from .victim_safety_update import VictimSafetyUpdate

SCHEMA_VERSION = "1"

#: masp_type -> body model, in catalogue order (docs/domain.md section 2).
MESSAGE_TYPES: Mapping[str, type[CanonicalBody]] = MappingProxyType(
    {
        model.masp_type: model
        for model in (
            CaseReferral,
            InterventionReferral,
            InterventionStatusUpdate,
            RiskConcernAlert,
            CjStatusUpdate,
            OffenderManagementUpdate,
            VictimAdvocacyReferral,
            VictimSafetyUpdate,
            RiskLevelChange,
            ConsentChange,
            CorrectionNotice,
            CaseClosure,
        )
    }
)


def body_model(masp_type: str) -> type[CanonicalBody]:
    """The body model of ``masp_type``; ``SchemaInvalid`` if the catalogue has no such type."""
    model = MESSAGE_TYPES.get(masp_type) if isinstance(masp_type, str) else None
    if model is None:
        # The unknown name is the sender's, not ours: it is not echoed.
        raise SchemaInvalid("message type", [("masp_type", "unknown_masp_type")])
    return model


def data_classes(masp_type: str) -> dict[str, DataClass]:
    """Field name -> data class for every body field of ``masp_type``."""
    return body_model(masp_type).data_classes()


def validate_body(
    masp_type: str, schema_version: str, claims: Mapping[str, object]
) -> CanonicalBody:
    """Validate the disclosed body claims of a message; ``SchemaInvalid`` on any error.

    The error names failing fields and error types only, never a submitted value.
    """
    model = body_model(masp_type)
    if schema_version != SCHEMA_VERSION:
        raise SchemaInvalid(masp_type, [("masp_schema", "unsupported_schema_version")])
    body = check_mapping(masp_type, claims)
    try:
        # strict, read as the JSON it arrived as: "3" is no integer, 1 no boolean, 20260101 no
        # date; what passes is what the published JSON Schema says, so a recipient validating
        # the forwarded values against it never finds one the broker let through
        return model.model_validate_json(json.dumps(dict(body)), strict=True)
    except ValidationError as exc:
        problem = SchemaInvalid.from_validation_error(masp_type, exc, model)
    # Raised outside the handler so that pydantic's error, which holds the submitted
    # values, is not even kept as ``__context__``.
    raise problem


__all__ = [
    "DATA_CLASS_KEY",
    "ENVELOPE_CLAIMS",
    "MESSAGE_TYPES",
    "NEVER_TO_NHS",
    "SCHEMA_VERSION",
    "SPECIAL_CATEGORY",
    "CanonicalBody",
    "CaseClosure",
    "CaseReferral",
    "CjStatusUpdate",
    "ConsentChange",
    "CorrectionNotice",
    "CorrectionNoticeBase",
    "DataClass",
    "InterventionReferral",
    "InterventionStatusUpdate",
    "OffenderManagementUpdate",
    "RiskConcernAlert",
    "RiskLevelChange",
    "SchemaInvalid",
    "Subject",
    "SubjectCategory",
    "VictimAdvocacyReferral",
    "VictimSafetyUpdate",
    "body_model",
    "data_classes",
    "validate_body",
]
