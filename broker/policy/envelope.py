"""What of a message's envelope each recipient may see: subject references, consent_ref.

A subject's own reference (a PNC id, a CRN, a nominal reference) identifies a person as
surely as a name, so it is minimised like a body field. A recipient gets the sender's
reference for a subject only when what it is granted (clause plus valid override, less the
hard rule) includes the identity class of that subject's role in the case; otherwise it
gets a pseudonym the broker keys for that recipient alone (stable across its deliveries, of
no use for matching with another agency's). The perpetrator-facing team gets nothing about
a victim: not her reference, not a pseudonym, not that a victim was named at all.

``consent_ref`` is the recording agency's handle on a consent: a recipient holds it only if
the flow rests on that consent or the message changes it. Anyone else who learnt it could
try to cite it.
"""

from __future__ import annotations

from enum import StrEnum

from broker.policy.engine import Decision
from broker.policy.rules import NHS
from schemas._base import DataClass

#: The identity class that covers a subject's own reference, by subject category. Witnesses
#: and others have no class of their own: recipients see them as pseudonyms only.
IDENTITY_CLASS: dict[str, DataClass] = {
    "victim": DataClass.VICTIM_IDENTITY,
    "suspect": DataClass.PERPETRATOR_IDENTITY,
    "convicted": DataClass.PERPETRATOR_IDENTITY,
    "child": DataClass.CHILDREN,
}
#: Categories the perpetrator-facing team never hears of (docs/domain.md P4, extended to the
#: envelope: a victim's reference leads to her as surely as her address).
HIDDEN_FROM_PERPETRATOR_FACING: frozenset[str] = frozenset({"victim"})


class SubjectView(StrEnum):
    REFERENCE = "reference"  # the sender's own reference, as a disclosure it signed
    PSEUDONYM = "pseudonym"  # only a pseudonym keyed for this recipient
    NONE = "none"            # not mentioned at all


def subject_view(decision: Decision, category: str) -> SubjectView:
    """How ``decision.recipient`` may see a subject of ``category``."""
    if decision.recipient == NHS and category in HIDDEN_FROM_PERPETRATOR_FACING:
        return SubjectView.NONE
    needed = IDENTITY_CLASS.get(category)
    if needed is not None and decision.delivers and needed in decision.granted:
        return SubjectView.REFERENCE
    return SubjectView.PSEUDONYM


def sees_consent_ref(decision: Decision, masp_type: str) -> bool:
    """Whether ``decision.recipient`` receives the message's ``consent_ref``."""
    return decision.delivers and (decision.consent_required or masp_type == "consent_change")
