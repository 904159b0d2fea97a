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
from functools import partial

import structlog
from sqlalchemy import select
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from broker.audit.entry import AuditEntry
from broker.audit.merkle import CompactRange, leaf_hash
from broker.audit.note import Checkpoint, NoteSigner, sign_note, signature_key_ids
from broker.audit.tree import completed_nodes
from broker.clock import Clock
from broker.crypto.log_keys import LogSigners
from broker.errors import ConfigurationError
from broker.store import raw
from broker.store.models import AuditRow, CheckpointRow

log = structlog.get_logger("masp.audit")

_ADVISORY_KEY = 0x6D617370  # "masp"


_ENTRY_COLUMNS = ("seq", "kind", "at", "message_id", "delivery_id", "sender", "recipient",
                  "decision", "clause", "leaf", "leaf_hash")
_TABLES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("audit_entry", _ENTRY_COLUMNS),  # entries before the rows that reference them
    ("audit_subject", ("seq", "pseudonym")),
    ("audit_node", ("level", "idx", "hash")),
)


@dataclass
class Batch:
    """Entries appended under one hold of the sequencer; they commit with the caller's rows."""

    session: AsyncSession
    tree: CompactRange
    entries: list[AuditEntry] = field(default_factory=list)
    #: Run once the unit of work has committed (never if it rolls back); must not raise.
    after_commit: list[Callable[[], None]] = field(default_factory=list)
    # rows are written in bulk when the batch closes, as plain tuples straight to the driver:
    # per-row ORM objects (and even SQLAlchemy's per-row parameter handling) cost more than
    # hashing and signing together at audit volumes
    _rows: tuple[list[tuple[object, ...]], ...] = field(default_factory=lambda: ([], [], []))

    @property
    def next_seq(self) -> int:
        return self.tree.size

    def add(self, build: Callable[[int], AuditEntry]) -> AuditEntry:
        size = self.tree.size
        entry = build(size)
        if entry.seq != size:
            raise ValueError("entry built with a seq the sequencer did not assign")
        leaf = entry.leaf_bytes()
        lh = leaf_hash(leaf)
        entries, subjects, nodes = self._rows
        if size & 1:  # only an odd-numbered leaf completes subtrees
            nodes.extend((level, idx, value)
                         for (level, idx), value in completed_nodes(self.tree.hashes, size, lh))
        self.tree.append(lh)
        self.entries.append(entry)
        entries.append((
            size, entry.kind.value, entry.at, entry.message_id, entry.delivery_id, entry.sender,
            entry.recipient, entry.decision, entry.dsa.clause if entry.dsa else None, leaf, lh))
        if entry.subjects:
            subjects.extend((size, pseudonym) for pseudonym in {s.pseudonym for s in entry.subjects})
        return entry

    async def write(self) -> None:
        """Insert the batch's rows: binary ``COPY`` on PostgreSQL, one ``executemany`` on SQLite.

        Both go to the driver connection of the batch's own transaction, so the rows commit
        or roll back with everything else in the unit of work. ``COPY`` needs only the
        INSERT privilege the runtime role has, and the append-only triggers (UPDATE, DELETE,
        TRUNCATE) are untouched by it.
        """
        conn = await self.session.connection()
        raw = (await conn.get_raw_connection()).driver_connection
        postgres = conn.dialect.name == "postgresql"
        for (table, columns), rows in zip(_TABLES, self._rows, strict=True):
            if not rows:
                continue
            if postgres:
                await raw.copy_records_to_table(table, records=rows, columns=columns)  # type: ignore[union-attr]
            else:
                if table == "audit_entry":
                    at = _sqlite_datetime(conn.dialect)
                    rows[:] = [(*r[:2], at(r[2]), *r[3:]) for r in rows]
                await conn.exec_driver_sql(
                    f"INSERT INTO {table} ({', '.join(columns)}) "  # noqa: S608 - fixed names
                    f"VALUES ({', '.join('?' * len(columns))})", rows)
            rows.clear()


def _sqlite_datetime(dialect: Dialect) -> Callable[[object], object]:
    """How SQLAlchemy stores ``audit_entry.at`` on SQLite, so raw inserts read back the same."""
    column = AuditRow.__table__.c.at  # type: ignore[attr-defined]
    process = column.type.dialect_impl(dialect).bind_processor(dialect)
    return process if process is not None else (lambda value: value)


class AuditLog:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], keys: LogSigners | NoteSigner,
                 origin: str, clock: Clock, *, postgres: bool) -> None:
        self.sessions = sessions
        #: the log's signing keys (``broker/crypto/log_keys.py``), re-read under the sequencer
        self.keys = keys if isinstance(keys, LogSigners) else LogSigners.of(keys)
        self.origin = origin
        self.clock = clock
        self.postgres = postgres
        self._lock = asyncio.Lock()
        #: (size, root, right-edge hashes) of the tree this process last committed: the next
        #: unit of work starts from it when the newest checkpoint is still that one
        self._head: tuple[int, bytes, tuple[bytes, ...]] | None = None
        #: Called with each committed batch's entries (metrics count them); must not raise.
        self.observers: list[Callable[[Sequence[AuditEntry]], None]] = []

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Batch]:
        """One unit of work that may append to the log: lock, transaction, checkpoint, commit.

        The sequencer is held until the commit has happened, so the next batch always
        starts from the tree this one committed. Everything else the unit of work writes
        (deliveries, replay guards) goes through ``batch.session`` and commits with it.
        """
        async with self._lock, self.sessions() as session:
            async with session.begin():
                conn = await session.connection()
                if self.postgres:
                    await conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_ADVISORY_KEY})")
                else:
                    # SQLite: hold the write lock before reading the tree head, so a CLI command
                    # appending beside a running broker waits instead of taking the same seq
                    await conn.exec_driver_sql("BEGIN IMMEDIATE")
                self.keys.refresh(self.clock())  # a rotation reaches this process here
                batch = Batch(session, await self._tree(session))
                root = b""
                yield batch
                if batch.entries:
                    await batch.write()
                    root = self._checkpoint(session, batch.tree)
                # the commit flushes the unit of work's rows (deliveries, guards, the checkpoint)
            if batch.entries:  # committed: the next unit of work may start from this tree
                self._head = (batch.tree.size, root, batch.tree.hashes)
            # before the session hands its connection back (a round trip of its own), so
            # what waits on this commit (the relay, above all) can start meanwhile
            self._after_commit(batch)

    def _after_commit(self, batch: Batch) -> None:
        hooks: list[Callable[[], None]] = [*batch.after_commit, *(
            partial(observe, batch.entries) for observe in (self.observers if batch.entries else ()))]
        for hook in hooks:
            try:
                hook()
            except Exception:  # the unit of work is committed: a bug here must not undo its reply
                log.exception("audit_after_commit_failed")

    async def _tree(self, session: AsyncSession) -> CompactRange:
        """The tree at the newest checkpoint, read under the sequencer.

        The newest checkpoint's size and root say whether it is still the one this process
        committed last (sizes only grow, and the root commits to every leaf); only if not,
        because another process or a CLI command appended meanwhile, are its right-edge
        hashes read and parsed.
        """
        newest = await raw.fetch(
            session, "SELECT size, root_hash FROM audit_checkpoint ORDER BY size DESC LIMIT 1")
        if not newest:
            return CompactRange()
        size, root = int(newest[0][0]), bytes(newest[0][1])
        if self._head is not None and self._head[:2] == (size, root):
            return CompactRange(size, self._head[2])
        found = await raw.fetch(session, "SELECT frontier, note FROM audit_checkpoint WHERE size = ?", size)
        self._check_keys(str(found[0][1]))
        return CompactRange(size, [bytes.fromhex(h) for h in json.loads(found[0][0])])

    def _check_keys(self, note: str) -> None:
        """Refuse to extend a log another process signed with a key this one does not hold.

        After a rotation every checkpoint must carry the new key (``broker/audit/verify.py``):
        a process still on the old key alone would write a checkpoint that fails verification.
        """
        unknown = [kid for kid in signature_key_ids(note, self.origin) if not self.keys.knows(kid)]
        if unknown:
            self.keys.refresh(self.clock(), force=True)
            unknown = [kid for kid in unknown if not self.keys.knows(kid)]
        if unknown:
            raise ConfigurationError(
                f"the audit log is signed by log key {unknown[0].hex()}, which this process does not "
                "hold: install the log keys of the rotation before appending")

    @property
    def signer(self) -> NoteSigner:
        """The log's current signing key."""
        return self.keys.current

    def _checkpoint(self, session: AsyncSession, tree: CompactRange) -> bytes:
        """Sign and add the checkpoint of ``tree``; its root hash."""
        cp = Checkpoint(self.origin, tree.size, tree.root())
        session.add(CheckpointRow(
            size=tree.size, root_hash=cp.root_hash, at=self.clock(),
            frontier=json.dumps([h.hex() for h in tree.hashes]),
            note=sign_note(cp.body(), self.keys.at(self.clock())),
        ))
        return cp.root_hash

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


_ROTATIONS = "SELECT seq, leaf FROM audit_entry WHERE kind = 'log_key_rotated' ORDER BY seq"


async def read_rotations(session: AsyncSession) -> list[tuple[int, str]]:
    """``(seq, signed statement)`` of every log key rotation, in order (unverified)."""
    found = []
    for seq, leaf in await raw.fetch(session, _ROTATIONS):
        try:
            doc = json.loads(bytes(leaf))
        except (TypeError, ValueError):  # not an entry: verification refuses it in its place
            continue
        statement = doc.get("log_key_rotation") if isinstance(doc, dict) else None
        if isinstance(statement, str):
            found.append((int(seq), statement))
    return found


async def find_rotation(session: AsyncSession, new_vkey: str) -> int | None:
    """The seq of the rotation entry handing the log to ``new_vkey``, if there is one."""
    for seq, statement in await read_rotations(session):
        if f"\nnew {new_vkey}\n" in statement:
            return seq
    return None
