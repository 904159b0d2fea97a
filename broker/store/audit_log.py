"""The audit log in the database: one sequencer appends batches and signs a checkpoint each.

Every append also stores the perfect subtrees it completes (``audit_node``), so proofs
never re-read leaves (``broker/store/audit_tree.py``).

The sequencer is an asyncio lock in-process plus, on PostgreSQL, a transaction-scoped
advisory lock, so several broker processes never assign the same ``seq`` nor sign two
inconsistent checkpoints. SQLite deployments run one broker process.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import structlog
from sqlalchemy import insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broker.audit.entry import AuditEntry
from broker.audit.merkle import CompactRange, leaf_hash
from broker.audit.note import Checkpoint, NoteSigner, sign_note
from broker.audit.tree import completed_nodes
from broker.clock import Clock
from broker.store.audit_models import AuditNodeRow
from broker.store.models import AuditRow, AuditSubjectRow, CheckpointRow

log = structlog.get_logger("masp.audit")

_ADVISORY_KEY = 0x6D617370  # "masp"


@dataclass
class Batch:
    """Entries appended under one hold of the sequencer; they commit with the caller's rows."""

    session: AsyncSession
    tree: CompactRange
    entries: list[AuditEntry] = field(default_factory=list)
    # rows are written in bulk when the batch closes: per-row ORM objects cost more than
    # hashing and signing together at audit volumes
    _rows: list[dict[str, object]] = field(default_factory=list)
    _nodes: list[dict[str, object]] = field(default_factory=list)
    _subjects: list[dict[str, object]] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        return self.tree.size

    def add(self, build: Callable[[int], AuditEntry]) -> AuditEntry:
        entry = build(self.tree.size)
        if entry.seq != self.tree.size:
            raise ValueError("entry built with a seq the sequencer did not assign")
        leaf = entry.leaf_bytes()
        lh = leaf_hash(leaf)
        for (level, idx), value in completed_nodes(self.tree.hashes, self.tree.size, lh):
            self._nodes.append({"level": level, "idx": idx, "hash": value})
        self.tree.append(lh)
        self.entries.append(entry)
        self._rows.append({
            "seq": entry.seq, "kind": entry.kind.value, "at": entry.at, "message_id": entry.message_id,
            "delivery_id": entry.delivery_id, "sender": entry.sender, "recipient": entry.recipient,
            "decision": entry.decision, "clause": entry.dsa.clause if entry.dsa else None,
            "leaf": leaf, "leaf_hash": lh,
        })
        for pseudonym in {s.pseudonym for s in entry.subjects}:
            self._subjects.append({"seq": entry.seq, "pseudonym": pseudonym})
        return entry

    async def write(self) -> None:
        """Insert the batch's rows (entries before the rows that reference them)."""
        for table, rows in ((AuditRow, self._rows), (AuditSubjectRow, self._subjects),
                            (AuditNodeRow, self._nodes)):
            if rows:
                await self.session.execute(insert(table), rows)
                rows.clear()


class AuditLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], signer: NoteSigner, origin: str,
                 clock: Clock, *, postgres: bool) -> None:
        self.sessions = sessions
        self.signer = signer
        self.origin = origin
        self.clock = clock
        self.postgres = postgres
        self._lock = asyncio.Lock()
        #: Called with each committed batch's entries (metrics count them); must not raise.
        self.observers: list[Callable[[Sequence[AuditEntry]], None]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Batch]:
        """One unit of work that may append to the log: lock, transaction, checkpoint, commit.

        The sequencer is held until the commit has happened, so the next batch always
        starts from the tree this one committed. Everything else the unit of work writes
        (deliveries, replay guards) goes through ``batch.session`` and commits with it.
        """
        async with self._lock, self.sessions() as session, session.begin():
            if self.postgres:
                await session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _ADVISORY_KEY})
            else:
                # SQLite: hold the write lock before reading the tree head, so a CLI command
                # appending beside a running broker waits instead of taking the same seq
                await session.execute(text("BEGIN IMMEDIATE"))
            batch = Batch(session, await self._tree(session))
            yield batch
            if batch.entries:
                await batch.write()
                await session.flush()
                self._checkpoint(session, batch.tree)
                await session.flush()
        for observe in self.observers if batch.entries else ():
            try:
                observe(batch.entries)
            except Exception:  # the unit of work is committed: a metrics bug must not undo its reply
                log.exception("audit_observer_failed")

    async def _tree(self, session: AsyncSession) -> CompactRange:
        row = (await session.execute(
            select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)  # type: ignore[attr-defined]
        )).scalar_one_or_none()
        if row is None:
            return CompactRange()
        return CompactRange(row.size, [bytes.fromhex(h) for h in json.loads(row.frontier)])

    def _checkpoint(self, session: AsyncSession, tree: CompactRange) -> None:
        cp = Checkpoint(self.origin, tree.size, tree.root())
        session.add(CheckpointRow(
            size=tree.size, root_hash=cp.root_hash, at=self.clock(),
            frontier=json.dumps([h.hex() for h in tree.hashes]),
            note=sign_note(cp.body(), [self.signer]),
        ))

    async def latest_checkpoint(self, session: AsyncSession) -> CheckpointRow | None:
        return (await session.execute(
            select(CheckpointRow).order_by(CheckpointRow.size.desc()).limit(1)  # type: ignore[attr-defined]
        )).scalar_one_or_none()


async def read_entries(session: AsyncSession, *, after: int = -1, limit: int = 1000,
                       ) -> Sequence[AuditRow]:
    rows = await session.execute(
        select(AuditRow).where(AuditRow.seq > after).order_by(AuditRow.seq).limit(limit)  # type: ignore[arg-type]
    )
    return rows.scalars().all()


async def read_checkpoints(session: AsyncSession) -> Sequence[CheckpointRow]:
    rows = await session.execute(select(CheckpointRow).order_by(CheckpointRow.size))  # type: ignore[arg-type]
    return rows.scalars().all()
