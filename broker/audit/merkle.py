"""RFC 6962 / RFC 9162 Merkle tree primitives for the referral audit log.

Hand-written because no maintained Python library implements both proof
generation and the RFC 9162 verification algorithms with the strict edge rules
the published transparency-dev probes require. Everything here is pure: no I/O,
no clocks, no framework imports, so the same code can run in the broker, in a
verifier CLI and in a witness.

Hashing is SHA-256 with domain separation (0x00 for leaves, 0x01 for interior
nodes) so a leaf can never be passed off as an interior node. Indices are
0-based.

Proof generation is expressed over ``subtree_hash(start, end)`` = MTH(D[start:end])
rather than over leaves. The ``*_from_subtrees`` functions only ever ask for
O(log n) subtree hashes, so a storage layer that keeps perfect-subtree hashes can
answer them cheaply; the leaf-reading wrappers are the simple first version.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Sequence

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "LeafHashAt",
    "ProofInvalid",
    "SubtreeHash",
    "consistency_proof",
    "consistency_proof_from_subtrees",
    "inclusion_proof",
    "inclusion_proof_from_subtrees",
    "leaf_hash",
    "node_hash",
    "root_from_leaf_hashes",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT = hashlib.sha256(b"").digest()
"""MTH({}) per RFC 6962 §2.1: the hash of the empty string, not of an empty leaf."""

LeafHashAt = Callable[[int], bytes]
"""Returns the leaf hash stored at a 0-based index."""

SubtreeHash = Callable[[int, int], bytes]
"""Returns MTH(D[start:end]) for 0 <= start < end <= tree size."""


class ProofInvalid(ValueError):
    """A proof or its inputs failed verification.

    Messages name the check that failed and never echo hashes, so they are safe
    to log and to return to an untrusted caller.
    """


def leaf_hash(data: bytes) -> bytes:
    """Hash leaf data with the 0x00 prefix so leaves and nodes cannot collide."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Hash two children with the 0x01 prefix.

    Child lengths are checked because concatenating variable-length inputs
    would make different child pairs hash identically.
    """
    if len(left) != HASH_SIZE or len(right) != HASH_SIZE:
        raise ValueError("child hashes must be exactly 32 bytes")
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """Largest power of two strictly below ``n`` (n >= 2): RFC 6962's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _check_hash(value: bytes, what: str) -> None:
    if not isinstance(value, bytes) or len(value) != HASH_SIZE:
        raise ProofInvalid(f"{what} is not a {HASH_SIZE}-byte hash")


def _check_count(value: int, what: str) -> None:
    # bool is an int subclass; a stray True must not be read as index 1.
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ProofInvalid(f"{what} must be a non-negative integer")


def _mth(leaf_hash_at: LeafHashAt, start: int, end: int) -> bytes:
    """MTH(D[start:end]) straight from the RFC 6962 recursive definition.

    Kept deliberately independent of CompactRange so each can check the other.
    """
    n = end - start
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        value = leaf_hash_at(start)
        if len(value) != HASH_SIZE:
            raise ValueError("leaf hashes must be exactly 32 bytes")
        return value
    k = _split_point(n)
    return node_hash(_mth(leaf_hash_at, start, start + k), _mth(leaf_hash_at, start + k, end))


def root_from_leaf_hashes(hashes: Sequence[bytes]) -> bytes:
    """MTH over already-hashed leaves; the empty list yields EMPTY_ROOT."""
    return _mth(hashes.__getitem__, 0, len(hashes))


def _subtrees_from_leaves(leaf_hash_at: LeafHashAt) -> SubtreeHash:
    def subtree_hash(start: int, end: int) -> bytes:
        return _mth(leaf_hash_at, start, end)

    return subtree_hash


def inclusion_proof_from_subtrees(index: int, size: int, subtree_hash: SubtreeHash) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 6962 §2.1.1, ordered leaf level first.

    Walks from the root towards the leaf, asking for the sibling subtree at each
    split; that is at most ceil(log2(size)) calls to ``subtree_hash``.
    """
    if isinstance(index, bool) or isinstance(size, bool) or not 0 <= index < size:
        raise ValueError("inclusion proof needs 0 <= index < size")
    siblings: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split_point(end - start)
        if index < mid:
            siblings.append(subtree_hash(mid, end))
            end = mid
        else:
            siblings.append(subtree_hash(start, mid))
            start = mid
    siblings.reverse()
    return siblings


def consistency_proof_from_subtrees(
    size1: int, size2: int, subtree_hash: SubtreeHash
) -> list[bytes]:
    """PROOF(size1, D[0:size2]) = SUBPROOF(size1, D[0:size2], true), RFC 6962 §2.1.2.

    A proof from size 0 is refused: every tree is trivially consistent with the
    empty tree, and the verifier rejects such proofs, so producing one would only
    hide a caller bug.
    """
    if isinstance(size1, bool) or isinstance(size2, bool) or not 0 < size1 <= size2:
        raise ValueError("consistency proof needs 0 < size1 <= size2")
    nodes: list[bytes] = []
    start, end, m = 0, size2, size1
    complete = True  # RFC's ``b``: the old tree is exactly this subtree, so the verifier has it.
    while m != end - start:
        k = _split_point(end - start)
        if m <= k:
            nodes.append(subtree_hash(start + k, end))
            end = start + k
        else:
            nodes.append(subtree_hash(start, start + k))
            start += k
            m -= k
            complete = False
    if not complete:
        nodes.append(subtree_hash(start, end))
    nodes.reverse()
    return nodes


def inclusion_proof(index: int, size: int, leaf_hash_at: LeafHashAt) -> list[bytes]:
    """Inclusion proof computed by reading leaves (O(size) reads)."""
    return inclusion_proof_from_subtrees(index, size, _subtrees_from_leaves(leaf_hash_at))


def consistency_proof(size1: int, size2: int, leaf_hash_at: LeafHashAt) -> list[bytes]:
    """Consistency proof computed by reading leaves (O(size2) reads)."""
    return consistency_proof_from_subtrees(size1, size2, _subtrees_from_leaves(leaf_hash_at))


def verify_inclusion(
    leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes
) -> None:
    """RFC 9162 §2.1.3.2 inclusion verification; raises ProofInvalid on failure.

    Every hash must be exactly 32 bytes: the RFC algorithm alone would accept a
    malformed leaf hash that happens to equal a malformed root for size 1.
    """
    _check_count(index, "leaf index")
    _check_count(size, "tree size")
    if index >= size:
        raise ProofInvalid("leaf index is not below the tree size")
    _check_hash(leaf_hash, "leaf hash")
    _check_hash(root, "root hash")
    for element in proof:
        _check_hash(element, "inclusion proof element")

    fn, sn = index, size - 1
    r = leaf_hash
    for p in proof:
        if sn == 0:
            raise ProofInvalid("inclusion proof has too many elements")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInvalid("inclusion proof has too few elements")
    if not hmac.compare_digest(r, root):
        raise ProofInvalid("inclusion proof does not lead to the root hash")


def verify_consistency(
    size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes
) -> None:
    """RFC 9162 §2.1.4.2 consistency verification; raises ProofInvalid on failure.

    Edge rules, chosen so every published transparency-dev probe agrees:
    size1 == 0 is refused (a proof from the empty tree proves nothing and a
    caller relying on one has a bug); size1 == size2 needs an empty proof and
    byte-equal roots. In that equal-size case nothing is hashed, so root lengths
    are not checked there (the published probe
    ``sizes-are-equal-one-and-proof-is-empty`` expects short equal roots to pass);
    on every path that hashes, all hashes must be exactly 32 bytes.
    """
    _check_count(size1, "first tree size")
    _check_count(size2, "second tree size")
    if size1 > size2:
        raise ProofInvalid("first tree size exceeds second tree size")
    if size1 == 0:
        raise ProofInvalid("consistency from an empty tree is not provable")
    if size1 == size2:
        if len(proof) != 0:
            raise ProofInvalid("proof must be empty for equal tree sizes")
        if not (isinstance(root1, bytes) and isinstance(root2, bytes)) or not (
            hmac.compare_digest(root1, root2)
        ):
            raise ProofInvalid("roots differ for equal tree sizes")
        return
    _check_hash(root1, "first root hash")
    _check_hash(root2, "second root hash")
    for element in proof:
        _check_hash(element, "consistency proof element")
    if len(proof) == 0:
        raise ProofInvalid("consistency proof is empty")

    path = list(proof)
    if size1 & (size1 - 1) == 0:  # size1 is a power of two: its root is a node on the path.
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise ProofInvalid("consistency proof has too many elements")
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ProofInvalid("consistency proof has too few elements")
    if not hmac.compare_digest(fr, root1):
        raise ProofInvalid("consistency proof does not lead to the first root hash")
    if not hmac.compare_digest(sr, root2):
        raise ProofInvalid("consistency proof does not lead to the second root hash")


class CompactRange:
    """The right edge of a growing tree: one hash per perfect subtree.

    Holds popcount(size) hashes, left to right, largest subtree first, which is
    all that is needed to append in O(log n) and to compute the current root.
    ``(size, hashes)`` is the persistence format; it restores exactly, so the log
    writer never has to re-read old leaves after a restart.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ValueError("size must be a non-negative integer")
        if len(hashes) != size.bit_count():
            raise ValueError("hash count must equal the number of set bits in size")
        for value in hashes:
            if not isinstance(value, bytes) or len(value) != HASH_SIZE:
                raise ValueError("compact range hashes must be exactly 32 bytes")
        self._size = size
        self._hashes = list(hashes)

    @property
    def size(self) -> int:
        """Number of leaves appended so far."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Perfect-subtree hashes, left to right; a copy, safe to persist."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> None:
        """Add one leaf hash, merging equal-sized subtrees like a binary carry."""
        if not isinstance(leaf_hash, bytes) or len(leaf_hash) != HASH_SIZE:
            raise ValueError("leaf hash must be exactly 32 bytes")
        self._hashes.append(leaf_hash)
        carry = self._size
        while carry & 1:
            right = self._hashes.pop()
            left = self._hashes.pop()
            self._hashes.append(node_hash(left, right))
            carry >>= 1
        self._size += 1

    def root(self) -> bytes:
        """MTH of all appended leaves: fold the edge from the right."""
        if not self._hashes:
            return EMPTY_ROOT
        result = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            result = node_hash(left, result)
        return result

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size})"
