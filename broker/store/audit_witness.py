"""Checkpoints and their witness cosignatures in the database.

A cosignature is stored only after it verified under the witness's registered key and only
for a checkpoint body this log issued byte for byte, so the broker never holds a
cosignature for a tree it did not sign, and never two for one witness and size.

Cosignatures come from agencies posting them (``POST /v1/audit/cosignatures``, ``agency`` is
the agency) and from C2SP tlog witnesses the broker pushes checkpoints to (``StoredLog``,
``broker/audit/witness_client.py``): those verify under their pinned vkey, and ``agency`` is
empty unless the witness is an agency's own witness key.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from broker.audit.note import Checkpoint, CosignatureVerifier, NoteError
from broker.audit.witness import append_cosignatures
from broker.clock import Clock
from broker.errors import CheckpointMismatch, CosignatureInvalid, InvalidRange, NotFound
from broker.store.audit_models import CosignatureRow
from broker.store.audit_tree import consistency_proof
from broker.store.models import CheckpointRow


def note_text(note: str) -> str:
    """The signed text of a note (everything up to and including the line before the blank)."""
    split = note.rfind("\n\n")
    if split < 0:
        raise NoteError("note has no blank line before its signatures")
    return note[: split + 1]


async def checkpoint_at(session: AsyncSession, size: int) -> CheckpointRow | None:
    return await session.get(CheckpointRow, size)


async def latest_checkpoint(session: AsyncSession) -> CheckpointRow | None:
    return (await session.execute(
        select(CheckpointRow).order_by(col(CheckpointRow.size).desc()).limit(1))).scalar_one_or_none()


async def cosignatures(session: AsyncSession, size: int) -> list[CosignatureRow]:
    rows = await session.execute(select(CosignatureRow).where(col(CosignatureRow.size) == size)
                                 .order_by(col(CosignatureRow.witness)))
    return list(rows.scalars())


async def cosigned_note(session: AsyncSession, checkpoint: CheckpointRow) -> tuple[str, list[str]]:
    """The checkpoint's signed note with every stored cosignature; and the witness names."""
    rows = await cosignatures(session, checkpoint.size)
    return append_cosignatures(checkpoint.note, [r.line for r in rows]), [r.witness for r in rows]


async def all_cosignatures(session: AsyncSession) -> dict[int, list[str]]:
    """Cosignature lines by checkpoint size, for export."""
    rows = await session.execute(select(CosignatureRow).order_by(
        col(CosignatureRow.size), col(CosignatureRow.witness)))
    found: dict[int, list[str]] = {}
    for row in rows.scalars():
        found.setdefault(row.size, []).append(row.line)
    return found


@dataclass(frozen=True)
class CosignatureReceipt:
    size: int
    witness: str
    timestamp: int
    witnesses: int
    duplicate: bool

    def as_json(self, quorum: int) -> dict[str, object]:
        return {"size": self.size, "witness": self.witness, "timestamp": self.timestamp,
                "witnesses": self.witnesses, "published": self.witnesses >= quorum,
                "duplicate": self.duplicate}


def parse_submission(body: str, size: int | None) -> tuple[str, list[str]]:
    """Split a posted cosignature into (checkpoint body or "", signature lines).

    Accepted forms: the cosigned checkpoint note (body, blank line, signature lines), or
    bare signature line(s) with the checkpoint named by ``size``.
    """
    if "\n\n" in body:
        text = note_text(body if body.endswith("\n") else body + "\n")
        lines = [ln for ln in body[len(text) + 1:].split("\n") if ln]
        return text, lines
    if size is None:
        raise InvalidRange("a bare cosignature line needs the checkpoint size (?size=)")
    return "", [ln for ln in body.split("\n") if ln]


async def add_cosignature(sessions: async_sessionmaker[AsyncSession], agency: str,
                          verifier: CosignatureVerifier, body: str, size: int | None,
                          now: datetime, max_skew: timedelta) -> CosignatureReceipt:
    text, lines = parse_submission(body, size)
    if text:
        try:
            claimed = Checkpoint.parse(text)
        except NoteError as exc:
            raise CheckpointMismatch(f"not a checkpoint: {exc}") from None
        if size is not None and size != claimed.size:
            raise InvalidRange("?size= differs from the checkpoint's size")
        size = claimed.size
    assert size is not None
    async with sessions() as session:
        row = await checkpoint_at(session, size)
    if row is None:
        raise NotFound(f"the log issued no checkpoint of size {size}")
    issued = note_text(row.note)
    if text and text != issued:
        raise CheckpointMismatch(f"the checkpoint of size {size} presented differs from the one "
                                 "this log issued")
    mine = [ln for ln in lines if ln.startswith(f"\u2014 {verifier.name} ")]
    if len(mine) != 1:
        raise CosignatureInvalid(f"expected exactly one cosignature by {verifier.name}")
    try:
        timestamp = verifier.verify_cosignature(issued, mine[0])
    except NoteError as exc:
        raise CosignatureInvalid(f"cosignature by {verifier.name}: {exc}") from None
    if timestamp > int((now + max_skew).timestamp()):
        raise CosignatureInvalid("cosignature timestamp is in the future")
    duplicate = False
    try:
        async with sessions() as session, session.begin():
            session.add(CosignatureRow(size=size, witness=verifier.name, agency=agency,
                                       timestamp=timestamp, line=mine[0], received_at=now))
    except IntegrityError:
        duplicate = True  # one cosignature per witness and checkpoint; the first one stands
    async with sessions() as session:
        stored = await cosignatures(session, size)
    kept = next(r.timestamp for r in stored if r.witness == verifier.name)
    return CosignatureReceipt(size, verifier.name, kept, len(stored), duplicate)


async def cosigned_size(session: AsyncSession, witness: str) -> int:
    """The largest checkpoint size ``witness`` cosigned here; 0 if none."""
    found = (await session.execute(select(func.max(col(CosignatureRow.size))).where(
        col(CosignatureRow.witness) == witness))).scalar_one_or_none()
    return int(found or 0)


@dataclass
class StoredLog:
    """The log as ``WitnessClient`` sees it: newest checkpoint, proofs, stored cosignatures."""

    sessions: async_sessionmaker[AsyncSession]
    clock: Clock
    max_skew: timedelta

    async def newest(self) -> tuple[int, str] | None:
        async with self.sessions() as session:
            row = await latest_checkpoint(session)
        return (row.size, row.note) if row is not None else None

    async def cosigned_size(self, witness: str) -> int:
        async with self.sessions() as session:
            return await cosigned_size(session, witness)

    async def issued(self, size: int) -> bool:
        async with self.sessions() as session:
            return await checkpoint_at(session, size) is not None

    async def proof(self, old: int, new: int) -> list[bytes]:
        async with self.sessions() as session:
            return await consistency_proof(session, old, new)

    async def store(self, agency: str, verifier: CosignatureVerifier, size: int, line: str) -> None:
        await add_cosignature(self.sessions, agency, verifier, line, size, self.clock(), self.max_skew)
