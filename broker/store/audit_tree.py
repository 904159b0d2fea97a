"""Proofs from stored tree state: O(log n) node reads per inclusion or consistency proof.

Each proof is planned first (which perfect subtrees it needs), then those nodes are read in
one query and combined (``broker/audit/tree.py``). Level-0 nodes are the entries' stored
leaf hashes. A database written before ``audit_node`` existed still answers: a node that is
not stored is recomputed from the leaves under it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col

from broker.audit import merkle
from broker.audit.merkle import SubtreeHash, root_from_leaf_hashes
from broker.audit.tree import NodeKey, node_range, plan, subtree_hash_from
from broker.errors import InvalidRange
from broker.store import raw
from broker.store.models import AuditRow

T = TypeVar("T")
_CHUNK = 200  # bound the size of one OR-list; proofs need ~2 log2(n) nodes
_PG_NODES = (
    "SELECT 0 AS level, seq AS idx, leaf_hash AS hash FROM audit_entry WHERE seq = ANY(?) "
    "UNION ALL SELECT n.level, n.idx, n.hash FROM audit_node n "
    "JOIN unnest(CAST(? AS integer[]), CAST(? AS integer[])) AS k(level, idx) "
    "ON n.level = k.level AND n.idx = k.idx")


async def _leaf_hashes(session: AsyncSession, start: int, end: int) -> dict[int, bytes]:
    rows = await session.execute(select(col(AuditRow.seq), col(AuditRow.leaf_hash)).where(
        col(AuditRow.seq) >= start, col(AuditRow.seq) < end))
    return {seq: value for seq, value in rows.all()}


async def fetch_nodes(session: AsyncSession, keys: Iterable[NodeKey]) -> dict[NodeKey, bytes]:
    """The nodes ``keys``, leaf hashes and inner nodes together, in one query.

    Plain SQL on the driver connection (``broker/store/raw.py``): a proof is a handful of
    indexed reads, and composing or even parsing a statement cost more than running it.
    """
    wanted = set(keys)
    if await raw.dialect(session) == "postgresql":
        found = await _fetch_postgres(session, wanted)
    else:
        found = await _fetch_sqlite(session, wanted)
    for key in sorted(wanted - found.keys()):
        found[key] = await _recompute(session, key)
    return found


def _rows(rows: Iterable[Sequence[object]]) -> dict[NodeKey, bytes]:
    return {(int(level), int(idx)): bytes(value)  # type: ignore[call-overload]
            for level, idx, value in rows}


async def _fetch_postgres(session: AsyncSession, wanted: set[NodeKey]) -> dict[NodeKey, bytes]:
    # arrays keep the statement text fixed, so asyncpg prepares it once per connection
    inner = [key for key in wanted if key[0] > 0]
    return _rows(await raw.fetch(session, _PG_NODES, [idx for level, idx in wanted if level == 0],
                                 [level for level, _ in inner], [idx for _, idx in inner]))


async def _fetch_sqlite(session: AsyncSession, wanted: set[NodeKey]) -> dict[NodeKey, bytes]:
    found: dict[NodeKey, bytes] = {}
    ordered = sorted(wanted)
    for i in range(0, len(ordered), _CHUNK):
        chunk = ordered[i:i + _CHUNK]
        leaves = [idx for level, idx in chunk if level == 0]
        inner = [key for key in chunk if key[0] > 0]
        parts, params = [], []  # only placeholders are interpolated below
        if leaves:
            parts.append("SELECT 0 AS level, seq AS idx, leaf_hash AS hash FROM audit_entry "  # noqa: S608
                         f"WHERE seq IN ({', '.join('?' * len(leaves))})")
            params.extend(leaves)
        if inner:
            where = " OR ".join(["(level = ? AND idx = ?)"] * len(inner))
            parts.append(f"SELECT level, idx, hash FROM audit_node WHERE {where}")  # noqa: S608
            params.extend(v for key in inner for v in key)
        found.update(_rows(await raw.fetch(session, " UNION ALL ".join(parts), *params)))
    return found


async def _recompute(session: AsyncSession, key: NodeKey) -> bytes:
    start, end = node_range(key)
    hashes = await _leaf_hashes(session, start, end)
    if len(hashes) != end - start:
        raise InvalidRange(f"the log has no complete subtree at level {key[0]} index {key[1]}")
    return root_from_leaf_hashes([hashes[i] for i in range(start, end)])


async def _run(session: AsyncSession, build: Callable[[SubtreeHash], T]) -> T:
    nodes = await fetch_nodes(session, plan(build))
    return build(subtree_hash_from(nodes))


async def subtree_hash(session: AsyncSession, start: int, end: int) -> bytes:
    """MTH(D[start:end]) from stored nodes; ``end`` must not pass the appended leaves."""
    if not 0 <= start < end:
        raise InvalidRange("subtree needs 0 <= start < end")
    return await _run(session, lambda sub: sub(start, end))


async def inclusion_proof(session: AsyncSession, index: int, size: int) -> list[bytes]:
    if not 0 <= index < size:
        raise InvalidRange(f"entry {index} is not in a tree of size {size}")
    return await _run(session, lambda sub: merkle.inclusion_proof_from_subtrees(index, size, sub))


async def consistency_proof(session: AsyncSession, size1: int, size2: int) -> list[bytes]:
    """Proof that the tree of ``size2`` extends that of ``size1``; empty when either is trivial."""
    if not 0 <= size1 <= size2:
        raise InvalidRange("consistency needs 0 <= from <= to")
    if size1 in (0, size2):
        return []
    return await _run(session, lambda sub: merkle.consistency_proof_from_subtrees(size1, size2, sub))


async def consistency_proofs(session: AsyncSession, pairs: Sequence[tuple[int, int]]
                             ) -> dict[tuple[int, int], list[bytes]]:
    """Many consistency proofs with one planned read (an export's consecutive checkpoints)."""
    def build(sub: SubtreeHash) -> dict[tuple[int, int], list[bytes]]:
        return {(a, b): merkle.consistency_proof_from_subtrees(a, b, sub) for a, b in pairs}

    if any(not 0 < a <= b for a, b in pairs):
        raise InvalidRange("consistency needs 0 < from <= to")
    return await _run(session, build)
