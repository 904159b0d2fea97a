"""The vocabulary every canonical message is written in: data classes and tagged fields.

A field's data class is fixed here, in the schema, never by the sender: the DSA engine
decides what a recipient may see from these tags alone.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from functools import cache
from typing import Any, ClassVar, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

DATA_CLASS_KEY = "x-masp-data-class"


class DataClass(StrEnum):
    """Data classes of docs/domain.md section 1."""

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
    #: Which earlier message and which of its fields a correction_notice concerns, and why
    #: (coded). No personal data; every recipient of a correction needs it to apply one.
    #: Not in docs/domain.md section 1, whose classes all describe personal data.
    MESSAGE_REFERENCE = "message_reference"


#: Classes that never reach the perpetrator-facing NHS team, whatever a clause or an
#: override says (docs/domain.md P4 hard rule).
NEVER_TO_NHS: frozenset[DataClass] = frozenset(
    {DataClass.VICTIM_LOCATION, DataClass.VICTIM_SAFETY_PLAN}
)

#: Special-category classes (UK GDPR Art 9): force OFFICIAL-SENSITIVE and condition checks.
SPECIAL_CATEGORY: frozenset[DataClass] = frozenset(
    {DataClass.CLINICAL_DETAIL, DataClass.HEALTH_FLAGS}
)


def classified(data_class: DataClass, description: str, **kwargs: Any) -> Any:
    """A pydantic ``Field`` tagged with its data class (exported as ``x-masp-data-class``).

    Optional fields must say ``default=None`` explicitly: a body field is either required
    or absent, never defaulted to a value the sender did not write.
    """
    extra = dict(kwargs.pop("json_schema_extra", None) or {})
    extra[DATA_CLASS_KEY] = data_class.value
    return Field(description=description, json_schema_extra=extra, **kwargs)


#: No normalisation: a value is checked exactly as written, because it is forwarded exactly as
#: written (the sender's signature covers it), and a recipient validating against the published
#: JSON Schema must never meet a value the broker accepted only after cleaning it up.
_STRICT_CONFIG = ConfigDict(extra="forbid", frozen=True)


class ValueObject(BaseModel):
    """Base of the structured values inside a body field (an address, an order...).

    Value objects carry no data class: they travel inside one tagged top-level field.
    """

    model_config = _STRICT_CONFIG


class CanonicalBody(BaseModel):
    """Base of every message body: each top-level field is one selectively disclosable claim."""

    model_config = _STRICT_CONFIG

    masp_type: ClassVar[str]

    @classmethod
    def data_classes(cls) -> dict[str, DataClass]:
        """Field name -> data class, read from the field tags (a fresh copy; read once per type)."""
        return dict(_tagged_classes(cls))

    def present_fields(self) -> frozenset[str]:
        """Names of the fields that carry a value (the claims this body discloses)."""
        return frozenset(n for n in type(self).model_fields if getattr(self, n) is not None)

    def to_claims(self) -> dict[str, Any]:
        """The body as SD-JWT claims: JSON values, absent fields left out."""
        return self.model_dump(mode="json", exclude_none=True)


@cache
def _tagged_classes(cls: type[CanonicalBody]) -> dict[str, DataClass]:
    """Cached per model: the pipeline asks for every message."""
    out: dict[str, DataClass] = {}
    for name, info in cls.model_fields.items():
        extra = info.json_schema_extra
        if not isinstance(extra, dict) or DATA_CLASS_KEY not in extra:
            raise TypeError(f"{cls.__name__}.{name} has no data class")
        out[name] = DataClass(str(extra[DATA_CLASS_KEY]))
    return out


def cross_field_error(code: str, *fields: str) -> PydanticCustomError:
    """An error for a rule spanning fields; ``code`` is its type, ``fields`` its paths.

    The message is fixed text: it must never quote a value.
    """
    return PydanticCustomError(code, "fields are inconsistent", {"masp_fields": ",".join(fields)})


class SchemaInvalid(ValueError):
    """A body that does not match its schema.

    ``fields`` holds the failing paths (``victim_address.postcode``, ``orders[0].status``)
    and ``errors`` the (path, error type) pairs. Neither, nor the message, ever quotes a
    submitted value: pydantic's own messages and ``input`` may hold personal data.
    """

    #: A body can fail in hundreds of places; the message lists the first few.
    _MAX_LISTED: ClassVar[int] = 20

    def __init__(self, subject: str, errors: Sequence[tuple[str, str]],
                 hints: Mapping[int, str] | None = None) -> None:
        self.errors: tuple[tuple[str, str], ...] = tuple(errors)
        self.fields: tuple[str, ...] = tuple(dict.fromkeys(path for path, _ in self.errors))
        #: error index -> the schema's name closest to an unknown one (ours, never the sender's)
        self.hints: dict[int, str] = dict(hints or {})
        listed = [f"{path} ({kind}{_hint(self.hints.get(i))})"
                  for i, (path, kind) in enumerate(self.errors[: self._MAX_LISTED])]
        more = len(self.errors) - len(listed)
        if more > 0:
            listed.append(f"and {more} more")
        super().__init__(f"{subject}: " + "; ".join(listed))

    @classmethod
    def from_validation_error(
        cls, subject: str, exc: ValidationError, model: type[BaseModel]
    ) -> SchemaInvalid:
        """Rebuild pydantic's errors from their ``loc`` and ``type`` alone."""
        known = field_names(model)
        errors: list[tuple[str, str]] = []
        hints: dict[int, str] = {}
        for err in exc.errors(include_url=False, include_input=False, include_context=True):
            kind = str(err["type"])
            ctx = err.get("ctx") or {}
            named = str(ctx.get("masp_fields", ""))
            base = _render_loc(err["loc"], known)
            last = err["loc"][-1] if err["loc"] else None
            if kind == "extra_forbidden" and isinstance(last, str) and last not in known:
                close = difflib.get_close_matches(last, sorted(known), n=1, cutoff=0.75)
                if close:
                    hints[len(errors)] = close[0]
            if named:
                prefix = f"{base}." if base != "<body>" else ""
                errors.extend(
                    (prefix + _render_loc((name,), known), kind) for name in named.split(",")
                )
            else:
                errors.append((base, kind))
        return cls(subject, errors, hints)


def _hint(name: str | None) -> str:
    return f"; did you mean {name}?" if name else ""


_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def _render_loc(loc: Iterable[int | str], known: frozenset[str]) -> str:
    """A path from a pydantic ``loc``; names the schema does not define are masked.

    An unknown claim name comes from the sender and could itself be personal data.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        name = part if part in known and _NAME.match(part) else "<unknown>"
        out = f"{out}.{name}" if out else name
    return out or "<body>"


@cache
def field_names(model: type[BaseModel]) -> frozenset[str]:
    """Every field name of ``model`` and of the value objects nested in it."""
    names: set[str] = set()
    for name, info in model.model_fields.items():
        names.add(name)
        for nested in _models_in(info.annotation):
            names |= field_names(nested)
    return frozenset(names)


def _models_in(annotation: object) -> Iterable[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        yield annotation
        return
    for arg in get_args(annotation):
        yield from _models_in(arg)


def check_mapping(subject: str, claims: object) -> Mapping[str, object]:
    """The claims as a mapping with string keys, or ``SchemaInvalid``."""
    if not isinstance(claims, Mapping) or not all(isinstance(k, str) for k in claims):
        raise SchemaInvalid(subject, [("<body>", "not_a_claim_set")])
    return claims
