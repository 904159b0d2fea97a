"""Safeguarding timers: which deliveries must be acknowledged in time, and how soon.

A delivery is safeguarding-urgent when it is a ``risk_concern_alert``, when it carries a SASH
concern level of ``high``, or when its clause names ``escalation_hours``. Unacknowledged past
the deadline, the broker escalates it to the sender and to ops. The clause's own hours win;
urgent messages under a clause without them use ``DEFAULT_ESCALATION`` (lint warns about such
clauses).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from broker.policy.dsa import Clause, DsaBundle
from broker.policy.engine import ClauseRef
from broker.policy.lint import URGENT_TYPES

DEFAULT_ESCALATION = timedelta(hours=4)


@dataclass(frozen=True)
class Escalation:
    after: timedelta
    clause: str | None  # the clause id whose hours apply, None for the default


def is_urgent(masp_type: str, claims: Mapping[str, object]) -> bool:
    return masp_type in URGENT_TYPES or claims.get("sash_concern_level") == "high"


def clause_of(bundle: DsaBundle, ref: ClauseRef | None) -> Clause | None:
    if ref is None:
        return None
    for agreement in bundle.agreements:
        if agreement.id == ref.dsa_id and agreement.version == ref.dsa_version:
            return next((c for c in agreement.clauses if c.id == ref.clause_id), None)
    return None


def escalation_for(bundle: DsaBundle, ref: ClauseRef | None, masp_type: str,
                   claims: Mapping[str, object]) -> Escalation | None:
    """How long the recipient has to acknowledge before escalation; None if no timer applies."""
    clause = clause_of(bundle, ref)
    if clause is not None and clause.escalation_hours is not None:
        return Escalation(timedelta(hours=clause.escalation_hours), clause.id)
    if is_urgent(masp_type, claims):
        return Escalation(DEFAULT_ESCALATION, None)
    return None
