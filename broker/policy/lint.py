"""Static checks of DSA files (``masp policy lint``), and the gate before enforcement.

The engine already refuses unsafe flows one message at a time; lint tells the IG officer
*before* deployment that a clause is unlawful as written (P3), could never work, or
contradicts another. Errors must be fixed before a file is deployed, and the broker holds
to that itself: every process that enforces DSAs loads them through
`load_enforced_bundle`, which refuses the whole bundle (`DsaRejected`, carrying the
findings) on any error. Warnings need a human look. Citations are matched loosely
(``Art 6(1)(e)``, ``Article 6(1)(e)``).
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Literal

from broker.policy.dsa import (
    CONSENT_KINDS,
    MESSAGE_TYPES,
    Clause,
    DataSharingAgreement,
    DsaBundle,
    DsaInvalid,
    DsaStatus,
    Regime,
    disagreements,
    load_bundle,
)
from broker.policy.rules import NHS
from schemas._base import NEVER_TO_NHS, SPECIAL_CATEGORY, DataClass

Severity = Literal["error", "warning"]

#: Competent authorities (DPA 2018 Sch 7) among the parties: only they disclose under Part 3.
COMPETENT_AUTHORITIES = frozenset({"police", "probation"})
#: Public authorities cannot rely on legitimate interests for their tasks (Art 6(1) final para).
PUBLIC_AUTHORITIES = frozenset({"police", "probation", "nhs"})
#: Urgent message types: a consent gate would block a risk disclosure.
URGENT_TYPES = frozenset({"risk_concern_alert"})
CORRECTION = "correction_notice"
#: The personal-data classes of docs/domain.md section 1. Any other class the schemas define
#: is administrative (which message a correction concerns) and never widens a disclosure.
PERSONAL_DATA_CLASSES = frozenset(
    {
        "perpetrator_identity",
        "perpetrator_address",
        "victim_identity",
        "victim_location",
        "victim_safety_plan",
        "victim_views",
        "offence",
        "cj_status",
        "orders",
        "risk_screening",
        "intervention_status",
        "clinical_detail",
        "risk_disclosure",
        "health_flags",
        "children",
        "referrer",
    }
)
_ADMINISTRATIVE = frozenset(c for c in DataClass if c.value not in PERSONAL_DATA_CLASSES)

_ART6 = re.compile(r"\bArt(?:icle|\.)?\s*6\s*\(1\)\s*\(([a-f])\)", re.IGNORECASE)
_ART9 = re.compile(r"\bArt(?:icle|\.)?\s*9\s*\(2\)\s*\(([a-j])\)", re.IGNORECASE)
_S35 = re.compile(r"\b(?:s\.?\s*|section\s+)35\b", re.IGNORECASE)
_S35_CONSENT = re.compile(r"\b(?:s\.?\s*|section\s+)35\s*\(2\)\s*\(a\)", re.IGNORECASE)
_S35_5 = re.compile(r"\b(?:s\.?\s*|section\s+)35\s*\(5\)|strictly necessary", re.IGNORECASE)
_SCH1 = re.compile(r"\bSch(?:edule|\.)?\s*1\b", re.IGNORECASE)
_SCH8 = re.compile(r"\bSch(?:edule|\.)?\s*8\b", re.IGNORECASE)
# Sch 1 para 18 and its Part 3 twin Sch 8 para 4: "safeguarding of children and of
# individuals at risk", where an adult is "at risk" only if assessed so (para 18(3)).
_AT_RISK = re.compile(
    r"\bSch(?:edule|\.)?\s*1\b[^;]*?\bpara(?:graph|\.)?\s*18\b"
    r"|\bSch(?:edule|\.)?\s*8\b[^;]*?\bpara(?:graph|\.)?\s*4\b",
    re.IGNORECASE,
)
# Art 9(2) conditions that need a DPA 2018 Sch 1 condition as well (DPA 2018 s10).
_NEEDS_SCH1 = frozenset("bghij")


@dataclass(frozen=True, kw_only=True)
class LintFinding:
    severity: Severity
    file: str | None = None
    dsa_id: str
    clause_id: str | None
    rule: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}: " if self.file else ""
        what = f"{self.dsa_id}" + (f" clause {self.clause_id}" if self.clause_id else "")
        return f"{where}{self.severity}: {what}: [{self.rule}] {self.message}"


class DsaRejected(DsaInvalid):
    """DSA files that parse but fail lint: refused as a whole, so nothing is enforced.

    ``findings`` are the error findings, each one line as `LintFinding` prints it.
    """

    code = "dsa-rejected"
    title = "Data-sharing agreement refused by lint"

    def __init__(self, detail: str, findings: Sequence[LintFinding]) -> None:
        super().__init__(detail, errors=len(findings))
        self.findings = tuple(findings)


def load_enforced_bundle(
    paths: str | os.PathLike[str] | Iterable[str | os.PathLike[str]], today: date
) -> DsaBundle:
    """Load DSA files for enforcement: the bundle only if lint finds no error in it.

    The one door from files to a running engine (the broker, its worker processes, the
    demo). An error means a clause is unlawful as written, can never work, or contradicts
    another, and a broker that enforced the rest would decide by whichever clause happened
    to win; so the whole bundle is refused with `DsaRejected` and the process does not
    start. ``today`` is the caller's clock, for the date checks (warnings only).
    """
    named = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    bundle = load_bundle(named)
    errors = [f for f in lint(bundle, today=today) if f.severity == "error"]
    if errors:
        where = ", ".join(str(Path(p)) for p in named)
        raise DsaRejected(
            f"{len(errors)} lint error(s) in {where}; nothing is enforced until "
            f"`masp policy lint {where}` reports none",
            errors,
        )
    return bundle


def lint(
    bundle_or_agreements: DsaBundle | Iterable[DataSharingAgreement],
    *,
    today: date | None = None,
) -> list[LintFinding]:
    """Every finding for the agreements, errors and warnings, in file then clause order.

    ``today`` comes from the caller's clock; without it the date checks (review passed,
    expired) are skipped rather than guessed.
    """
    if isinstance(bundle_or_agreements, DsaBundle):
        bundle = bundle_or_agreements
    else:
        bundle = DsaBundle(tuple(bundle_or_agreements))
    findings: list[LintFinding] = []
    for agreement in bundle.agreements:
        source = bundle.source_of(agreement)
        findings.extend(_agreement_findings(agreement, source, today))
        for clause in agreement.clauses:
            for severity, rule, message in _clause_findings(agreement, clause):
                findings.append(
                    LintFinding(
                        severity=severity,
                        file=source,
                        dsa_id=agreement.id,
                        clause_id=clause.id,
                        rule=rule,
                        message=message,
                    )
                )
    findings.extend(_overlap_findings(bundle))
    findings.extend(_correction_findings(bundle))
    findings.extend(_consent_recorder_findings(bundle))
    return findings


def _agreement_findings(
    dsa: DataSharingAgreement, source: str | None, today: date | None
) -> Iterable[LintFinding]:
    def finding(severity: Severity, message: str) -> LintFinding:
        return LintFinding(
            severity=severity,
            file=source,
            dsa_id=dsa.id,
            clause_id=None,
            rule="P1.validity",
            message=message,
        )

    if dsa.valid_until < dsa.valid_from:
        yield finding("error", f"valid_until {dsa.valid_until} is before valid_from")
    if not dsa.valid_from <= dsa.review_date <= dsa.valid_until:
        yield finding("warning", f"review_date {dsa.review_date} is outside the validity")
    if today is not None and dsa.status is DsaStatus.ACTIVE:
        if today > dsa.valid_until:
            yield finding("warning", f"expired on {dsa.valid_until}; nothing flows under it")
        elif today > dsa.review_date:
            yield finding("warning", f"review date {dsa.review_date} has passed")


def _clause_findings(dsa: DataSharingAgreement, clause: Clause) -> Iterable[tuple[Severity, str, str]]:
    classes = set(clause.data_classes)
    if NHS in clause.to and classes & NEVER_TO_NHS:
        names = ", ".join(sorted(classes & NEVER_TO_NHS))
        yield "error", "P4.hard_rule", f"sends {names} to nhs, which is never allowed"
    if clause.from_ == NHS and DataClass.CLINICAL_DETAIL in classes:
        yield (
            "error",
            "P7.override",
            "clinical_detail leaves nhs only under an override; list it in no clause",
        )
    if clause.from_ == NHS and clause.override_authoriser_roles and not (clause.special_category_condition):
        yield (
            "warning",
            "P5.special_category",
            "override route without a special-category condition: clinical detail would still be withheld",
        )
    yield from _lawful_basis_findings(clause, classes)
    cited = f"{clause.lawful_basis}; {clause.special_category_condition or ''}"
    if _AT_RISK.search(cited) and not clause.subjects_at_risk:
        yield (
            "error",
            "P3.individuals_at_risk",
            "Sch 1 para 18 / Sch 8 para 4 apply only to children or adults at risk; "
            "set subjects_at_risk: true or cite another condition",
        )
    consent_basis = (
        _matches(_ART6, clause.lawful_basis, "a")
        or _matches(_ART9, clause.special_category_condition or "", "a")
        or bool(_S35_CONSENT.search(clause.lawful_basis))
    )
    if consent_basis and not clause.requires_consent:
        yield (
            "error",
            "P6.consent",
            "lawful basis is consent but requires_consent is false: flows would not stop "
            "when consent is withdrawn",
        )
    if clause.requires_consent and URGENT_TYPES & set(clause.message_types):
        yield (
            "warning",
            "P6.consent",
            "requires_consent on an urgent type: a risk disclosure would be blocked",
        )
    if URGENT_TYPES & set(clause.message_types) and clause.escalation_hours is None:
        yield "warning", "escalation", "urgent type without escalation_hours"
    unknown = sorted(set(clause.message_types) - MESSAGE_TYPES)
    if unknown:
        yield "error", "catalogue.message_type", f"unknown message types {', '.join(unknown)}"
    outsiders = sorted({clause.from_, *clause.to} - set(dsa.parties))
    if outsiders:
        yield "error", "parties", f"names {', '.join(outsiders)}, not parties to {dsa.id}"
    if clause.from_ in clause.to:
        yield "warning", "parties", f"{clause.from_} sends to itself"
    undeclared = sorted(set(clause.purposes) - set(dsa.purposes))
    if undeclared:
        yield "error", "P2.purpose", f"purposes {', '.join(undeclared)} not declared by {dsa.id}"


def _lawful_basis_findings(clause: Clause, classes: set[DataClass]) -> Iterable[tuple[Severity, str, str]]:
    basis = clause.lawful_basis
    condition = (clause.special_category_condition or "").strip()
    if clause.regime is Regime.DPA2018_PART3:
        if clause.from_ not in COMPETENT_AUTHORITIES:
            yield "error", "P3.regime", f"{clause.from_} is not a competent authority for Part 3"
        if not _S35.search(basis):
            yield "error", "P3.lawful_basis", "Part 3 clause does not cite its s35 basis"
    else:
        article = _ART6.search(basis)
        if article is None:
            yield "error", "P3.lawful_basis", "UK GDPR clause does not cite an Art 6(1) basis"
        elif article.group(1).lower() == "f" and clause.from_ in PUBLIC_AUTHORITIES:
            yield (
                "warning",
                "P3.lawful_basis",
                f"{clause.from_} is a public authority: legitimate interests does not cover its tasks",
            )
    special = sorted(classes & SPECIAL_CATEGORY)
    if special and not condition:
        yield (
            "error",
            "P3.special_category",
            f"carries {', '.join(special)} but names no special-category condition",
        )
    if not condition:
        return
    if clause.regime is Regime.DPA2018_PART3:
        if not (_S35_5.search(condition) and _SCH8.search(condition)):
            yield (
                "error",
                "P3.special_category",
                "Part 3 sensitive processing needs s35(5) strict necessity and a Sch 8 condition",
            )
        return
    art9 = _ART9.search(condition)
    if art9 is None:
        yield "error", "P3.special_category", "UK GDPR condition does not cite Art 9(2)"
    elif art9.group(1).lower() in _NEEDS_SCH1 and not _SCH1.search(condition):
        yield (
            "error",
            "P3.special_category",
            f"Art 9(2)({art9.group(1)}) needs a DPA 2018 Sch 1 condition as well",
        )


def _matches(pattern: re.Pattern[str], text: str, letter: str) -> bool:
    return any(m.group(1).lower() == letter for m in pattern.finditer(text))


def _overlap_findings(bundle: DsaBundle) -> Iterable[LintFinding]:
    """Clauses that both apply to one (from, to, type, purpose) at some date.

    Disagreeing on any outcome term (`broker.policy.dsa.disagreements`: classes, consent,
    basis, retention...) is an error: the outcome would depend on which clause sorts
    first, so a clause added beside another could drop its consent gate. The engine denies
    such a flow outright (``clause.overlap``). Agreeing is a warning: which clause an audit
    entry cites is still arbitrary.
    """
    by_flow: dict[tuple[str, str, str, str], list[tuple[DataSharingAgreement, Clause]]]
    by_flow = defaultdict(list)
    for agreement, clause in bundle.clauses():
        for recipient in clause.to:
            for masp_type in clause.message_types:
                for purpose in clause.purposes:
                    key = (clause.from_, recipient, masp_type, purpose)
                    by_flow[key].append((agreement, clause))
    reported: set[tuple[str, int, str, str, int, str]] = set()
    for (sender, to_agency, flow_type, flow_purpose), pairs in by_flow.items():
        for i, (a1, c1) in enumerate(pairs):
            for a2, c2 in pairs[i + 1 :]:
                if not _coexist(a1, a2):
                    continue
                pair_key = (a1.id, a1.version, c1.id, a2.id, a2.version, c2.id)
                if pair_key in reported:
                    continue
                reported.add(pair_key)
                differ = disagreements(c1, c2)
                yield LintFinding(
                    severity="error" if differ else "warning",
                    file=bundle.source_of(a2),
                    dsa_id=a2.id,
                    clause_id=c2.id,
                    rule="clause.overlap",
                    message=(
                        f"overlaps {a1.id} v{a1.version} clause {c1.id} for {sender} -> "
                        f"{to_agency} {flow_type} ({flow_purpose})"
                        + (f"; they disagree on {', '.join(differ)}" if differ else "")
                    ),
                )


def _correction_findings(bundle: DsaBundle) -> Iterable[LintFinding]:
    """A correction clause wider than what the pair otherwise exchanges is a back door.

    Corrections go to earlier recipients of the fields (P10), so they need no personal-data
    class the recipient could not have received before.
    """
    for agreement in bundle.agreements:
        exchanged: dict[tuple[str, str], set[DataClass]] = defaultdict(set)
        for clause in agreement.clauses:
            if CORRECTION not in clause.message_types:
                for recipient in clause.to:
                    exchanged[(clause.from_, recipient)].update(clause.data_classes)
        for clause in agreement.clauses:
            if CORRECTION not in clause.message_types:
                continue
            for recipient in clause.to:
                known = exchanged[(clause.from_, recipient)]
                extra = sorted(set(clause.data_classes) - known - _ADMINISTRATIVE)
                if extra:
                    yield LintFinding(
                        severity="warning",
                        file=bundle.source_of(agreement),
                        dsa_id=agreement.id,
                        clause_id=clause.id,
                        rule="P10.correction_scope",
                        message=(
                            f"corrections to {recipient} may carry {', '.join(extra)}, which "
                            f"no other clause lets {clause.from_} send it"
                        ),
                    )


def _consent_recorder_findings(bundle: DsaBundle) -> Iterable[LintFinding]:
    """Who may record consent (P6): parties only, and someone for every consent a clause needs.

    A recorder outside the parties would let a stranger to the agreement open its consent
    gates; a clause needing a kind of consent nobody may record could never pass.
    """
    for agreement in bundle.agreements:
        source = bundle.source_of(agreement)
        for kind in CONSENT_KINDS:
            recorders = agreement.consent_recorders.get(kind, [])
            outsiders = sorted(set(recorders) - set(agreement.parties))
            if outsiders:
                yield LintFinding(
                    severity="error",
                    file=source,
                    dsa_id=agreement.id,
                    clause_id=None,
                    rule="P6.consent_recorder",
                    message=(
                        f"consent_recorders.{kind} names {', '.join(outsiders)}, "
                        f"not parties to {agreement.id}"
                    ),
                )
            needing = [c.id for c in agreement.clauses if c.requires_consent and c.consent_kind == kind]
            if needing and not recorders:
                yield LintFinding(
                    severity="error",
                    file=source,
                    dsa_id=agreement.id,
                    clause_id=None,
                    rule="P6.consent_recorder",
                    message=(
                        f"clauses {', '.join(needing)} need {kind} consent but "
                        f"consent_recorders.{kind} names no one to record it"
                    ),
                )


def _coexist(a1: DataSharingAgreement, a2: DataSharingAgreement) -> bool:
    if a1 is a2:
        return True
    both_active = a1.status is DsaStatus.ACTIVE and a2.status is DsaStatus.ACTIVE
    return both_active and a1.valid_from <= a2.valid_until and a2.valid_from <= a1.valid_until
