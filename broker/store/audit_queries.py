"""IG queries over the audit log: filtered entries, CSV rows, disclosures about a subject.

Filters read the indexed columns of ``audit_entry`` and the ``audit_subject`` pseudonym
index; what is returned is always decoded from the leaves themselves.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broker.audit.entry import AuditEntry, EntryKind
from broker.store.models import AuditRow, AuditSubjectRow


@dataclass(frozen=True)
class EntryFilter:
    """IG query parameters; ``pseudonym`` is the keyed pseudonym, never the identifier."""

    pseudonym: str | None = None
    agency: str | None = None
    clause: str | None = None
    decision: str | None = None
    kind: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def query(self, after: int = -1) -> Select[tuple[AuditRow]]:
        q = select(AuditRow).where(col(AuditRow.seq) > after)
        if self.pseudonym:
            q = q.where(col(AuditRow.seq).in_(select(col(AuditSubjectRow.seq)).where(
                col(AuditSubjectRow.pseudonym) == self.pseudonym)))
        if self.agency:
            q = q.where((col(AuditRow.sender) == self.agency) | (col(AuditRow.recipient) == self.agency))
        for column, value in ((AuditRow.clause, self.clause), (AuditRow.decision, self.decision),
                              (AuditRow.kind, self.kind)):
            if value:
                q = q.where(col(column) == value)
        if self.since:
            q = q.where(col(AuditRow.at) >= self.since)
        if self.until:
            q = q.where(col(AuditRow.at) < self.until)
        return q.order_by(col(AuditRow.seq))

    def described(self) -> str:
        """The filter as it may be written into an audit leaf: names only, no identifier."""
        parts = [f"{k}={v}" for k, v in (("agency", self.agency), ("clause", self.clause),
                                          ("decision", self.decision), ("kind", self.kind))
                 if v]
        if self.since:
            parts.append(f"from={self.since.isoformat()}")
        if self.until:
            parts.append(f"to={self.until.isoformat()}")
        if self.pseudonym:
            parts.append("subject")
        return " ".join(parts) or "all"


async def find_entries(session: AsyncSession, flt: EntryFilter, *, after: int = -1,
                       limit: int = 1000) -> Sequence[AuditRow]:
    return (await session.execute(flt.query(after).limit(limit))).scalars().all()


async def subject_disclosures(session: AsyncSession, pseudonym: str) -> list[dict[str, Any]]:
    """Every ``disclosed`` entry about a subject, each naming its originating agency."""
    rows = await find_entries(session, EntryFilter(pseudonym=pseudonym, kind=EntryKind.DISCLOSED.value),
                              limit=100_000)
    found = []
    for row in rows:
        entry = AuditEntry.from_leaf(row.leaf)
        found.append({
            "seq": entry.seq, "at": entry.at.isoformat(), "originating_agency": entry.sender,
            "recipient": entry.recipient, "message_id": entry.message_id,
            "masp_type": entry.masp_type, "case_id": entry.case_id, "purpose": entry.purpose,
            "dsa": entry.dsa.model_dump() if entry.dsa else None,
            "lawful_basis": entry.lawful_basis, "decision": entry.decision,
            "categories": sorted({s.category for s in entry.subjects if s.pseudonym == pseudonym}),
            "fields_disclosed": [f.name for f in entry.fields_disclosed],
            "fields_withheld": list(entry.fields_withheld),
            "retention_until": entry.retention_until.isoformat() if entry.retention_until else None,
            "leaf_hash": row.leaf_hash.hex(),
        })
    return found


CSV_COLUMNS = ("seq", "at", "kind", "sender", "recipient", "message_id", "delivery_id", "masp_type",
               "case_id", "dsa_id", "dsa_version", "clause", "decision", "rules", "reason", "purpose",
               "lawful_basis", "special_category_condition", "fields_disclosed", "fields_withheld",
               "classification", "retention_until", "override_review", "leaf_hash")


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


csv_cell = _cell  # for other CSV exports of audit data (the console's subject-access report)


def csv_row(row: AuditRow) -> list[str]:
    e = AuditEntry.from_leaf(row.leaf)
    values: list[object] = [
        e.seq, e.at.isoformat(), e.kind.value, e.sender, e.recipient, e.message_id, e.delivery_id,
        e.masp_type, e.case_id, e.dsa.id if e.dsa else None, e.dsa.version if e.dsa else None,
        e.dsa.clause if e.dsa else None, e.decision, ";".join(e.rules), e.reason, e.purpose,
        e.lawful_basis, e.special_category_condition, ";".join(f.name for f in e.fields_disclosed),
        ";".join(e.fields_withheld), e.classification,
        e.retention_until.isoformat() if e.retention_until else None,
        e.override.get("review_status") if e.override else None, row.leaf_hash.hex()]
    return [_cell(v) for v in values]


def csv_text(rows: Iterable[list[str]], header: bool = False) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\r\n")
    if header:
        writer.writerow(CSV_COLUMNS)
    writer.writerows(rows)
    return buf.getvalue()
