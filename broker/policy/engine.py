"""The DSA engine: for one message and one recipient, which clause applies and what passes.

Pure domain code: no clock (``at`` comes with the request), no I/O, no framework. The
engine picks the clause, runs the rules of `broker.policy.rules` and turns their results
into a `Decision` the broker delivers and audits. It never raises for a policy reason:
every refusal is a `Decision` so it can be recorded (docs/domain.md P11). When clauses that
disagree all apply, it picks none and denies (``clause.overlap``): lint refuses such a
bundle, and the engine does not rely on that.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from broker.policy.dsa import OUTCOME_TERMS, Clause, DataSharingAgreement, DsaBundle, disagreements
from broker.policy.rules import (
    DEFAULT_RULES,
    ConsentState,
    ConsentStatus,
    PolicyRequest,
    Rule,
    RuleContext,
    RuleResult,
    as_code,
    hard_withheld,
    run,
)
from schemas._base import SPECIAL_CATEGORY, DataClass

NO_CLAUSE = "clause.none"
OVERLAP = "clause.overlap"
ENGINE_ERROR = "engine.error"
_MINIMISATION = "P4.minimisation"
_HARD_RULE = "P4.hard_rule"
_OVERRIDE = "P7.override"


class Outcome(StrEnum):
    PERMIT = "permit"
    PERMIT_WITH_REDACTION = "permit_with_redaction"
    REQUIRE_OVERRIDE = "require_override"
    DENY = "deny"


class Classification(StrEnum):
    OFFICIAL = "OFFICIAL"
    OFFICIAL_SENSITIVE = "OFFICIAL-SENSITIVE"


@dataclass(frozen=True)
class ClauseRef:
    dsa_id: str
    dsa_version: int
    clause_id: str

    def __str__(self) -> str:
        return f"{self.dsa_id} v{self.dsa_version} clause {self.clause_id}"


@dataclass(frozen=True)
class Decision:
    """What one recipient gets from one message, and why. Holds names, never values."""

    recipient: str
    outcome: Outcome
    rules: tuple[str, ...]
    clause: ClauseRef | None
    lawful_basis: str | None
    special_category_condition: str | None
    regime: str | None
    disclosed: tuple[str, ...]
    withheld: tuple[str, ...]
    withheld_reasons: Mapping[str, str]
    retention_until: datetime | None
    classification: Classification
    override_used: bool
    warnings: tuple[str, ...]
    reason: str
    #: The classes that may pass to this recipient (clause plus a valid override, less the
    #: hard rule): what decides which subject references it may see (``envelope``).
    granted: tuple[DataClass, ...] = ()
    #: The clause rests on the subject's consent, so the recipient holds the consent ref.
    consent_required: bool = False

    @property
    def delivers(self) -> bool:
        return self.outcome in (Outcome.PERMIT, Outcome.PERMIT_WITH_REDACTION)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form for audit entries, receipts and the API."""
        return _plain_fields(self)


@dataclass(frozen=True)
class ClauseConflict:
    """Clauses that all apply to one flow and disagree (`broker.policy.dsa.disagreements`).

    Whichever one the engine picked would decide the outcome, so it picks none.
    """

    clauses: tuple[ClauseRef, ...]
    terms: tuple[str, ...]

    def note(self) -> str:
        """Our own codes only: DSA and clause ids (validated on load) and term names."""
        cited = ", ".join(str(ref) for ref in self.clauses)
        return f"clauses that disagree on {', '.join(self.terms)} all apply ({cited})"


def candidate_recipients(bundle: DsaBundle, sender: str, masp_type: str) -> tuple[str, ...]:
    """Everyone any clause (active or not) lets ``sender`` address with ``masp_type``.

    Deliberately wider than what is permitted today: each candidate is evaluated so that a
    refusal (expired agreement, missing consent) is audited rather than silently skipped.
    """
    named = {
        recipient
        for _, clause in bundle.clauses()
        if clause.from_ == sender and masp_type in clause.message_types
        for recipient in clause.to
    }
    named.discard(sender)
    return tuple(sorted(named))


@dataclass(frozen=True)
class PolicyEngine:
    """The rules and options in force; `evaluate` below uses the default one."""

    rules: Sequence[Rule] = DEFAULT_RULES
    deny_after_review_date: bool = False

    def evaluate(self, bundle: DsaBundle, request: PolicyRequest) -> Decision:
        try:
            return self._evaluate(bundle, request)
        except Exception as exc:  # the engine fails closed, and says so
            return _refusal(request, ENGINE_ERROR, f"engine failed ({type(exc).__name__})")

    def _evaluate(self, bundle: DsaBundle, request: PolicyRequest) -> Decision:
        chosen = select_clause(bundle, request)
        if chosen is None:
            note = (
                f"no clause lets {as_code(request.sender)} send {as_code(request.masp_type)} "
                f"to {as_code(request.recipient)}"
            )
            return _refusal(request, NO_CLAUSE, note)
        if isinstance(chosen, ClauseConflict):
            return _refusal(request, OVERLAP, chosen.note())
        agreement, clause, selection_warnings = chosen
        ctx = RuleContext(request, agreement, clause, self.deny_after_review_date)
        return _decide(ctx, run(self.rules, ctx), selection_warnings)


def evaluate(bundle: DsaBundle, request: PolicyRequest, *, deny_after_review_date: bool = False) -> Decision:
    """Decide what ``request.recipient`` may receive of this message under ``bundle``."""
    return PolicyEngine(deny_after_review_date=deny_after_review_date).evaluate(bundle, request)


def select_clause(
    bundle: DsaBundle, request: PolicyRequest
) -> tuple[DataSharingAgreement, Clause, tuple[str, ...]] | ClauseConflict | None:
    """The clause to judge ``request`` by, preferring in-force ones that fit the purpose.

    A clause that covers (sender, recipient, type) but is out of date or for another
    purpose is still chosen when nothing better exists, so the refusal names it (P1/P2).
    When several in-force clauses fit and any of them disagree, none is chosen: the
    `ClauseConflict` becomes a deny, since ranking them would let a clause's id decide
    the outcome (a clause added beside another could drop its consent gate). When they
    all agree, the first by (dsa id, newest version, clause id) wins and the decision
    carries a warning; lint warns about such overlaps and refuses disagreeing ones.
    """
    day = request.at.date()
    covering = [
        (agreement, clause)
        for agreement, clause in bundle.clauses()
        if clause.from_ == request.sender
        and request.recipient in clause.to
        and request.masp_type in clause.message_types
        # A clause naming a non-party is malformed (lint); it covers nothing at runtime.
        and request.sender in agreement.parties
        and request.recipient in agreement.parties
    ]
    if not covering:
        return None

    def fits(pair: tuple[DataSharingAgreement, Clause]) -> bool:
        agreement, clause = pair
        return request.purpose in clause.purposes and request.purpose in agreement.purposes

    def rank(pair: tuple[DataSharingAgreement, Clause]) -> tuple[bool, bool, str, int, str]:
        agreement, clause = pair
        return (
            not agreement.in_force_on(day),
            not fits(pair),
            agreement.id,
            -agreement.version,
            clause.id,
        )

    covering.sort(key=rank)
    agreement, clause = covering[0]
    applicable = [p for p in covering if p[0].in_force_on(day) and fits(p)]
    # If every clause agrees with the first, they all agree with one another (agreeing is
    # an equivalence), so comparing against the first finds any disagreement.
    terms = {term for _, other in applicable[1:] for term in disagreements(clause, other)}
    if terms:
        return ClauseConflict(
            clauses=tuple(_ref(a, c) for a, c in applicable),
            terms=tuple(t for t in OUTCOME_TERMS if t in terms),
        )
    warnings: tuple[str, ...] = ()
    if len(applicable) > 1:
        others = ", ".join(str(_ref(a, c)) for a, c in applicable[1:])
        warnings = (f"overlapping clauses ({others}); applied {_ref(agreement, clause)}",)
    return agreement, clause, warnings


def _decide(ctx: RuleContext, results: tuple[RuleResult, ...], extra_warnings: tuple[str, ...]) -> Decision:
    request, clause = ctx.request, ctx.clause
    fired = [r.rule for r in results if r.fired]
    warnings = list(extra_warnings)
    reasons: dict[str, str] = {}
    for result in results:
        warnings.extend(result.warnings)
        for name in result.withheld:
            reasons.setdefault(name, result.rule)
    # Defence in depth: the hard rule and the grant hold even if a rule were dropped or
    # broken. A field outside both is withheld here, and the rule is recorded as fired.
    never = hard_withheld(request.recipient)
    for name, cls in request.fields.items():
        if name in reasons:
            continue
        if cls in never:
            reasons[name] = _HARD_RULE
        elif cls not in ctx.grant:
            reasons[name] = _MINIMISATION
        else:
            continue
        if reasons[name] not in fired:
            fired.append(reasons[name])

    denial = next((r for r in results if r.denied), None)
    disclosed = tuple(sorted(n for n in request.fields if n not in reasons))
    outcome: Outcome
    if denial is not None:
        outcome, why = Outcome.DENY, f"{denial.rule}: {denial.note}"
        # A refused flow is refused as a whole: it cites the rules that refused or warned,
        # not field rules that had nothing left to decide, and every field falls to it.
        fired = [r.rule for r in results if r.denied or r.warnings]
        reasons = dict.fromkeys(request.fields, denial.rule)
        disclosed = ()
    elif request.fields and not disclosed:
        if _OVERRIDE in reasons.values() and clause.override_authoriser_roles:
            # Nothing passes but an authorised override could release it (typically a
            # message that is only clinical detail from nhs): say so rather than refuse.
            outcome = Outcome.REQUIRE_OVERRIDE
            why = f"{_OVERRIDE}: nothing passes without an override by " + "/".join(
                clause.override_authoriser_roles
            )
        else:
            outcome, why = Outcome.DENY, f"{_MINIMISATION}: no field passes clause {clause.id}"
            if _MINIMISATION not in fired:
                fired.append(_MINIMISATION)
    else:
        outcome = Outcome.PERMIT_WITH_REDACTION if reasons else Outcome.PERMIT
        why = f"permitted under {_ref(ctx.agreement, clause)}"
        if reasons:
            why += "; withheld " + ", ".join(f"{n} ({reasons[n]})" for n in sorted(reasons))

    delivers = outcome in (Outcome.PERMIT, Outcome.PERMIT_WITH_REDACTION)
    special_out = any(request.fields[n] in SPECIAL_CATEGORY for n in disclosed)
    special_any = any(c in SPECIAL_CATEGORY for c in request.fields.values())
    sensitive = special_out if delivers else special_any
    return Decision(
        recipient=request.recipient,
        outcome=outcome,
        rules=tuple(fired),
        clause=_ref(ctx.agreement, clause),
        lawful_basis=clause.lawful_basis,
        special_category_condition=clause.special_category_condition if special_out else None,
        regime=clause.regime.value,
        disclosed=disclosed,
        withheld=tuple(sorted(reasons)),
        withheld_reasons=MappingProxyType(dict(sorted(reasons.items()))),
        retention_until=request.at + timedelta(days=clause.retention_days) if delivers else None,
        classification=(Classification.OFFICIAL_SENSITIVE if sensitive else Classification.OFFICIAL),
        override_used=delivers and any(r.override_used for r in results),
        warnings=tuple(dict.fromkeys(warnings)),
        reason=why,
        granted=tuple(sorted(ctx.grant)) if delivers else (),
        consent_required=delivers and clause.requires_consent,
    )


def _refusal(request: PolicyRequest, rule: str, note: str) -> Decision:
    """A deny taken before any clause applied: no basis, nothing disclosed."""
    names = tuple(sorted(request.fields))
    special = any(c in SPECIAL_CATEGORY for c in request.fields.values())
    return Decision(
        recipient=request.recipient,
        outcome=Outcome.DENY,
        rules=(rule,),
        clause=None,
        lawful_basis=None,
        special_category_condition=None,
        regime=None,
        disclosed=(),
        withheld=names,
        withheld_reasons=MappingProxyType(dict.fromkeys(names, rule)),
        retention_until=None,
        classification=Classification.OFFICIAL_SENSITIVE if special else Classification.OFFICIAL,
        override_used=False,
        warnings=(),
        reason=f"{rule}: {note}",
    )


def _ref(agreement: DataSharingAgreement, clause: Clause) -> ClauseRef:
    return ClauseRef(agreement.id, agreement.version, clause.id)


# --- explain -------------------------------------------------------------------------


@dataclass(frozen=True)
class Explanation:
    """May ``sender`` send ``masp_type`` to ``recipient``; which classes; under what; why not.

    Answers for a message carrying every data class, assuming the conditions listed in
    ``conditions`` (consent, P8 eligibility) hold; ``outcome`` is the answer under them.
    """

    sender: str
    recipient: str
    masp_type: str
    purpose: str | None
    outcome: Outcome
    clause: ClauseRef | None
    regime: str | None
    lawful_basis: str | None
    special_category_condition: str | None
    purposes: tuple[str, ...]
    allowed: tuple[DataClass, ...]
    withheld: Mapping[DataClass, str]
    overridable: tuple[DataClass, ...]
    override_authoriser_roles: tuple[str, ...]
    conditions: tuple[str, ...]
    retention_days: int | None
    rules: tuple[str, ...]
    warnings: tuple[str, ...]
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return _plain_fields(self)


def explain(
    bundle: DsaBundle,
    sender: str,
    recipient: str,
    masp_type: str,
    purpose: str | None,
    at: datetime,
    *,
    deny_after_review_date: bool = False,
) -> Explanation:
    """Explain a flow for a message with every class present (``masp policy explain``).

    Without ``purpose`` the first purpose of the clause that would apply is assumed.
    """
    every = {cls.value: cls for cls in DataClass}
    probe = PolicyRequest(sender, recipient, masp_type, purpose or "", every, at)
    selected = select_clause(bundle, probe)
    if isinstance(selected, tuple) and purpose is None:
        first_agreement, first_clause, _ = selected
        purpose = next((p for p in first_clause.purposes if p in first_agreement.purposes), "")
        # With the purpose known, clauses that disagree may all apply: ask again.
        probe = PolicyRequest(sender, recipient, masp_type, purpose, every, at)
        selected = select_clause(bundle, probe)
    # Under a conflict no clause applies: the answer is the clause.overlap refusal.
    chosen = selected if isinstance(selected, tuple) else None
    conditions: list[str] = []
    consent: ConsentState | None = None
    facts: dict[str, object] = {}
    if chosen is not None and chosen[1].requires_consent:
        conditions.append(
            f"P6.consent: needs a current, in-scope {chosen[1].consent_kind} consent record"
        )
        consent = ConsentState(recorded=True, in_scope=True, status=ConsentStatus.GIVEN)
    if masp_type == "intervention_referral":
        conditions.append("P8.eligibility: refused while under investigation; referrer names a case holder")
        facts = {"cj_status": "charged", "case_holder": True}
    request = PolicyRequest(
        sender, recipient, masp_type, purpose or "", every, at, consent=consent, facts=facts
    )
    decision = PolicyEngine(deny_after_review_date=deny_after_review_date).evaluate(bundle, request)
    clause = chosen[1] if chosen is not None else None
    purposes: tuple[str, ...] = ()
    if chosen is not None:
        purposes = tuple(p for p in chosen[1].purposes if p in chosen[0].purposes)
    roles = tuple(clause.override_authoriser_roles) if clause else ()
    withheld = {every[n]: r for n, r in decision.withheld_reasons.items()}
    overridable: tuple[DataClass, ...] = ()
    if roles and decision.outcome is not Outcome.DENY:
        # What an authorised override could add: not the hard rule, not an unmet P5.
        overridable = tuple(c for c, r in withheld.items() if r in (_MINIMISATION, _OVERRIDE))
        conditions.append("P7.override: an override needs role " + "/".join(roles))
    return Explanation(
        sender=sender,
        recipient=recipient,
        masp_type=masp_type,
        purpose=purpose or None,
        outcome=decision.outcome,
        clause=decision.clause,
        regime=decision.regime,
        lawful_basis=decision.lawful_basis,
        special_category_condition=clause.special_category_condition if clause else None,
        purposes=purposes,
        allowed=tuple(every[n] for n in decision.disclosed),
        withheld=MappingProxyType(withheld),
        overridable=overridable,
        override_authoriser_roles=roles,
        conditions=tuple(conditions),
        retention_days=clause.retention_days if clause else None,
        rules=decision.rules,
        warnings=decision.warnings,
        reason=decision.reason,
    )


def _plain_fields(obj: Decision | Explanation) -> dict[str, Any]:
    return {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}


def _plain(value: Any) -> Any:
    """JSON-ready copy: enums to values, datetimes to ISO 8601, clause refs to objects."""
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, ClauseRef):
        return {"id": value.dsa_id, "version": value.dsa_version, "clause": value.clause_id}
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


def receivable_classes(bundle: DsaBundle, recipient: str, masp_type: str) -> frozenset[DataClass]:
    """Every data class some clause could ever disclose to ``recipient`` in a ``masp_type``:
    its classes, any class an authorised override could add where the clause allows
    overrides, never a hard-rule class (P4). What a recipient validates its deliveries against
    (``GET /v1/schemas/{masp_type}``); a given delivery may carry less."""
    classes: set[DataClass] = set()
    for agreement in bundle.agreements:
        for clause in agreement.clauses:
            if recipient in clause.to and masp_type in clause.message_types:
                classes.update(clause.data_classes)
                if clause.override_authoriser_roles:
                    classes.update(DataClass)
    return frozenset(classes) - hard_withheld(recipient)
