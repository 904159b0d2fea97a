"""A hostile reviewer against offline verification: exports and trust files built to fool it.

Every log here is built the way an attacker would (``tests/integration/audit_forge.py``):
hashes, tree and consistency proofs recomputed, notes signed with whatever keys the attacker
holds. Each test states the correct outcome: a refusal naming its reason, never a traceback,
a hang or attacker text echoed back; or acceptance when the input is legitimately fine.
"""

from __future__ import annotations

import base64
import json
import os
import re
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from broker.audit.entry import leaf_json
from broker.audit.key_rotation import KeyRotation, open_rotation, sign_rotation
from broker.audit.merkle import leaf_hash
from broker.audit.note import CosignatureSigner, NoteError, NoteSigner, sign_note
from broker.audit.trust import PinnedLogKey, Trust, TrustInvalid
from broker.audit.verify import verify_log
from broker.audit_cli import app
from broker.store.audit_export import EXPORT_FORMAT, verify_export
from tests.integration.audit_forge import ExportLog

ORIGIN = "masp.audit/test"
RETIRE = datetime(2027, 1, 1, tzinfo=UTC)
SYSTEM = {"auth": "system"}


def _key() -> NoteSigner:
    return NoteSigner(ORIGIN, Ed25519PrivateKey.generate())


def _witness(name: str, key: Ed25519PrivateKey | None = None) -> CosignatureSigner:
    return CosignatureSigner(f"masp.witness/{name}", key or Ed25519PrivateKey.generate())


def _log(n: int = 3) -> ExportLog:
    log = ExportLog([], [], [], {"format": EXPORT_FORMAT, "origin": ORIGIN})
    for _ in range(n):
        log.append({"kind": "delivered", "at": "2026-12-01T09:00:00Z", "actor": SYSTEM, "recipient": "nhs"})
    return log


def _pins(*keys: NoteSigner, since: dict[int, int] | None = None) -> Trust:
    since = since or {}
    return Trust(tuple(PinnedLogKey(k.verifier(), since.get(i)) for i, k in enumerate(keys)))


def _rotate(log: ExportLog, old: NoteSigner, new: NoteSigner, **extra: Any) -> int:
    seq = len(log.entries)
    statement = sign_rotation(ORIGIN, seq, log.root(seq), old, new, RETIRE)
    return log.append({"kind": "log_key_rotated", "at": "2026-12-01T09:00:00Z", "actor": SYSTEM,
                       "reason": "audit log key rotated", "log_key_rotation": statement, **extra})


def _raw_leaf(log: ExportLog, seq: int, leaf: str) -> None:
    """Replace a leaf with exact bytes (not re-canonicalised), hash recomputed."""
    log.entries[seq] = {"seq": seq, "leaf": leaf, "leaf_hash": leaf_hash(leaf.encode()).hex()}


def _problem(out: Path, trust: Trust, **kw: Any) -> str:
    report = verify_export(out, trust, **kw)
    assert not report.ok, "verification accepted what it must refuse"
    return report.problem or ""


def _printable(text: str) -> bool:
    return not re.search(r"[\x00-\x1f\x7f]", text)


# --- the log's key chain -------------------------------------------------------------------


def _rotated_log(k0: NoteSigner, k1: NoteSigner) -> tuple[ExportLog, int]:
    """Three entries, a rotation K0 -> K1 at seq 3, then two more entries; checkpoints as the
    broker makes them: the rotation's own (size 4) and later ones by K1 and K0 (in overlap)."""
    log = _log(3)
    seq = _rotate(log, k0, k1)
    log.append({"kind": "delivered", "at": "2026-12-01T10:00:00Z", "actor": SYSTEM, "recipient": "nhs"})
    log.append({"kind": "delivered", "at": "2026-12-01T10:00:01Z", "actor": SYSTEM, "recipient": "nhs"})
    log.sign([3], [k0])
    log.add_checkpoint(seq + 1, [k1, k0])
    log.add_checkpoint(seq + 3, [k1, k0])
    return log, seq


def test_a_rotated_log_verifies_from_the_first_pin_and_from_the_new_one(tmp_path: Path) -> None:
    k0, k1 = _key(), _key()
    log, seq = _rotated_log(k0, k1)
    out = log.save(tmp_path / "x")
    for pins in (_pins(k0), _pins(k1, since={0: seq}), _pins(k0, k1, since={1: seq})):
        report = verify_export(out, pins)
        assert report.ok, report.problem
        assert report.size == seq + 3 and [r.seq for r in report.rotations] == [seq]
    # the new key alone on the rotation's own checkpoint is fine too
    log.sign([3], [k0])
    log.add_checkpoint(seq + 1, [k1])
    log.add_checkpoint(seq + 3, [k1])
    assert verify_export(log.save(tmp_path / "y"), _pins(k0)).ok


def test_a_stolen_old_key_cannot_rewrite_the_rotation_entry_itself(tmp_path: Path) -> None:
    """The old key's holder keeps the statement but changes the rotation entry's time, actor or
    reason and signs the log ending there: the rotation's own checkpoint is the new key's too."""
    k0, k1 = _key(), _key()
    log = _log(3)
    seq = _rotate(log, k0, k1, actor={"auth": "system", "user_id": "someone-else"})
    log.sign([3, seq + 1], [k0])
    for pins in (_pins(k0), _pins(k1, since={0: seq})):
        problem = _problem(log.save(tmp_path / "x"), pins)
        assert f"checkpoint at size {seq + 1} is signed only by {ORIGIN}+{k0.key_id.hex()}" in problem


def test_a_stolen_old_key_cannot_vouch_for_entries_after_its_rotation(tmp_path: Path) -> None:
    """Whoever holds the retired key keeps the genuine rotation entry, appends what it likes
    after it, and signs one checkpoint over all of it with the old key alone. Only the
    checkpoint that ends at the rotation entry may be the old key's; anything later is the
    new key's to sign (the pin ``since`` exists against exactly this holder)."""
    k0, k1 = _key(), _key()
    log = _log(3)
    seq = _rotate(log, k0, k1)
    for _ in range(3):
        log.append({"kind": "disclosed", "at": "2026-12-01T10:00:00Z", "actor": SYSTEM,
                    "recipient": "advocacy", "decision": "permit"})
    log.sign([3, seq + 4], [k0])
    out = log.save(tmp_path / "stolen")
    for pins in (_pins(k0), _pins(k0, k1, since={1: seq}), _pins(k1, since={0: seq})):
        problem = _problem(out, pins)
        assert f"checkpoint at size {seq + 4} is signed only by {ORIGIN}+{k0.key_id.hex()}" in problem
        assert "not by the key in force" in problem


def test_two_rotations_before_a_checkpoint_are_refused(tmp_path: Path) -> None:
    k0, k1, k2 = _key(), _key(), _key()
    log = _log(2)
    first = _rotate(log, k0, k1)
    _rotate(log, k1, k2)  # the same batch: no checkpoint between them
    log.sign([2, first + 2], [k0, k1, k2])
    problem = _problem(log.save(tmp_path / "x"), _pins(k0))
    assert f"entry {first + 1}: a second key rotation before the first was covered" in problem


def test_a_rotation_committing_to_another_point_of_the_log_is_refused(tmp_path: Path) -> None:
    k0, k1 = _key(), _key()
    for size, root_at in ((2, 2), (3, 2)):  # another size; the right size but another root
        log = _log(3)
        statement = sign_rotation(ORIGIN, size, log.root(root_at), k0, k1, RETIRE)
        seq = log.append({"kind": "log_key_rotated", "at": "x", "actor": SYSTEM,
                          "log_key_rotation": statement})
        log.sign([3, seq + 1], [k0])
        problem = _problem(log.save(tmp_path / f"x{size}"), _pins(k0))
        assert f"entry {seq}: key rotation does not commit to the {seq} entries before it" in problem


def test_a_rotation_back_to_an_earlier_key_is_refused(tmp_path: Path) -> None:
    k0, k1 = _key(), _key()
    log = _log(2)
    _rotate(log, k0, k1)
    log.sign([2], [k0])
    log.add_checkpoint(3, [k1, k0])
    back = _rotate(log, k1, k0)
    log.add_checkpoint(back + 1, [k1])
    problem = _problem(log.save(tmp_path / "x"), _pins(k0))
    assert f"entry {back}: key rotation brings back a key the log already had" in problem


def test_a_rotation_by_keys_of_the_attackers_own_is_refused(tmp_path: Path) -> None:
    k0, e0, e1 = _key(), _key(), _key()
    log = _log(2)
    seq = _rotate(log, e0, e1)
    log.sign([2], [k0])
    log.add_checkpoint(seq + 1, [e0, e1])
    problem = _problem(log.save(tmp_path / "x"), _pins(k0))
    assert f"entry {seq}: key rotation is not signed by the key in force ({ORIGIN}+{k0.key_id.hex()})" \
        in problem


def test_a_rotation_whose_retire_time_is_out_of_range_is_refused_not_a_crash(tmp_path: Path) -> None:
    """``retire`` is up to 19 digits; a time no calendar holds must be a malformed statement,
    whether keys of the attacker's own sign it (met read ahead) or the log's keys did."""
    k0, k1 = _key(), _key()
    for old, new in ((_key(), _key()), (k0, k1)):
        log = _log(3)
        text = KeyRotation(ORIGIN, 3, log.root(3), old.verifier(), new.verifier(), RETIRE).text()
        text = re.sub(r"retire \d+", "retire 9999999999999999999", text)
        statement = sign_note(text, [old, new])
        with pytest.raises(NoteError, match="retire"):
            open_rotation(statement)
        seq = log.append({"kind": "log_key_rotated", "at": "x", "actor": SYSTEM,
                          "log_key_rotation": statement})
        log.sign([3, seq + 1], [k0])
        problem = _problem(log.save(tmp_path / "x"), _pins(k0))
        assert problem.startswith(f"entry {seq}: ") and "retire" in problem


def test_log_key_rotated_in_a_string_is_not_a_rotation(tmp_path: Path) -> None:
    k0 = _key()
    log = _log(2)
    log.append({"kind": "audit_viewed", "at": "x", "actor": SYSTEM,
                "reason": 'kind "log_key_rotated" log_key_rotation'})
    log.sign([3], [k0])
    report = verify_export(log.save(tmp_path / "x"), _pins(k0))
    assert report.ok and report.rotations == ()


def test_a_rotation_kind_spelled_with_an_escape_is_not_canonical(tmp_path: Path) -> None:
    """``log\\u005fkey_rotated`` parses as the rotation kind but is missed by a substring read
    ahead: it is not the leaf's canonical form, so it never reaches the key chain."""
    k0, e1 = _key(), _key()
    log = _log(2)
    seq = _rotate(log, k0, e1)
    _raw_leaf(log, seq, log.entries[seq]["leaf"].replace("log_key_rotated", "log\\u005fkey_rotated"))
    log.sign([2, seq + 1], [k0])
    problem = _problem(log.save(tmp_path / "x"), _pins(k0))
    assert problem == f"entry {seq}: leaf is not in canonical (RFC 8785) form"


def test_a_key_pinned_since_an_entry_must_be_introduced_there(tmp_path: Path) -> None:
    k0, k1, elsewhere = _key(), _key(), _key()
    log, seq = _rotated_log(k0, k1)
    out = log.save(tmp_path / "x")
    # a key the log never had, pinned since an entry the log reaches
    problem = _problem(out, _pins(k0, elsewhere, since={1: 2}))
    assert "introduced at entry 2, but entry 2 of this log is not that rotation" in problem
    # the right key pinned since the wrong entry
    assert "another history" in _problem(out, _pins(k0, k1, since={1: seq - 1}))
    # a pin since an entry the log has not reached binds nothing yet (trust.py)
    assert verify_export(out, _pins(k0, elsewhere, since={1: 1000})).ok


def test_a_lying_read_ahead_cannot_make_a_forgery_pass() -> None:
    """The read-ahead (on a database: rows chosen by the ``kind`` column, which an INSERT-only
    role can add at any free seq) is a hint: the genuine rotation statement copied there
    cannot lend the pinned new key to a history the old key's holder forged without it."""
    k0, k1 = _key(), _key()
    genuine = _log(3)
    seq = _rotate(genuine, k0, k1)
    statement = json.loads(genuine.entries[seq]["leaf"])["log_key_rotation"]
    forged = _log(3)
    forged.rewrite(1, lambda d: {**d, "recipient": "advocacy"})
    forged.sign([3], [k0])
    rows = [(e["seq"], e["leaf"].encode(), bytes.fromhex(e["leaf_hash"])) for e in forged.entries]
    checkpoints = [(c["size"], c["note"]) for c in forged.checkpoints]
    report = verify_log(rows, checkpoints, _pins(k1, since={0: seq}), rotations=[(-1, statement)])
    assert not report.ok and "none of the keys this log was signed with is pinned" in (report.problem or "")


# --- checkpoints ----------------------------------------------------------------------------


def test_checkpoints_out_of_order_and_of_size_zero_are_fine(tmp_path: Path) -> None:
    k0 = _key()
    log = _log(3)
    log.sign([1, 2, 3], [k0])
    log.checkpoints.reverse()
    log.checkpoints.append({"size": 0, "note": sign_note(log.body(0), [k0])})
    report = verify_export(log.save(tmp_path / "x"), _pins(k0))
    assert report.ok and report.checkpoints == 4 and report.size == 3


def test_a_checkpoint_of_negative_or_unreached_size_is_refused(tmp_path: Path) -> None:
    k0 = _key()
    for size in (-1, 7, 2**70):
        log = _log(3)
        log.sign([3], [k0])
        log.checkpoints.append({"size": size, "note": log.checkpoints[0]["note"]})
        problem = _problem(log.save(tmp_path / "x"), _pins(k0))
        assert f"checkpoint for size {size} but the log ends at 3" in problem


def test_two_notes_for_one_size(tmp_path: Path) -> None:
    """Two lines for one size, both signed by the log: fine if both commit to the tree (say
    with and without cosignatures); another tree at that size is a fork."""
    k0, w = _key(), _witness("police")
    log = _log(3)
    log.sign([3], [k0], [w])
    log.checkpoints.append({"size": 3, "note": sign_note(log.body(3), [k0])})
    trust = Trust(_pins(k0).log, (w.verifier(),), 1)
    report = verify_export(log.save(tmp_path / "x"), trust)
    assert report.ok and report.checkpoints == 2
    other = _log(3)
    other.rewrite(2, lambda d: {**d, "recipient": "advocacy"})
    log.checkpoints.append({"size": 3, "note": sign_note(other.body(3), [k0])})
    assert "checkpoint at size 3 commits to a different tree" in _problem(log.save(tmp_path / "y"), trust)


def test_many_copies_of_a_genuine_checkpoint_cost_linear_time(tmp_path: Path) -> None:
    """Five thousand copies of one genuine line: each is checked, none is trusted twice
    over, and the queue of checkpoints is not shifted element by element for each."""
    k0 = _key()
    log = _log(3)
    log.sign([3], [k0])
    log.checkpoints = log.checkpoints * 5_000
    report = verify_export(log.save(tmp_path / "x"), _pins(k0))
    assert report.ok and report.checkpoints == 5_000


def test_signature_lines_by_the_log_name_with_unknown_key_ids_are_ignored(tmp_path: Path) -> None:
    k0, stranger = _key(), _key()
    log = _log(3)
    log.sign([3], [stranger, k0])
    report = verify_export(log.save(tmp_path / "x"), _pins(k0))
    assert report.ok and report.signed_by == (f"{ORIGIN}+{k0.key_id.hex()}",)
    # but a line that claims the pinned key's id must verify
    line = log.checkpoints[0]["note"].splitlines()[-1]
    forged = line[: line.rindex(" ") + 1] + _claim(k0, stranger, log.body(3))
    log.checkpoints[0]["note"] = log.checkpoints[0]["note"].replace(line, forged)
    assert "a signature by the known key" in _problem(log.save(tmp_path / "y"), _pins(k0))


def _claim(claimed: NoteSigner, signer: NoteSigner, text: str) -> str:
    """A signature by ``signer`` under the key id of ``claimed``."""
    return base64.b64encode(claimed.key_id + signer.private_key.sign(text.encode())).decode()


def test_repeated_cosignatures_by_one_witness_count_once(tmp_path: Path) -> None:
    k0, police, nhs = _key(), _witness("police"), _witness("nhs")
    log = _log(3)
    log.sign([3], [k0], [police, police, police])
    trust = Trust(_pins(k0).log, (police.verifier(), nhs.verifier()), 2)
    problem = _problem(log.save(tmp_path / "x"), trust)
    assert "has 1 of the 2 cosignatures required by the pinned witnesses (by masp.witness/police)" in problem


def test_one_witness_key_pinned_under_two_names_is_refused() -> None:
    shared = Ed25519PrivateKey.generate()
    a, b = _witness("police", shared), _witness("nhs", shared)
    with pytest.raises(TrustInvalid, match="the same key"):
        Trust(_pins(_key()).log, (a.verifier(), b.verifier()), 2)


def test_two_keys_of_one_witness_are_one_cosigner(tmp_path: Path) -> None:
    """A witness that rotated its key may be pinned with both; its two cosignatures are still
    one witness's word toward the quorum."""
    k0, old, new, nhs = _key(), _witness("police"), _witness("police"), _witness("nhs")
    log = _log(3)
    log.sign([3], [k0], [old, new])
    with pytest.raises(TrustInvalid, match="quorum of 2 needs"):
        Trust(_pins(k0).log, (old.verifier(), new.verifier()), 2)
    trust = Trust(_pins(k0).log, (old.verifier(), new.verifier(), nhs.verifier()), 2)
    problem = _problem(log.save(tmp_path / "x"), trust)
    assert "has 1 of the 2 cosignatures required" in problem
    log.sign([3], [k0], [old, nhs])
    report = verify_export(log.save(tmp_path / "y"), trust)
    assert report.ok and report.cosigned_by == ("masp.witness/police", "masp.witness/nhs")


def test_a_witness_pinned_under_the_logs_own_name_never_counts(tmp_path: Path) -> None:
    k0 = _key()
    impostor = CosignatureSigner(ORIGIN, Ed25519PrivateKey.generate())
    log = _log(3)
    log.sign([3], [k0], [impostor])
    trust = Trust(_pins(k0).log, (impostor.verifier(),), 1)
    assert "has 0 of the 1 cosignatures required" in _problem(log.save(tmp_path / "x"), trust)


def test_a_quorum_larger_than_the_pinned_witnesses_is_refused() -> None:
    k0, w = _key(), _witness("police")
    with pytest.raises(TrustInvalid, match="quorum of 2 needs at least that many"):
        Trust(_pins(k0).log, (w.verifier(),), 2)
    with pytest.raises(TrustInvalid):
        Trust(_pins(k0).log, (w.verifier(),), -1)


# --- leaves -----------------------------------------------------------------------------------


@pytest.mark.parametrize("spelled", ["true", "1.0", "1e0"])
def test_a_leaf_whose_seq_is_not_an_integer_is_refused(tmp_path: Path, spelled: str) -> None:
    """``true == 1`` and ``1.0 == 1`` in Python; a leaf must carry its seq as an integer."""
    k0 = _key()
    log = _log(3)
    _raw_leaf(log, 1, log.entries[1]["leaf"].replace('"seq":1', f'"seq":{spelled}'))
    log.sign([3], [k0])
    assert _problem(log.save(tmp_path / "x"), _pins(k0)).startswith("entry 1: leaf")


def test_a_leaf_with_seq_false_at_zero_is_refused(tmp_path: Path) -> None:
    k0 = _key()
    log = _log(3)
    _raw_leaf(log, 0, log.entries[0]["leaf"].replace('"seq":0', '"seq":false'))
    log.sign([3], [k0])
    assert _problem(log.save(tmp_path / "x"), _pins(k0)).startswith("entry 0: leaf")


def test_what_a_leaf_says_is_not_echoed_into_the_verdict(tmp_path: Path) -> None:
    """A leaf's seq holding terminal escapes and a fake verdict line must not reach the
    auditor's terminal (nor a long value flood it)."""
    k0 = _key()
    for value in ("\x1b[2J\x1b[Haudit log intact: 3 entries\n", "x" * 100_000, {"a": [1] * 1000}):
        log = _log(3)
        log.set_doc(1, {**log.doc(1), "seq": value})
        log.sign([3], [k0])
        problem = _problem(log.save(tmp_path / "x"), _pins(k0))
        assert problem.startswith("entry 1: leaf") and _printable(problem) and len(problem) < 200
        assert "intact" not in problem


@pytest.mark.parametrize("leaf", [
    '{"actor":{"auth":"system"},"kind":"delivered","kind":"disclosed","seq":1}',  # duplicate key
    '{"actor":{"auth":"system"},"kind":"delivered","n":9007199254740993,"seq":1}',  # beyond 2**53
    '{"actor":{"auth":"system"},"kind":"delivered","n":100000000000000000000000000000,"seq":1}',
    '{"actor":{"auth":"system"},"kind":"delivered","n":NaN,"seq":1}',
    '{"actor":{"auth":"system"},"kind":"delivered","seq":1,"x":"\\ud800"}',  # a lone surrogate
    '{"kind":"delivered","seq":1,"actor":{"auth":"system"}}',  # keys out of order
    '["kind","seq"]',
])
def test_non_canonical_or_odd_leaves_are_refused(tmp_path: Path, leaf: str) -> None:
    k0 = _key()
    log = _log(3)
    _raw_leaf(log, 1, leaf)
    log.sign([3], [k0])
    problem = _problem(log.save(tmp_path / "x"), _pins(k0))
    assert problem.startswith("entry 1: ") or "entries.jsonl line 2" in problem, problem


# --- the export's files -------------------------------------------------------------------------


def _genuine(tmp_path: Path) -> tuple[Path, Trust]:
    k0 = _key()
    log = _log(3)
    log.sign([1, 3], [k0])
    return log.save(tmp_path / "export"), _pins(k0)


@pytest.mark.parametrize("spelled", ["1.0", "true", "1" + "0" * 5000, '"1"'])
def test_a_row_seq_that_is_not_an_integer_is_refused(tmp_path: Path, spelled: str) -> None:
    out, pins = _genuine(tmp_path)
    lines = (out / "entries.jsonl").read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"seq": 1,', f'"seq": {spelled},', 1)
    (out / "entries.jsonl").write_text("".join(lines))
    assert "entries.jsonl line 2" in _problem(out, pins)


@pytest.mark.parametrize(("name", "dup"), [
    ("entries.jsonl", '"leaf": "{}", '),  # another tool reading the first "leaf" sees another entry
    ("entries.jsonl", '"seq": 7, '),
    ("checkpoints.jsonl", '"size": 2, '),
    ("consistency.jsonl", '"proof": [], '),
])
def test_a_json_key_given_twice_in_an_export_line_is_refused(tmp_path: Path, name: str, dup: str) -> None:
    """Python keeps the last of two equal keys, other readers the first: one line, two
    readings. A verdict on one of them says nothing about what another tool shows."""
    out, pins = _genuine(tmp_path)
    lines = (out / name).read_text().splitlines(keepends=True)
    lines[0] = "{" + dup + lines[0][1:]
    (out / name).write_text("".join(lines))
    assert f"{name} line 1" in _problem(out, pins)


def test_a_manifest_naming_its_origin_twice_is_refused(tmp_path: Path) -> None:
    out, pins = _genuine(tmp_path)
    (out / "manifest.json").write_text(
        f'{{"format": "{EXPORT_FORMAT}", "origin": "masp.audit/elsewhere", "origin": "{ORIGIN}"}}')
    assert "manifest.json" in _problem(out, pins)


@pytest.mark.parametrize("name", ["entries.jsonl", "checkpoints.jsonl", "consistency.jsonl", "manifest.json"])
def test_an_export_file_that_is_a_directory_is_refused_not_a_crash(tmp_path: Path, name: str) -> None:
    out, pins = _genuine(tmp_path)
    (out / name).unlink()
    (out / name).mkdir()
    assert name in _problem(out, pins)


@pytest.mark.parametrize("name", ["entries.jsonl", "checkpoints.jsonl", "manifest.json"])
def test_an_export_file_that_never_ends_is_refused_without_hanging(tmp_path: Path, name: str) -> None:
    """A FIFO nobody writes to blocks ``open`` for ever; ``/dev/zero`` is a line without end."""
    for kind in ("fifo", "zero"):
        out, pins = _genuine(tmp_path / kind)
        (out / name).unlink()
        if kind == "fifo":
            os.mkfifo(out / name)
        else:
            (out / name).symlink_to("/dev/zero")
        found: list[str] = []
        worker = threading.Thread(target=_verify_into, args=(out, pins, found), daemon=True)
        worker.start()
        worker.join(10)
        if worker.is_alive():  # release the blocked open, then fail
            (out / name).write_text("")
            worker.join(5)
            pytest.fail(f"verification hung on {name} ({kind})")
        assert name in found[0]


def _verify_into(out: Path, pins: Trust, found: list[str]) -> None:
    found.append(verify_export(out, pins).problem or "")


def test_an_overlong_line_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    out, pins = _genuine(tmp_path)
    with (out / "entries.jsonl").open("a") as fh:
        fh.write('{"seq": 3, "leaf": "' + "x" * (80 << 20))  # 80 MiB, no newline
    assert "entries.jsonl line 4 is too long" in _problem(out, pins)


def test_a_byte_order_mark_before_the_entries_is_refused(tmp_path: Path) -> None:
    out, pins = _genuine(tmp_path)
    (out / "entries.jsonl").write_text("\ufeff" + (out / "entries.jsonl").read_text())
    assert "entries.jsonl line 1 is not JSON" in _problem(out, pins)


def test_consistency_proofs_of_junk_are_refused(tmp_path: Path) -> None:
    k0 = _key()
    log = _log(4)
    log.sign([2, 4], [k0])
    for proof, why in ((["AA=="] * 100_000, "not a 32-byte hash"),
                       ([{"a": 1}], "consistency.jsonl line 1 has a hash that is not base64")):
        log.consistency[0]["proof"] = proof
        assert why in _problem(log.save(tmp_path / "x"), _pins(k0))


# --- the trust file ---------------------------------------------------------------------------------


def test_a_trust_file_with_comments_and_crlf_line_endings(tmp_path: Path) -> None:
    k0, w = _key(), _witness("police")
    text = (f"# pinned 2026-11-21\r\n\r\nlog {k0.verifier().vkey}   # the first key\r\n"
            f"witness {w.verifier().vkey}\r\nquorum 1\r\n")
    trust = Trust.parse(text)
    assert [p.key_id for p in trust.log] == [k0.key_id] and trust.quorum == 1


def test_a_key_inside_a_comment_stays_commented_out() -> None:
    """Python's ``splitlines`` also breaks at U+2028, U+0085, form feed and others that an
    editor shows inside the comment: a key written after one must not be pinned."""
    k0, hidden = _key(), _key()
    for sep in ("\u2028", "\u2029", "\x85", "\x0c", "\x1e"):
        text = f"log {k0.verifier().vkey}\n# retired, do not trust:{sep}log {hidden.verifier().vkey}\n"
        assert [p.key_id for p in Trust.parse(text).log] == [k0.key_id], repr(sep)


@pytest.mark.parametrize("text", [
    "\ufefflog {k0}\n",  # a byte order mark: refused, naming the line
    "log {k0}\nlog {k0}\n",  # the same key twice
    "log {k0}\nquorum 0\nquorum 0\n",
    "log {k0} since -1\n",
    "log {k0} since 01\n",
    "log {k0} since 99999999999999999999\n",
    "witness {k0}\n",  # a log key where a witness key belongs
    "log {k0}\nlog {other}\n",  # two logs
    "",
])
def test_malformed_trust_files_are_refused_with_a_reason(text: str) -> None:
    k0 = _key()
    other = NoteSigner("masp.audit/other", Ed25519PrivateKey.generate())
    with pytest.raises(TrustInvalid):
        Trust.parse(text.format(k0=k0.verifier().vkey, other=other.verifier().vkey))


# --- through the command ------------------------------------------------------------------------------


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result.exit_code, result.output


def test_the_command_refuses_hostile_exports_in_one_line(tmp_path: Path) -> None:
    k0 = _key()
    trust_file = tmp_path / "pins.txt"
    trust_file.write_text(_pins(k0).render())
    # a rotation statement no calendar can hold, signed by keys of the attacker's own
    log = _log(3)
    a, b = _key(), _key()
    text = re.sub(r"retire \d+", "retire 9999999999999999999",
                  KeyRotation(ORIGIN, 3, log.root(3), a.verifier(), b.verifier(), RETIRE).text())
    log.append({"kind": "log_key_rotated", "at": "x", "actor": SYSTEM,
                "log_key_rotation": sign_note(text, [a, b])})
    log.sign([3, 4], [k0])
    out = log.save(tmp_path / "retire")
    code, output = _cli("verify", "--export", str(out), "--trust", str(trust_file))
    assert code == 1 and "NOT intact" in output and "Traceback" not in output
    # entries.jsonl a directory
    log = _log(3)
    log.sign([3], [k0])
    out = log.save(tmp_path / "dir")
    (out / "entries.jsonl").unlink()
    (out / "entries.jsonl").mkdir()
    code, output = _cli("verify", "--export", str(out), "--trust", str(trust_file))
    assert code == 1 and "entries.jsonl" in output
    # and the genuine one passes
    code, output = _cli("verify", "--export", str(log.save(tmp_path / "ok")), "--trust", str(trust_file))
    assert code == 0 and "audit log intact: 3 entries" in output


def test_a_witnessed_checkpoint_of_another_log_is_refused_as_such(tmp_path: Path) -> None:
    """An auditor who hands over another log's checkpoint must be told so, not that this
    log was rolled back or rewritten."""
    k0 = _key()
    log = _log(3)
    log.sign([3], [k0])
    out = log.save(tmp_path / "x")
    trust_file = tmp_path / "pins.txt"
    trust_file.write_text(_pins(k0).render())
    other = ExportLog([], [], [], {"format": EXPORT_FORMAT, "origin": "masp.audit/other"})
    for _ in range(5):
        other.append({"kind": "delivered", "at": "x", "actor": SYSTEM})
    seen = tmp_path / "seen.note"
    seen.write_text(sign_note(other.body(5), [NoteSigner("masp.audit/other", Ed25519PrivateKey.generate())]))
    code, output = _cli("verify", "--export", str(out), "--trust", str(trust_file), "--witnessed", str(seen))
    assert code == 2 and "another log" in output and "rolled back" not in output
    # this log's own checkpoint, witnessed: fine
    seen.write_text(log.checkpoints[0]["note"])
    code, output = _cli("verify", "--export", str(out), "--trust", str(trust_file), "--witnessed", str(seen))
    assert code == 0, output


def test_the_command_refuses_a_quorum_beyond_the_pinned_witnesses(tmp_path: Path) -> None:
    k0, w = _key(), _witness("police")
    log = _log(3)
    log.sign([3], [k0], [w])
    trust_file = tmp_path / "pins.txt"
    trust_file.write_text(Trust(_pins(k0).log, (w.verifier(),), 1).render())
    out = log.save(tmp_path / "x")
    code, output = _cli("verify", "--export", str(out), "--trust", str(trust_file), "--quorum", "3")
    assert code == 2 and "quorum of 3" in output
    code, _ = _cli("verify", "--export", str(out), "--trust", str(trust_file))
    assert code == 0


def test_canonical_leaves_written_by_the_broker_still_verify(tmp_path: Path) -> None:
    """Control: every leaf form the broker writes (nested objects, unicode, lists) passes."""
    k0 = _key()
    log = _log(1)
    log.append({"kind": "disclosed", "at": "2026-12-01T09:00:00Z",
                "actor": {"auth": "agency-jwt", "agency": "police"},
                "reason": "caf\u00e9 \u2028 \U0001f600 \"quoted\" \\", "rules": ["P6.consent"],
                "subjects": [{"category": "child", "pseudonym": "ab" * 16}]})
    assert leaf_json(log.doc(1)) == log.entries[1]["leaf"].encode()
    log.sign([2], [k0])
    assert verify_export(log.save(tmp_path / "x"), _pins(k0)).ok
