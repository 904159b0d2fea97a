"""``risk_concern_alert``: a professional passes on a risk the perpetrator disclosed.

Sent by the NHS team, the advocacy service or probation to police (and probation): a
threat, intent, new target, breach or escalation. Identity is minimal. Who heard the
disclosure is part of it (risk_disclosure), so that police can always call back. A
clinical note is possible but is clinical_detail: it leaves the NHS team only under an
override.
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar, Literal

from pydantic import AwareDatetime

from ._base import CanonicalBody, DataClass, classified
from ._people import PersonName, Practitioner
from ._types import LongText, PncId, ProbationCrn, Text

_P = DataClass.PERPETRATOR_IDENTITY
_D = DataClass.RISK_DISCLOSURE

DisclosureKind = Literal[
    "threat_to_harm",
    "intent_to_contact",
    "new_target",
    "order_breach",
    "escalation",
    "access_to_weapons",
    "approach_to_victim_location",
    "self_harm",
    "other",
]


class RiskConcernAlert(CanonicalBody):
    """An urgent warning: what was disclosed, to whom, and what the sender recommends."""

    masp_type: ClassVar[str] = "risk_concern_alert"

    perpetrator_name: PersonName = classified(_P, "The perpetrator's legal name")
    perpetrator_date_of_birth: date | None = classified(_P, "Date of birth", default=None)
    perpetrator_police_id: PncId | None = classified(_P, "PNC id", default=None)
    perpetrator_probation_id: ProbationCrn | None = classified(
        _P, "Probation case reference number", default=None
    )
    victim_name: PersonName | None = classified(
        DataClass.VICTIM_IDENTITY, "The victim at risk, when the sender knows her", default=None
    )
    disclosure_kinds: tuple[DisclosureKind, ...] = classified(
        _D, "What kind of risk was disclosed", min_length=1, max_length=9
    )
    disclosure_summary: LongText = classified(
        _D, "What was said or done, as close to the words used as possible"
    )
    disclosed_at: AwareDatetime = classified(_D, "When the disclosure was made (with offset)")
    disclosure_urgency: Literal["immediate", "same_day", "routine"] = classified(
        _D, "How fast the sender thinks police must act"
    )
    persons_at_risk: Text | None = classified(
        _D, "Who is at risk (the victim, a new target, a child)", default=None
    )
    recommended_action: Text | None = classified(
        _D, "What the sender recommends (e.g. welfare check, arrest for breach)", default=None
    )
    clinical_note: LongText | None = classified(
        DataClass.CLINICAL_DETAIL,
        "Clinical context for the disclosure; special category, shared only under an override",
        default=None,
    )
    reported_by: Practitioner = classified(
        _D, "The professional the disclosure was made to, for an urgent call-back"
    )
