"""The vocabulary every canonical message is written in: data classes and tagged fields.

A field's data class is fixed here, in the schema, never by the sender: the DSA engine
decides what a recipient may see from these tags alone.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

DATA_CLASS_KEY = "x-masp-data-class"


class DataClass(StrEnum):
    """Data classes of DOMAIN.md section 1."""

    PERPETRATOR_IDENTITY = "perpetrator_identity"
    PERPETRATOR_ADDRESS = "perpetrator_address"
    VICTIM_IDENTITY = "victim_identity"
    VICTIM_LOCATION = "victim_location"
    VICTIM_SAFETY_PLAN = "victim_safety_plan"
    VICTIM_VIEWS = "victim_views"
    OFFENCE = "offence"
    CJ_STATUS = "cj_status"
    ORDERS = "orders"
    RISK_SCREENING = "risk_screening"
    INTERVENTION_STATUS = "intervention_status"
    CLINICAL_DETAIL = "clinical_detail"
    RISK_DISCLOSURE = "risk_disclosure"
    HEALTH_FLAGS = "health_flags"
    CHILDREN = "children"
    REFERRER = "referrer"


#: Classes that never reach the perpetrator-facing NHS team, whatever a clause or an
#: override says (DOMAIN.md P4 hard rule).
NEVER_TO_NHS: frozenset[DataClass] = frozenset(
    {DataClass.VICTIM_LOCATION, DataClass.VICTIM_SAFETY_PLAN}
)

#: Special-category classes (UK GDPR Art 9): force OFFICIAL-SENSITIVE and condition checks.
SPECIAL_CATEGORY: frozenset[DataClass] = frozenset(
    {DataClass.CLINICAL_DETAIL, DataClass.HEALTH_FLAGS}
)


def classified(data_class: DataClass, description: str, **kwargs: Any) -> Any:
    """A pydantic ``Field`` tagged with its data class (exported as ``x-masp-data-class``)."""
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[DATA_CLASS_KEY] = data_class.value
    return Field(description=description, json_schema_extra=extra, **kwargs)


class CanonicalBody(BaseModel):
    """Base of every message body: each top-level field is one selectively disclosable claim."""

    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

    masp_type: ClassVar[str]

    @classmethod
    def data_classes(cls) -> dict[str, DataClass]:
        """Field name -> data class, read from the field tags."""
        out: dict[str, DataClass] = {}
        for name, info in cls.model_fields.items():
            extra = info.json_schema_extra
            if not isinstance(extra, dict) or DATA_CLASS_KEY not in extra:
                raise TypeError(f"{cls.__name__}.{name} has no data class")
            out[name] = DataClass(str(extra[DATA_CLASS_KEY]))
        return out
