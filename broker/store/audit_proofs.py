"""What the API and ``masp audit proof`` hand out: entry proofs and consistency proofs,
each anchored to a signed (and, when the witnesses have caught up, cosigned) checkpoint."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from broker.audit.proof import TlogProof
from broker.errors import InvalidRange, NotFound
from broker.store.audit_tree import consistency_proof, inclusion_proof
from broker.store.audit_witness import checkpoint_at, cosigned_note, latest_checkpoint, proof_checkpoint
from broker.store.models import AuditRow


def b64(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


@dataclass(frozen=True)
class EntryProof:
    row: AuditRow
    proof: TlogProof
    size: int
    witnesses: list[str]
    published: bool

    def as_json(self) -> dict[str, Any]:
        return {"index": self.proof.index, "tree_size": self.size,
                "hashes": [b64(h) for h in self.proof.hashes], "checkpoint": self.proof.checkpoint,
                "witnesses": self.witnesses, "published": self.published}


async def entry_proof(session: AsyncSession, seq: int, *, quorum: int,
                      size: int | None = None) -> EntryProof:
    """Inclusion of entry ``seq`` in checkpoint ``size`` (default: newest published one)."""
    row = await session.get(AuditRow, seq)
    if row is None:
        raise NotFound(f"no audit entry {seq}")
    if size is None:
        checkpoint = await proof_checkpoint(session, seq, quorum)
    else:
        checkpoint = await checkpoint_at(session, size)
        if checkpoint is not None and checkpoint.size <= seq:
            raise InvalidRange(f"entry {seq} is not in the checkpoint of size {size}")
    if checkpoint is None:
        raise NotFound("no checkpoint covers this entry" if size is None
                       else f"the log issued no checkpoint of size {size}")
    note, witnesses = await cosigned_note(session, checkpoint)
    hashes = await inclusion_proof(session, seq, checkpoint.size)
    proof = TlogProof(seq, tuple(hashes), note, extra=row.leaf)
    return EntryProof(row, proof, checkpoint.size, witnesses, len(witnesses) >= quorum)


async def consistency(session: AsyncSession, size1: int | None, size2: int | None) -> dict[str, Any]:
    """Consistency proof between two tree sizes, with the cosigned checkpoint at ``size2``.

    ``size2`` defaults to the newest checkpoint and must be a checkpoint size, so the proof
    always ends at a signed root; ``size1`` may be omitted or 0 (nothing to prove).
    """
    checkpoint = await (latest_checkpoint(session) if size2 is None else checkpoint_at(session, size2))
    if checkpoint is None:
        raise NotFound("the log is empty" if size2 is None
                       else f"the log issued no checkpoint of size {size2}")
    old = size1 or 0
    if old > checkpoint.size:
        raise InvalidRange(f"from {old} is beyond to {checkpoint.size}")
    proof = await consistency_proof(session, old, checkpoint.size)
    note, witnesses = await cosigned_note(session, checkpoint)
    return {"from": old, "to": checkpoint.size, "proof": [b64(h) for h in proof],
            "checkpoint": note, "witnesses": witnesses}
