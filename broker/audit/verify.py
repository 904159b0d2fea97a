"""Offline verification of an audit log: every leaf, the tree, every checkpoint and cosignature.

Streams entries in order with a compact range, so memory stays O(log n) however long the
log grows. Reports the first bad ``seq`` so an IG officer knows where to look.

Checked, in order of the log: each stored leaf hash against its leaf bytes, each leaf's own
``seq``, each checkpoint's log signature and every cosignature by a known witness, each
checkpoint's root against the recomputed tree, a consistency proof between consecutive
checkpoints when the caller has them, and checkpoints witnessed elsewhere (an agency's last
cosigned one): a log that is smaller than one of those, or differs at its size, was rolled
back or rewritten.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from itertools import islice
from multiprocessing import get_context
from typing import Any

import orjson
import rfc8785

from broker.audit.merkle import CompactRange, ProofInvalid, leaf_hash, verify_consistency
from broker.audit.note import Checkpoint, NoteError, Verifier
from broker.audit.witness import open_checkpoint

ConsistencyProofs = Mapping[tuple[int, int], Sequence[bytes]]
Row = tuple[int, bytes, bytes]
"""``(seq, leaf, stored leaf_hash)``."""


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    checkpoints: int
    size: int
    root_hex: str
    first_bad_seq: int | None = None
    problem: str | None = None
    cosignatures: int = 0
    #: The largest checkpoint with at least the quorum of witness cosignatures.
    published_size: int | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


@dataclass
class _Checkpoints:
    """Checks the signed checkpoints as the recomputed tree reaches each size."""

    pending: list[tuple[int, str]]
    log: Verifier
    witnesses: Sequence[Verifier]
    quorum: int
    consistency: ConsistencyProofs | None
    witnessed: list[Checkpoint]
    checked: int = 0
    cosignatures: int = 0
    published: int | None = None
    previous: Checkpoint | None = None

    def at(self, size: int, root: bytes) -> str | None:
        for trusted in [w for w in self.witnessed if w.size == size]:
            if trusted.root_hash != root:
                return f"the log differs from the checkpoint of size {size} witnessed earlier"
            self.witnessed.remove(trusted)
        while self.pending and self.pending[0][0] == size:
            _, note = self.pending.pop(0)
            try:
                cp, names = open_checkpoint(note, self.log, self.witnesses)
            except NoteError as exc:
                return f"checkpoint at size {size} does not verify: {exc}"
            if cp.size != size:
                return f"checkpoint stored at size {size} claims size {cp.size}"
            if cp.root_hash != root:
                return f"checkpoint at size {size} commits to a different tree"
            if (problem := self._consistent(cp)) is not None:
                return problem
            self.checked += 1
            self.cosignatures += len(names)
            if len(names) >= self.quorum:
                self.published = size
            self.previous = cp
        return None

    def _consistent(self, cp: Checkpoint) -> str | None:
        prev = self.previous
        if self.consistency is None or prev is None or prev.size == 0 or prev.size == cp.size:
            return None
        proof = self.consistency.get((prev.size, cp.size))
        if proof is None:
            return f"no consistency proof from checkpoint {prev.size} to {cp.size}"
        try:
            verify_consistency(prev.size, cp.size, proof, prev.root_hash, cp.root_hash)
        except ProofInvalid as exc:
            return f"checkpoint {cp.size} is not consistent with checkpoint {prev.size}: {exc}"
        return None


def _leaf_problem(seq: int, leaf: bytes) -> str | None:
    """A leaf must be canonical JSON of an entry object carrying its own seq.

    Checked structurally rather than by full schema validation: verification is about
    integrity (these exact bytes, in this order, under these signatures), and the cheaper
    check keeps a million-entry verification within seconds. orjson parses the leaf and
    refuses what strict JSON refuses (NaN, Infinity, invalid UTF-8, lone surrogates);
    ``_canonical`` then asks for the leaf's exact bytes back.
    """
    try:
        doc = orjson.loads(leaf)
    except orjson.JSONDecodeError:
        return f"entry {seq}: leaf is not JSON"
    if type(doc) is not dict or type(doc.get("kind")) is not str:
        return f"entry {seq}: leaf is not an audit entry"
    if doc.get("seq") != seq:
        return f"entry {seq}: leaf says seq {doc.get('seq')}"
    if not _canonical(doc, leaf):
        return f"entry {seq}: leaf is not in canonical (RFC 8785) form"
    return None


_ASTRAL = re.compile(rb"[\xf0-\xf4]")  # lead byte of a UTF-8 sequence beyond U+FFFF
_SORTED_INTS = orjson.OPT_SORT_KEYS | orjson.OPT_STRICT_INTEGER


def _canonical(doc: dict[str, Any], leaf: bytes) -> bool:
    """Whether ``leaf`` is exactly the RFC 8785 serialisation of ``doc``, its parse.

    orjson writes compact JSON with RFC 8785's string escapes (quote, backslash,
    ``\\b\\f\\n\\r\\t``, other controls as lower-case ``\\u00xx``, everything else verbatim
    UTF-8; pinned for every ASCII character and by property tests) and sorts keys by code
    point. RFC 8785 sorts by UTF-16 code unit, which is the same order unless a key holds a
    character beyond U+FFFF; so leaves with such characters (none in practice: keys are
    field names) go to the ``rfc8785`` reference. Integers beyond 2**53 have no RFC 8785
    form and are refused. Floats are not re-checked digit by digit (an entry never holds
    one: every number in an entry is a sequence number or a version). This is a third of
    the cost of parsing and re-serialising with pydantic-core and walking every object for
    key order, which was most of a million-entry verification.
    """
    if leaf.isascii() or _ASTRAL.search(leaf) is None:
        try:
            return orjson.dumps(doc, option=_SORTED_INTS) == leaf
        except orjson.JSONEncodeError:
            return False
    try:
        return rfc8785.dumps(doc) == leaf
    except rfc8785.CanonicalizationError:
        return False


def verify_log(entries: Iterable[Row], checkpoints: Iterable[tuple[int, str]],
               verifier: Verifier, *, witnesses: Sequence[Verifier] = (), quorum: int = 0,
               consistency: ConsistencyProofs | None = None,
               witnessed: Iterable[Checkpoint] = ()) -> VerifyReport:
    """Check ``(seq, leaf, stored leaf_hash)`` rows against each other and the signed checkpoints.

    Checkpoints are ``(size, signed note)``; each must carry the log's signature under
    ``verifier``, any cosignature by a key in ``witnesses`` must verify, and it must commit
    to the root of exactly the first ``size`` leaves. ``consistency`` maps consecutive
    checkpoint sizes to their proofs (all required when given). ``witnessed`` are
    checkpoints an agency already verified and cosigned: the log must reach and match them.
    """
    return verify_checked(map(check_leaves, pages_of(entries)), checkpoints, verifier,
                          witnesses=witnesses, quorum=quorum, consistency=consistency,
                          witnessed=witnessed)


def pages_of(rows: Iterable[Row], size: int = 1000) -> Iterator[list[Row]]:
    """``rows`` in lists of ``size`` (``itertools.batched`` from Python 3.12)."""
    it = iter(rows)
    while page := list(islice(it, size)):
        yield page


@dataclass(frozen=True)
class CheckedLeaves:
    """What ``check_leaves`` found in one page of rows.

    ``hashes`` are the recomputed leaf hashes of the rows before the first bad one; when
    ``problem`` is set, ``seqs`` has one more element than ``hashes``: the bad row's seq.
    """

    seqs: list[int]
    hashes: list[bytes]
    problem: str | None = None


def check_leaves(rows: Sequence[Row]) -> CheckedLeaves:
    """The per-entry work of verification: each leaf against its stored hash and its form.

    Independent of every other page, so pages can be checked in worker processes while
    one process keeps the tree and the checkpoints in order (``verify_checked``).
    """
    seqs: list[int] = []
    hashes: list[bytes] = []
    for seq, leaf, stored_hash in rows:
        seqs.append(seq)
        computed = leaf_hash(leaf)
        if computed != stored_hash:
            return CheckedLeaves(seqs, hashes, f"entry {seq}: leaf bytes do not match the stored leaf hash")
        if (problem := _leaf_problem(seq, leaf)) is not None:
            return CheckedLeaves(seqs, hashes, problem)
        hashes.append(computed)
    return CheckedLeaves(seqs, hashes)


def check_in_workers(pages: Iterable[Sequence[Row]], workers: int) -> Iterator[CheckedLeaves]:
    """``map(check_leaves, pages)`` across ``workers`` processes, in order, a few pages ahead.

    Leaf checks are pure CPU under the GIL (JSON parse, re-serialisation, SHA-256 of ~2 kB),
    so threads would not overlap them; processes do. At most ``2 * workers`` pages are in
    flight, so memory stays flat however long the log is. Leaving the loop early (the
    first bad entry) cancels the pages not yet started.
    """
    pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
    pending: deque[Future[CheckedLeaves]] = deque()
    try:
        for page in pages:
            # plain tuples: driver rows (asyncpg records) do not pickle
            rows = [(seq, bytes(leaf), bytes(lh)) for seq, leaf, lh in page]
            pending.append(pool.submit(check_leaves, rows))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def verify_checked(pages: Iterable[CheckedLeaves], checkpoints: Iterable[tuple[int, str]],
                   verifier: Verifier, *, witnesses: Sequence[Verifier] = (), quorum: int = 0,
                   consistency: ConsistencyProofs | None = None,
                   witnessed: Iterable[Checkpoint] = (),
                   progress: Callable[[int], None] | None = None) -> VerifyReport:
    """``verify_log`` over pages already through ``check_leaves``, in log order.

    Problems are reported in the order ``verify_log`` meets them row by row: a missing or
    out-of-order seq before a bad leaf at or after it, a checkpoint before later leaves.
    ``progress`` is told the number of entries verified after each page.
    """
    state = _Checkpoints(sorted(checkpoints), verifier, witnesses, quorum, consistency,
                         sorted(witnessed, key=lambda c: c.size))
    tree = CompactRange()

    def report(bad: int | None, problem: str | None) -> VerifyReport:
        return VerifyReport(tree.size, state.checked, tree.size, tree.root().hex(), bad, problem,
                            state.cosignatures, state.published)

    if (problem := state.at(0, tree.root())) is not None:
        return report(0, problem)
    # every size where something is checked, fixed up front: the tree passes each size once
    due = {size for size, _ in state.pending} | {w.size for w in state.witnessed}
    append, root = tree.append, tree.root
    for page in pages:
        hashes = page.hashes
        for i, seq in enumerate(page.seqs):
            if seq != tree.size:
                return report(tree.size, f"entry {tree.size} is missing or out of order (found seq {seq})")
            if i == len(hashes):
                return report(seq, page.problem)
            append(hashes[i])
            # the root costs O(log n) hashes: only compute it where a checkpoint is due
            if seq + 1 in due and (problem := state.at(seq + 1, root())) is not None:
                # the changed entry lies after the previous good checkpoint
                return report(seq, problem)
        if progress is not None:
            progress(tree.size)
    if state.pending:
        return report(tree.size, f"checkpoint for size {state.pending[0][0]} but the log ends at "
                                 f"{tree.size}: entries were removed")
    if state.witnessed:
        return report(tree.size, f"the log ends at {tree.size} but a checkpoint of size "
                                 f"{state.witnessed[-1].size} was witnessed: the log was rolled back")
    return report(None, None)
