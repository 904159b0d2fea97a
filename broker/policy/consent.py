"""Consent records and how one answers P6 for a given flow.

A consent is one person's decision of one kind: ``victim`` (the victim's consent to sharing
her information) or ``intervention`` (the perpetrator's consent to the intervention and its
information sharing). A flow that rests on consent of a kind needs a current, in-scope
decision from every subject of the message whose role makes that kind theirs; a withdrawal
by any of them stops it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from broker.policy.rules import ConsentState, ConsentStatus

#: The subject categories whose consent each kind is.
CATEGORIES_OF_KIND: dict[str, frozenset[str]] = {
    "victim": frozenset({"victim"}),
    "intervention": frozenset({"suspect", "convicted"}),
}


@dataclass(frozen=True)
class ConsentRecord:
    """One recorded decision: given or withdrawn, for which recipients, types and purposes."""

    ref: str
    status: str
    purposes: Sequence[str]
    recipients: Sequence[str]
    message_types: Sequence[str]  # empty: every type for the purposes
    effective_date: date

    def state_for(self, recipient: str, masp_type: str, purpose: str, today: date) -> ConsentState:
        """The consent state P6 sees for one flow; a decision not yet in effect is not consent."""
        in_scope = (recipient in self.recipients and purpose in self.purposes
                    and (not self.message_types or masp_type in self.message_types))
        status = self.status if self.effective_date <= today else "pending"
        return ConsentState(status=status, in_scope=in_scope, ref=self.ref)


def combined_state(records: Sequence[ConsentRecord | None], recipient: str, masp_type: str,
                   purpose: str, today: date, ref: str) -> ConsentState:
    """P6's view of a flow about several people: the consent of each, all needed.

    No subject of the kind, or any of them without a record: not recorded. Any withdrawal
    wins over any consent; then any decision out of scope or not yet in effect.
    """
    if not records or any(r is None for r in records):
        return ConsentState(status="none", recorded=False, ref=ref)
    states = [r.state_for(recipient, masp_type, purpose, today) for r in records if r is not None]
    for state in states:
        if state.status == ConsentStatus.WITHDRAWN:
            return state
    for state in states:
        if state.status != ConsentStatus.GIVEN or not state.in_scope:
            return state
    return states[0]
