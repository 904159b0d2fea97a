"""Data-sharing agreements as the deployment writes them: versioned YAML, parsed strictly.

A DSA file is where a partnership states its own law, so loading is unforgiving: unknown
keys, duplicate keys, unknown data classes or agencies all refuse the whole file with a
`DsaInvalid` that names the file and the path of the bad key. A half-read policy would be
worse than none: the broker fails closed without one. Loading only parses; the broker
enforces a bundle only once lint passes it too (`broker.policy.lint.load_enforced_bundle`).

`disagreements` is the one definition of when two clauses covering the same flow would
decide it differently; lint and the engine both use it.
"""

from __future__ import annotations

import hashlib
import itertools
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import rfc8785
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

import schemas
from broker.errors import ConfigurationError
from schemas._base import DataClass

AgencyId = Literal["police", "probation", "nhs", "advocacy"]
AGENCIES: tuple[AgencyId, ...] = ("police", "probation", "nhs", "advocacy")

#: Whose consent a flow rests on. ``victim``: the victim's consent to sharing her
#: information; ``intervention``: the perpetrator's consent to the intervention and to the
#: sharing that goes with it. Two people, two decisions, recorded by different partners.
ConsentKind = Literal["victim", "intervention"]
CONSENT_KINDS: tuple[ConsentKind, ...] = ("victim", "intervention")

#: The message catalogue (docs/domain.md section 2) as ``schemas`` defines it; lint rejects a
#: clause naming anything else.
MESSAGE_TYPES: frozenset[str] = frozenset(schemas.MESSAGE_TYPES)

_ID_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class DsaInvalid(ConfigurationError):
    """A DSA file could not be read; ``detail`` names the file and the offending key path."""

    code = "dsa-invalid"
    title = "Data-sharing agreement is invalid"


class DsaStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    TERMINATED = "terminated"


class Regime(StrEnum):
    """The law the *sender* discloses under (docs/domain.md section 1)."""

    UK_GDPR = "uk_gdpr"
    DPA2018_PART3 = "dpa2018_part3"


class Clause(BaseModel):
    """One permitted flow: who may send which message types to whom, for what, with what."""

    model_config = ConfigDict(extra="forbid", frozen=True, validate_by_alias=True, validate_by_name=True)

    id: str = Field(pattern=_ID_PATTERN)
    from_: AgencyId = Field(alias="from")
    to: list[AgencyId] = Field(min_length=1)
    message_types: list[str] = Field(min_length=1)
    purposes: list[str] = Field(min_length=1)
    regime: Regime
    lawful_basis: str
    special_category_condition: str | None = None
    data_classes: list[DataClass] = Field(min_length=1)
    requires_consent: bool = False
    #: Which consent ``requires_consent`` asks for; meaningless without it.
    consent_kind: ConsentKind = "victim"
    retention_days: int = Field(gt=0)
    escalation_hours: int | None = Field(default=None, gt=0)
    override_authoriser_roles: list[str] = Field(default_factory=list)
    #: The subjects relied on under Sch 1 para 18 / Sch 8 para 4 are children or adults
    #: assessed as at risk; without it lint rejects those conditions (docs/domain.md P3).
    subjects_at_risk: bool = False


#: The clause terms that change a decision or what its audit entry records. Two clauses
#: that apply to the same flow and differ in any of these disagree: which one applies
#: would decide the outcome, so lint refuses them and the engine denies (fail closed).
#: ``consent_kind`` counts only when both clauses require consent.
OUTCOME_TERMS: tuple[str, ...] = (
    "data_classes",
    "requires_consent",
    "consent_kind",
    "regime",
    "lawful_basis",
    "special_category_condition",
    "retention_days",
    "escalation_hours",
    "override_authoriser_roles",
    "subjects_at_risk",
)


def disagreements(a: Clause, b: Clause) -> tuple[str, ...]:
    """The `OUTCOME_TERMS` in which ``a`` and ``b`` differ; empty if they agree.

    Lists are compared as sets: order in the file changes nothing the engine does.
    """

    def term(clause: Clause, name: str) -> object:
        if name == "consent_kind" and not (a.requires_consent and b.requires_consent):
            return None
        value = getattr(clause, name)
        return frozenset(value) if isinstance(value, list) else value

    return tuple(name for name in OUTCOME_TERMS if term(a, name) != term(b, name))


class DataSharingAgreement(BaseModel):
    """One version of a DSA: parties, dates, purposes and the clauses that permit flows."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=_ID_PATTERN)
    version: int = Field(ge=0)
    title: str
    status: DsaStatus
    valid_from: date
    valid_until: date
    review_date: date
    parties: list[AgencyId] = Field(min_length=1)
    purposes: list[str] = Field(min_length=1)
    #: Which parties may record each kind of consent (the registry asks `may_record_consent`).
    consent_recorders: dict[ConsentKind, list[AgencyId]] = Field(default_factory=dict)
    clauses: list[Clause]

    @model_validator(mode="after")
    def _unique_clause_ids(self) -> DataSharingAgreement:
        # Decisions and audit entries cite clauses by id: an ambiguous id breaks that trail.
        seen: set[str] = set()
        for clause in self.clauses:
            if clause.id in seen:
                raise ValueError(f"duplicate clause id {clause.id!r}")
            seen.add(clause.id)
        return self

    def in_force_on(self, day: date) -> bool:
        return self.status is DsaStatus.ACTIVE and self.valid_from <= day <= self.valid_until


@dataclass(frozen=True, eq=False)
class DsaBundle:
    """Every agreement the broker holds, in a fixed order, with the hash audit entries cite."""

    agreements: tuple[DataSharingAgreement, ...]
    #: (dsa id, version) -> the file it came from, so lint findings can point at it.
    sources: Mapping[tuple[str, int], str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Sorted by (id, version) so the policy hash does not depend on file names.
        ordered = tuple(sorted(self.agreements, key=lambda a: (a.id, a.version)))
        keys = [(a.id, a.version) for a in ordered]
        for prev, cur in itertools.pairwise(keys):
            if prev == cur:
                where = self.sources.get(cur, "<memory>")
                raise DsaInvalid(f"{where}: {cur[0]} version {cur[1]} is defined twice")
        object.__setattr__(self, "agreements", ordered)

    @cached_property
    def policy_hash(self) -> str:
        """Hex SHA-256 of the RFC 8785 JSON of the parsed agreements: stable across layout."""
        doc = [a.model_dump(mode="json", by_alias=True) for a in self.agreements]
        return hashlib.sha256(rfc8785.dumps(doc)).hexdigest()

    def clauses(self) -> Iterator[tuple[DataSharingAgreement, Clause]]:
        for agreement in self.agreements:
            for clause in agreement.clauses:
                yield agreement, clause

    def source_of(self, agreement: DataSharingAgreement) -> str | None:
        return self.sources.get((agreement.id, agreement.version))

    def may_record_consent(self, agency: str, kind: str, day: date) -> bool:
        """Whether an agreement in force on ``day`` lets ``agency`` record ``kind`` consent.

        In force as the engine judges it (`DataSharingAgreement.in_force_on`); like a
        clause naming a non-party, a recorder who is not a party is malformed (lint) and
        counts for nothing here.
        """
        return any(
            agreement.in_force_on(day) and agency in agreement.parties and agency in recorders
            for agreement in self.agreements
            for listed, recorders in agreement.consent_recorders.items()
            if listed == kind
        )


def load_bundle(paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]]) -> DsaBundle:
    """Load DSA files; a directory contributes its ``*.yaml`` files (not subdirectories)."""
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    files: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            files.extend(sorted(p for p in entry.glob("*.yaml") if p.is_file()))
        elif entry.is_file():
            files.append(entry)
        else:
            raise DsaInvalid(f"{entry}: no such DSA file or directory")
    if not files:
        # Fail closed loudly: an empty policy would refuse everything for a reason nobody sees.
        raise DsaInvalid("no DSA files found in " + ", ".join(str(Path(p)) for p in paths))
    agreements: list[DataSharingAgreement] = []
    sources: dict[tuple[str, int], str] = {}
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise DsaInvalid(f"{path}: cannot read ({type(exc).__name__})") from None
        agreement = parse_agreement(text, source=str(path))
        key = (agreement.id, agreement.version)
        if key in sources:
            raise DsaInvalid(
                f"{path}: {agreement.id} version {agreement.version} is also defined in {sources[key]}"
            )
        sources[key] = str(path)
        agreements.append(agreement)
    return DsaBundle(tuple(agreements), sources)


def parse_agreement(text: str, *, source: str = "<string>") -> DataSharingAgreement:
    """Parse one DSA document, naming ``source`` and the key path in any error."""
    try:
        raw = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - _StrictLoader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise DsaInvalid(f"{source}:{where}: {problem}") from None
    if not isinstance(raw, dict):
        raise DsaInvalid(f"{source}: a DSA file must be one mapping")
    try:
        return DataSharingAgreement.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = _key_path(raw, first["loc"])
        raise DsaInvalid(f"{source}: {path or '<root>'}: {first['msg']}", errors=exc.error_count()) from None


def _key_path(raw: Mapping[str, Any], loc: tuple[int | str, ...]) -> str:
    """``clauses[3](cr-police-nhs).data_classes[1]``: index plus clause id, for the author."""
    out = ""
    node: Any = raw
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("id"), str):
                out += f"({node['id']})"
        else:
            out += f".{part}" if out else str(part)
            node = node.get(part) if isinstance(node, dict) else None
    return out


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys: YAML would silently keep the last one."""


def _mapping_without_duplicates(loader: yaml.SafeLoader, node: yaml.MappingNode) -> Any:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue
        key = loader.construct_object(key_node)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)
