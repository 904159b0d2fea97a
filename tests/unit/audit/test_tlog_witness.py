"""The C2SP tlog-witness core: the spec's published bodies, every status code, the race.

Real notes, real Merkle trees (``broker.audit.merkle``), real files for the witness record.
"""

from __future__ import annotations

import base64
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.merkle import EMPTY_ROOT
from broker.audit.note import (
    Checkpoint,
    CosignatureSigner,
    NoteSigner,
    NoteVerifier,
    note_signatures,
    sign_note,
)
from broker.audit.tlog_witness import (
    MAX_REQUEST_BYTES,
    SIZE_MEDIA,
    AddCheckpoint,
    FileWitnessState,
    Witness,
    WitnessRefusal,
    origin_hash,
    parse_add_checkpoint,
    parse_cosignature_lines,
)
from broker.audit.witness import open_checkpoint
from broker.clock import FrozenClock
from broker.errors import ConfigurationError
from tests.unit.audit.tlog_support import (
    FORKED,
    LEAVES,
    LOG,
    NOW,
    ORIGIN,
    OTHER_LOG_KEY,
    SPEC_ORIGIN,
    SPEC_REQUEST,
    SPEC_RESPONSE,
    WITNESS,
    body,
    checkpoint,
    make_witness,
    proof,
    signed,
)


@pytest.fixture
def witness(tmp_path: Path) -> Witness:
    return make_witness(tmp_path / "witness")


def refused(witness: Witness, request: bytes) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as caught:
        witness.add_checkpoint(request)
    return caught.value


# --- the spec's published example bodies ---------------------------------------------


def test_the_spec_example_request_parses_and_encodes_back() -> None:
    request = parse_add_checkpoint(SPEC_REQUEST)
    assert request.old_size == 20852014
    assert [base64.b64encode(h).decode() for h in request.proof] == [
        "PlRNCrwHpqhGrupue0L7gxbjbMiKA9temvuZZDDpkaw=", "jrJZDmY8Y7SyJE0MWLpLozkIVMSMZcD5kvuKxPC3swk=",
        "5+pKlUdi2LeF/BcMHBn+Ku6yhPGNCswZZD1X/6QgPd8=", "/6WVhPs2CwSsb5rYBH5cjHV/wSmA79abXAwhXw3Kj/0="]
    assert (request.checkpoint.origin, request.checkpoint.size) == (SPEC_ORIGIN, 20852163)
    assert request.note.startswith(SPEC_ORIGIN + "\n") and request.note.endswith("=\n")
    assert [name for name, _, _ in note_signatures(request.note)[1]] == [SPEC_ORIGIN, SPEC_ORIGIN]
    assert request.encode() == SPEC_REQUEST


def test_the_spec_example_response_parses() -> None:
    lines = parse_cosignature_lines(SPEC_RESPONSE)
    names = [name for name, _, _ in lines]
    assert names == ["witness.example/w1", "witness.example/w1", "witness.example/w2"]
    # cosignature/v1: key id, 8-byte timestamp, 64-byte Ed25519 signature
    assert {len(raw) for _, raw, _ in lines} == {4 + 8 + 64}
    assert "".join(line + "\n" for _, _, line in lines) == SPEC_RESPONSE


def test_the_spec_example_request_for_an_unknown_origin_is_404(witness: Witness) -> None:
    answer = refused(witness, SPEC_REQUEST)
    assert (answer.status, answer.code) == (404, "unknown-origin")
    assert answer.content_type == "text/plain; charset=utf-8"


def test_the_spec_example_request_signed_by_another_key_is_403(tmp_path: Path) -> None:
    ours = NoteVerifier(SPEC_ORIGIN, Ed25519PrivateKey.generate().public_key())
    answer = refused(make_witness(tmp_path, [ours], origin=SPEC_ORIGIN), SPEC_REQUEST)
    assert (answer.status, answer.code) == (403, "untrusted-signature")
    assert not list(tmp_path.glob(origin_hash(SPEC_ORIGIN)))


class _Impostor:
    """A trusted key with the name and key id of the example's first signature, whose
    signature then fails: the spec says 403 (such a note is malformed)."""

    name = SPEC_ORIGIN
    key_id = note_signatures(parse_add_checkpoint(SPEC_REQUEST).note)[1][0][1][:4]

    def verify(self, text: str, sig: bytes) -> bool:
        return False


def test_the_spec_example_request_whose_trusted_key_fails_is_403(tmp_path: Path) -> None:
    answer = refused(make_witness(tmp_path, [_Impostor()], origin=SPEC_ORIGIN), SPEC_REQUEST)
    assert answer.status == 403


# --- parsing: anything but the grammar is a 400 ----------------------------------------

GOOD_NOTE = signed(5)
HASH = base64.b64encode(bytes(32)).decode()


@pytest.mark.parametrize(("raw", "why"), [
    (b"old 01\n\n" + GOOD_NOTE.encode(), "leading zero"),
    (b"old -1\n\n" + GOOD_NOTE.encode(), "negative"),
    (b"old  1\n\n" + GOOD_NOTE.encode(), "two spaces"),
    (b"old 1 \n\n" + GOOD_NOTE.encode(), "trailing space"),
    (b"Old 0\n\n" + GOOD_NOTE.encode(), "capital"),
    (b"old 0", "no newline"),
    (b"old 0\r\n\r\n" + GOOD_NOTE.encode(), "CRLF"),
    (b"old 18446744073709551616\n\n" + GOOD_NOTE.encode(), "2^64"),
    (b"old 123456789012345678901\n\n" + GOOD_NOTE.encode(), "21 digits"),
    (b"old 0\n" + GOOD_NOTE.encode(), "no empty line before the note"),
    (f"old 3\n{HASH[:-2]}==\n\n".encode() + GOOD_NOTE.encode(), "short hash"),
    (f"old 3\n{base64.b64encode(bytes(33)).decode()}\n\n".encode() + GOOD_NOTE.encode(), "33 bytes"),
    (f"old 3\n{HASH[:-2]}B=\n\n".encode() + GOOD_NOTE.encode(), "non-canonical base64"),
    (f"old 3\n{HASH} \n\n".encode() + GOOD_NOTE.encode(), "space after a hash"),
    (f"old 3\n{HASH}\n".encode() + (HASH + "\n").encode() * 63 + b"\n" + GOOD_NOTE.encode(), "64 lines"),
    (b"old 0\n\n" + GOOD_NOTE.encode()[:-1], "note without its final newline"),
    (b"old 0\n\n" + checkpoint(5).body().encode(), "unsigned checkpoint"),
    (b"old 0\n\nnot a checkpoint\n\n" + GOOD_NOTE.split("\n\n")[1].encode(), "not a checkpoint"),
    (b"old 0\n\n\xff" + GOOD_NOTE.encode(), "not UTF-8"),
    (b"old 0\n\n", "no note"),
    (b"old 0\n\n" + GOOD_NOTE.encode() + b"x" * MAX_REQUEST_BYTES, "too large"),
])
def test_a_malformed_request_is_400(witness: Witness, raw: bytes, why: str) -> None:
    answer = refused(witness, raw)
    assert (answer.status, answer.code) == (400, "malformed"), why
    assert witness.latest(ORIGIN) is None


def test_63_proof_lines_are_accepted_by_the_parser() -> None:
    request = parse_add_checkpoint(b"old 3\n" + (HASH + "\n").encode() * 63 + b"\n" + GOOD_NOTE.encode())
    assert len(request.proof) == 63


# --- the checks, one status code at a time ------------------------------------------------


def test_200_cosigns_records_and_persists_before_answering(witness: Witness, tmp_path: Path) -> None:
    answer = witness.add_checkpoint(body(0, signed(5)))
    (line,) = answer.splitlines()
    assert answer == line + "\n" and line.startswith("\u2014 witness.example/test ")
    assert WITNESS.verifier().verify_cosignature(checkpoint(5).body(), line) == int(NOW.timestamp())
    record = (tmp_path / "witness" / origin_hash(ORIGIN)).read_text()
    cp, cosigners = open_checkpoint(record, LOG.verifier(), [WITNESS.verifier()])
    assert cp == checkpoint(5) and cosigners == [WITNESS.name]
    assert witness.latest(ORIGIN) == checkpoint(5)


def test_200_then_a_consistent_extension_and_the_same_checkpoint_again(witness: Witness) -> None:
    witness.add_checkpoint(body(0, signed(5)))
    witness.add_checkpoint(body(5, signed(13), proof(5, 13)))
    assert witness.latest(ORIGIN) == checkpoint(13)
    witness.add_checkpoint(body(13, signed(13)))  # the same tree: consistent, cosigned again
    assert witness.latest(ORIGIN) == checkpoint(13)


def test_the_timestamp_is_never_zero(tmp_path: Path) -> None:
    epoch = make_witness(tmp_path, clock=FrozenClock(datetime(1970, 1, 1, tzinfo=UTC)))
    (line,) = epoch.add_checkpoint(body(0, signed(2))).splitlines()
    assert WITNESS.verifier().verify_cosignature(checkpoint(2).body(), line) == 1


def test_the_record_keeps_the_verified_log_signatures_and_its_own_cosignature(witness: Witness) -> None:
    stranger = CosignatureSigner("witness.example/other", Ed25519PrivateKey.generate())
    unknown = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())  # an unknown key of the same name
    text = checkpoint(4).body()
    note = sign_note(text, [unknown, LOG]) + stranger.cosign(text, 7) + "\n"
    witness.add_checkpoint(body(0, note))
    record = witness.monitored(origin_hash(ORIGIN))
    assert [name for name, _, _ in note_signatures(record)[1]] == [ORIGIN, WITNESS.name]
    assert note_signatures(record)[1][0][2] == note_signatures(note)[1][1][2]


def test_400_old_size_larger_than_the_checkpoint(witness: Witness) -> None:
    witness.add_checkpoint(body(0, signed(5)))
    answer = refused(witness, body(6, signed(5)))
    assert (answer.status, answer.code) == (400, "old-size-too-large")


def test_403_no_trusted_signature_and_a_failing_trusted_signature(witness: Witness) -> None:
    assert refused(witness, body(0, signed(5, signers=[OTHER_LOG_KEY]))).status == 403
    name, raw, _ = note_signatures(signed(5))[1][0]
    flipped = base64.b64encode(raw[:10] + bytes([raw[10] ^ 1]) + raw[11:]).decode()
    forged = checkpoint(5).body() + f"\n\u2014 {name} {flipped}\n"
    answer = refused(witness, body(0, forged))
    assert (answer.status, answer.code) == (403, "untrusted-signature")
    # a good signature beside the failing one does not save the note
    answer = refused(witness, body(0, signed(5) + f"\u2014 {name} {flipped}\n"))
    assert answer.status == 403
    assert witness.latest(ORIGIN) is None


def test_404_unknown_origin_and_keys_named_otherwise_are_not_trusted(tmp_path: Path) -> None:
    alien = NoteSigner("example.org/another-log", Ed25519PrivateKey.generate())
    witness = make_witness(tmp_path)
    note = sign_note(Checkpoint("example.org/another-log", 1, LEAVES[0]).body(), [alien])
    assert refused(witness, body(0, note)).status == 404
    # the callable hands back a key of another name for this origin: never used for it
    misnamed = make_witness(tmp_path / "m", keys=[alien.verifier()])
    assert refused(misnamed, body(0, signed(3))).status == 404


def test_409_old_size_is_not_the_latest_cosigned_size(witness: Witness) -> None:
    answer = refused(witness, body(3, signed(5), proof(3, 5)))  # never cosigned: latest is 0
    assert (answer.status, answer.body, answer.content_type) == (409, "0\n", SIZE_MEDIA)
    assert answer.latest_size == 0
    witness.add_checkpoint(body(0, signed(5)))
    for old, new in ((0, 8), (3, 8), (6, 8)):
        answer = refused(witness, body(old, signed(new), proof(old, new)))
        assert (answer.status, answer.body, answer.content_type) == (409, "5\n", SIZE_MEDIA)
    assert witness.latest(ORIGIN) == checkpoint(5)


def test_422_a_size_zero_checkpoint_must_have_the_empty_root(witness: Witness) -> None:
    bad = sign_note(Checkpoint(ORIGIN, 0, LEAVES[0]).body(), [LOG])
    answer = refused(witness, body(0, bad))
    assert (answer.status, answer.code) == (422, "empty-tree-root")
    witness.add_checkpoint(body(0, sign_note(Checkpoint(ORIGIN, 0, EMPTY_ROOT).body(), [LOG])))
    assert witness.latest(ORIGIN) == Checkpoint(ORIGIN, 0, EMPTY_ROOT)


def test_422_a_proof_from_old_size_zero(witness: Witness) -> None:
    answer = refused(witness, body(0, signed(5), [LEAVES[0]]))
    assert (answer.status, answer.code) == (422, "unexpected-proof")


def test_422_a_consistency_proof_that_does_not_verify(witness: Witness) -> None:
    witness.add_checkpoint(body(0, signed(5)))
    good = proof(5, 13)
    for bad in ([], good[:-1], [*good, LEAVES[0]], [good[0], LEAVES[1], *good[2:]]):
        answer = refused(witness, body(5, signed(13), bad))
        assert (answer.status, answer.code) == (422, "proof-invalid")
    # a fork: the tree of 13 that does not extend the cosigned 5, with its own (valid) proof
    answer = refused(witness, body(5, signed(13, FORKED), proof(5, 13, FORKED)))
    assert answer.status == 422
    assert witness.latest(ORIGIN) == checkpoint(5)


def test_422_the_same_size_with_another_root(witness: Witness) -> None:
    witness.add_checkpoint(body(0, signed(8)))
    answer = refused(witness, body(8, signed(8, FORKED)))
    assert (answer.status, answer.code) == (422, "root-mismatch")
    assert refused(witness, body(8, signed(8), [LEAVES[0]])).status == 422  # equal sizes: no proof
    assert witness.latest(ORIGIN) == checkpoint(8)


# --- the record and the monitoring read ----------------------------------------------


def test_the_monitoring_read(witness: Witness) -> None:
    hashed = origin_hash(ORIGIN)
    assert refused_monitor(witness, hashed).status == 404
    witness.add_checkpoint(body(0, signed(6)))
    note = witness.monitored(hashed)
    cp, cosigners = open_checkpoint(note, LOG.verifier(), [WITNESS.verifier()])
    assert cp == checkpoint(6) and cosigners == [WITNESS.name]
    for wrong in ("", hashed.upper(), hashed[:-1], "../" + hashed[3:], origin_hash("example.org/x")):
        assert refused_monitor(witness, wrong).status == 404


def refused_monitor(witness: Witness, hashed: str) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as caught:
        witness.monitored(hashed)
    return caught.value


def test_an_adapters_older_record_is_carried_on_from_and_cosigned_when_read(tmp_path: Path) -> None:
    """The pull mode kept ``<home>/witness/checkpoint`` with the log's signatures only."""
    pinned = tmp_path / "witness" / "checkpoint"
    pinned.parent.mkdir()
    pinned.write_text(signed(5))
    witness = Witness(WITNESS, lambda o: [LOG.verifier()] if o == ORIGIN else [],
                      FileWitnessState(tmp_path / "witness" / "logs", {ORIGIN: pinned}), FrozenClock(NOW))
    assert witness.latest(ORIGIN) == checkpoint(5)
    note = witness.monitored(origin_hash(ORIGIN))
    assert open_checkpoint(note, LOG.verifier(), [WITNESS.verifier()])[1] == [WITNESS.name]
    assert refused(witness, body(0, signed(9))).body == "5\n"
    witness.add_checkpoint(body(5, signed(9), proof(5, 9)))
    assert Checkpoint.parse(note_signatures(pinned.read_text())[0]) == checkpoint(9)
    assert not (tmp_path / "witness" / "logs").exists() or not any((tmp_path / "witness" / "logs").iterdir())


def test_a_record_that_does_not_parse_stops_the_witness(witness: Witness, tmp_path: Path) -> None:
    witness.add_checkpoint(body(0, signed(5)))
    (tmp_path / "witness" / origin_hash(ORIGIN)).write_text("garbage\n")
    with pytest.raises(ConfigurationError):
        witness.add_checkpoint(body(5, signed(6), proof(5, 6)))


def test_add_checkpoint_of_holds_a_request_to_the_grammar() -> None:
    request = AddCheckpoint.of(5, proof(5, 13), signed(13))
    assert parse_add_checkpoint(request.encode()) == request
    with pytest.raises(WitnessRefusal):
        AddCheckpoint.of(5, [b"short"], signed(13))


# --- the race the spec warns about ---------------------------------------------------


class _SlowClock:
    """Called inside the critical section: widens the window a missing lock would leave."""

    def __call__(self) -> datetime:
        time.sleep(0.01)
        return NOW


def test_racing_submissions_never_roll_the_record_back(tmp_path: Path) -> None:
    """Request A (size N) and request B (size N+K) from the same old size, at once: one is
    cosigned, the other gets 409 with the winner's size; the record is the winner's, always."""
    witnesses = [make_witness(tmp_path, clock=_SlowClock()) for _ in range(2)]  # one file, two cores
    witnesses[0].add_checkpoint(body(0, signed(2)))
    old = 2
    for round_ in range(12):
        sizes = (old + 1 + round_ % 3, old + 5)
        results: dict[int, str | WitnessRefusal] = {}
        gate = threading.Barrier(2)

        def submit(i: int, size: int, old: int = old, gate: threading.Barrier = gate,
                   results: dict[int, str | WitnessRefusal] = results) -> None:
            gate.wait()
            try:
                results[size] = witnesses[i].add_checkpoint(body(old, signed(size), proof(old, size)))
            except WitnessRefusal as exc:
                results[size] = exc

        threads = [threading.Thread(target=submit, args=(i, s)) for i, s in enumerate(sizes)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        won = [s for s, r in results.items() if isinstance(r, str)]
        lost = [r for r in results.values() if isinstance(r, WitnessRefusal)]
        assert len(won) == 1 and len(lost) == 1, results
        assert (lost[0].status, lost[0].latest_size) == (409, won[0])
        assert witnesses[0].latest(ORIGIN) == checkpoint(won[0])
        old = won[0]
