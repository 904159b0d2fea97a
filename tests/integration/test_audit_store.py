"""The audit log in a real database: one sequencer, append-only, verifiable (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.audit.note import Checkpoint, CosignatureSigner
from broker.audit.trust import Trust
from broker.audit.witness import witness_name, witness_verifier
from broker.crypto.keys import AgencyKeys
from broker.service import BrokerService, init_state, log_keys
from broker.store.assertions import UsedAssertions
from broker.store.audit_export import (
    export_log,
    operator_trust,
    verify_database,
    verify_export,
    witness_verifiers,
)
from broker.store.audit_log import AuditLog, read_checkpoints, read_entries
from broker.store.audit_witness import add_cosignature
from broker.store.db import AUDIT_TABLES, make_engine, runtime_grants, sessionmaker
from tests.integration.conftest import make_settings

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
async def service(tmp_path: Path, database_url: str) -> BrokerService:
    settings = make_settings(tmp_path, database_url)
    init_state(settings, AT.date())
    svc = await BrokerService.open(settings)
    yield svc  # type: ignore[misc]
    await svc.close()


async def _append(service: BrokerService, n: int, tag: str) -> None:
    async with service.exchange.audit.transaction() as batch:
        for i in range(n):
            batch.add(lambda seq, i=i: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                                  actor=Actor(user_id=f"{tag}-{i}", auth="system")))


async def test_concurrent_batches_get_contiguous_seqs_and_verify(service: BrokerService) -> None:
    await asyncio.gather(*(_append(service, 3, f"w{w}") for w in range(12)))
    async with service.exchange.sessions() as s:
        rows = await read_entries(s)
        checkpoints = (await s.execute(text("SELECT size FROM audit_checkpoint ORDER BY size"))).all()
    assert [r.seq for r in rows] == list(range(36))
    assert [c[0] for c in checkpoints] == list(range(3, 37, 3))  # one checkpoint per batch
    report = await verify_database(service)
    assert report.ok and report.entries == 36 and report.checkpoints == 12


async def test_a_writer_reads_the_tree_again_only_after_another_writer_appended(
        service: BrokerService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each sequencer keeps the tree it committed; another process's (or a CLI command's)
    append in between makes it read the newest checkpoint's right edge instead."""
    from broker.store import raw

    statements: list[str] = []
    fetch = raw.fetch

    async def counted(session: object, sql: str, *params: object) -> object:
        statements.append(sql)
        return await fetch(session, sql, *params)  # type: ignore[arg-type]

    monkeypatch.setattr(raw, "fetch", counted)
    mine = service.exchange.audit
    other = AuditLog(mine.sessions, mine.signer, mine.origin, mine.clock, postgres=mine.postgres)

    async def append(log: AuditLog, tag: str) -> list[str]:
        statements.clear()
        async with log.transaction() as batch:
            batch.add(lambda seq: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                             actor=Actor(user_id=tag, auth="system")))
        return [s for s in statements if "frontier" in s]

    assert await append(mine, "a0") == []  # an empty log has no frontier to read
    assert await append(mine, "a1") == []  # its own head
    assert len(await append(other, "b0")) == 1  # the other writer has never seen this tree
    assert len(await append(mine, "a2")) == 1  # the other writer appended since
    assert await append(mine, "a3") == []
    assert len(await append(other, "b1")) == 1
    report = await verify_database(service)
    assert report.ok and report.entries == 6 and report.checkpoints == 6


async def test_after_commit_hooks_run_only_for_a_committed_unit_of_work(service: BrokerService) -> None:
    ran: list[str] = []

    async def undone() -> None:
        async with service.exchange.audit.transaction() as batch:
            batch.add(lambda seq: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                             actor=Actor(user_id="r", auth="system")))
            batch.after_commit.append(lambda: ran.append("rolled back"))
            raise RuntimeError("undone")

    with pytest.raises(RuntimeError, match="undone"):
        await undone()
    async with service.exchange.audit.transaction() as batch:
        batch.add(lambda seq: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                         actor=Actor(user_id="c", auth="system")))
        batch.after_commit.append(lambda: ran.append("committed"))
        batch.after_commit.append(lambda: 1 / 0)  # type: ignore[func-returns-value, arg-type]
        batch.after_commit.append(lambda: ran.append("after a failing hook"))
    assert ran == ["committed", "after a failing hook"]
    async with service.exchange.sessions() as s:
        assert [r.seq for r in await read_entries(s)] == [0]  # the rolled-back entry left no seq


async def test_audit_rows_cannot_be_changed_or_deleted(service: BrokerService) -> None:
    await _append(service, 2, "x")
    for stmt in ("UPDATE audit_entry SET kind = 'refused' WHERE seq = 0",
                 "DELETE FROM audit_entry WHERE seq = 1"):
        with pytest.raises(DBAPIError, match="append-only"):
            async with service.exchange.sessions() as s, s.begin():
                await s.execute(text(stmt))
    if service.engine.dialect.name == "postgresql":
        with pytest.raises(DBAPIError, match="append-only"):
            async with service.exchange.sessions() as s, s.begin():
                await s.execute(text("TRUNCATE audit_entry CASCADE"))
        # replication mode does not switch ENABLE ALWAYS triggers off
        async with service.exchange.sessions() as s, s.begin():
            await s.execute(text("SET LOCAL session_replication_role = replica"))
            with pytest.raises(DBAPIError, match="append-only"):
                await s.execute(text("DELETE FROM audit_entry WHERE seq = 1"))
    async with service.exchange.sessions() as s:
        assert len(await read_entries(s)) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_export_tampering_is_named(service: BrokerService, tmp_path: Path) -> None:
    for _ in range(3):
        await _append(service, 2, "e")
    out = tmp_path / "export"
    assert await _export(service, out) == 6
    pins = await _pins(service)
    assert verify_export(out, pins).ok
    lines = (out / "entries.jsonl").read_text().splitlines(keepends=True)

    (out / "entries.jsonl").write_text("".join(lines[:-1]))  # the last entry deleted
    report = verify_export(out, pins)
    assert not report.ok and report.first_bad_seq == 5

    (out / "entries.jsonl").write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))
    report = verify_export(out, pins)
    assert not report.ok and report.first_bad_seq == 1

    forged = lines[4].replace('user_id\\":\\"e-0', 'user_id\\":\\"e-9')
    assert forged != lines[4]
    (out / "entries.jsonl").write_text("".join([*lines[:4], forged, lines[5]]))
    report = verify_export(out, pins)
    assert not report.ok and report.first_bad_seq == 4


async def _pins(service: BrokerService, quorum: int = 0) -> Trust:
    """What a relying party would pin for this broker: its log keys, the agencies as witnesses."""
    return await operator_trust(service.exchange.sessions, log_keys(service.settings),
                                witness_verifiers(service.exchange.registry), quorum)


async def _export(service: BrokerService, out: Path) -> int:
    return await export_log(service.exchange.sessions, out, service.settings.audit_origin)


_ANY_COLUMN = {"audit_entry": "kind", "audit_subject": "pseudonym", "audit_checkpoint": "note",
               "audit_node": "hash", "audit_cosignature": "line"}


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_runtime_role_may_only_insert_and_select_audit_rows(service: BrokerService,
                                                                  database_url: str) -> None:
    await _append(service, 2, "owner")
    role = f"masp_rt_{uuid.uuid4().hex[:12]}"
    async with service.engine.begin() as conn:
        await conn.execute(text(f"CREATE ROLE {role} LOGIN"))
        for stmt in runtime_grants(role):
            await conn.execute(text(stmt))
    engine = make_engine(database_url.replace("//postgres@", f"//{role}@"))
    try:
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT current_user"))).scalar_one() == role
        # the sequencer runs as this role: entries, tree nodes and a signed checkpoint
        audit = service.exchange.audit
        log = AuditLog(sessionmaker(engine), audit.signer, audit.origin, audit.clock, postgres=True)
        async with log.transaction() as batch:
            for i in range(3):
                batch.add(lambda seq, i=i: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                                      actor=Actor(user_id=f"rt-{i}", auth="system")))
        for table in AUDIT_TABLES:
            column = _ANY_COLUMN[table]
            # table and column names come from the constants above, not from input
            for stmt in (f"UPDATE {table} SET {column} = {column}",  # noqa: S608
                         f"DELETE FROM {table}", f"TRUNCATE {table} CASCADE"):  # noqa: S608
                with pytest.raises(DBAPIError, match="permission denied"):
                    async with engine.begin() as conn:
                        await conn.execute(text(stmt))
        # working state stays writable: the single-use assertion store records and prunes as this role
        used = UsedAssertions(sessionmaker(engine), skew=timedelta(minutes=5))
        assert await used.spend("rt-jti", "police", AT - timedelta(hours=1), AT)  # its first insert prunes
        async with engine.connect() as conn:
            assert (await conn.execute(text("SELECT count(*) FROM used_assertion"))).scalar_one() == 0
        report = await verify_database(service)
        assert report.ok and report.entries == 5 and report.checkpoints == 2
    finally:
        await engine.dispose()
        async with service.engine.begin() as conn:
            await conn.execute(text(f"DROP OWNED BY {role}"))
            await conn.execute(text(f"DROP ROLE {role}"))


async def _as_attacker(service: BrokerService, *statements: str) -> None:
    """Someone with the owner's rights switches the append-only triggers off and edits rows."""
    postgres = service.engine.dialect.name == "postgresql"
    async with service.exchange.sessions() as s, s.begin():
        if postgres:
            await s.execute(text("ALTER TABLE audit_entry DISABLE TRIGGER audit_entry_no_change"))
        else:
            await s.execute(text("DROP TRIGGER IF EXISTS audit_entry_no_update"))
            await s.execute(text("DROP TRIGGER IF EXISTS audit_entry_no_delete"))
        for stmt in statements:
            await s.execute(text(stmt))


@pytest.fixture(params=[None, 2], ids=["in-process", "workers"])
def workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int | None:
    """Verification in process, and in worker processes over pages of two entries."""
    if request.param:
        monkeypatch.setattr("broker.store.audit_export._PAGE", 2)
    return request.param  # type: ignore[no-any-return]


async def test_reordered_entries_in_the_database_name_the_first_bad_seq(service: BrokerService,
                                                                        workers: int | None) -> None:
    for _ in range(3):
        await _append(service, 2, "t")
    assert (await verify_database(service, workers=workers)).ok
    await _as_attacker(service, "UPDATE audit_entry SET seq = -1 WHERE seq = 1",
                       "UPDATE audit_entry SET seq = 1 WHERE seq = 2",
                       "UPDATE audit_entry SET seq = 2 WHERE seq = -1")
    report = await verify_database(service, workers=workers)
    assert not report.ok and report.first_bad_seq == 1 and "leaf says seq 2" in (report.problem or "")


async def test_deleted_last_entry_and_changed_byte_in_the_database(service: BrokerService,
                                                                   workers: int | None) -> None:
    for _ in range(3):
        await _append(service, 2, "d")
    await _as_attacker(service, "DELETE FROM audit_entry WHERE seq = 5")
    report = await verify_database(service, workers=workers)
    assert not report.ok and report.first_bad_seq == 5 and "removed" in (report.problem or "")
    postgres = service.engine.dialect.name == "postgresql"
    flip = ("UPDATE audit_entry SET leaf = overlay(leaf placing '9'::bytea from 12 for 1) WHERE seq = 3"
            if postgres else
            "UPDATE audit_entry SET leaf = CAST(substr(leaf, 1, 11) || '9' || substr(leaf, 13) AS BLOB) "
            "WHERE seq = 3")
    await _as_attacker(service, flip)
    report = await verify_database(service, workers=workers)
    assert not report.ok and report.first_bad_seq == 3


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_export_carries_cosignatures_and_consistency_proofs(service: BrokerService,
                                                                  tmp_path: Path) -> None:
    for _ in range(3):
        await _append(service, 2, "c")
    exchange = service.exchange
    now = exchange.clock()
    body = Checkpoint(service.settings.audit_origin, 4,
                      (await _checkpoint_root(service, 4))).body()
    for agency in ("police", "nhs"):
        keys = AgencyKeys.load(service.settings.keys_dir, agency)
        signer = CosignatureSigner(witness_name(agency), keys.sig.private_key)
        line = signer.cosign(body, int(now.timestamp()))
        verifier = witness_verifier(agency, keys.sig.private_key.public_key())
        await add_cosignature(exchange.sessions, agency, verifier, line, 4, now, timedelta(minutes=5))
    out = tmp_path / "export"
    await _export(service, out)
    pins = await _pins(service, quorum=2)
    # the newest checkpoint (6) is not cosigned yet: proven up to 4, the rest an allowed tail
    report = verify_export(out, pins, allow_unsigned_tail=True)
    assert report.ok and report.cosignatures == 2 and report.published_size == 4
    assert (report.size, report.tail) == (4, 2)
    assert report.summary().endswith("2 entries from seq 4 are past it (allowed; the newest checkpoint, "
                                     "size 6, has 0 of the 2 cosignatures required)")
    assert report.cosigned_by == (witness_name("nhs"), witness_name("police"))
    assert verify_export(out, pins, workers=2, allow_unsigned_tail=True) == report
    strict = verify_export(out, pins)
    assert not strict.ok and strict.first_bad_seq == 4
    assert "has 0 of the 2 cosignatures" in (strict.problem or "")
    three = Trust(pins.log, pins.witnesses, 3)
    assert verify_export(out, three, allow_unsigned_tail=True).published_size is None
    pristine = {name: (out / name).read_text() for name in ("checkpoints.jsonl", "consistency.jsonl")}

    def with_last_cosignature_changed(at: int) -> None:
        rows = [json.loads(x) for x in pristine["checkpoints.jsonl"].splitlines()]
        head, b64 = rows[1]["note"].rstrip("\n").rsplit(" ", 1)
        rows[1]["note"] = f"{head} {b64[:at]}{'A' if b64[at] != 'A' else 'B'}{b64[at + 1:]}\n"
        (out / "checkpoints.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    with_last_cosignature_changed(40)  # inside the Ed25519 signature
    report = verify_export(out, pins, allow_unsigned_tail=True)
    assert not report.ok and report.first_bad_seq == 3 and "size 4 does not verify" in (report.problem or "")
    assert verify_export(out, pins, workers=2, allow_unsigned_tail=True) == report
    with_last_cosignature_changed(0)  # the key id: a line by an unknown key is ignored, so it
    report = verify_export(out, pins, allow_unsigned_tail=True)  # no longer counts towards the quorum
    assert report.ok and report.cosignatures == 1 and report.published_size is None

    (out / "checkpoints.jsonl").write_text(pristine["checkpoints.jsonl"])
    proofs = [json.loads(x) for x in pristine["consistency.jsonl"].splitlines()]
    assert [(p["from"], p["to"]) for p in proofs] == [(2, 4), (4, 6)]
    proofs[1]["proof"][0] = base64.b64encode(bytes(32)).decode()
    (out / "consistency.jsonl").write_text("".join(json.dumps(p) + "\n" for p in proofs))
    report = verify_export(out, pins, allow_unsigned_tail=True)
    assert not report.ok and report.first_bad_seq == 5 and "not consistent" in (report.problem or "")


async def _checkpoint_root(service: BrokerService, size: int) -> bytes:
    async with service.exchange.sessions() as s:
        row = next(c for c in await read_checkpoints(s) if c.size == size)
    return row.root_hash


async def test_verification_reads_one_moment_of_a_log_still_being_written(
        service: BrokerService, monkeypatch: pytest.MonkeyPatch) -> None:
    """Entries committed while a verification reads the log (with their own checkpoints) are
    not an unsigned tail: the checkpoints, the rotations and every page come from one snapshot."""
    monkeypatch.setattr("broker.store.audit_export._PAGE", 2)  # many queries, room for a race
    for _ in range(5):
        await _append(service, 2, "s")
    stop = asyncio.Event()

    async def write() -> int:
        done = 0
        while not stop.is_set():
            await _append(service, 2, "w")
            done += 1
            await asyncio.sleep(0)
        return done

    writer = asyncio.ensure_future(write())
    try:
        reports = [await verify_database(service) for _ in range(8)]
    finally:
        stop.set()
        written = await writer
    assert written > 0
    assert all(r.ok and r.tail == 0 and r.size == r.entries for r in reports), [r.problem for r in reports]
    assert reports[-1].entries > reports[0].entries or written < 2


async def test_an_export_as_of_a_size_the_log_never_signed_is_refused_and_writes_nothing(
        service: BrokerService, tmp_path: Path) -> None:
    from broker.errors import NotFound

    for _ in range(2):
        await _append(service, 2, "x")
    for size in (3, 5, -1):  # between checkpoints, past the log, nonsense
        with pytest.raises(NotFound, match="no checkpoint of size"):
            await export_log(service.exchange.sessions, tmp_path / f"out{size}",
                             service.settings.audit_origin, size=size)
        assert not (tmp_path / f"out{size}").exists()
    assert await export_log(service.exchange.sessions, tmp_path / "two", service.settings.audit_origin,
                            size=2) == 2
    assert verify_export(tmp_path / "two", await _pins(service)).ok
