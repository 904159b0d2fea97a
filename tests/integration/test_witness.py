"""Agencies witness the audit log (SQLite and PostgreSQL): cosignatures, quorum, rollback.

No RabbitMQ needed: the broker's HTTP app runs over an in-process transport and the
adapters only witness. Each database is real; a "restored backup" is a real copy of it.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.runtime import AdapterRuntime
from broker import wire
from broker.api.app import create_app
from broker.api.auth import issue_user_token
from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.audit.note import Checkpoint, CosignatureSigner
from broker.audit.proof import TlogProof
from broker.audit.witness import witness_name
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.errors import LogInconsistent, LogRollback
from broker.service import BrokerService, init_state, log_keys
from broker.settings import Settings
from broker.store.audit_export import (
    export_log,
    operator_trust,
    verify_database,
    verify_export,
    witness_verifiers,
)
from broker.store.audit_witness import note_text
from tests.integration.conftest import PG_ADMIN, Env, make_settings

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


async def _append(service: BrokerService, n: int, tag: str = "w") -> None:
    async with service.exchange.audit.transaction() as batch:
        for i in range(n):
            batch.add(lambda seq, i=i: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                                  actor=Actor(user_id=f"{tag}-{i}", auth="system")))


@asynccontextmanager
async def _broker(settings: Settings) -> AsyncIterator[tuple[BrokerService, httpx.AsyncClient]]:
    service = await BrokerService.open(settings)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(service)),
                             base_url="http://masp.test")
    try:
        yield service, http
    finally:
        await http.aclose()
        await service.close()


def _witnesses(settings: Settings, home: Path) -> dict[str, AdapterRuntime]:
    registry = KeyRegistry.from_public_dir(settings.keys_dir)
    return {a: AdapterRuntime(AgencyKeys.load(settings.keys_dir, a), registry, home / a)
            for a in ("police", "probation", "nhs")}


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    s = make_settings(tmp_path, database_url)
    init_state(s, AT.date())
    return s


async def _snapshot(url: str, tmp_path: Path) -> str:
    """A copy of the (closed) database, as a backup would be."""
    if url.startswith("sqlite"):
        source = Path(url.split("///", 1)[1])
        target = tmp_path / "backup.db"
        for suffix in ("", "-wal", "-shm"):
            if Path(f"{source}{suffix}").exists():
                shutil.copy(f"{source}{suffix}", f"{target}{suffix}")
        return f"sqlite+aiosqlite:///{target}"
    name = url.rsplit("/", 1)[1]
    copy = f"masp_backup_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{copy}" TEMPLATE "{name}"')
    finally:
        await admin.close()
    return url.rsplit("/", 1)[0] + "/" + copy


async def _drop(url: str) -> None:
    if url.startswith("postgresql"):
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_quorum_publishes_checkpoints_and_proofs_carry_cosignatures(
        settings: Settings, tmp_path: Path) -> None:
    agencies = _witnesses(settings, tmp_path / "adapters")
    async with _broker(settings) as (service, http):
        ig = {"authorization": "Bearer " + issue_user_token(
            service.exchange.broker, "ig-1", "ig_officer", service.exchange.clock())}
        await _append(service, 2)
        first = await agencies["police"].witness(http)
        assert (first.checkpoint.size, first.previous_size, first.witnesses) == (2, None, 1)
        assert not first.published  # one of the two cosignatures the quorum needs
        second = await agencies["nhs"].witness(http)
        assert second.witnesses == 2 and second.published

        await _append(service, 3)
        newest = (await http.get("/v1/audit/entries/4", headers=ig)).json()["proof"]
        assert newest["tree_size"] == 5 and newest["published"] is False
        # an older entry is proved against the newest *published* checkpoint
        entry = (await http.get("/v1/audit/entries/1", headers=ig)).json()
        assert entry["proof"]["tree_size"] == 2 and entry["proof"]["published"] is True
        assert entry["proof"]["witnesses"] == [witness_name("nhs"), witness_name("police")]
        text = (await http.get("/v1/audit/entries/1/proof", headers=ig)).text
        verifiers = witness_verifiers(service.exchange.registry)
        cp, cosigners = TlogProof.parse(text).verify(service.exchange.audit.signer.verifier(),
                                                     verifiers, quorum=2)
        pins = await operator_trust(service.exchange.sessions, log_keys(settings), verifiers, 2)
        assert cp.size == 2 and len(cosigners) == 2

        again = await agencies["police"].witness(http)  # consistency 2 -> 5 checked
        assert (again.previous_size, again.checkpoint.size, again.published) == (2, 5, False)
        assert (await agencies["probation"].witness(http)).published
        report = await verify_database(service, pins)
        assert report.ok and report.cosignatures == 4 and report.published_size == 5

        out = tmp_path / "export"
        await export_log(service.exchange.sessions, out, settings.audit_origin)
    report = verify_export(out, pins)
    assert report.ok and report.checkpoints == 2 and report.cosignatures == 4
    assert report.published_size == 5 and report.size == 5
    assert report.cosigned_by == (witness_name("police"), witness_name("probation"))
    assert not list(out.glob("*.vkey"))  # the export carries no keys to trust
    exported = {r["size"]: r["note"] for r in map(json.loads, (out / "checkpoints.jsonl").open())}
    assert exported[2] == TlogProof.parse(text).checkpoint  # the cosigned note, as in the proof
    assert [ln.split()[1] for ln in exported[5].split("\n\n")[1].splitlines()] == [
        "masp.audit/test", witness_name("police"), witness_name("probation")]


async def test_rollback_is_detected_by_the_witness_and_offline(settings: Settings, tmp_path: Path,
                                                               database_url: str) -> None:
    police = _witnesses(settings, tmp_path / "adapters")["police"]
    async with _broker(settings) as (service, http):
        await _append(service, 3, "a")
        assert (await police.witness(http)).checkpoint.size == 3
    backup = await _snapshot(database_url, tmp_path)
    try:
        async with _broker(settings) as (service, http):
            await _append(service, 4, "b")
            seen = await police.witness(http)
            assert (seen.previous_size, seen.checkpoint.size) == (3, 7)
        state = police.home / "witness" / "checkpoint"
        witnessed = Checkpoint.parse(note_text(state.read_text()))
        assert witnessed.size == 7

        # the database is "restored" from the backup taken at size 3
        async with _broker(settings.model_copy(update={"database_url": backup})) as (service, http):
            with pytest.raises(LogRollback, match="smaller"):
                await police.witness(http)
            assert Checkpoint.parse(note_text(state.read_text())) == witnessed  # nothing cosigned
            report = await verify_database(service)
            assert report.ok, "on its own the restored log is intact: only a witness can tell"
            report = await verify_database(service, witnessed=[witnessed])
            assert not report.ok and report.first_bad_seq == 3 and "rolled back" in (report.problem or "")

            await _append(service, 5, "c")  # a new history grows past the witnessed size
            with pytest.raises(LogInconsistent) as forked:
                await police.witness(http)
            assert not isinstance(forked.value, LogRollback)
            report = await verify_database(service, witnessed=[witnessed])
            assert not report.ok and report.first_bad_seq == 6
            assert "witnessed earlier" in (report.problem or "")
    finally:
        await _drop(backup)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_cosignatures_are_checked_before_they_are_stored(settings: Settings, tmp_path: Path) -> None:
    keys = {a: AgencyKeys.load(settings.keys_dir, a) for a in ("police", "nhs")}
    async with _broker(settings) as (service, http):
        await _append(service, 2)
        clock = service.exchange.clock
        note = (await http.get("/v1/audit/consistency", headers=_auth(keys["nhs"], clock()))).json()[
            "checkpoint"]
        body = note_text(note)
        police = CosignatureSigner(witness_name("police"), keys["police"].sig.private_key)
        line = police.cosign(body, int(clock().timestamp()))

        async def post(content: str, who: str = "police", **params: int) -> httpx.Response:
            return await http.post("/v1/audit/cosignatures", content=content, params=params,
                                   headers=_auth(keys[who], clock()))

        ig = {"authorization": "Bearer " + issue_user_token(service.exchange.broker, "ig", "ig_officer",
                                                            clock())}
        assert (await http.post("/v1/audit/cosignatures", content=note + line + "\n",
                                headers=ig)).status_code == 403
        forged = Checkpoint.parse(body)
        forged = Checkpoint(forged.origin, forged.size, bytes(32))
        refused = await post(forged.body() + "\n" + police.cosign(forged.body(), 1) + "\n")
        assert refused.status_code == 409 and refused.json()["code"] == "checkpoint-mismatch"
        stranger = CosignatureSigner(witness_name("police"), Ed25519PrivateKey.generate())
        refused = await post(note + stranger.cosign(body, 1) + "\n")
        assert refused.status_code == 400 and refused.json()["code"] == "cosignature-invalid"
        refused = await post(note + line + "\n", who="nhs")  # police's line, posted by nhs
        assert refused.status_code == 400 and refused.headers["content-type"] == "application/problem+json"
        assert (await post(line)).json()["code"] == "invalid-range"  # bare line: which checkpoint?
        assert (await post(line, size=9)).status_code == 404
        future = police.cosign(body, int(clock().timestamp()) + 3600)
        assert (await post(future, size=2)).json()["code"] == "cosignature-invalid"

        stored = await post(line, size=2)
        assert stored.status_code == 200 and stored.json()["duplicate"] is False
        again = await post(note + line + "\n")
        assert again.json()["duplicate"] is True and again.json()["witnesses"] == 1


def _auth(keys: AgencyKeys, now: datetime) -> dict[str, str]:
    return {"authorization": f"Bearer {wire.sign_agency_auth(keys, now)}"}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_checkpoint_endpoint_serves_the_cosigned_note(env: Env) -> None:
    _, jwe = env.adapters["police"].compose("case_referral", {
        "perpetrator_name": {"given": "A", "family": "B"}, "offence_codes": ["PH97003"],
        "cj_status": "charged", "referrer": {"name": "DC X", "role": "DC", "agency": "police",
                                             "phone": "023 8047 9999"}},
        case_id="W-1", purpose="risk_management", subjects=[{"ref": "PNC-W-7", "category": "suspect"}])
    assert (await env.adapters["police"].submit_http(env.http, jwe)).status_code == 202
    ig = {"authorization": "Bearer " + issue_user_token(
        env.service.exchange.broker, "ig-9", "ig_officer", env.service.exchange.clock())}
    wanted = {witness_name("nhs"), witness_name("probation")}
    for _ in range(50):  # acknowledgements still landing make new checkpoints: witnesses catch up
        for agency in ("nhs", "probation"):
            await env.adapters[agency].witness(env.http)
        note = (await env.http.get("/v1/audit/checkpoint", headers=ig)).text
        signers = [line.split(" ")[1] for line in note.split("\n\n", 1)[1].splitlines()]
        if wanted <= set(signers[1:]):
            break
        await asyncio.sleep(0.1)
    assert signers[0] == env.settings.audit_origin
    assert wanted <= set(signers[1:])
