"""An auditor who trusts only the keys it pinned, against someone who rewrote the log.

Each forgery is built the way its author would: every hash, the tree, the consistency proofs
and fresh signatures recomputed (``tests/integration/audit_forge.py``), so the only thing that
can catch it is what the verifier pinned and what it requires (a checkpoint covering every
entry, the witnesses' quorum, the log's chain of keys). On SQLite and PostgreSQL, on the
database in place and on exports, and through the documented command.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text

from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.audit.key_rotation import KeyRotation, sign_rotation
from broker.audit.note import Checkpoint, CosignatureSigner, NoteSigner, signature_key_ids
from broker.audit.trust import PinnedLogKey, Trust
from broker.audit.witness import witness_name, witness_verifier
from broker.crypto.keys import AGENCIES, AgencyKeys
from broker.crypto.log_keys import LogSigners
from broker.errors import ConfigurationError
from broker.keys_cli import _log_rotation, _rotation_entry
from broker.service import AuditStore, BrokerService, log_keys
from broker.store.audit_export import (
    export_log,
    operator_trust,
    verify_database,
    verify_export,
    witness_verifiers,
)
from broker.store.audit_log import AuditLog
from broker.store.audit_witness import add_cosignature
from tests.integration.audit_forge import ExportLog, drop_append_only

REPO = Path(__file__).resolve().parents[2]
AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
POLICE = Actor(agency="police", auth="agency-jwt")


@pytest.fixture
def service(audit_service: BrokerService) -> BrokerService:
    return audit_service


def _entry(kind: EntryKind, **fields: Any) -> Callable[[int], AuditEntry]:
    return lambda seq: AuditEntry(seq=seq, kind=kind, at=AT, actor=POLICE, sender="police",
                                  message_id="0190a4c2-7d7e-7cc1-8a4e-3b4f5e6a7b8c", **fields)


async def _batch(service: BrokerService, *builds: Callable[[int], AuditEntry]) -> None:
    async with service.exchange.audit.transaction() as batch:
        for build in builds:
            batch.add(build)


async def _cosign(service: BrokerService, size: int, agencies: tuple[str, ...] = AGENCIES) -> None:
    exchange = service.exchange
    async with exchange.sessions() as s:
        root = (await s.execute(text("SELECT root_hash FROM audit_checkpoint WHERE size = :size"),
                                {"size": size})).scalar_one()
    body = Checkpoint(service.settings.audit_origin, size, bytes(root)).body()
    for agency in agencies:
        keys = AgencyKeys.load(service.settings.keys_dir, agency)
        assert isinstance(keys.sig.private_key, Ed25519PrivateKey)
        line = CosignatureSigner(witness_name(agency), keys.sig.private_key).cosign(body, int(AT.timestamp()))
        await add_cosignature(exchange.sessions, agency,
                              witness_verifier(agency, keys.sig.private_key.public_key()),
                              line, size, exchange.clock(), timedelta(minutes=5))


async def _referral_log(service: BrokerService) -> None:
    """A referral disclosed to nhs, refused to advocacy under P6 (no consent), delivered; the
    newest checkpoint cosigned by every agency."""
    await _batch(service, _entry(EntryKind.SUBMITTED, masp_type="case_referral"),
                 _entry(EntryKind.DISCLOSED, recipient="nhs", decision="permit_with_redaction",
                        masp_type="case_referral"))
    await _batch(service, _entry(EntryKind.REFUSED, recipient="advocacy", decision="deny",
                                 rules=("P6.consent",), masp_type="case_referral"))
    await _batch(service, _entry(EntryKind.DELIVERED, recipient="nhs"),
                 _entry(EntryKind.ACKNOWLEDGED, recipient="nhs"))
    await _cosign(service, 5)


async def _pins(service: BrokerService, quorum: int = 2) -> Trust:
    return await operator_trust(service.exchange.sessions, log_keys(service.settings),
                                witness_verifiers(service.exchange.registry), quorum)


async def _export(service: BrokerService, out: Path) -> ExportLog:
    await export_log(service.exchange.sessions, out, service.settings.audit_origin)
    return ExportLog.load(out)


def _masp(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MASP_")}
    return subprocess.run([sys.executable, "-m", "broker.cli", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO)}, cwd="/", timeout=60, check=False)


def _permit(doc: dict[str, Any]) -> dict[str, Any]:
    """The P6 refusal rewritten into a disclosure."""
    doc = {**doc, "kind": "disclosed", "decision": "permit"}
    doc.pop("rules", None)
    return doc


def _attacker(origin: str) -> NoteSigner:
    return NoteSigner(origin, Ed25519PrivateKey.generate())


def _attacker_witnesses() -> list[CosignatureSigner]:
    return [CosignatureSigner(witness_name(a), Ed25519PrivateKey.generate()) for a in AGENCIES]


# --- the forgeries of the issue ------------------------------------------------------------


async def test_a_rewritten_refusal_signed_by_a_new_key_is_refused(service: BrokerService,
                                                                   tmp_path: Path) -> None:
    await _referral_log(service)
    pins = await _pins(service)
    genuine = await _export(service, tmp_path / "genuine")
    assert verify_export(tmp_path / "genuine", pins).ok

    forged = await _export(service, tmp_path / "forged")
    refusal = forged.find(lambda d: d.get("rules") == ["P6.consent"])
    forged.rewrite(refusal, _permit)
    evil = _attacker(forged.origin)
    witnesses = _attacker_witnesses()
    forged.sign(genuine.sizes(), [evil], witnesses)
    # the forger ships keys of its own beside the data, under every name a tool might look for
    forged.extra_files = {"log.vkey": evil.vkey + "\n",
                          "witnesses.vkey": "".join(w.vkey + "\n" for w in witnesses),
                          "trust.txt": Trust.of([evil.vkey], [w.vkey for w in witnesses]).render()}
    out = forged.save(tmp_path / "forged")

    report = verify_export(out, pins)
    assert not report.ok and report.first_bad_seq == 1  # the first checkpoint it re-signed
    assert "no signature by a known key" in (report.problem or "")
    if service.engine.dialect.name != "sqlite":
        return  # an export is the same files whatever the database: the command once is enough
    # the documented command, from outside the repository: no pins, no verdict; the auditor's
    # pins, refused (the genuine export passes the same command: tests/e2e/test_cli.py)
    (tmp_path / "pins.txt").write_text(pins.render())
    unpinned = _masp("audit", "verify", "--export", str(out))
    assert unpinned.returncode == 2 and "no pinned log key" in unpinned.stderr
    assert "intact" not in unpinned.stdout
    pinned = _masp("audit", "verify", "--export", str(out), "--trust", str(tmp_path / "pins.txt"))
    assert pinned.returncode == 1 and "NOT intact" in pinned.stderr, pinned.stderr


async def test_a_rewritten_log_without_checkpoints_is_refused(service: BrokerService, tmp_path: Path) -> None:
    await _referral_log(service)
    pins = await _pins(service, quorum=0)
    forged = await _export(service, tmp_path / "forged")
    forged.rewrite(forged.find(lambda d: d.get("rules") == ["P6.consent"]), _permit)
    forged.checkpoints, forged.consistency = [], []
    report = verify_export(forged.save(tmp_path / "forged"), pins)
    assert not report.ok and report.first_bad_seq == 0 and report.size == 0
    assert "no checkpoint signed by the log covers its 5 entries" in (report.problem or "")
    # allowing an unsigned tail proves nothing, and says so
    allowed = verify_export(tmp_path / "forged", pins, allow_unsigned_tail=True)
    assert allowed.ok and allowed.size == 0 and allowed.tail == 5
    assert allowed.summary().startswith("no entries are covered by a checkpoint")


async def test_invented_entries_after_the_last_checkpoint_are_refused(service: BrokerService,
                                                                      tmp_path: Path) -> None:
    await _referral_log(service)
    pins = await _pins(service, quorum=2)
    forged = await _export(service, tmp_path / "forged")
    for kind in ("disclosed", "delivered"):
        forged.append({"kind": kind, "at": "2026-12-01T09:00:00Z", "recipient": "advocacy",
                       "actor": {"agency": "police", "auth": "agency-jwt"}, "sender": "police"})
    report = verify_export(forged.save(tmp_path / "forged"), pins)
    assert not report.ok and report.first_bad_seq == 5
    assert "2 entries from seq 5 are past the newest checkpoint (size 5)" in (report.problem or "")
    allowed = verify_export(tmp_path / "forged", pins, allow_unsigned_tail=True)
    assert allowed.ok and (allowed.size, allowed.tail, allowed.entries) == (5, 2, 7)
    assert "2 entries from seq 5 are past it" in allowed.summary()


async def test_the_same_forgeries_in_the_database_are_refused(service: BrokerService) -> None:
    """In place: rows inserted after the last checkpoint (no trigger stops an INSERT), a
    refusal rewritten with its checkpoints re-signed, and every checkpoint removed."""
    await _referral_log(service)
    pins = await _pins(service, quorum=2)
    assert (await verify_store_ok(service, pins))
    origin = service.settings.audit_origin
    leaf = (b'{"actor":{"auth":"system"},"at":"2026-12-01T09:00:00Z","kind":"disclosed",'
            b'"recipient":"advocacy","seq":5}')
    from broker.audit.merkle import leaf_hash

    async with service.exchange.sessions() as s, s.begin():
        await s.execute(text("INSERT INTO audit_entry (seq, kind, at, recipient, leaf, leaf_hash) "
                             "VALUES (5, 'disclosed', :at, 'advocacy', :leaf, :lh)"),
                        {"at": AT, "leaf": leaf, "lh": leaf_hash(leaf)})
    report = await verify_database(service, pins)
    assert not report.ok and report.first_bad_seq == 5 and "1 entries from seq 5" in (report.problem or "")

    evil = _attacker(origin)
    async with service.exchange.sessions() as s, s.begin():
        await drop_append_only(s, "audit_entry", "audit_checkpoint", "audit_cosignature")
        await s.execute(text("DELETE FROM audit_entry WHERE seq = 5"))
        rows = (await s.execute(text("SELECT seq, leaf FROM audit_entry ORDER BY seq"))).all()
        log = ExportLog([{"seq": seq, "leaf": bytes(lf).decode(), "leaf_hash": leaf_hash(bytes(lf)).hex()}
                         for seq, lf in rows], [], [], {"origin": origin})
        log.rewrite(log.find(lambda d: d.get("rules") == ["P6.consent"]), _permit)
        log.sign([2, 3, 5], [evil])
        for row in log.entries:  # the indexed columns too, as a careful forger would
            doc = json.loads(row["leaf"])
            await s.execute(text("UPDATE audit_entry SET leaf = :leaf, leaf_hash = :lh, kind = :kind, "
                                 "decision = :decision WHERE seq = :seq"),
                            {"leaf": row["leaf"].encode(), "lh": bytes.fromhex(row["leaf_hash"]),
                             "kind": doc["kind"], "decision": doc.get("decision"), "seq": row["seq"]})
        for cp in log.checkpoints:
            await s.execute(text("UPDATE audit_checkpoint SET note = :note, root_hash = :root "
                                 "WHERE size = :size"),
                            {"note": cp["note"], "root": log.root(cp["size"]), "size": cp["size"]})
    report = await verify_database(service, pins)
    assert not report.ok and report.first_bad_seq == 1
    assert "no signature by a known key" in (report.problem or "")

    async with service.exchange.sessions() as s, s.begin():
        await s.execute(text("DELETE FROM audit_cosignature"))
        await s.execute(text("DELETE FROM audit_checkpoint"))
    report = await verify_database(service, pins)
    assert not report.ok and report.size == 0 and "no checkpoint signed by the log" in (report.problem or "")


async def verify_store_ok(service: BrokerService, pins: Trust) -> bool:
    report = await verify_database(service, pins)
    assert report.ok, report.problem
    assert report.cosigned_by == tuple(witness_name(a) for a in sorted(AGENCIES))
    return True


# --- witnesses and the export's own files ---------------------------------------------------


async def test_a_cosignature_over_a_different_tree_is_refused(service: BrokerService, tmp_path: Path) -> None:
    await _referral_log(service)
    pins = await _pins(service)
    log = await _export(service, tmp_path / "genuine")
    police = AgencyKeys.load(service.settings.keys_dir, "police")
    assert isinstance(police.sig.private_key, Ed25519PrivateKey)
    witness = CosignatureSigner(witness_name("police"), police.sig.private_key)
    # police really did cosign a tree of size 5, but a forked one (another entry 4)
    fork = await _export(service, tmp_path / "fork")
    fork.rewrite(4, lambda d: {**d, "recipient": "advocacy"})
    line = witness.cosign(fork.body(5), int(AT.timestamp()))
    note = log.checkpoints[-1]["note"]
    stripped = "".join(ln + "\n" for ln in note.rstrip("\n").split("\n")
                       if not ln.startswith(f"\u2014 {witness_name('police')} "))
    log.checkpoints[-1]["note"] = stripped + line + "\n"
    report = verify_export(log.save(tmp_path / "forged"), pins)
    assert not report.ok and report.first_bad_seq == 4
    assert f"known key {witness_name('police')}+" in (report.problem or "")
    assert "failed to verify" in (report.problem or "")


async def test_a_truncated_or_incomplete_export_is_refused(service: BrokerService, tmp_path: Path) -> None:
    await _referral_log(service)
    pins = await _pins(service)
    out = tmp_path / "export"
    await _export(service, out)
    consistency = (out / "consistency.jsonl").read_text()
    (out / "consistency.jsonl").write_text(consistency[: len(consistency) - 20])  # cut mid-line
    report = verify_export(out, pins)
    assert not report.ok and "consistency.jsonl line 2 is not JSON (truncated?)" in (report.problem or "")
    (out / "consistency.jsonl").write_text(consistency.splitlines(keepends=True)[0])  # a line lost
    report = verify_export(out, pins)
    assert not report.ok and "no consistency proof from checkpoint 3 to 5" in (report.problem or "")
    (out / "consistency.jsonl").unlink()
    assert "consistency.jsonl is missing" in (verify_export(out, pins).problem or "")
    (out / "consistency.jsonl").write_text(consistency)
    assert verify_export(out, pins).ok
    entries = (out / "entries.jsonl").read_bytes()
    (out / "entries.jsonl").write_bytes(entries[:-30])
    report = verify_export(out, pins)
    assert not report.ok and "entries.jsonl line 5 is not JSON" in (report.problem or "")
    (out / "entries.jsonl").write_bytes(entries)
    manifest = json.loads((out / "manifest.json").read_text())
    (out / "manifest.json").write_text(json.dumps({**manifest, "origin": "masp.audit/elsewhere"}))
    assert "not of the log masp.audit/test" in (verify_export(out, pins).problem or "")


# --- the log's key: rotation ------------------------------------------------------------------


async def _traffic(service: BrokerService, stop: Any, count: list[int]) -> None:
    import asyncio

    while not stop.is_set():
        await _batch(service, _entry(EntryKind.DELIVERED, recipient="nhs"))
        count[0] += 1
        await asyncio.sleep(0.01)


async def test_the_log_key_rotates_under_traffic_and_verifies_from_the_original_pin(
        service: BrokerService, tmp_path: Path) -> None:
    import asyncio

    settings = service.settings
    await _referral_log(service)
    original = await _pins(service, quorum=0)
    assert len(original.log) == 1
    stop, count = asyncio.Event(), [0]
    traffic = asyncio.ensure_future(_traffic(service, stop, count))
    try:
        await asyncio.sleep(0.2)
        first = await _log_rotation(settings, timedelta(hours=1), "ops-1")
        await asyncio.sleep(0.2)
        second = await _log_rotation(settings, timedelta(0), "ops-1")  # no overlap at all
        await asyncio.sleep(0.2)
    finally:
        stop.set()
        await traffic
    assert count[0] > 10
    keys = log_keys(settings).all_keys()
    assert [k.id for k in keys] == [first[0], first[1], second[1]] and first[1] == second[0]

    # the original pin alone follows both rotations
    report = await verify_database(service, original)
    assert report.ok, report.problem
    assert [(r.seq, r.old.rsplit("+", 1)[1], r.new.rsplit("+", 1)[1]) for r in report.rotations] == [
        (first[2], first[0], first[1]), (second[2], second[0], second[1])]
    # the newest key first; K0's overlap (an hour) has not ended, so it still co-signs
    assert report.signed_by == (f"{settings.audit_origin}+{second[1]}", f"{settings.audit_origin}+{first[0]}")
    # the newest key alone, pinned since its rotation, vouches for everything before it
    newest = Trust((PinnedLogKey(keys[2].verifier, second[2]),))
    assert (await verify_database(service, newest)).ok
    # what the operator hands out after the rotations: every key, each since its entry
    handed = await _pins(service, quorum=0)
    assert [(p.since) for p in handed.log] == [None, first[2], second[2]]
    assert (await verify_database(service, handed)).ok

    # the checkpoints: from the rotation entry's own, the new key signs; the replaced key
    # co-signs during its overlap (K0: an hour; K1 had none)
    async with service.exchange.sessions() as s:
        notes = dict((await s.execute(text("SELECT size, note FROM audit_checkpoint"))).all())
    k0, k1, k2 = first[0], first[1], second[1]
    for size, note in notes.items():
        ids = set(signature_key_ids(note, settings.audit_origin))
        if size <= first[2]:
            assert ids == {bytes.fromhex(k0)}, size
        elif size <= second[2]:
            assert ids == {bytes.fromhex(k1), bytes.fromhex(k0)}, size
        elif size == second[2] + 1:  # the second rotation's own: K1 still in force as it began
            assert ids == {bytes.fromhex(k2), bytes.fromhex(k1), bytes.fromhex(k0)}, size
        else:  # K1 may co-sign the few checkpoints before the rotation command marks its end
            assert bytes.fromhex(k2) in ids and ids <= {bytes.fromhex(k) for k in (k0, k1, k2)}, size
    newest = set(signature_key_ids(notes[max(notes)], settings.audit_origin))
    assert newest == {bytes.fromhex(k2), bytes.fromhex(k0)}  # traffic went on under the newest key

    out = tmp_path / "export"
    await _export(service, out)
    exported = verify_export(out, original)
    assert exported.ok and len(exported.rotations) == 2 and exported.size == report.size


async def test_rotation_forgeries_are_refused(service: BrokerService, tmp_path: Path) -> None:
    settings = service.settings
    await _referral_log(service)
    original = await _pins(service, quorum=0)
    old_id, new_id, seq, _ = await _log_rotation(settings, timedelta(hours=1), None)
    await _batch(service, _entry(EntryKind.DELIVERED, recipient="nhs"))
    store = log_keys(settings)
    old, new = store.signer(old_id), store.signer(new_id)
    genuine = await _export(service, tmp_path / "genuine")
    assert verify_export(tmp_path / "genuine", original).ok

    # a checkpoint signed only by the retired key after the rotation (its holder appends)
    stolen = await _export(service, tmp_path / "stolen")
    stolen.append({"kind": "disclosed", "at": "2026-12-01T10:00:00Z", "recipient": "advocacy",
                   "actor": {"auth": "system"}})
    stolen.add_checkpoint(len(stolen.entries), [old])
    report = verify_export(stolen.save(tmp_path / "stolen"), original)
    assert not report.ok and report.first_bad_seq == len(stolen.entries) - 1
    assert f"signed only by {settings.audit_origin}+{old_id}" in (report.problem or "")
    assert "not by the key in force" in (report.problem or "")

    # a rotation to the forger's key: named as its own (valid signatures, wrong key), or
    # naming the log's key in force with a signature line that only claims to be by it
    origin, root, until = settings.audit_origin, genuine.root(seq), AT + timedelta(hours=1)
    evil = _attacker(origin)
    own = sign_rotation(origin, seq, root, evil, _attacker(origin), until)
    impostor_text = KeyRotation(origin, seq, root, old.verifier(), evil.verifier(), until).text()
    claimed = base64.b64encode(old.key_id + evil.private_key.sign(impostor_text.encode())).decode()
    impostor = f"{impostor_text}\n\u2014 {origin} {claimed}\n{evil.sign(impostor_text)}\n"
    for statement, why in ((own, "not signed by the key in force"),
                           (impostor, "not signed by the old key it names")):
        forged = await _export(service, tmp_path / "forged")
        forged.entries = forged.entries[:seq]
        forged.append({"kind": "log_key_rotated", "at": "2026-12-01T10:00:00Z", "actor": {"auth": "system"},
                       "log_key_rotation": statement, "reason": "audit log key rotated"})
        forged.checkpoints = [c for c in genuine.checkpoints if c["size"] <= seq]
        forged.add_checkpoint(seq + 1, [evil])
        report = verify_export(forged.save(tmp_path / "forged"), original)
        assert not report.ok and report.first_bad_seq == seq, report.problem
        assert why in (report.problem or ""), report.problem

    # a pinned newer key catches a history forked before its rotation by the old key's holder
    fork = await _export(service, tmp_path / "fork")
    fork.entries = fork.entries[:seq]
    fork.append({"kind": "disclosed", "at": "2026-12-01T10:00:00Z", "actor": {"auth": "system"}})
    fork.append({"kind": "disclosed", "at": "2026-12-01T10:00:00Z", "actor": {"auth": "system"}})
    fork.sign([2, 3, 5, seq + 2], [old])
    both = Trust((original.log[0], PinnedLogKey(new.verifier(), seq)))
    assert verify_export(fork.save(tmp_path / "fork"), original).ok  # the old pin alone cannot tell
    report = verify_export(tmp_path / "fork", both)
    assert not report.ok and f"introduced at entry {seq}" in (report.problem or "")
    assert verify_export(tmp_path / "genuine", both).ok
    assert genuine.sizes()[-1] == seq + 2


async def test_an_interrupted_rotation_completes_and_a_process_without_the_new_key_refuses(
        service: BrokerService) -> None:
    settings = service.settings
    await _referral_log(service)
    original = await _pins(service, quorum=0)
    store = log_keys(settings)
    delivered = _entry(EntryKind.DELIVERED, recipient="nhs")

    # stopped before anything was signed: the pending key signs nothing and is reused
    pending = store.begin_rotation(AT)
    await _batch(service, delivered)
    first = await _log_rotation(settings, timedelta(hours=1), None)
    assert first[1] == pending.id

    # stopped after the entry committed: brokers already co-sign with the new key; the rerun
    # finds the entry and only finishes
    nxt = store.begin_rotation(AT)
    db = await AuditStore.open(settings, append=True)
    try:
        assert db.audit is not None
        seq = await _rotation_entry(db.audit, store.signer(first[1]), store.signer(nxt.id),
                                    AT + timedelta(hours=1), None, lambda: store.start_signing(nxt.id))
    finally:
        await db.close()
    await _batch(service, delivered)
    async with service.exchange.sessions() as s:
        note = (await s.execute(text("SELECT note FROM audit_checkpoint ORDER BY size DESC LIMIT 1"))
                ).scalar_one()
    assert bytes.fromhex(nxt.id) in signature_key_ids(note, settings.audit_origin)
    again = await _log_rotation(settings, timedelta(hours=1), None)
    assert (again[1], again[2]) == (nxt.id, seq)
    async with service.exchange.sessions() as s:
        rotations = (await s.execute(text("SELECT count(*) FROM audit_entry WHERE kind = 'log_key_rotated'"))
                     ).scalar_one()
    assert rotations == 2
    assert (await verify_database(service, original)).ok

    # a process still holding only a replaced key refuses to extend the log, writing nothing
    before = (await verify_database(service, original)).entries
    exchange = service.exchange
    lagging = AuditLog(exchange.sessions, LogSigners.of(store.signer(first[0])), settings.audit_origin,
                       exchange.clock, postgres=exchange.audit.postgres)
    with pytest.raises(ConfigurationError, match="which this process does not hold"):
        async with lagging.transaction() as batch:
            batch.add(delivered)
    after = await verify_database(service, original)
    assert after.ok and after.entries == before


async def test_index_rows_that_differ_from_the_signed_leaves_are_refused(service: BrokerService) -> None:
    """What the console and the IG searches filter on is derived from the leaves: a subject row
    added by a role that may only INSERT (tying a person to a disclosure not about them), or a
    column changed by an owner, must fail verification though every leaf still verifies."""
    await _referral_log(service)
    pins = await _pins(service, quorum=0)
    assert (await verify_database(service, pins)).ok
    async with service.exchange.sessions() as s, s.begin():
        await s.execute(text("INSERT INTO audit_subject (seq, pseudonym) VALUES (1, :p)"), {"p": "ab" * 32})
    report = await verify_database(service, pins)
    assert not report.ok and report.first_bad_seq == 1
    assert report.problem == "entry 1: its subject index rows differ from the signed leaf's subjects"

    async with service.exchange.sessions() as s, s.begin():
        await drop_append_only(s, "audit_subject", "audit_entry")
        await s.execute(text("DELETE FROM audit_subject"))
        # the refusal to advocacy hidden from a search by recipient
        await s.execute(text("UPDATE audit_entry SET recipient = 'nhs' WHERE seq = 2"))
    report = await verify_database(service, pins)
    assert not report.ok and report.first_bad_seq == 2
    assert report.problem == "entry 2: the indexed column recipient differs from the signed leaf"
    async with service.exchange.sessions() as s, s.begin():
        await s.execute(text("UPDATE audit_entry SET recipient = 'advocacy', at = :at WHERE seq = 2"),
                        {"at": AT + timedelta(days=400)})  # and out of a search by time
    report = await verify_database(service, pins)
    assert not report.ok and report.problem == "entry 2: the indexed column at differs from the signed leaf"
