"""The broker pushes checkpoints to an agency's witness with C2SP tlog-witness, over real HTTP.

The police adapter's endpoint (``adapters/endpoint.py``) is served by uvicorn on 127.0.0.1
at a free port; the broker (SQLite and PostgreSQL) submits to it with ``WitnessClient``, as
``masp serve`` does every ``MASP_WITNESS_EVERY_S``. Hostile brokers (the same log key, another
database) present a fork and a smaller log. No RabbitMQ needed: only the audit log moves.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI

from adapters.endpoint import create_endpoint
from adapters.formats import native_format
from adapters.host import AgencyAdapter
from adapters.runtime import AdapterRuntime
from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.audit.note import Checkpoint, CosignatureSigner, note_signatures
from broker.audit.tlog_witness import AddCheckpoint, origin_hash
from broker.audit.witness import open_checkpoint, witness_verifier
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.errors import ConfigurationError
from broker.service import BrokerService, audit_verifiers, init_state
from broker.settings import Settings, WitnessEndpoint
from broker.store.audit_export import verify_database
from broker.store.audit_tree import consistency_proof
from broker.store.audit_witness import checkpoint_at, cosignatures, latest_checkpoint
from tests.integration.conftest import make_settings

AT = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
POLICE = "masp.witness/police"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    s = make_settings(tmp_path, database_url)
    init_state(s, AT.date())
    return s


async def _append(service: BrokerService, n: int, tag: str = "t") -> int:
    """``n`` entries in one unit of work (one checkpoint); the new size."""
    async with service.exchange.audit.transaction() as batch:
        for i in range(n):
            batch.add(lambda seq, i=i: AuditEntry(seq=seq, kind=EntryKind.AUDIT_VIEWED, at=AT,
                                                  actor=Actor(user_id=f"{tag}-{i}", auth="system")))
    async with service.exchange.sessions() as session:
        row = await latest_checkpoint(session)
    assert row is not None
    return row.size


@asynccontextmanager
async def _served(app: FastAPI) -> AsyncIterator[str]:
    """``app`` on 127.0.0.1 at a free port, for as long as the block runs."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False,
                                           log_config=None))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        for _ in range(200):
            if server.started or task.done():
                break
            await asyncio.sleep(0.025)
        assert server.started, "the witness endpoint did not start"
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)
        sock.close()


@asynccontextmanager
async def _police_witness(settings: Settings, home: Path) -> AsyncIterator[tuple[AdapterRuntime, str]]:
    """The police adapter's endpoint, with its witness, served over HTTP."""
    registry = KeyRegistry.from_public_dir(settings.keys_dir)
    runtime = AdapterRuntime(AgencyKeys.load(settings.keys_dir, "police"), registry, home)

    async def no_submissions(jwe: str) -> dict[str, object]:  # pragma: no cover - not used here
        raise AssertionError("this test submits no records")

    adapter = AgencyAdapter(runtime, native_format("police"), no_submissions,
                            inbox=home / "inbox", outbox=home / "outbox")
    async with _served(create_endpoint(adapter, witness=runtime.tlog_witness())) as url:
        yield runtime, url


@asynccontextmanager
async def _broker(settings: Settings, url: str, vkey: str, database_url: str | None = None
                  ) -> AsyncIterator[BrokerService]:
    pushing = settings.model_copy(update={
        "witnesses": [WitnessEndpoint(url=url, vkey=vkey)], "witness_every_s": 0.05,
        **({"database_url": database_url} if database_url else {})})
    service = await BrokerService.open(pushing)
    try:
        yield service
    finally:
        await service.close()


async def _cosignatures(service: BrokerService, size: int) -> list[tuple[str, str, str]]:
    async with service.exchange.sessions() as session:
        return [(r.witness, r.agency, r.line) for r in await cosignatures(session, size)]


async def _post(http: httpx.AsyncClient, url: str, body: bytes) -> httpx.Response:
    return await http.post(url + "/add-checkpoint", content=body)


async def test_the_broker_pushes_its_checkpoints_to_the_police_witness(settings: Settings,
                                                                      tmp_path: Path) -> None:
    async with _police_witness(settings, tmp_path / "adapters" / "police") as (police, url), \
            httpx.AsyncClient(timeout=5) as http:
        vkey = police.tlog_witness().signer.vkey
        async with _broker(settings, url, vkey) as service:
            client = service.witness_client(http)
            verifier = witness_verifier("police", police.keys.sig.private_key.public_key())
            log_keys = audit_verifiers(settings)

            size = await _append(service, 3, "a")
            (first,) = await client.round()
            assert (first.code, first.size, first.old_size) == ("cosigned", 3, 0)
            ((witness, agency, line),) = await _cosignatures(service, 3)
            assert (witness, agency) == (POLICE, "police")  # the same row its pull mode writes
            async with service.exchange.sessions() as session:
                row = await checkpoint_at(session, 3)
            assert row is not None
            verifier.verify_cosignature(note_signatures(row.note)[0], line)
            assert (await verify_database(service)).cosignatures == 1

            # monitors read what the witness cosigned, with the log's signature and its own
            monitored = await http.get(f"{url}/{origin_hash(settings.audit_origin)}/checkpoint")
            assert monitored.status_code == 200
            cp, cosigners = open_checkpoint(monitored.text, log_keys, [verifier])
            assert (cp.size, cosigners) == (3, [POLICE])
            assert (await http.get(f"{url}/{'0' * 64}/checkpoint")).status_code == 404

            # more traffic: a consistency proof from 3
            size = await _append(service, 4, "b")
            (second,) = await client.round()
            assert (second.code, second.size, second.old_size) == ("cosigned", 7, 3)
            assert (await client.round())[0].code == "up-to-date"
            state = police.home / "witness" / "checkpoint"
            assert Checkpoint.parse(note_signatures(state.read_text())[0]).size == 7

            # the witness is ahead of what the broker stored: another client pushed 9 to it
            size = await _append(service, 2, "c")
            async with service.exchange.sessions() as session:
                nine = await checkpoint_at(session, size)
                hashes = await consistency_proof(session, 7, size)
            assert nine is not None
            pushed = await _post(http, url, AddCheckpoint.of(7, hashes, nine.note).encode())
            assert pushed.status_code == 200 and pushed.text.startswith(f"\u2014 {POLICE} ")
            size = await _append(service, 2, "d")
            (third,) = await client.round()  # old 7 -> 409 "9" -> from 9
            assert (third.code, third.size, third.old_size) == ("cosigned", 11, 9)

            # ... and behind it: its record is restored from a backup of the size-7 one
            async with service.exchange.sessions() as session:
                seven = await checkpoint_at(session, 7)
            assert seven is not None
            state.write_text(seven.note)
            size = await _append(service, 1, "e")
            (fourth,) = await client.round()  # old 11 -> 409 "7" -> from 7
            assert (fourth.code, fourth.size, fourth.old_size) == ("cosigned", 12, 7)

            # on the wire: the spec's 409, 400 and the bounded body
            async with service.exchange.sessions() as session:
                newest = await latest_checkpoint(session)
            assert newest is not None
            conflict = await _post(http, url, AddCheckpoint.of(0, [], newest.note).encode())
            assert (conflict.status_code, conflict.text) == (409, "12\n")
            assert conflict.headers["content-type"] == "text/x.tlog.size"
            malformed = await _post(http, url, b"old 00\n\n" + newest.note.encode())
            assert malformed.status_code == 400
            assert malformed.headers["content-type"].startswith("text/plain")
            assert (await _post(http, url, b"x" * 300_000)).status_code == 413

            # masp serve's background task: a new checkpoint is cosigned without being asked
            size = await _append(service, 2, "f")
            service.start_witnessing()
            for _ in range(200):
                if await _cosignatures(service, size):
                    break
                await asyncio.sleep(0.025)
            assert [w for w, _, _ in await _cosignatures(service, size)] == [POLICE]
            report = await verify_database(service)
            assert report.ok and report.checkpoints >= 6


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_hostile_brokers_get_no_cosignature(settings: Settings, tmp_path: Path) -> None:
    """Brokers with the real log key but another database: a fork of the same size, a fork
    that grew past the witnessed size, and a smaller (rolled back) log."""
    async with _police_witness(settings, tmp_path / "adapters" / "police") as (police, url), \
            httpx.AsyncClient(timeout=5) as http:
        vkey = police.tlog_witness().signer.vkey
        async with _broker(settings, url, vkey) as honest:
            await _append(honest, 6, "honest")
            assert (await honest.witness_client(http).round())[0].code == "cosigned"
        state = police.home / "witness" / "checkpoint"
        witnessed = state.read_text()

        async def hostile(name: str, *batches: int) -> tuple[str, int | None, list[object]]:
            async with _broker(settings, url, vkey, f"sqlite+aiosqlite:///{tmp_path / name}.db") as log:
                for n in batches:
                    await _append(log, n, name)
                (outcome,) = await log.witness_client(http).round()
                async with log.exchange.sessions() as session:
                    stored = [r for size in range(sum(batches) + 1)
                              for r in await cosignatures(session, size)]
            return outcome.code, outcome.status, stored

        assert await hostile("same-size-fork", 6) == ("refused-inconsistent", 422, [])  # 409, then 422
        assert await hostile("longer-fork", 6, 3) == ("refused-inconsistent", 422, [])  # proof 6 -> 9 fails
        assert await hostile("unrelated-sizes", 8) == ("witness-unknown-size", None, [])  # never issued 6
        assert await hostile("rolled-back", 4) == ("witness-ahead", None, [])  # the witness saw 6
        assert state.read_text() == witnessed  # nothing of theirs was recorded

        async with _broker(settings, url, vkey) as honest:  # the real log carries on
            await _append(honest, 1, "honest-2")
            (outcome,) = await honest.witness_client(http).round()
            assert (outcome.code, outcome.size, outcome.old_size) == ("cosigned", 7, 6)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_pinned_agency_witness_key_must_be_the_agencys(settings: Settings) -> None:
    nhs = AgencyKeys.load(settings.keys_dir, "nhs").sig.private_key
    wrong = CosignatureSigner(POLICE, nhs).vkey  # police's witness name, nhs's key
    with pytest.raises(ConfigurationError, match="not the registered signing key"):
        async with _broker(settings, "http://127.0.0.1:9", wrong):
            pass
    unknown = CosignatureSigner("masp.witness/nobody", nhs).vkey
    with pytest.raises(ConfigurationError, match="names no registered agency"):
        async with _broker(settings, "http://127.0.0.1:9", unknown):
            pass
