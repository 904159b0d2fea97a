"""Who sent an AMQP submission is the agency RabbitMQ authenticated, and its rate limit applies.

Each agency publishes as its own RabbitMQ user (the ``env`` fixture's session users). The
broker reads the ``user_id`` RabbitMQ validated, refuses a submission without one, one on
another agency's queue and one whose signed ``iss`` is another agency, each audited with
the authenticated agency (or none) as actor; over the shared per-agency limit a submission
is refused and acknowledged, never requeued.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aio_pika
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import func, select

from adapters.runtime import ingress_message
from broker import wire
from broker.api.app import create_app
from broker.audit.entry import AuditEntry
from broker.demo.run import demo_body
from broker.rate_limit import AgencyRateLimit
from broker.store.audit_export import verify_database
from broker.store.audit_log import read_entries
from broker.store.dead_letters import pending_count
from broker.store.models import AuditRow
from tests.integration.conftest import Env

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}]
pytestmark = SQLITE_ONLY


async def _publish(env: Env, connection: AbstractRobustConnection, message: aio_pika.Message,
                   routing_key: str) -> dict[str, Any]:
    """Publish to masp.ingress with a reply queue; the broker's reply."""
    async with connection.channel(publisher_confirms=True, on_return_raises=True) as ch:
        replies = await ch.declare_queue(exclusive=True, auto_delete=True)
        message.reply_to, message.correlation_id = replies.name, wire.new_id()
        ingress = await ch.get_exchange(env.service.names.ingress, ensure=False)
        await ingress.publish(message, routing_key=routing_key, mandatory=True)
        async with replies.iterator(timeout=20) as it:
            async for reply in it:
                await reply.ack()
                body: dict[str, Any] = json.loads(reply.body)
                return body
    raise AssertionError("no reply")  # pragma: no cover


def _referral(env: Env, sender: str = "police") -> str:
    return env.adapters[sender].compose("case_referral", demo_body("case_referral"), case_id="C-ID-1",
                                        purpose="risk_management", subjects=SUBJECTS)[1]


async def _entries(env: Env, after: int) -> list[AuditEntry]:
    async with env.service.exchange.sessions() as s:
        return [AuditEntry.from_leaf(r.leaf) for r in await read_entries(s, after=after)]


async def _head(env: Env) -> int:
    async with env.service.exchange.sessions() as s:
        found = (await s.execute(select(func.max(AuditRow.seq)))).scalar_one()  # type: ignore[arg-type]
    return -1 if found is None else int(found)


async def test_a_submission_is_the_authenticated_agencys(env: Env) -> None:
    head = await _head(env)
    reply = await env.adapters["probation"].submit_amqp(env.amqp["probation"], _referral(env, "probation"))
    assert "audit_seq" in reply, reply
    submitted = [e for e in await _entries(env, head) if e.kind == "submitted"]
    assert [(e.actor.agency, e.actor.auth, e.sender) for e in submitted] == [
        ("probation", "amqp", "probation")]


async def test_who_rabbitmq_did_not_vouch_for_is_refused_and_audited(env: Env) -> None:
    head = await _head(env)
    police, probation = env.amqp["police"], env.amqp["probation"]
    jwe = _referral(env)

    # no user_id: RabbitMQ vouched for nobody
    anonymous = aio_pika.Message(jwe.encode(), content_type="application/jose")
    assert (await _publish(env, police, anonymous, "police"))["code"] == "unauthorized"
    # police's user, with probation's routing key (where topic permissions are not loaded)
    assert (await _publish(env, police, ingress_message(jwe, police), "probation"))["code"] == "forbidden"
    # probation's user, with a message police signed: iss is not the authenticated agency
    refused = await _publish(env, probation, ingress_message(jwe, probation), "probation")
    assert refused["code"] == "malformed" and "authenticated agency" in refused["detail"]

    entries = await _entries(env, head)
    assert [(e.kind, e.rules, e.actor.agency, e.actor.auth) for e in entries] == [
        ("refused", ("ingress.unauthorized",), None, "amqp"),
        ("refused", ("ingress.forbidden",), "police", "amqp"),
        ("refused", ("ingress.malformed",), "probation", "amqp")]
    # and the message itself still goes through from its own sender
    assert "audit_seq" in await env.adapters["police"].submit_amqp(police, jwe)


async def test_the_rate_limit_holds_over_amqp_and_http_together(env: Env) -> None:
    assert env.service.workers is not None
    limit = AgencyRateLimit("3/minute")
    env.service.rate_limit = env.service.workers.rate_limit = limit  # as MASP_RATE_LIMIT=3/minute
    police = env.adapters["police"]
    head = await _head(env)
    for _ in range(3):
        assert "audit_seq" in await police.submit_amqp(env.amqp["police"], _referral(env))
    over = [await police.submit_amqp(env.amqp["police"], _referral(env)) for _ in range(3)]
    assert {r["code"] for r in over} == {"rate-limited"} and all(r["retry_after"] >= 1 for r in over)
    # one allowance per agency for both edges: the AMQP submissions spent HTTP's too
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(env.service)),
                                 base_url="http://masp.test") as http:
        assert (await police.submit_http(http, _referral(env))).status_code == 429
    # probation has its own allowance
    assert "audit_seq" in await env.adapters["probation"].submit_amqp(
        env.amqp["probation"], _referral(env, "probation"))

    # refused over the limit: acknowledged, not requeued, not dead-lettered
    async with env.connection.channel() as ch:
        queue = await ch.declare_queue(env.service.names.ingress_queue("police"), passive=True)
        assert queue.declaration_result.message_count == 0
    async with env.service.exchange.sessions() as s:
        assert await pending_count(s) == 0

    def limited(entries: list[AuditEntry]) -> list[tuple[object, ...]]:
        return [(e.actor.agency, e.actor.auth, e.repeated.count if e.repeated else None)
                for e in entries if e.rules == ("ingress.rate-limited",)]

    # the first of each channel in full; the repeats only once the window closes
    assert limited(await _entries(env, head)) == [("police", "amqp", None), ("police", "agency-jwt", None)]
    await env.service.exchange.refusals.flush(everything=True)
    assert limited(await _entries(env, head))[2:] == [("police", "amqp", 2)]
    assert (await verify_database(env.service)).ok


async def test_a_summary_is_written_when_its_window_closes(env: Env) -> None:
    """The timer writes a window's summary by itself once the window has closed."""
    exchange = env.service.exchange
    exchange.refusals.windows.window = exchange.refusals.windows.window / 600  # 0.1 s
    head = await _head(env)
    police = env.amqp["police"]
    for _ in range(3):
        reply = await _publish(env, police, ingress_message(b"not.a.jwe", police), "police")
        assert reply["code"] == "malformed"
    for _ in range(50):
        entries = await _entries(env, head)
        if len(entries) == 2:
            break
        await asyncio.sleep(0.05)
    assert [(e.rules, e.repeated.count if e.repeated else None) for e in entries] == [
        (("ingress.malformed",), None), (("ingress.malformed",), 2)]
