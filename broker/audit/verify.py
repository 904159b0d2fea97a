"""Offline verification of an audit log: every leaf, the tree, every checkpoint.

Streams entries in order with a compact range, so memory stays O(log n) however long the
log grows. Reports the first bad ``seq`` so an IG officer knows where to look.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pydantic import ValidationError

from broker.audit.entry import AuditEntry
from broker.audit.merkle import CompactRange, leaf_hash
from broker.audit.note import Checkpoint, NoteError, NoteVerifier, open_note


@dataclass(frozen=True)
class VerifyReport:
    entries: int
    checkpoints: int
    size: int
    root_hex: str
    first_bad_seq: int | None = None
    problem: str | None = None

    @property
    def ok(self) -> bool:
        return self.problem is None


def verify_log(entries: Iterable[tuple[int, bytes, bytes]], checkpoints: Iterable[tuple[int, str]],
               verifier: NoteVerifier) -> VerifyReport:
    """Check ``(seq, leaf, stored leaf_hash)`` rows against each other and the signed checkpoints.

    Checkpoints are ``(size, signed note)``; each must verify under ``verifier`` and commit
    to the root of exactly the first ``size`` leaves.
    """
    pending = sorted(checkpoints)
    tree = CompactRange()
    checked = 0

    def report(bad: int | None, problem: str | None) -> VerifyReport:
        return VerifyReport(tree.size, checked, tree.size, tree.root().hex(), bad, problem)

    def check_checkpoints_at(size: int) -> str | None:
        nonlocal checked
        while pending and pending[0][0] == size:
            _, note = pending.pop(0)
            try:
                text, _names = open_note(note, [verifier])
                cp = Checkpoint.parse(text)
            except NoteError as exc:
                return f"checkpoint at size {size} does not verify: {exc}"
            if cp.size != size:
                return f"checkpoint stored at size {size} claims size {cp.size}"
            if cp.root_hash != tree.root():
                return f"checkpoint at size {size} commits to a different tree"
            checked += 1
        return None

    if (problem := check_checkpoints_at(0)) is not None:
        return report(0, problem)
    for seq, leaf, stored_hash in entries:
        if seq != tree.size:
            return report(tree.size, f"entry {tree.size} is missing or out of order (found seq {seq})")
        computed = leaf_hash(leaf)
        if computed != stored_hash:
            return report(seq, f"entry {seq}: leaf bytes do not match the stored leaf hash")
        try:
            entry = AuditEntry.from_leaf(leaf)
        except ValidationError:
            return report(seq, f"entry {seq}: leaf is not a valid audit entry")
        if entry.seq != seq:
            return report(seq, f"entry {seq}: leaf says seq {entry.seq}")
        tree.append(computed)
        if (problem := check_checkpoints_at(tree.size)) is not None:
            # the changed entry lies after the previous good checkpoint
            return report(seq, problem)
    if pending:
        return report(tree.size, f"checkpoint for size {pending[0][0]} but the log ends at "
                                 f"{tree.size}: entries were removed")
    return report(None, None)
