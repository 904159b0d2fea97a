"""P10: a correction reaches every earlier recipient of the fields, and only with what it had."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Set
from types import MappingProxyType

from broker.policy.engine import Decision, Outcome

RULE = "P10.correction_scope"


def correction_recipients(earlier: Mapping[str, Set[str]], touched: Set[str]) -> tuple[str, ...]:
    """Recipients that were disclosed any of the corrected or withdrawn fields, sorted."""
    return tuple(sorted(r for r, fields in earlier.items() if fields & touched))


def scope_correction(decision: Decision, earlier_fields: Set[str], reference: Set[str]) -> Decision:
    """Narrow a permitted correction to the fields this recipient received before.

    A correction must not become a way to send a field the recipient never had: a field
    the DSA would allow now but that the recipient did not receive originally is withheld
    under P10. The reference fields (which message, why, what to delete) always pass.
    """
    if decision.outcome not in (Outcome.PERMIT, Outcome.PERMIT_WITH_REDACTION):
        return decision
    keep = tuple(n for n in decision.disclosed if n in reference or n in earlier_fields)
    dropped = [n for n in decision.disclosed if n not in keep]
    if not dropped:
        return decision
    reasons = dict(decision.withheld_reasons) | dict.fromkeys(dropped, RULE)
    return dataclasses.replace(
        decision, outcome=Outcome.PERMIT_WITH_REDACTION, disclosed=keep,
        withheld=tuple(sorted(reasons)), withheld_reasons=MappingProxyType(dict(sorted(reasons.items()))),
        rules=(*decision.rules, RULE) if RULE not in decision.rules else decision.rules,
        reason=f"{decision.reason}; {RULE}: withheld {', '.join(sorted(dropped))} (not received before)")
