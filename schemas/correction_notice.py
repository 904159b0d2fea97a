"""``correction_notice``: the originator corrects or withdraws fields it sent earlier.

A corrected value travels under the field's own name and therefore with the field's own
data class: a corrected ``victim_address`` is victim_location, and the DSA treats it as
such. The broker sends the notice to every earlier recipient of the fields (P10), each
seeing only the corrections to fields it was allowed to see.

This works because a field name means one thing across the catalogue: the same name has
the same type and data class in every message type (checked when this module loads).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args
from uuid import UUID

from pydantic import Field, TypeAdapter, create_model, model_validator
from pydantic.fields import FieldInfo

from ._base import DATA_CLASS_KEY, CanonicalBody, DataClass, classified, cross_field_error
from .case_closure import CaseClosure
from .case_referral import CaseReferral
from .cj_status_update import CjStatusUpdate
from .consent_change import ConsentChange
from .intervention_referral import InterventionReferral
from .intervention_status_update import InterventionStatusUpdate
from .offender_management_update import OffenderManagementUpdate
from .risk_concern_alert import RiskConcernAlert
from .risk_level_change import RiskLevelChange
from .victim_advocacy_referral import VictimAdvocacyReferral
from .victim_safety_update import VictimSafetyUpdate

#: Every message type a correction may concern (all but correction_notice itself).
CORRECTABLE: tuple[type[CanonicalBody], ...] = (
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
    CaseClosure,
)
_BY_TYPE = {model.masp_type: model for model in CORRECTABLE}

CorrectableType = Literal[
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
    "case_closure",
]
FieldName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]

_C = DataClass.MESSAGE_REFERENCE


class CorrectionNoticeBase(CanonicalBody):
    """What is corrected and why; the corrected fields are added by ``CorrectionNotice``."""

    masp_type: ClassVar[str] = "correction_notice"

    corrects_message_id: UUID = classified(_C, "Message id (jti) of the message corrected")
    corrects_masp_type: CorrectableType = classified(_C, "Type of the message corrected")
    correction_reason: Literal[
        "factual_error", "wrong_subject", "sent_in_error", "superseded", "other"
    ] = classified(_C, "Why the correction is made (coded)")
    withdrawn_fields: tuple[FieldName, ...] | None = classified(
        _C, "Fields recipients must delete, with no replacement", default=None, max_length=100
    )

    @model_validator(mode="after")
    def _targets_the_corrected_type(self) -> CorrectionNoticeBase:
        original = _BY_TYPE[self.corrects_masp_type].model_fields
        corrected = self.present_fields() - CorrectionNoticeBase.model_fields.keys()
        withdrawn = set(self.withdrawn_fields or ())
        if not corrected and not withdrawn:
            raise cross_field_error("nothing_to_correct", "withdrawn_fields")
        foreign = corrected - original.keys()
        if foreign:
            raise cross_field_error("field_not_in_corrected_type", *sorted(foreign))
        if withdrawn - original.keys() or withdrawn & corrected:
            raise cross_field_error("withdrawn_field_invalid", "withdrawn_fields")
        return self


def _core(annotation: Any) -> Any:
    """``X`` for ``X | None``: whether a field is optional differs between types."""
    args = get_args(annotation)
    if type(None) in args:
        rest = tuple(a for a in args if a is not type(None))
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _effective_type(info: FieldInfo) -> Any:
    """The field's type with its constraints, optional or not."""
    core = _core(info.annotation)
    return Annotated[(core, *info.metadata)] if info.metadata else core


def _correctable_fields() -> dict[str, Any]:
    """Each field of the catalogue once, optional, with its type, constraints and class."""
    seen: dict[str, tuple[str, FieldInfo, dict[str, Any]]] = {}
    out: dict[str, Any] = {}
    for model in CORRECTABLE:
        for name, info in model.model_fields.items():
            if name in CorrectionNoticeBase.model_fields:
                raise TypeError(f"{model.__name__}.{name} collides with a correction field")
            typed = _effective_type(info)
            shape = TypeAdapter(typed).json_schema()
            if name in seen:
                first, earlier, earlier_shape = seen[name]
                if shape != earlier_shape or earlier.json_schema_extra != info.json_schema_extra:
                    raise TypeError(f"{model.__name__}.{name} differs from {first}.{name}")
                continue
            seen[name] = (model.__name__, info, shape)
            extra = dict(info.json_schema_extra) if isinstance(info.json_schema_extra, dict) else {}
            if DATA_CLASS_KEY not in extra:
                raise TypeError(f"{model.__name__}.{name} has no data class")
            out[name] = (
                typed | None,
                Field(default=None, description=info.description, json_schema_extra=extra),
            )
    return out


CorrectionNotice: type[CorrectionNoticeBase] = create_model(
    "CorrectionNotice",
    __base__=CorrectionNoticeBase,
    __module__=__name__,
    __doc__="A correction or withdrawal of fields sent in an earlier message.",
    **_correctable_fields(),
)
