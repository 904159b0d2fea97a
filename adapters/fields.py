"""Reading one native record field by field, collecting every problem instead of stopping.

Native parsers read through a ``Fields`` view so that a refused file's report lists every
bad field of every record at once, named as the agency's system names them. Values are
never quoted in a problem: they are personal data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from adapters.native import Problem

_MISSING = object()


class Fields:
    """A native record (a mapping) with typed getters that note problems and return None."""

    def __init__(self, record: str, data: object, problems: list[Problem], prefix: str = "") -> None:
        self.record = record
        self.problems = problems
        self.prefix = prefix
        if isinstance(data, Mapping):
            self.data: Mapping[str, Any] = data
        else:
            self.data = {}
            self.problem("", "not_an_object")

    def path(self, name: str) -> str:
        return f"{self.prefix}{name}" if name else (self.prefix.rstrip(".") or "<record>")

    def problem(self, name: str, reason: str) -> None:
        self.problems.append(Problem(self.record, self.path(name), reason))

    def has(self, name: str) -> bool:
        value = self.data.get(name)
        return value not in (None, "", [], {})

    def raw(self, name: str, *, required: bool = False) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING or value in (None, "", [], {}):
            if required:
                self.problem(name, "missing")
            return None
        return value

    def text(self, name: str, *, required: bool = False, pattern: str | None = None,
             code: bool = False) -> str | None:
        """A string, trimmed. An identifier read against ``pattern`` (or marked ``code``) is
        written in its canonical form, upper case with single spaces: the broker checks values
        exactly as sent and recipients validate them against the same published schema."""
        value = self.raw(name, required=required)
        if value is None:
            return None
        if not isinstance(value, str):
            self.problem(name, "not_text")
            return None
        value = value.strip()
        if pattern is not None or code:
            value = " ".join(value.upper().split())
        if pattern is not None and not re.fullmatch(pattern, value):
            self.problem(name, "bad_format")
            return None
        return value

    def date(self, name: str, *, required: bool = False) -> str | None:
        """An ISO date (YYYY-MM-DD) or a UK date (DD/MM/YYYY), returned as ISO."""
        value = self.text(name, required=required)
        if value is None:
            return None
        uk = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", value)
        iso = f"{uk.group(3)}-{uk.group(2)}-{uk.group(1)}" if uk else value
        try:
            return date.fromisoformat(iso).isoformat()
        except ValueError:
            self.problem(name, "not_a_date")
            return None

    def integer(self, name: str, *, required: bool = False, low: int = 0, high: int = 10_000) -> int | None:
        value = self.raw(name, required=required)
        if value is None:
            return None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.problem(name, "not_a_number_in_range")
            return None
        return value

    def flag(self, name: str, *, required: bool = False) -> bool | None:
        """Y/N, yes/no, true/false as the agency's system writes them."""
        value = self.raw(name, required=required)
        if value is None:
            return None
        if isinstance(value, bool):
            return value
        folded = str(value).strip().lower()
        if folded in ("y", "yes", "true", "1"):
            return True
        if folded in ("n", "no", "false", "0"):
            return False
        self.problem(name, "not_yes_or_no")
        return None

    def code(self, name: str, mapping: Mapping[str, str], *, required: bool = False) -> str | None:
        """A coded value of the agency's system, translated through ``mapping`` (case-insensitive)."""
        value = self.text(name, required=required)
        if value is None:
            return None
        folded = {k.lower(): v for k, v in mapping.items()}
        found = folded.get(value.lower())
        if found is None:
            self.problem(name, "unknown_code")
        return found

    def items(self, name: str, *, required: bool = False) -> list[Fields]:
        """A list of nested records, each read with its index in the path."""
        value = self.raw(name, required=required)
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(name, "not_a_list")
            return []
        return [
            Fields(self.record, v, self.problems, f"{self.path(name)}[{i}].") for i, v in enumerate(value)
        ]

    def nested(self, name: str, *, required: bool = False) -> Fields | None:
        value = self.raw(name, required=required)
        if value is None:
            return None
        return Fields(self.record, value, self.problems, f"{self.path(name)}.")

    def texts(self, name: str, *, required: bool = False) -> list[str]:
        value = self.raw(name, required=required)
        if value is None:
            return []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            self.problem(name, "not_a_list_of_text")
            return []
        return [v.strip() for v in value]


def drop_none(data: dict[str, Any]) -> dict[str, Any]:
    """A body or value object without its absent members (a field is given or absent)."""
    return {k: v for k, v in data.items() if v is not None and v != [] and v != {}}


def subject_ref(identifier: str) -> str:
    """An identifier as an envelope subject ref (``[A-Za-z0-9_.:-]``): '/' becomes '-'.

    The broker pseudonymises refs after folding away punctuation, so ``19/4471023K`` and
    ``19-4471023K`` name the same subject in the audit log.
    """
    return re.sub(r"[^A-Za-z0-9_.:-]", "-", identifier.strip())


# --- shapes several agencies' systems share ----------------------------------------------

POSTCODE = r"[A-Za-z]{1,2}[0-9][A-Za-z0-9]? ?[0-9][A-Za-z]{2}"


def address(f: Fields | None) -> dict[str, Any] | None:
    """``{line1..line4, town, county, postcode}`` as most UK case systems hold an address."""
    if f is None:
        return None
    lines = [v for v in (f.text(f"line{i}") for i in range(1, 5)) if v]
    if not lines:
        f.problem("line1", "missing")
    return drop_none(
        {
            "lines": lines,
            "town": f.text("town", required=True),
            "county": f.text("county"),
            "postcode": f.text("postcode", required=True, pattern=POSTCODE),
        }
    )


def person_name(f: Fields, given: str = "forenames", family: str = "surname") -> dict[str, Any] | None:
    """Forenames (first is given, the rest middle) and surname."""
    forenames = f.text(given, required=True)
    surname = f.text(family, required=True)
    if forenames is None or surname is None:
        return None
    first, _, middle = forenames.partition(" ")
    return drop_none({"given": first, "middle": middle.strip() or None, "family": surname})


def practitioner(f: Fields | None, agency: str) -> dict[str, Any] | None:
    """A named officer or practitioner of ``agency`` and how to reach them."""
    if f is None:
        return None
    return drop_none(
        {
            "name": f.text("name", required=True),
            "role": f.text("role", required=True),
            "agency": agency,
            "team": f.text("team"),
            "staff_ref": f.text("staff_ref"),
            "phone": f.text("phone"),
            "email": f.text("email"),
        }
    )


DAYS = {d.upper(): d for d in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
METHODS = {
    "PHONE": "phone_call",
    "TEXT": "text_message",
    "EMAIL": "email",
    "LETTER": "letter",
    "IN_PERSON": "in_person",
}


def contact_window(w: Fields) -> dict[str, Any]:
    """``{days "MON,WED", from, to, methods "PHONE,TEXT", note}``: when the victim may safely be reached."""
    days = [DAYS.get(d.strip().upper()) for d in (w.text("days", required=True) or "").split(",")]
    methods = [METHODS.get(m.strip().upper()) for m in (w.text("methods", required=True) or "").split(",")]
    if None in days:
        w.problem("days", "unknown_code")
    if None in methods:
        w.problem("methods", "unknown_code")
    return drop_none(
        {
            "days": [d for d in days if d],
            "start": w.text("from", required=True),
            "end": w.text("to", required=True),
            "methods": [m for m in methods if m],
            "note": w.text("note"),
        }
    )
