"""Stored perfect-subtree nodes: written once at append time, enough for every proof in O(log n)."""

from __future__ import annotations

import random

import pytest

from broker.audit.merkle import (
    CompactRange,
    consistency_proof,
    consistency_proof_from_subtrees,
    inclusion_proof,
    inclusion_proof_from_subtrees,
    leaf_hash,
    root_from_leaf_hashes,
)
from broker.audit.tree import (
    NodeKey,
    completed_nodes,
    node_range,
    plan,
    subtree_hash_from,
    subtree_nodes,
)
from tests.unit.audit.test_merkle import README_LEAF_HASHES, _happy_paths, _proof


def _grow(leaves: list[bytes]) -> dict[NodeKey, bytes]:
    """Nodes as the sequencer stores them: level 0 from the leaves, the rest at append time."""
    tree = CompactRange()
    nodes: dict[NodeKey, bytes] = {}
    for i, lh in enumerate(leaves):
        nodes[(0, i)] = lh
        for key, value in completed_nodes(tree.hashes, tree.size, lh):
            assert key not in nodes, "a node is completed exactly once"
            nodes[key] = value
        tree.append(lh)
    return nodes


def _leaves(n: int, seed: int = 7) -> list[bytes]:
    rng = random.Random(seed)
    return [leaf_hash(rng.randbytes(rng.randrange(1, 30))) for _ in range(n)]


def test_append_stores_exactly_the_perfect_subtrees() -> None:
    leaves = _leaves(45)
    nodes = _grow(leaves)
    # n leaves complete n - popcount(n) inner nodes: every aligned power-of-two block.
    assert len([k for k in nodes if k[0] > 0]) == 45 - (45).bit_count()
    for key, value in nodes.items():
        start, end = node_range(key)
        assert end <= 45
        assert value == root_from_leaf_hashes(leaves[start:end])


def test_subtree_hash_from_nodes_matches_mth_for_every_range() -> None:
    leaves = _leaves(21)
    sub = subtree_hash_from(_grow(leaves))
    for start in range(21):
        for end in range(start + 1, 22):
            assert sub(start, end) == root_from_leaf_hashes(leaves[start:end])


def test_subtree_nodes_for_left_aligned_ranges_is_one_per_set_bit() -> None:
    assert subtree_nodes(0, 8) == [(3, 0)]
    assert subtree_nodes(0, 13) == [(3, 0), (2, 2), (0, 12)]
    assert subtree_nodes(8, 13) == [(2, 2), (0, 12)]
    for end in range(1, 200):
        assert len(subtree_nodes(0, end)) == end.bit_count()


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 9, 31, 64, 65, 100, 1000, 4097, 1_000_003])
def test_proofs_need_logarithmically_many_nodes(size: int) -> None:
    bound = 2 * size.bit_length() + 2
    rng = random.Random(size)
    for index in {0, size - 1, size // 2, rng.randrange(size)}:
        assert len(plan(lambda sub, i=index: inclusion_proof_from_subtrees(i, size, sub))) <= bound
    for old in {1, size, max(1, size // 3), rng.randrange(1, size + 1)}:
        assert len(plan(lambda sub, o=old: consistency_proof_from_subtrees(o, size, sub))) <= bound


def test_planned_proofs_equal_leaf_read_proofs() -> None:
    leaves = _leaves(37, seed=3)
    nodes = _grow(leaves)
    for size in range(1, 38):
        for index in range(size):
            needed = plan(lambda sub, i=index, s=size: inclusion_proof_from_subtrees(i, s, sub))
            fetched = {k: nodes[k] for k in needed}  # only what the plan asked for
            got = inclusion_proof_from_subtrees(index, size, subtree_hash_from(fetched))
            assert got == inclusion_proof(index, size, leaves.__getitem__)
        for old in range(1, size + 1):
            needed = plan(lambda sub, o=old, s=size: consistency_proof_from_subtrees(o, s, sub))
            fetched = {k: nodes[k] for k in needed}
            got = consistency_proof_from_subtrees(old, size, subtree_hash_from(fetched))
            assert got == consistency_proof(old, size, leaves.__getitem__)


def test_stored_node_proofs_agree_with_published_vectors() -> None:
    nodes = _grow(README_LEAF_HASHES)
    sub = subtree_hash_from(nodes)
    for probe in _happy_paths("inclusion"):
        got = inclusion_proof_from_subtrees(probe["leafIdx"], probe["treeSize"], sub)
        assert got == _proof(probe)
    for probe in _happy_paths("consistency"):
        got = consistency_proof_from_subtrees(probe["size1"], probe["size2"], sub)
        assert got == _proof(probe)


def test_completed_nodes_refuses_a_frontier_of_the_wrong_size() -> None:
    with pytest.raises(ValueError, match="frontier"):
        completed_nodes([], 1, leaf_hash(b"x"))
    with pytest.raises(KeyError):
        subtree_hash_from({})(0, 2)
