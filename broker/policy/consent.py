"""Consent records and how one answers P6 for a given flow."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from broker.policy.rules import ConsentState


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
