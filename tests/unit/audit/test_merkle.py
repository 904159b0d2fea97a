"""Merkle primitives against the published transparency-dev probes and RFC 6962."""

from __future__ import annotations

import base64
import hashlib
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest

from broker.audit.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    CompactRange,
    ProofInvalid,
    consistency_proof,
    consistency_proof_from_subtrees,
    inclusion_proof,
    inclusion_proof_from_subtrees,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    verify_consistency,
    verify_inclusion,
)

VECTORS = Path(__file__).resolve().parents[2] / "assets" / "vectors" / "merkle"
INCLUSION_PROBES = sorted((VECTORS / "inclusion").rglob("*.json"))
CONSISTENCY_PROBES = sorted((VECTORS / "consistency").rglob("*.json"))

# d(0)..d(7) from the vectors README: the leaves every happy-path probe is built on.
README_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
README_LEAF_HASHES = [leaf_hash(d) for d in README_LEAVES]


def _probe_id(path: Path) -> str:
    return path.relative_to(VECTORS).as_posix()


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def _b(value: str) -> bytes:
    return base64.b64decode(value)


def _proof(probe: dict[str, Any]) -> list[bytes]:
    return [_b(p) for p in probe["proof"] or []]


def _reference_mth(hashes: list[bytes]) -> bytes:
    """RFC 6962 §2.1 MTH written out independently of the module under test."""
    if not hashes:
        return hashlib.sha256(b"").digest()
    if len(hashes) == 1:
        return hashes[0]
    k = 1
    while k * 2 < len(hashes):
        k *= 2
    left, right = _reference_mth(hashes[:k]), _reference_mth(hashes[k:])
    return hashlib.sha256(b"\x01" + left + right).digest()


def _random_leaves(count: int, seed: int) -> list[bytes]:
    rng = random.Random(seed)
    return [leaf_hash(rng.randbytes(rng.randrange(0, 40))) for _ in range(count)]


def test_probe_corpus_is_present() -> None:
    # An empty glob would silently parametrize nothing; pin the published counts.
    assert len(INCLUSION_PROBES) == 98
    assert len(CONSISTENCY_PROBES) == 98


@pytest.mark.parametrize("path", INCLUSION_PROBES, ids=_probe_id)
def test_inclusion_probe(path: Path) -> None:
    probe = _load(path)
    args = (
        _b(probe["leafHash"]),
        probe["leafIdx"],
        probe["treeSize"],
        _proof(probe),
        _b(probe["root"]),
    )
    if probe["wantErr"]:
        with pytest.raises(ProofInvalid):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", CONSISTENCY_PROBES, ids=_probe_id)
def test_consistency_probe(path: Path) -> None:
    probe = _load(path)
    args = (
        probe["size1"],
        probe["size2"],
        _proof(probe),
        _b(probe["root1"]),
        _b(probe["root2"]),
    )
    if probe["wantErr"]:
        with pytest.raises(ProofInvalid):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def _readme_roots() -> dict[int, bytes]:
    text = (VECTORS / "README.md").read_text()
    found = re.findall(r"^([1-8]) ([0-9a-f]{64})$", text, flags=re.MULTILINE)
    return {int(size): bytes.fromhex(root) for size, root in found}


def test_readme_roots_for_sizes_1_to_8() -> None:
    roots = _readme_roots()
    assert sorted(roots) == list(range(1, 9))
    for size, expected in roots.items():
        assert root_from_leaf_hashes(README_LEAF_HASHES[:size]) == expected


def test_hash_primitives() -> None:
    assert EMPTY_ROOT.hex() == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    assert root_from_leaf_hashes([]) == EMPTY_ROOT
    assert leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert leaf_hash(b"") != EMPTY_ROOT
    a, b = README_LEAF_HASHES[0], README_LEAF_HASHES[1]
    assert node_hash(a, b) == hashlib.sha256(b"\x01" + a + b).digest()
    assert node_hash(a, b) != node_hash(b, a)
    with pytest.raises(ValueError, match="32 bytes"):
        node_hash(a[:-1], b + b"x")


def _happy_paths(kind: str) -> list[dict[str, Any]]:
    return [_load(p) for p in sorted((VECTORS / kind).glob("*/happy-path.json"))]


def test_generated_inclusion_proofs_verify_and_match_probes() -> None:
    published = {(p["leafIdx"], p["treeSize"]): _proof(p) for p in _happy_paths("inclusion")}
    assert len(published) == 5
    matched = 0
    for size in range(1, 9):
        root = root_from_leaf_hashes(README_LEAF_HASHES[:size])
        for index in range(size):
            proof = inclusion_proof(index, size, README_LEAF_HASHES.__getitem__)
            verify_inclusion(README_LEAF_HASHES[index], index, size, proof, root)
            if (index, size) in published:
                assert proof == published[(index, size)]
                matched += 1
            # Any other leaf, or any flipped bit, must break the proof.
            other = README_LEAF_HASHES[(index + 1) % 8]
            with pytest.raises(ProofInvalid):
                verify_inclusion(other, index, size, proof, root)
            for pos in range(len(proof)):
                bad = list(proof)
                bad[pos] = bytes([bad[pos][0] ^ 1]) + bad[pos][1:]
                with pytest.raises(ProofInvalid):
                    verify_inclusion(README_LEAF_HASHES[index], index, size, bad, root)
    assert matched == len(published)


def test_generated_consistency_proofs_verify_and_match_probes() -> None:
    published = {(p["size1"], p["size2"]): _proof(p) for p in _happy_paths("consistency")}
    assert len(published) == 5
    matched = 0
    for size2 in range(1, 9):
        root2 = root_from_leaf_hashes(README_LEAF_HASHES[:size2])
        for size1 in range(1, size2 + 1):
            root1 = root_from_leaf_hashes(README_LEAF_HASHES[:size1])
            proof = consistency_proof(size1, size2, README_LEAF_HASHES.__getitem__)
            verify_consistency(size1, size2, proof, root1, root2)
            if (size1, size2) in published:
                assert proof == published[(size1, size2)]
                matched += 1
            if size1 == size2:
                assert proof == []
                continue
            with pytest.raises(ProofInvalid):
                verify_consistency(size1, size2, proof, root2, root2)
            for pos in range(len(proof)):
                bad = list(proof)
                bad[pos] = bytes([bad[pos][0] ^ 1]) + bad[pos][1:]
                with pytest.raises(ProofInvalid):
                    verify_consistency(size1, size2, bad, root1, root2)
    assert matched == len(published)


def test_proofs_for_larger_random_trees() -> None:
    leaves = _random_leaves(33, seed=7)
    for size2 in range(1, len(leaves) + 1):
        root2 = _reference_mth(leaves[:size2])
        for index in range(size2):
            proof = inclusion_proof(index, size2, leaves.__getitem__)
            verify_inclusion(leaves[index], index, size2, proof, root2)
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(size1, size2, leaves.__getitem__)
            verify_consistency(size1, size2, proof, _reference_mth(leaves[:size1]), root2)


def test_subtree_variants_ask_only_for_proof_nodes() -> None:
    leaves = _random_leaves(70, seed=11)
    calls: list[tuple[int, int]] = []

    def subtree_hash(start: int, end: int) -> bytes:
        assert 0 <= start < end <= 70
        calls.append((start, end))
        return _reference_mth(leaves[start:end])

    for index in (0, 1, 31, 64, 69):
        calls.clear()
        proof = inclusion_proof_from_subtrees(index, 70, subtree_hash)
        assert len(calls) == len(proof) <= 7
        assert proof == inclusion_proof(index, 70, leaves.__getitem__)
    for size1 in (1, 5, 32, 63, 70):
        calls.clear()
        proof = consistency_proof_from_subtrees(size1, 70, subtree_hash)
        assert len(calls) == len(proof) <= 8
        assert proof == consistency_proof(size1, 70, leaves.__getitem__)


@pytest.mark.parametrize(
    ("index", "size"),
    [(0, 0), (3, 3), (-1, 4), (True, 4)],
    ids=["empty", "past-end", "neg", "bool"],
)
def test_inclusion_proof_rejects_bad_arguments(index: int, size: int) -> None:
    with pytest.raises(ValueError, match="index"):
        inclusion_proof(index, size, README_LEAF_HASHES.__getitem__)


@pytest.mark.parametrize(("size1", "size2"), [(0, 3), (4, 3), (0, 0)])
def test_consistency_proof_rejects_bad_arguments(size1: int, size2: int) -> None:
    with pytest.raises(ValueError, match="size1"):
        consistency_proof(size1, size2, README_LEAF_HASHES.__getitem__)


def test_verifiers_reject_wrong_hash_lengths_and_bad_counts() -> None:
    root = root_from_leaf_hashes(README_LEAF_HASHES[:2])
    proof = inclusion_proof(0, 2, README_LEAF_HASHES.__getitem__)
    verify_inclusion(README_LEAF_HASHES[0], 0, 2, proof, root)
    with pytest.raises(ProofInvalid, match="root hash"):
        verify_inclusion(README_LEAF_HASHES[0], 0, 2, proof, root + b"\x00")
    with pytest.raises(ProofInvalid, match="proof element"):
        verify_inclusion(README_LEAF_HASHES[0], 0, 2, [proof[0][:31]], root)
    with pytest.raises(ProofInvalid, match="non-negative"):
        verify_inclusion(README_LEAF_HASHES[0], -1, 2, proof, root)
    root1 = root_from_leaf_hashes(README_LEAF_HASHES[:1])
    cproof = consistency_proof(1, 2, README_LEAF_HASHES.__getitem__)
    verify_consistency(1, 2, cproof, root1, root)
    with pytest.raises(ProofInvalid, match="second root hash"):
        verify_consistency(1, 2, cproof, root1, root[:16])
    with pytest.raises(ProofInvalid, match="too many"):
        verify_consistency(1, 2, [*cproof, root], root1, root)


def test_compact_range_matches_tree_root_for_sizes_0_to_70() -> None:
    leaves = _random_leaves(70, seed=3)
    rng = CompactRange()
    assert rng.root() == EMPTY_ROOT
    for size in range(71):
        if size:
            rng.append(leaves[size - 1])
        expected = root_from_leaf_hashes(leaves[:size])
        assert expected == _reference_mth(leaves[:size])
        assert rng.size == size
        assert rng.root() == expected
        assert len(rng.hashes) == bin(size).count("1")
        assert all(len(h) == HASH_SIZE for h in rng.hashes)
        # Restoring from the persisted form and continuing must give the same roots.
        restored = CompactRange(rng.size, rng.hashes)
        assert restored.root() == expected
        for extra in range(size, min(size + 3, 70)):
            restored.append(leaves[extra])
            assert restored.root() == _reference_mth(leaves[: extra + 1])


def test_compact_range_hashes_are_the_perfect_subtrees() -> None:
    leaves = _random_leaves(13, seed=5)  # 13 = 8 + 4 + 1
    rng = CompactRange()
    for h in leaves:
        rng.append(h)
    assert rng.hashes == (
        _reference_mth(leaves[0:8]),
        _reference_mth(leaves[8:12]),
        leaves[12],
    )


@pytest.mark.parametrize(
    ("size", "hashes"),
    [
        (-1, ()),
        (3, (b"\x00" * 32,)),
        (1, (b"\x00" * 31,)),
        (0, (b"\x00" * 32,)),
    ],
    ids=["negative", "too-few", "short-hash", "too-many"],
)
def test_compact_range_rejects_inconsistent_state(size: int, hashes: tuple[bytes, ...]) -> None:
    with pytest.raises(ValueError, match=r"size|hash"):
        CompactRange(size, hashes)


def test_compact_range_rejects_bad_leaf_hash() -> None:
    rng = CompactRange()
    with pytest.raises(ValueError, match="32 bytes"):
        rng.append(b"short")
    assert rng.size == 0
