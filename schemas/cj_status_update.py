"""``cj_status_update``: police tell partners where the case stands in criminal justice.

Arrest, bail, charge, NFA, conviction, sentence; and order events such as an SPO breach.
Probation gets it in full, the NHS team minimised, the advocacy service what protects the
victim (bail conditions, orders, exclusion zones).
"""

from __future__ import annotations

from datetime import date
from typing import ClassVar

from ._base import CanonicalBody, DataClass, classified
from ._case import BailConditions, ExclusionZone, Hearing, Order, Sentence
from ._types import CjStatus, CrimeReference, LongText, OffenceCode

_CJ = DataClass.CJ_STATUS
_O = DataClass.OFFENCE


class CjStatusUpdate(CanonicalBody):
    """A change in the perpetrator's criminal-justice status or in an order."""

    masp_type: ClassVar[str] = "cj_status_update"

    cj_status: CjStatus = classified(_CJ, "Criminal-justice status after this event")
    effective_date: date = classified(_CJ, "Date the status or order event took effect")
    bail_conditions: BailConditions | None = classified(
        _CJ, "Bail and its conditions, when bailed", default=None
    )
    next_hearing: Hearing | None = classified(_CJ, "The next court date", default=None)
    sentence: Sentence | None = classified(_CJ, "The sentence, once sentenced", default=None)
    orders: tuple[Order, ...] | None = classified(
        DataClass.ORDERS,
        "Orders whose status changed (made, varied, discharged, breached)",
        default=None,
        max_length=20,
    )
    exclusion_zones: tuple[ExclusionZone, ...] | None = classified(
        DataClass.VICTIM_LOCATION,
        "Places the perpetrator must avoid under bail or an order; they locate the victim",
        default=None,
        max_length=20,
    )
    offence_codes: tuple[OffenceCode, ...] | None = classified(
        _O,
        "CJS offence codes as now charged or under investigation",
        default=None,
        min_length=1,
        max_length=20,
    )
    crime_reference: CrimeReference | None = classified(_O, "Crime reference", default=None)
    event_summary: LongText | None = classified(
        _O, "What happened (e.g. the conduct that breached the order)", default=None
    )
