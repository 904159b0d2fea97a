"""Offline verification of an audit log against keys the verifier pinned (``broker/audit/trust.py``).

Streams entries in order with a compact range, so memory stays O(log n) however long the
log grows. Reports the first bad ``seq`` so an IG officer knows where to look, and on
success exactly what was proven: which entries, under which checkpoint, signed by which
key, cosigned by which witnesses.

Checked, in order of the log: each stored leaf hash against its leaf bytes, each leaf's own
``seq`` and canonical form; each checkpoint's signature by the log key in force at that
point (see below), every cosignature by a pinned witness, its root against the recomputed
tree, a consistency proof from the previous checkpoint; each key rotation entry
(``broker/audit/key_rotation.py``); checkpoints witnessed elsewhere (an agency's last
cosigned one): a log smaller than one of those, or different at its size, was rolled back
or rewritten. Then coverage: the newest checkpoint that passed (with the quorum of pinned
witnesses, when witness keys are pinned) must cover every entry; entries past it are an
unsigned tail, refused unless the caller allows one.

The log's keys form a chain K0 -> K1 -> ... through rotation entries, each signed by the
key it replaces and the key it introduces, and each binding the tree before it. Checkpoints
before the rotation entry of K(i+1) must be signed by K(i); the one that ends at it (the
rotation's own, of size seq + 1) by K(i) or K(i+1); every later one, and any that covers an
entry after the rotation, by K(i+1): a retired key alone no longer counts, so whoever still
holds it cannot vouch for anything appended after the hand-over. At least one pinned key
must be in the chain, and a key pinned ``since`` an entry must be introduced exactly there.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from multiprocessing import get_context
from typing import Any

import orjson
import rfc8785

from broker.audit.key_rotation import KeyRotation, open_rotation
from broker.audit.merkle import CompactRange, ProofInvalid, leaf_hash, verify_consistency
from broker.audit.note import Checkpoint, NoteError, NoteVerifier
from broker.audit.trust import Trust, key_label
from broker.audit.witness import open_checkpoint_keys

ConsistencyProofs = Mapping[tuple[int, int], Sequence[bytes]]
Row = tuple[Any, ...]
"""``(seq, leaf, stored leaf_hash)``, and from a database the row's index (``IndexRow``)."""
ROTATION_KIND = "log_key_rotated"


@dataclass(frozen=True)
class Rotated:
    seq: int
    old: str
    new: str


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    checkpoints: int
    #: entries proven: the size of the newest checkpoint that passed every check asked for
    size: int
    root_hex: str
    first_bad_seq: int | None = None
    problem: str | None = None
    cosignatures: int = 0
    #: The largest checkpoint with at least the quorum of witness cosignatures.
    published_size: int | None = None
    #: the log keys (``name+id``) that signed the covering checkpoint
    signed_by: tuple[str, ...] = ()
    #: the pinned witnesses whose cosignatures on it verified
    cosigned_by: tuple[str, ...] = ()
    #: entries past the covering checkpoint (allowed only when the caller asked)
    tail: int = 0
    rotations: tuple[Rotated, ...] = ()
    quorum: int = 0
    #: the newest checkpoint read and the pinned witnesses that cosigned it
    newest: tuple[int, tuple[str, ...]] | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None

    def summary(self) -> str:
        """What was proven, in one paragraph."""
        if self.size == 0:
            proven = "no entries are covered by a checkpoint"
        else:
            proven = (f"entries 0..{self.size - 1} under checkpoint {self.size} signed by "
                      f"{', '.join(self.signed_by)}")
            if self.cosigned_by:
                proven += f", cosigned by {', '.join(self.cosigned_by)}"
            elif self.quorum == 0:
                proven += " (no witness quorum required)"
        lines = [proven]
        for r in self.rotations:
            lines.append(f"log key rotated at entry {r.seq}: {r.old} -> {r.new}")
        if self.tail:
            why = ""
            if self.newest is not None and self.newest[0] > self.size:
                why = (f"; the newest checkpoint, size {self.newest[0]}, has {len(self.newest[1])} of "
                       f"the {self.quorum} cosignatures required")
            lines.append(f"{self.tail} entries from seq {self.size} are past it (allowed{why})")
        return "; ".join(lines)


@dataclass
class _KeyChain:
    """The log key in force as the log is read (see the module docstring)."""

    trust: Trust
    #: K0, when the log has rotations (the old key of the first one); else any pinned key
    first: NoteVerifier | None
    keys: list[NoteVerifier] = field(default_factory=list)
    #: a rotation read but not yet covered by a checkpoint: (seq, new key)
    pending: tuple[int, NoteVerifier] | None = None
    rotations: list[tuple[int, KeyRotation]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keys = [self.first] if self.first is not None else [k.verifier for k in self.trust.log]

    def known(self) -> list[NoteVerifier]:
        return [*self.keys, *([self.pending[1]] if self.pending else [])]

    def in_force(self) -> list[NoteVerifier]:
        if self.first is None and not self.rotations:
            return list(self.keys)  # no rotation: any pinned key
        return [self.keys[-1], *([self.pending[1]] if self.pending else [])]

    def rotate(self, seq: int, statement: object, origin: str, root: bytes) -> str | None:
        if not isinstance(statement, str):
            return f"entry {seq}: key rotation entry carries no statement"
        try:
            rotation = open_rotation(statement)
        except NoteError as exc:
            return f"entry {seq}: {exc}"
        if rotation.origin != origin:
            return f"entry {seq}: key rotation is for another log"
        if rotation.size != seq or rotation.root_hash != root:
            return f"entry {seq}: key rotation does not commit to the {seq} entries before it"
        if self.pending is not None:
            return f"entry {seq}: a second key rotation before the first was covered by a checkpoint"
        current = self.in_force()
        if rotation.old.key_id not in {k.key_id for k in current}:
            return (f"entry {seq}: key rotation is not signed by the key in force "
                    f"({', '.join(key_label(k) for k in current)})")
        if any(k.key_id == rotation.new.key_id for k in self._all()):
            return f"entry {seq}: key rotation brings back a key the log already had"
        if self.first is None and not self.rotations:
            self.keys = [rotation.old]  # no rotation was read ahead: the chain starts here
        self.pending = (seq, rotation.new)
        self.rotations.append((seq, rotation))
        return None

    def _all(self) -> list[NoteVerifier]:
        return [*self.keys, *(r.old for _, r in self.rotations), *(r.new for _, r in self.rotations)]

    def signed(self, size: int, signers: list[NoteVerifier]) -> str | None:
        """Check a checkpoint's log signers against the key in force; move the chain on."""
        ids = {k.key_id for k in signers}
        allowed = self.in_force()
        if self.pending is not None and size > self.pending[0]:
            # it covers the rotation entry: only the new key may vouch for it and what follows
            # (the old key co-signs it, and the holder of a retired key must not be able to
            # rewrite the rotation entry itself)
            allowed = [self.pending[1]]
        if not ids & {k.key_id for k in allowed}:
            names = ", ".join(key_label(k) for k in signers)
            return (f"checkpoint at size {size} is signed only by {names}, not by the key in force "
                    f"({', '.join(key_label(k) for k in allowed)}): a retired or unknown key")
        if self.pending is not None and size > self.pending[0]:
            # the first checkpoint covering the rotation: from here the new key alone is in force
            self.keys.append(self.pending[1])
            self.pending = None
        return None

    def anchored(self, size: int) -> str | None:
        """After the whole log: is it tied to the pinned keys?"""
        chain = {k.key_id for k in self._all()}
        if not chain & {p.key_id for p in self.trust.log}:
            return "none of the keys this log was signed with is pinned"
        introduced = {seq: r.new.key_id for seq, r in self.rotations}
        for pin in self.trust.log:
            if pin.since is not None and size > pin.since and introduced.get(pin.since) != pin.key_id:
                return (f"the pinned key {key_label(pin.verifier)} was introduced at entry {pin.since}, "
                        f"but entry {pin.since} of this log is not that rotation: another history")
        return None


@dataclass
class _Checkpoints:
    """Checks the signed checkpoints as the recomputed tree reaches each size."""

    pending: deque[tuple[int, str]]
    chain: _KeyChain
    trust: Trust
    consistency: ConsistencyProofs | None
    witnessed: list[Checkpoint]
    checked: int = 0
    cosignatures: int = 0
    published: int | None = None
    previous: Checkpoint | None = None
    #: the newest checkpoint that passed with the quorum: (size, log signers, cosigners)
    covering: tuple[int, list[NoteVerifier], list[str]] | None = None
    #: the pinned witnesses that cosigned the newest checkpoint read so far
    newest_cosigners: list[str] = field(default_factory=list)

    def at(self, size: int, root: bytes) -> str | None:
        for trusted in [w for w in self.witnessed if w.size == size]:
            if trusted.root_hash != root:
                return f"the log differs from the checkpoint of size {size} witnessed earlier"
            self.witnessed.remove(trusted)
        while self.pending and self.pending[0][0] == size:
            _, note = self.pending.popleft()
            try:
                cp, signed, cosigners = open_checkpoint_keys(note, self.chain.known(), self.trust.witnesses)
            except NoteError as exc:
                return f"checkpoint at size {size} does not verify: {exc}"
            if cp.size != size:
                return f"checkpoint stored at size {size} claims size {cp.size}"
            if cp.root_hash != root:
                return f"checkpoint at size {size} commits to a different tree"
            if (problem := self._consistent(cp)) is not None:
                return problem
            signers = [k for k in signed if isinstance(k, NoteVerifier)]
            if (problem := self.chain.signed(size, signers)) is not None:
                return problem
            self.checked += 1
            # a witness is counted once, however many of its keys are pinned (an agency's key
            # before and after a rotation): the quorum is of witnesses, not of keys
            names = list(dict.fromkeys(w.name for w in cosigners))
            self.cosignatures += len(names)
            self.newest_cosigners = names
            if len(names) >= self.trust.quorum:
                if self.trust.quorum > 0:
                    self.published = size
                self.covering = (size, signers, names)
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


def _leaf_problem(seq: int, leaf: bytes, rotations: dict[int, object] | None = None,
                  index: IndexRow | None = None) -> str | None:
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
    found = doc.get("seq")
    if type(found) is not int:  # not ``true``, nor ``1.0``, which equal 1 in Python
        return f"entry {seq}: leaf has no integer seq"
    if found != seq:
        return f"entry {seq}: leaf says seq {found}"
    if not _canonical(doc, leaf):
        return f"entry {seq}: leaf is not in canonical (RFC 8785) form"
    if doc["kind"] == ROTATION_KIND and rotations is not None:
        rotations[seq] = doc.get("log_key_rotation")
    if index is not None:
        return _index_problem(seq, doc, index)
    return None


IndexRow = tuple[object, ...]
"""What the database keeps beside a leaf for queries: ``INDEX_COLUMNS`` of ``audit_entry``,
then the set of its ``audit_subject`` pseudonyms."""
INDEX_COLUMNS = ("kind", "message_id", "delivery_id", "sender", "recipient", "decision", "clause", "at")


def _index_problem(seq: int, doc: dict[str, Any], index: IndexRow) -> str | None:
    """The columns the console and the IG searches filter on must say what the signed leaf says.

    They are derived from the leaf when it is appended; a row whose columns were changed (or a
    subject row added by a role that may only INSERT) would hide an entry from a search, or
    tie a person to disclosures that were not about them, while the leaf still verifies.
    Names the column, never its value. The common case (everything equal) is one tuple
    comparison and a cached time comparison: it runs for every entry.
    """
    dsa = doc.get("dsa")
    expected = (doc.get("kind"), doc.get("message_id"), doc.get("delivery_id"), doc.get("sender"),
                doc.get("recipient"), doc.get("decision"), dsa.get("clause") if type(dsa) is dict else None)
    if index[:7] != expected:
        for name, stored, signed in zip(INDEX_COLUMNS, index, expected, strict=False):
            if stored != signed:
                return f"entry {seq}: the indexed column {name} differs from the signed leaf"
    if not _same_time(index[7], doc.get("at")):
        return f"entry {seq}: the indexed column at differs from the signed leaf"
    subjects = doc.get("subjects")
    signed_subjects = {s.get("pseudonym") for s in subjects if type(s) is dict} if subjects else set()
    if index[8] != signed_subjects:
        return f"entry {seq}: its subject index rows differ from the signed leaf's subjects"
    return None


_SAME_TIMES: set[tuple[object, object]] = set()
"""(stored, signed) times found equal: the entries of one unit of work share their time."""


def _same_time(stored: object, signed: object) -> bool:
    key = (stored, signed)
    if key in _SAME_TIMES:
        return True
    left, right = _utc(stored), _utc(signed)
    if left is None or left != right:
        return False
    if len(_SAME_TIMES) > 4096:
        _SAME_TIMES.clear()
    _SAME_TIMES.add(key)
    return True

def _utc(value: object) -> datetime | None:
    """A time as naive UTC: a leaf's ISO text, asyncpg's aware datetime, or SQLite's stored text."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
    if not isinstance(value, datetime):
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo is not None else value


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
    #: the statements of the page's key rotation entries, by seq
    rotations: dict[int, object] = field(default_factory=dict)


def check_leaves(rows: Sequence[Row]) -> CheckedLeaves:
    """The per-entry work of verification: each leaf against its stored hash and its form.

    Independent of every other page, so pages can be checked in worker processes while
    one process keeps the tree and the checkpoints in order (``verify_checked``).
    """
    seqs: list[int] = []
    hashes: list[bytes] = []
    rotations: dict[int, object] = {}
    for row in rows:
        seq, leaf, stored_hash = row[0], row[1], row[2]
        index = row[3] if len(row) > 3 else None
        seqs.append(seq)
        if type(leaf) is not bytes:  # SQLite keeps whatever type an insert gave the column
            return CheckedLeaves(seqs, hashes, f"entry {seq}: the stored leaf is not bytes", rotations)
        computed = leaf_hash(leaf)
        if computed != stored_hash:
            return CheckedLeaves(seqs, hashes, f"entry {seq}: leaf bytes do not match the stored leaf hash",
                                 rotations)
        if (problem := _leaf_problem(seq, leaf, rotations, index)) is not None:
            return CheckedLeaves(seqs, hashes, problem, rotations)
        hashes.append(computed)
    return CheckedLeaves(seqs, hashes, None, rotations)


def _plain(value: Any) -> Any:
    """A driver's bytes-like value as bytes (to pickle); anything else as it is, to be refused."""
    return bytes(value) if isinstance(value, bytes | bytearray | memoryview) else value


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
            rows = [(row[0], _plain(row[1]), _plain(row[2]), *row[3:]) for row in page]
            pending.append(pool.submit(check_leaves, rows))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)




def first_key(rotations: Iterable[tuple[int, str]], trust: Trust) -> NoteVerifier | None:
    """K0, read ahead: the old key of the first rotation, when the rotations read ahead form a
    chain that reaches a pinned key (else None: the pinned keys are in force from the start).

    A hint only: the main pass re-checks every rotation at its place in the log, and the
    chain must reach a pinned key, so a wrong hint can only make verification fail.
    """
    opened: list[KeyRotation] = []
    for _, statement in rotations:
        try:
            rotation = open_rotation(statement)
        except NoteError:
            continue
        if opened and opened[-1].new.key_id != rotation.old.key_id:
            break  # not a chain: the main pass will say where
        opened.append(rotation)
    keys = {k.key_id for r in opened for k in (r.old, r.new)}
    if not opened or not keys & {p.key_id for p in trust.log}:
        return None
    return opened[0].old


def verify_log(entries: Iterable[Row], checkpoints: Iterable[tuple[int, str]], trust: Trust, *,
               rotations: Iterable[tuple[int, str]] = (), consistency: ConsistencyProofs | None = None,
               witnessed: Iterable[Checkpoint] = (), allow_unsigned_tail: bool = False) -> VerifyReport:
    """Check ``(seq, leaf, stored leaf_hash)`` rows against each other and the signed checkpoints.

    Checkpoints are ``(size, signed note)``. ``rotations`` are the log's key rotation entries
    ``(seq, statement)`` read ahead (to know the log's first key when a newer one is pinned).
    ``consistency`` maps consecutive checkpoint sizes to their proofs (all required when
    given). ``witnessed`` are checkpoints an agency already verified and cosigned: the log
    must reach and match them.
    """
    return verify_checked(map(check_leaves, pages_of(entries)), checkpoints, trust,
                          rotations=rotations, consistency=consistency, witnessed=witnessed,
                          allow_unsigned_tail=allow_unsigned_tail)


def verify_checked(pages: Iterable[CheckedLeaves], checkpoints: Iterable[tuple[int, str]], trust: Trust, *,
                   rotations: Iterable[tuple[int, str]] = (), consistency: ConsistencyProofs | None = None,
                   witnessed: Iterable[Checkpoint] = (), allow_unsigned_tail: bool = False,
                   progress: Callable[[int], None] | None = None) -> VerifyReport:
    """``verify_log`` over pages already through ``check_leaves``, in log order.

    Problems are reported in the order ``verify_log`` meets them row by row: a missing or
    out-of-order seq before a bad leaf at or after it, a checkpoint before later leaves.
    ``progress`` is told the number of entries verified after each page.
    """
    chain = _KeyChain(trust, first_key(rotations, trust))
    state = _Checkpoints(deque(sorted(checkpoints)), chain, trust, consistency,
                         sorted(witnessed, key=lambda c: c.size))
    tree = CompactRange()

    def report(bad: int | None, problem: str | None) -> VerifyReport:
        covered = state.covering
        size = covered[0] if covered else 0
        tail = tree.size - size
        if problem is None and tail and not allow_unsigned_tail:
            bad, problem = size, _tail_problem(state, trust, tree.size, size)
        return VerifyReport(
            tree.size, state.checked, size, tree.root().hex(), bad, problem, state.cosignatures,
            state.published, tuple(key_label(k) for k in covered[1]) if covered else (),
            tuple(covered[2]) if covered else (), tail,
            tuple(Rotated(seq, key_label(r.old), key_label(r.new)) for seq, r in chain.rotations),
            trust.quorum,
            (state.previous.size, tuple(state.newest_cosigners)) if state.previous is not None else None)

    if (problem := state.at(0, tree.root())) is not None:
        return report(0, problem)
    # every size where something is checked, fixed up front: the tree passes each size once
    due = {size for size, _ in state.pending} | {w.size for w in state.witnessed}
    append, root = tree.append, tree.root
    for page in pages:
        hashes, rotated = page.hashes, page.rotations
        for i, seq in enumerate(page.seqs):
            if seq != tree.size:
                return report(tree.size, f"entry {tree.size} is missing or out of order (found seq {seq})")
            if i == len(hashes):
                return report(seq, page.problem)
            if rotated and seq in rotated and (
                    problem := chain.rotate(seq, rotated[seq], trust.origin, root())) is not None:
                return report(seq, problem)
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
    if (problem := chain.anchored(tree.size)) is not None:
        return report(None, problem)
    return report(None, None)


def _tail_problem(state: _Checkpoints, trust: Trust, entries: int, covered: int) -> str:
    count = entries - covered
    if state.previous is None:
        return (f"no checkpoint signed by the log covers its {count} entries (from seq 0): "
                "nothing here is signed")
    if trust.quorum and state.previous.size > covered:
        had = state.newest_cosigners
        by = f" (by {', '.join(had)})" if had else ""
        return (f"the newest checkpoint (size {state.previous.size}) has {len(had)} of the {trust.quorum} "
                f"cosignatures required by the pinned witnesses{by}; {count} entries from seq {covered} "
                "are not covered by a checkpoint that has them (wait for the witnesses, or pass "
                "--allow-unsigned-tail)")
    return (f"{count} entries from seq {covered} are past the newest checkpoint (size {covered}): "
            "they are not signed (pass --allow-unsigned-tail to accept an unsigned tail)")
