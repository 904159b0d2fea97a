"""The DSA rules (docs/domain.md P1..P8), each a small check with a stable id, and what they read.

Each rule looks at one evaluation (`RuleContext`: the request, the agreement and the clause
chosen for it) and returns a `RuleResult`: deny the flow, withhold named fields, warn, or
pass. Rules never grant anything: what may pass is the clause's data classes plus those of
a valid override (`RuleContext.grant`), and every rule can only take away from it. `run`
composes them and fails closed: a rule that raises denies the flow under its own id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from types import MappingProxyType
from typing import Protocol

from pydantic import AwareDatetime, BaseModel, ConfigDict

from broker.policy.dsa import Clause, DataSharingAgreement, DsaStatus
from schemas._base import NEVER_TO_NHS, SPECIAL_CATEGORY, DataClass

NHS = "nhs"
INTERVENTION_REFERRAL = "intervention_referral"

#: Who an override may say is at risk; free text could smuggle personal data into audit.
RISK_TO_CODES: frozenset[str] = frozenset({"victim", "public", "child", "staff"})
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")

#: cj_status values (normalised) meaning the police are still investigating (P8). Pre-charge
#: bail is investigation; bail after charge is reported as ``charged``.
UNDER_INVESTIGATION: frozenset[str] = frozenset(
    {"under_investigation", "arrested", "bailed", "released_under_investigation"}
)


class ConsentStatus(StrEnum):
    GIVEN = "given"
    WITHDRAWN = "withdrawn"


@dataclass(frozen=True, kw_only=True)
class ConsentState:
    """What the broker knows of the subject's consent for this message and recipient (P6).

    The caller passes ``None`` when no record exists; a record it found for this
    recipient's scope needs only ``status``. Any status but ``given`` is not consent.
    """

    status: ConsentStatus | str
    recorded: bool = True
    in_scope: bool = True
    ref: str | None = None

    @property
    def current(self) -> bool:
        return self.recorded and self.in_scope and self.status == ConsentStatus.GIVEN


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Justification(_Frozen):
    risk_to: str
    harm: str
    consent_not_sought_reason: str


class Authoriser(_Frozen):
    id: str
    role: str


class Override(_Frozen):
    """The ``override`` envelope claim (P7 break-glass).

    Parsing checks only shape; whether it is complete enough to rely on is the P7 rule's
    call, so an incomplete override is refused *and audited* rather than bounced earlier.
    """

    justification: Justification
    legal_basis: str
    authoriser: Authoriser
    subject_informed: bool
    expires_at: AwareDatetime
    data_classes: list[DataClass]
    recipients: list[str]


@dataclass(frozen=True)
class PolicyRequest:
    """One (message, recipient) pair to judge. ``fields`` maps each field present to its class.

    ``facts`` carries what P8 needs from the body: ``cj_status`` (str) and ``case_holder``
    (True when the referrer named one). ``at`` comes from the caller's clock.
    """

    sender: str
    recipient: str
    masp_type: str
    purpose: str
    fields: Mapping[str, DataClass]
    at: datetime
    consent: ConsentState | None = None
    override: Override | None = None
    facts: Mapping[str, object] = field(default_factory=dict)
    #: The consent state of each kind (``victim``, ``intervention``) for the message's own
    #: subjects; P6 reads the kind its clause names, falling back to ``consent``.
    consent_by_kind: Mapping[str, ConsentState] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.at.utcoffset() is None:
            raise ValueError("PolicyRequest.at must be timezone-aware")
        object.__setattr__(self, "at", self.at.astimezone(UTC))
        frozen = {name: DataClass(cls) for name, cls in self.fields.items()}
        object.__setattr__(self, "fields", MappingProxyType(frozen))
        object.__setattr__(self, "facts", MappingProxyType(dict(self.facts)))
        object.__setattr__(self, "consent_by_kind", MappingProxyType(dict(self.consent_by_kind)))


def as_code(value: object) -> str:
    """``value`` if it is a code, else a mask: decisions are audited and must not carry the
    free text a sender could put in a purpose, a message type or an authoriser role."""
    return value if isinstance(value, str) and _CODE.match(value) else "<not a code>"


def hard_withheld(recipient: str) -> frozenset[DataClass]:
    """Classes that never reach ``recipient`` whatever a clause or override says (P4)."""
    return NEVER_TO_NHS if recipient == NHS else frozenset()


def override_problems(override: Override, clause: Clause, at: datetime) -> tuple[str, ...]:
    """Why ``override`` cannot be relied on under ``clause`` at ``at``; empty if it can."""
    problems: list[str] = []
    just = override.justification
    if just.risk_to not in RISK_TO_CODES:
        problems.append("justification.risk_to is not a known code")
    if not _CODE.match(just.harm):
        problems.append("justification.harm is not a code")
    if not _CODE.match(just.consent_not_sought_reason):
        problems.append("justification.consent_not_sought_reason is not a code")
    if not override.legal_basis.strip():
        problems.append("legal_basis is missing")
    if not override.authoriser.id.strip():
        problems.append("authoriser.id is missing")
    if not override.data_classes:
        problems.append("data_classes is empty")
    if override.authoriser.role not in clause.override_authoriser_roles:
        problems.append(
            f"authoriser role {as_code(override.authoriser.role)} may not override clause {clause.id}"
        )
    if at >= override.expires_at:
        problems.append("override expired")
    return tuple(problems)


@dataclass(frozen=True)
class RuleContext:
    request: PolicyRequest
    agreement: DataSharingAgreement
    clause: Clause
    deny_after_review_date: bool = False

    @property
    def override(self) -> Override | None:
        """The request's override if it names this recipient; otherwise it is not in play."""
        ov = self.request.override
        return ov if ov is not None and self.request.recipient in ov.recipients else None

    @cached_property
    def override_problems(self) -> tuple[str, ...]:
        ov = self.override
        return () if ov is None else override_problems(ov, self.clause, self.request.at)

    @cached_property
    def override_classes(self) -> frozenset[DataClass]:
        """Extra classes a valid override adds for this recipient (never hard-rule ones)."""
        ov = self.override
        if ov is None or self.override_problems:
            return frozenset()
        return frozenset(ov.data_classes) - hard_withheld(self.request.recipient)

    @cached_property
    def grant(self) -> frozenset[DataClass]:
        """Everything that may pass before rules take away: clause plus valid override."""
        clause_classes = frozenset(self.clause.data_classes)
        return (clause_classes | self.override_classes) - hard_withheld(self.request.recipient)

    def fields_in(self, classes: frozenset[DataClass]) -> tuple[str, ...]:
        return tuple(sorted(n for n, c in self.request.fields.items() if c in classes))

    def fields_not_in(self, classes: frozenset[DataClass]) -> tuple[str, ...]:
        return tuple(sorted(n for n, c in self.request.fields.items() if c not in classes))


@dataclass(frozen=True)
class RuleResult:
    rule: str
    denied: bool = False
    withheld: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    note: str = ""
    #: Relevant although it took nothing away (P5 classification, P7 override used).
    relevant: bool = False
    override_used: bool = False

    @property
    def fired(self) -> bool:
        return self.denied or bool(self.withheld) or bool(self.warnings) or self.relevant


class Rule(Protocol):
    id: str

    def check(self, ctx: RuleContext) -> RuleResult: ...


class Validity:
    """P1: the agreement must be active and in date; a passed review date warns or denies."""

    id = "P1.validity"

    def check(self, ctx: RuleContext) -> RuleResult:
        dsa, day = ctx.agreement, ctx.request.at.date()
        name = f"{dsa.id} v{dsa.version}"
        if dsa.status is not DsaStatus.ACTIVE:
            return RuleResult(self.id, denied=True, note=f"{name} is {dsa.status}")
        if day < dsa.valid_from:
            note = f"{name} not valid before {dsa.valid_from}"
            return RuleResult(self.id, denied=True, note=note)
        if day > dsa.valid_until:
            return RuleResult(self.id, denied=True, note=f"{name} expired {dsa.valid_until}")
        if day > dsa.review_date:
            msg = f"{name} passed its review date {dsa.review_date}"
            if ctx.deny_after_review_date:
                return RuleResult(self.id, denied=True, note=msg)
            return RuleResult(self.id, warnings=(msg,))
        return RuleResult(self.id)


class Purpose:
    """P2: no re-purposing; the purpose must be the clause's and the agreement's."""

    id = "P2.purpose"

    def check(self, ctx: RuleContext) -> RuleResult:
        purpose = ctx.request.purpose
        if purpose not in ctx.clause.purposes or purpose not in ctx.agreement.purposes:
            note = f"purpose {as_code(purpose)} is not a purpose of clause {ctx.clause.id}"
            return RuleResult(self.id, denied=True, note=note)
        return RuleResult(self.id)


class Consent:
    """P6: consent-gated clauses need a current, in-scope consent record."""

    id = "P6.consent"

    def check(self, ctx: RuleContext) -> RuleResult:
        if not ctx.clause.requires_consent:
            return RuleResult(self.id)
        kind = ctx.clause.consent_kind
        consent = ctx.request.consent_by_kind.get(kind, ctx.request.consent)
        if consent is None or not consent.recorded:
            note = f"clause {ctx.clause.id} requires consent and none is recorded"
        elif consent.status == ConsentStatus.WITHDRAWN:
            note = f"clause {ctx.clause.id} requires consent and it was withdrawn"
        elif consent.status != ConsentStatus.GIVEN:
            note = f"clause {ctx.clause.id} requires consent and its status is not given"
        elif not consent.in_scope:
            note = f"clause {ctx.clause.id} requires consent and the consent is out of scope"
        else:
            return RuleResult(self.id)
        return RuleResult(self.id, denied=True, note=note)


class Eligibility:
    """P8: no intervention referral during an investigation, nor without a case holder.

    Missing facts deny: the engine cannot tell an eligible referral from an unchecked one.
    """

    id = "P8.eligibility"

    def check(self, ctx: RuleContext) -> RuleResult:
        if ctx.request.masp_type != INTERVENTION_REFERRAL:
            return RuleResult(self.id)
        status = ctx.request.facts.get("cj_status")
        if not isinstance(status, str) or not status.strip():
            return RuleResult(self.id, denied=True, note="cj_status is not stated")
        normalised = re.sub(r"[\s-]+", "_", status.strip().lower())
        if normalised in UNDER_INVESTIGATION:
            note = f"perpetrator is under active police investigation (cj_status {normalised})"
            return RuleResult(self.id, denied=True, note=note)
        if ctx.request.facts.get("case_holder") is not True:
            return RuleResult(self.id, denied=True, note="referrer names no case holder")
        return RuleResult(self.id)


class HardRule:
    """P4 hard rule: victim location and safety plan never reach nhs, above every clause.

    An override that *asks* for them for nhs is treated as an attack on the rule and the
    whole flow to nhs is refused, not just the fields.
    """

    id = "P4.hard_rule"

    def check(self, ctx: RuleContext) -> RuleResult:
        never = hard_withheld(ctx.request.recipient)
        if not never:
            return RuleResult(self.id)
        ov = ctx.request.override
        if ov is not None and ctx.request.recipient in ov.recipients and never & set(ov.data_classes):
            asked = ", ".join(sorted(never & set(ov.data_classes)))
            note = f"override asks for {asked} for {ctx.request.recipient}"
            return RuleResult(self.id, denied=True, withheld=ctx.fields_in(never), note=note)
        warnings: tuple[str, ...] = ()
        if never & set(ctx.clause.data_classes):
            warnings = (f"clause {ctx.clause.id} lists classes never sent to nhs; ignored",)
        return RuleResult(self.id, withheld=ctx.fields_in(never), warnings=warnings)


class OverrideRule:
    """P7 break-glass: a valid override adds classes; clinical detail leaves nhs only so."""

    id = "P7.override"

    def check(self, ctx: RuleContext) -> RuleResult:
        clause_classes = frozenset(ctx.clause.data_classes)
        withheld: set[str] = set()
        if ctx.request.sender == NHS and DataClass.CLINICAL_DETAIL not in ctx.override_classes:
            # Caldicott: even a clause listing it cannot send clinical detail out of nhs.
            withheld.update(ctx.fields_in(frozenset({DataClass.CLINICAL_DETAIL})))
        ov = ctx.override
        if ov is not None and set(ov.data_classes) & hard_withheld(ctx.request.recipient):
            ov = None  # an attack on the hard rule: P4.hard_rule refuses the flow, not P7
        if ov is None:
            note = "clinical_detail leaves nhs only under an override" if withheld else ""
            return RuleResult(self.id, withheld=tuple(sorted(withheld)), note=note)
        if ctx.override_problems:
            withheld.update(ctx.fields_in(frozenset(ov.data_classes) - clause_classes))
            warnings = tuple(f"override not relied on: {p}" for p in ctx.override_problems)
            return RuleResult(
                self.id,
                withheld=tuple(sorted(withheld)),
                warnings=warnings,
                note="override invalid",
            )
        beyond = ctx.override_classes - clause_classes
        if ctx.request.sender == NHS:
            beyond |= ctx.override_classes & {DataClass.CLINICAL_DETAIL}
        used = bool(ctx.fields_in(beyond))
        if not used:
            warning = f"override for {ctx.request.recipient} not needed; not relied on"
            return RuleResult(self.id, withheld=tuple(sorted(withheld)), warnings=(warning,))
        return RuleResult(
            self.id,
            withheld=tuple(sorted(withheld)),
            relevant=True,
            override_used=True,
            note=f"override authorised by role {ov.authoriser.role}",
        )


class Minimisation:
    """P4: only the clause's classes (plus a valid override's) pass; the rest is withheld."""

    id = "P4.minimisation"

    def check(self, ctx: RuleContext) -> RuleResult:
        return RuleResult(self.id, withheld=ctx.fields_not_in(ctx.grant))


class SpecialCategory:
    """P5: health data needs the clause's special-category condition and is OFFICIAL-SENSITIVE."""

    id = "P5.special_category"

    def check(self, ctx: RuleContext) -> RuleResult:
        special = ctx.fields_in(SPECIAL_CATEGORY & ctx.grant)
        if not special:
            return RuleResult(self.id)
        condition = ctx.clause.special_category_condition
        if condition is None or not condition.strip():
            note = f"clause {ctx.clause.id} names no special-category condition"
            return RuleResult(self.id, withheld=special, note=note)
        return RuleResult(self.id, relevant=True)


#: The order rules run in, which is also the order withheld reasons are attributed: the
#: first rule that withholds a field is its reason.
DEFAULT_RULES: tuple[Rule, ...] = (
    Validity(),
    Purpose(),
    Consent(),
    Eligibility(),
    HardRule(),
    OverrideRule(),
    Minimisation(),
    SpecialCategory(),
)


def run(rules: Sequence[Rule], ctx: RuleContext) -> tuple[RuleResult, ...]:
    """Run every rule; a rule that raises or answers nonsense denies under its own id."""
    results: list[RuleResult] = []
    for rule in rules:
        rule_id = getattr(rule, "id", type(rule).__name__)
        try:
            result = rule.check(ctx)
            if not isinstance(result, RuleResult) or result.rule != rule_id:
                raise TypeError("rule returned no RuleResult of its own")
        except Exception as exc:  # fail closed on anything a rule does
            # The exception text may quote request data; only its type goes on record.
            result = RuleResult(rule_id, denied=True, note=f"rule failed ({type(exc).__name__})")
        results.append(result)
    return tuple(results)
