"""Chaos, bounded: a broker killed mid-batch, RabbitMQ restarted mid-run, the database away for a
while, and hostile inputs beside good traffic. Afterwards every message reached each recipient's
application exactly once and the audit log holds each disclosure once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import pytest
from structlog.testing import capture_logs

from adapters.runtime import AdapterRuntime, ingress_message
from broker import wire
from broker.audit.entry import AuditEntry
from broker.crypto import jose
from broker.crypto.keys import AGENCIES, AgencyKeys, KeyRegistry
from broker.demo.run import demo_body
from broker.service import BrokerService, init_state
from broker.store import dead_letters
from broker.store.audit_export import verify_database
from broker.store.models import DeliveryRow
from broker.transport import topology
from tests.integration.conftest import AMQP_URL, PG_ADMIN, REPO, SESSION_TAG, Env, make_settings
from tests.integration.delivery_support import SUBJECTS, audit_entries, entries, eventually, refer
from tests.integration.rabbitmq_node import Node, start_node
from tests.integration.rabbitmq_users import REPLY_QUEUES, AgencyUsers

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
POSTGRES_ONLY = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
RECIPIENTS = ("nhs", "probation")  # of a police case_referral; advocacy is refused (no consent)


def _exactly_once(found: list[AuditEntry], message_ids: set[str]) -> None:
    """One submission, one disclosure per recipient and one acknowledgement per delivery."""
    by_kind = Counter((e.kind.value, e.message_id, e.recipient) for e in found)
    for mid in message_ids:
        assert by_kind[("submitted", mid, None)] == 1
        for r in RECIPIENTS:
            assert by_kind[("disclosed", mid, r)] == 1, (mid, r)
            assert by_kind[("acknowledged", mid, r)] == 1, (mid, r)
    assert sum(n for (kind, _, _), n in by_kind.items() if kind == "disclosed") == 2 * len(message_ids)


class Handovers:
    """What each recipient's application was handed, in order, duplicates included."""

    def __init__(self) -> None:
        self.seen: dict[str, list[str]] = {a: [] for a in AGENCIES}

    def hook(self, agency: str) -> Any:
        async def application(delivery: wire.Delivery) -> None:
            self.seen[agency].append(delivery.message_id)
        return application

    def total(self) -> int:
        return sum(len(v) for v in self.seen.values())


# --- (a) a broker process killed with SIGKILL mid-batch ------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _broker_process(env: dict[str, str], log: Path) -> Any:
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, "-m", "broker.cli", "serve"], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@SQLITE_ONLY
async def test_broker_killed_mid_batch_loses_and_duplicates_nothing(tmp_path: Path, database_url: str
                                                                   ) -> None:
    settings = make_settings(tmp_path, database_url)
    init_state(settings, datetime.now(UTC).date())
    names = topology.Names(settings.namespace)
    proc_env = {**os.environ, "MASP_STATE_DIR": str(settings.state_dir), "MASP_DATABASE_URL": database_url,
                "MASP_NAMESPACE": settings.namespace, "MASP_DSA_DIR": str(settings.dsa_dir),
                "MASP_AMQP_URL": AMQP_URL, "MASP_DEPLOYMENT": "test", "MASP_HTTP_PORT": str(_free_port()),
                "MASP_LOG_LEVEL": "WARNING"}
    connection = await aio_pika.connect_robust(AMQP_URL)
    registry = KeyRegistry.from_public_dir(settings.keys_dir)
    handed = Handovers()
    adapters = [AdapterRuntime(AgencyKeys.load(settings.keys_dir, a), registry, tmp_path / "adapters" / a,
                               names=names, on_delivery=handed.hook(a)) for a in AGENCIES]
    n = 60
    try:
        async with connection.channel() as ch:
            await topology.declare(ch, names, delivery_limit=settings.delivery_limit)
        for rt in adapters:
            await rt.start(connection)
        police = adapters[0]
        assert police.agency == "police"
        sent: set[str] = set()
        async with connection.channel(publisher_confirms=True) as ch:
            ingress = await ch.get_exchange(names.ingress, ensure=False)
            for i in range(n):
                sent.add(jti := wire.new_id())
                _, jwe = police.compose("case_referral", demo_body("case_referral"), case_id=f"C-{i}",
                                        purpose="risk_management", subjects=SUBJECTS, jti=jti)
                # as the broker's own RabbitMQ user, which may submit for the queue's agency
                await ingress.publish(ingress_message(jwe, connection), routing_key="police")

        log = tmp_path / "broker.log"
        with _broker_process(proc_env, log) as first:
            assert await eventually(lambda: _now(handed.total() >= 5), timeout=25), log.read_text()
            first.send_signal(signal.SIGKILL)
            first.wait(timeout=10)
        at_kill = handed.total()
        assert at_kill < len(RECIPIENTS) * n, "the kill came after the batch: nothing was tested"

        with _broker_process(proc_env, log):
            assert await eventually(lambda: _now(all(len(set(handed.seen[r])) == n for r in RECIPIENTS)),
                                    timeout=25), log.read_text()
            service = await BrokerService.open(settings)
            try:
                async def all_acknowledged() -> bool:
                    async with service.exchange.sessions() as s:
                        rows = (await s.execute(DeliveryRow.__table__.select())).all()  # type: ignore[attr-defined]
                    return len(rows) == 2 * n and all(r.state == "acknowledged" for r in rows)

                assert await eventually(all_acknowledged, timeout=20)
                found = await audit_entries(service.exchange)
                report = await verify_database(service)
            finally:
                await service.close()

        for r in RECIPIENTS:  # each application was handed each message exactly once
            assert sorted(handed.seen[r]) == sorted(sent), r
        assert handed.seen["advocacy"] == [] and handed.seen["police"] == []
        _exactly_once(found, sent)
        assert report.ok, report.problem
    finally:
        for rt in adapters:
            await rt.stop()
        await connection.close()
        cleanup = await aio_pika.connect(AMQP_URL)
        async with cleanup, cleanup.channel() as ch:
            await topology.delete(ch, names)


async def _now(value: bool) -> bool:
    return value


# --- (b) RabbitMQ restarted in the middle of a run ------------------------------------------


@pytest.fixture(scope="module")
def rabbit_node() -> Iterator[Node]:
    """A throw-away RabbitMQ node for this module's whole-broker tests: the restart below stops
    it, never the shared node on 5672, so another suite can run beside this one."""
    base = Path(tempfile.mkdtemp(prefix="masp-rmq-chaos-"))
    node = start_node(base / "node", "listeners.tcp.default = 127.0.0.1:{port}\n")
    try:
        yield node
    finally:
        node.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def agency_users(rabbit_node: Node) -> AgencyUsers:
    """The agencies' users on the throw-away node (dropped with it)."""
    names = {a: f"{SESSION_TAG}-{a}" for a in AGENCIES}
    passwords = {a: secrets.token_urlsafe(18) for a in AGENCIES}
    for a in AGENCIES:
        for args in (("add_user", names[a], passwords[a]),
                     ("set_permissions", names[a], f"^({REPLY_QUEUES})$",
                      rf"^(t[0-9a-f]{{6}}[0-9a-f]{{8}}\.masp\.(ingress|acks)|{REPLY_QUEUES})$",
                      rf"^(t[0-9a-f]{{6}}[0-9a-f]{{8}}\.inbox\.{a}|{REPLY_QUEUES})$")):
            done = rabbit_node.ctl(*args)
            assert done.returncode == 0, done.stderr
    return AgencyUsers(SESSION_TAG, names, passwords)


@pytest.fixture
def amqp_url(rabbit_node: Node) -> str:
    return f"amqp://guest:guest@127.0.0.1:{rabbit_node.port}/?reconnect_interval=1"


@pytest.fixture
def rabbitmq_restorer(rabbit_node: Node) -> Iterator[Callable[[str], None]]:
    """Whatever happens in the test, the module's node is running again afterwards."""
    def ctl(command: str) -> None:
        done = rabbit_node.ctl(command)
        assert done.returncode == 0, done.stderr

    yield ctl
    ctl("start_app")
    ctl("await_startup")


@pytest.mark.chaos
@SQLITE_ONLY
async def test_rabbitmq_restart_mid_run_loses_nothing(env: Env,
                                                      rabbitmq_restorer: Callable[[str], None]) -> None:
    handed = Handovers()
    for agency, rt in env.adapters.items():
        rt.on_delivery = handed.hook(agency)
    sent: set[str] = set()

    async def run() -> None:  # a steady stream, before, during and after the restart
        for _ in range(24):
            sent.add(await refer(env))
            await asyncio.sleep(0.1)

    stream = asyncio.create_task(run())
    await asyncio.sleep(0.5)
    await asyncio.to_thread(rabbitmq_restorer, "stop_app")  # the module's own node
    await asyncio.to_thread(rabbitmq_restorer, "start_app")
    await asyncio.to_thread(rabbitmq_restorer, "await_startup")
    await stream

    assert await eventually(lambda: _all_acknowledged(env, 2 * len(sent)), timeout=25)
    for r in RECIPIENTS:
        assert sorted(handed.seen[r]) == sorted(sent), r
    _exactly_once(await entries(env), sent)


# --- (c) the database unavailable for a while ------------------------------------------------


@contextlib.asynccontextmanager
async def _database_down(database_url: str) -> AsyncIterator[None]:
    name = database_url.rsplit("/", 1)[1]
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = $1 AND pid <> pg_backend_pid()", name)
        yield
    finally:
        await admin.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        await admin.close()


async def _all_acknowledged(env: Env, count: int) -> bool:
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(DeliveryRow.__table__.select())).all()  # type: ignore[attr-defined]
    return len(rows) == count and all(r.state == "acknowledged" for r in rows)


@POSTGRES_ONLY
async def test_database_outage_is_ridden_out_with_backoff(env: Env, database_url: str) -> None:
    police = env.adapters["police"]
    jwes = [police.compose("case_referral", demo_body("case_referral"), case_id=f"C-{i}",
                           purpose="risk_management", subjects=SUBJECTS)[1] for i in range(6)]
    with capture_logs() as logs:
        async with _database_down(database_url):
            own = env.amqp["police"]
            async with own.channel(publisher_confirms=True) as ch:
                ingress = await ch.get_exchange(env.service.names.ingress, ensure=False)
                for jwe in jwes:
                    await ingress.publish(ingress_message(jwe, own), routing_key="police")
            await asyncio.sleep(3.5)
        assert await eventually(lambda: _all_acknowledged(env, 2 * len(jwes)), timeout=25)
    # the broker held each message and retried with backoff: none went back to RabbitMQ, where
    # immediate redelivery would have spent its delivery limit in milliseconds
    retried = [e for e in logs if e["event"] == "retrying" and e.get("what") == "ingress"]
    assert retried and max(e["attempt"] for e in retried) >= 3
    assert not [e for e in logs if e["event"] in ("ingress_failed", "retry_budget_spent")]
    found = await entries(env)
    sent = {e.message_id for e in found if e.kind.value == "submitted" and e.message_id}
    assert len(sent) == len(jwes)
    _exactly_once(found, sent)
    async with env.service.exchange.sessions() as s:
        assert await dead_letters.pending_count(s) == 0


# --- (d) malformed, oversized and decompression-bomb inputs beside good traffic ------------


def _zip_bomb(kid: str) -> bytes:
    header = {"alg": "ECDH-ES+A256KW", "enc": "A256GCM", "kid": kid, "cty": "masp+sd-jwt", "zip": "DEF",
              "epk": {"kty": "OKP", "crv": "X25519", "x": jose.b64url_encode(b"\x09" * 32)}}
    bomb = zlib.compress(b"\x00" * (16 * 1024 * 1024), 9)  # 16 MiB of zeros in a few KiB
    parts = [json.dumps(header).encode(), b"k" * 40, b"i" * 12, bomb, b"t" * 16]
    return ".".join(jose.b64url_encode(p) for p in parts).encode()


@SQLITE_ONLY
async def test_hostile_inputs_are_refused_with_a_reason_while_good_traffic_flows(env: Env) -> None:
    police = env.adapters["police"]
    max_bytes = env.service.exchange.max_message_bytes
    broker_kid = str(env.service.exchange.broker.enc.kid)
    good = [police.compose("case_referral", demo_body("case_referral"), case_id=f"C-{i}",
                           purpose="risk_management", subjects=SUBJECTS)[1].encode() for i in range(3)]
    hostile = {"malformed": b"\x00\xffnot-a-jwe", "too-large": b"A" * (max_bytes + 1),
               "decryption-failed": _zip_bomb(broker_kid)}
    order = [("good", good[0]), *hostile.items(), ("good", good[1]), ("good", good[2])]
    replies: dict[str, dict[str, Any]] = {}
    own = env.amqp["police"]
    async with own.channel(publisher_confirms=True) as ch:
        reply_q = await ch.declare_queue(exclusive=True, auto_delete=True)

        async def on_reply(message: aio_pika.abc.AbstractIncomingMessage) -> None:
            replies[message.correlation_id or ""] = json.loads(message.body)
            await message.ack()

        await reply_q.consume(on_reply)
        ingress = await ch.get_exchange(env.service.names.ingress, ensure=False)
        ids = []
        for _, body in order:
            ids.append(str(uuid.uuid4()))
            await ingress.publish(ingress_message(body, own, reply_to=reply_q.name, correlation_id=ids[-1]),
                                  routing_key="police")
        assert await eventually(lambda: _now(len(replies) == len(order)))
    outcome = [(kind, replies[i].get("code", "receipt" if "receipt" in replies[i] else "?"))
               for (kind, _), i in zip(order, ids, strict=True)]
    assert outcome == [("good", "receipt"), ("malformed", "malformed"), ("too-large", "too-large"),
                       ("decryption-failed", "decryption-failed"), ("good", "receipt"), ("good", "receipt")]
    assert "compressed" in replies[ids[3]]["detail"]
    refused = [e for e in await entries(env, "refused") if e.rules and e.rules[0].startswith("ingress.")]
    assert sorted(e.rules[0] for e in refused) == ["ingress.decryption-failed", "ingress.malformed",
                                                   "ingress.too-large"]
    sent = {replies[i]["message_id"] for (kind, _), i in zip(order, ids, strict=True) if kind == "good"}
    assert await eventually(lambda: _now(all(
        {r["message"]["jti"] for r in env.adapters[a].received()} == sent for a in RECIPIENTS)))
    assert await _dead_letter_count(env) == 0
    # and over HTTP the same oversized body is a 413 before anything is read into memory
    resp = await refer_raw(env, hostile["too-large"])
    assert resp == 413


async def _dead_letter_count(env: Env) -> int:
    async with env.service.exchange.sessions() as s:
        return await dead_letters.pending_count(s)


async def refer_raw(env: Env, body: bytes) -> int:
    rt = env.adapters["police"]
    resp = await env.http.post("/v1/messages", content=body, headers={
        "content-type": "application/jose",
        "authorization": f"Bearer {wire.sign_agency_auth(rt.keys, rt.clock())}"})
    return resp.status_code

