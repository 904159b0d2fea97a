"""A hostile reviewer against verification of the database in place (SQLite and PostgreSQL).

The attacker holds what the broker's runtime role holds on PostgreSQL: INSERT and SELECT on
the audit tables, nothing else (``runtime_grants``; on SQLite, rows added beside the
append-only triggers). Whatever rows it adds (entries, checkpoints, cosignatures, tree nodes)
verification must refuse with a named reason, never accept, crash or wave through; rows that
change nothing verification relies on may be accepted. The offline forgeries are in
``tests/unit/audit/test_verify_redteam.py``.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from typer.testing import CliRunner

from broker.audit.entry import Actor, AuditEntry, EntryKind, leaf_json
from broker.audit.merkle import leaf_hash
from broker.audit.note import Checkpoint, CosignatureSigner, NoteSigner, sign_note
from broker.audit.trust import Trust
from broker.audit.witness import witness_name, witness_verifier
from broker.audit_cli import app
from broker.crypto.keys import AgencyKeys
from broker.keys_cli import _log_rotation
from broker.service import BrokerService, log_keys
from broker.store.audit_export import operator_trust, verify_database, witness_verifiers
from broker.store.audit_witness import add_cosignature
from broker.store.db import make_engine, runtime_grants, sessionmaker

AT = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
ACTOR = Actor(agency="police", auth="agency-jwt")


@pytest.fixture
def service(audit_service: BrokerService) -> BrokerService:
    return audit_service


async def _log(service: BrokerService, batches: int = 3) -> None:
    """Batches of two entries: checkpoints at 2, 4, 6."""
    for b in range(batches):
        async with service.exchange.audit.transaction() as batch:
            for i in range(2):
                batch.add(lambda seq, why=f"batch {b} entry {i}": AuditEntry(
                    seq=seq, kind=EntryKind.DELIVERED, at=AT, actor=ACTOR, sender="police", recipient="nhs",
                    reason=why))


async def _pins(service: BrokerService, quorum: int = 0) -> Trust:
    return await operator_trust(service.exchange.sessions, log_keys(service.settings),
                                witness_verifiers(service.exchange.registry), quorum)


async def _scalar(service: BrokerService, sql: str, **params: Any) -> Any:
    async with service.exchange.sessions() as s:
        return (await s.execute(text(sql), params)).scalar_one()


async def _cosign(service: BrokerService, size: int, agency: str) -> str:
    async with service.exchange.sessions() as s:
        root = (await s.execute(text("SELECT root_hash FROM audit_checkpoint WHERE size = :size"),
                                {"size": size})).scalar_one()
    keys = AgencyKeys.load(service.settings.keys_dir, agency)
    assert isinstance(keys.sig.private_key, Ed25519PrivateKey)
    body = Checkpoint(service.settings.audit_origin, size, bytes(root)).body()
    line = CosignatureSigner(witness_name(agency), keys.sig.private_key).cosign(body, int(AT.timestamp()))
    await add_cosignature(service.exchange.sessions, agency,
                          witness_verifier(agency, keys.sig.private_key.public_key()), line, size,
                          service.exchange.clock(), timedelta(minutes=5))
    return line


async def _insert(service: BrokerService, statement: str, **params: Any) -> None:
    """As the runtime role: on PostgreSQL a role with only the runtime grants, on SQLite a
    connection beside the triggers (which refuse updates and deletes, not inserts)."""
    url = service.settings.db_url
    if not url.startswith("postgresql"):
        async with service.exchange.sessions() as s, s.begin():
            await s.execute(text(statement), params)
        return
    role = f"masp_rt_{uuid.uuid4().hex[:12]}"
    async with service.engine.begin() as conn:
        await conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        for grant in runtime_grants(role):
            await conn.execute(text(grant))
    engine = make_engine(url.replace("//postgres@", f"//{role}@"))
    try:
        async with sessionmaker(engine)() as s, s.begin():
            await s.execute(text(statement), params)
    finally:
        await engine.dispose()
        async with service.engine.begin() as conn:
            await conn.execute(text(f"DROP OWNED BY {role}"))
            await conn.execute(text(f"DROP ROLE {role}"))


_ENTRY = ("INSERT INTO audit_entry (seq, kind, at, recipient, leaf, leaf_hash) "
          "VALUES (:seq, :kind, :at, :recipient, :leaf, :lh)")
_CHECKPOINT = ("INSERT INTO audit_checkpoint (size, root_hash, frontier, note, at) "
               "VALUES (:size, :root, '[]', :note, :at)")
_COSIGNATURE = ("INSERT INTO audit_cosignature (size, witness, agency, timestamp, line, received_at) "
                "VALUES (6, :witness, :agency, :ts, :line, :at)")


async def _entry(service: BrokerService, seq: int, leaf: bytes, kind: str = "delivered") -> None:
    """A row as the sequencer would write it: its index columns agree with its leaf."""
    try:
        doc = json.loads(leaf)
    except ValueError:
        doc = None
    recipient = doc.get("recipient") if isinstance(doc, dict) else None
    await _insert(service, _ENTRY, seq=seq, kind=kind, at=AT, recipient=recipient, leaf=leaf,
                  lh=leaf_hash(leaf))


def _leaf(seq: int, **fields: Any) -> bytes:
    return leaf_json({"seq": seq, "kind": "delivered", "at": "2026-12-01T09:00:00Z",
                      "actor": {"agency": "police", "auth": "agency-jwt"}, "recipient": "advocacy", **fields})


def _refused(report: Any, *why: str) -> None:
    assert not report.ok, "verification accepted rows an INSERT-only role added"
    for part in why:
        assert part in (report.problem or ""), report.problem


# --- entries -----------------------------------------------------------------------------------


async def test_a_rotation_row_whose_leaf_is_not_json_is_refused_not_a_crash(service: BrokerService) -> None:
    """The read-ahead picks rows by the ``kind`` column, which the inserter chooses freely."""
    await _log(service)
    for seq, leaf in ((6, b"\xff not json"), (7, b"[1, 2]")):
        await _entry(service, seq, leaf, kind="log_key_rotated")
    report = await verify_database(service, await _pins(service))
    _refused(report, "entry 6: leaf is not JSON")
    assert report.first_bad_seq == 6


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("workers", [None, 2])
async def test_a_leaf_stored_as_text_is_refused_not_a_crash(service: BrokerService, workers: int | None,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite keeps the type an insert gives a BLOB column (PostgreSQL refuses text for bytea)."""
    monkeypatch.setattr("broker.store.audit_export._PAGE", 2)
    await _log(service)
    leaf = _leaf(6)
    await _insert(service, _ENTRY, seq=6, kind="delivered", at=AT, recipient="advocacy", leaf=leaf.decode(),
                  lh=leaf_hash(leaf))
    report = await verify_database(service, await _pins(service), workers=workers)
    _refused(report, "entry 6: the stored leaf is not bytes")


async def test_entries_outside_the_logs_sequence_are_refused(service: BrokerService) -> None:
    """Rows at a negative seq, or at the column's last value, lie outside every page the
    verifier reads; the broker never writes them, so finding any is finding a forgery."""
    await _log(service)
    pins = await _pins(service)
    await _entry(service, -1, _leaf(-1, reason="disclosed to advocacy without consent"))
    _refused(await verify_database(service, pins), "1 audit entries outside the log's sequence")
    await _entry(service, 2**31 - 1, _leaf(2**31 - 1))
    _refused(await verify_database(service, pins), "2 audit entries outside the log's sequence")


async def test_the_genuine_rotation_statement_copied_below_the_log_is_refused(service: BrokerService) -> None:
    """A copy of the real rotation at seq -1 would lead the read-ahead; it is refused as a
    row outside the log, and the chain never takes a hint for proof."""
    await _log(service, 1)
    _, _, seq, _ = await _log_rotation(service.settings, timedelta(hours=1), None)
    await _log(service, 1)
    pins = await _pins(service)
    assert (await verify_database(service, pins)).ok
    copy = json.loads(bytes(await _scalar(service, "SELECT leaf FROM audit_entry WHERE seq = :seq", seq=seq)))
    await _entry(service, -1, leaf_json({**copy, "seq": -1}), kind="log_key_rotated")
    _refused(await verify_database(service, pins), "outside the log's sequence")


async def test_an_appended_entry_is_an_unsigned_tail(service: BrokerService) -> None:
    await _log(service)
    pins = await _pins(service)
    await _entry(service, 6, _leaf(6))
    report = await verify_database(service, pins)
    _refused(report, "1 entries from seq 6 are past the newest checkpoint (size 6)")
    allowed = await verify_database(service, pins, allow_unsigned_tail=True)
    assert allowed.ok and (allowed.size, allowed.tail) == (6, 1)
    assert "1 entries from seq 6 are past it (allowed)" in allowed.summary()


# --- checkpoints, cosignatures, tree nodes -----------------------------------------------------


async def test_a_checkpoint_row_with_a_malformed_note_is_refused_not_a_crash(service: BrokerService) -> None:
    """Batches of two leave sizes 1, 3 and 5 free: a row there needs no conflict."""
    await _log(service)
    pins = await _pins(service)
    root = bytes(await _scalar(service, "SELECT root_hash FROM audit_checkpoint WHERE size = 4"))
    await _insert(service, _CHECKPOINT, size=3, root=root, note="no newline at the end", at=AT)
    _refused(await verify_database(service, pins), "checkpoint at size 3 does not verify",
             "note must end with a newline")


async def test_a_checkpoint_row_past_the_entries_is_refused_as_such(service: BrokerService) -> None:
    await _log(service)
    pins = await _pins(service)
    body = Checkpoint(service.settings.audit_origin, 11, bytes(32)).body()
    note = sign_note(body, [NoteSigner(service.settings.audit_origin, Ed25519PrivateKey.generate())])
    await _insert(service, _CHECKPOINT, size=11, root=bytes(32), note=note, at=AT)
    report = await verify_database(service, pins)
    _refused(report, "the stored checkpoints need entries or tree nodes the database does not hold")


async def test_a_cosignature_row_copied_from_another_checkpoint_is_refused(service: BrokerService) -> None:
    await _log(service)
    line = await _cosign(service, 4, "police")
    await _cosign(service, 4, "nhs")
    pins = await _pins(service, quorum=1)
    report = await verify_database(service, pins, allow_unsigned_tail=True)
    assert report.ok and report.size == 4 and report.tail == 2
    await _insert(service, _COSIGNATURE, agency="police",
                  witness=witness_name("police"), ts=int(AT.timestamp()), line=line, at=AT)
    _refused(await verify_database(service, pins, allow_unsigned_tail=True),
             "checkpoint at size 6 does not verify",
             f"a signature by the known key {witness_name('police')}+")


async def test_a_cosignature_row_for_a_witness_nobody_pinned_changes_nothing(service: BrokerService) -> None:
    await _log(service)
    await _cosign(service, 6, "police")
    pins = await _pins(service, quorum=2)
    stranger = CosignatureSigner(witness_name("stranger"), Ed25519PrivateKey.generate())
    root = bytes(await _scalar(service, "SELECT root_hash FROM audit_checkpoint WHERE size = 6"))
    line = stranger.cosign(Checkpoint(service.settings.audit_origin, 6, root).body(), int(AT.timestamp()))
    await _insert(service, _COSIGNATURE, agency="stranger",
                  witness=stranger.name, ts=int(AT.timestamp()), line=line, at=AT)
    _refused(await verify_database(service, pins), "has 1 of the 2 cosignatures required",
             f"(by {witness_name('police')})")


async def test_a_tree_node_for_a_subtree_not_yet_complete_changes_nothing(service: BrokerService) -> None:
    """Verification recomputes the tree from the leaves; stored nodes only feed the proofs
    between checkpoints, and a node past the newest checkpoint feeds none of them."""
    await _log(service)
    pins = await _pins(service)
    await _insert(service, "INSERT INTO audit_node (level, idx, hash) VALUES (3, 0, :hash)", hash=bytes(32))
    await _insert(service, "INSERT INTO audit_node (level, idx, hash) VALUES (1, 3, :hash)", hash=bytes(32))
    report = await verify_database(service, pins)
    assert report.ok and report.size == 6, report.problem


# --- through the command --------------------------------------------------------------------------


async def test_the_command_on_a_database_with_inserted_rows_refuses_in_one_line(
        service: BrokerService, tmp_path: Path) -> None:
    await _log(service)
    trust = tmp_path / "pins.txt"
    trust.write_text((await _pins(service)).render())
    env = {"MASP_DATABASE_URL": service.settings.db_url, "MASP_STATE_DIR": str(tmp_path / "elsewhere")}

    def verify() -> tuple[int, str]:
        result = CliRunner().invoke(app, ["verify", "--trust", str(trust)], env=env)
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result.exit_code, result.output

    code, output = await asyncio.to_thread(verify)
    assert code == 0 and "audit log intact: 6 entries" in output, output
    await _entry(service, 6, b"{", kind="log_key_rotated")
    code, output = await asyncio.to_thread(verify)
    assert code == 1 and "NOT intact: first bad seq 6: entry 6: leaf is not JSON" in output, output
    note = "masp.audit/test\n12\n" + "A" * 43 + "=\n\n\u2014 masp.audit/test AAAA\n"
    await _insert(service, _CHECKPOINT, size=12, root=bytes(32), note=note, at=AT)
    code, output = await asyncio.to_thread(verify)
    assert code == 1 and "NOT intact" in output and "database does not hold" in output, output
