"""The stored shape of the audit tree: perfect subtrees addressed by ``(level, index)``.

Node ``(level, idx)`` is MTH(D[idx * 2**level : (idx + 1) * 2**level]); level 0 is a leaf
hash. A node exists once every leaf under it has been appended and never changes after, so
a store can write each one exactly once, at append time, and answer any subtree question
from O(log n) of them.

Proofs are computed in two passes: ``plan`` runs a proof function against a recording
``subtree_hash`` to learn which nodes it needs (the RFC 6962 algorithms ask for the same
ranges whatever the hashes are), the store fetches those nodes in one query, and
``subtree_hash_from`` answers the second, real pass. Pure: no I/O, no framework imports.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TypeVar

from broker.audit.merkle import HASH_SIZE, SubtreeHash, node_hash

__all__ = [
    "NodeKey",
    "completed_nodes",
    "node_range",
    "plan",
    "subtree_hash_from",
    "subtree_nodes",
]

NodeKey = tuple[int, int]
"""``(level, idx)`` of a perfect, aligned subtree."""

T = TypeVar("T")
_PLACEHOLDER = b"\x00" * HASH_SIZE


def node_range(key: NodeKey) -> tuple[int, int]:
    """The leaf range ``[start, end)`` a node covers."""
    level, idx = key
    return idx << level, (idx + 1) << level


def _split_point(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def _perfect(start: int, end: int) -> NodeKey | None:
    size = end - start
    if size <= 0 or size & (size - 1) or start % size:
        return None
    level = size.bit_length() - 1
    return level, start >> level


def subtree_nodes(start: int, end: int) -> list[NodeKey]:
    """The stored nodes MTH(D[start:end]) is built from, left to right.

    Follows the RFC 6962 recursion and stops at the first perfect aligned subtree, so
    for the ranges proofs ask about (aligned on the left) this is at most one node per
    set bit of ``end - start``.
    """
    if not 0 <= start < end:
        raise ValueError("subtree needs 0 <= start < end")
    key = _perfect(start, end)
    if key is not None:
        return [key]
    mid = start + _split_point(end - start)
    return subtree_nodes(start, mid) + subtree_nodes(mid, end)


def subtree_hash_from(nodes: Mapping[NodeKey, bytes]) -> SubtreeHash:
    """A ``subtree_hash`` that combines already-fetched nodes; KeyError if one is missing."""

    def subtree_hash(start: int, end: int) -> bytes:
        key = _perfect(start, end)
        if key is not None:
            return nodes[key]
        mid = start + _split_point(end - start)
        return node_hash(subtree_hash(start, mid), subtree_hash(mid, end))

    return subtree_hash


def plan(build: Callable[[SubtreeHash], T]) -> set[NodeKey]:
    """Every node ``build`` will read through ``subtree_hash``, found by a dry run."""
    needed: set[NodeKey] = set()

    def record(start: int, end: int) -> bytes:
        needed.update(subtree_nodes(start, end))
        return _PLACEHOLDER

    build(record)
    return needed


def completed_nodes(frontier: Sequence[bytes], size: int, leaf: bytes) -> list[tuple[NodeKey, bytes]]:
    """Nodes above level 0 that appending ``leaf`` as leaf number ``size`` completes.

    ``frontier`` is the compact range before the append (``CompactRange.hashes``): its
    last entries are exactly the left siblings the new leaf merges with, smallest first.
    """
    if len(frontier) != size.bit_count():
        raise ValueError("frontier does not match the tree size")
    done: list[tuple[NodeKey, bytes]] = []
    value, level, carry, stack = leaf, 0, size, list(frontier)
    while carry & 1:
        value = node_hash(stack.pop(), value)
        level += 1
        carry >>= 1
        done.append(((level, size >> level), value))
    return done
