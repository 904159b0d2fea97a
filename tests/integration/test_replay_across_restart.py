"""Replays are refused across a broker restart, on the real RabbitMQ and both databases.

A referral is accepted and delivered; the broker process is then replaced by a new one on
the same database (new service, new workers, new HTTP app: nothing held in memory survives).
Resubmitting the same message id with the same SD-JWT — the same JWE bytes, a fresh JWE
around it, or over AMQP — returns the original receipt, byte for byte, and queues nothing;
the same id with other content is refused (409 ``replay``, audited). Each recipient's
adapter hands the message over exactly once.
"""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select

from adapters.runtime import wait_for
from broker import wire
from broker.api.app import create_app
from broker.audit.entry import AuditEntry
from broker.crypto.keys import BROKER
from broker.demo.run import demo_body
from broker.errors import PROBLEM_BASE
from broker.service import BrokerService
from broker.store.models import AuditRow, DeliveryRow
from tests.integration.conftest import Env

SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}]


def _received(env: Env, agency: str, message_id: str) -> int:
    return sum(1 for r in env.adapters[agency].received() if r["message"]["jti"] == message_id)


async def _restart(env: Env) -> None:
    """Stop the broker process and start another on the same database and queues."""
    await env.service.close()
    env.service = await BrokerService.open(env.settings)
    await env.service.start_workers()
    env.http = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(env.service)),
                                 base_url="http://masp.test")


async def _counts(env: Env) -> tuple[int, int]:
    async with env.service.exchange.sessions() as s:
        deliveries = (await s.execute(select(func.count()).select_from(DeliveryRow))).scalar_one()
        head = (await s.execute(select(func.max(AuditRow.seq)))).scalar_one()  # type: ignore[arg-type]
    return int(deliveries), int(head)


async def test_resubmission_after_restart_returns_the_original_receipt_and_delivers_nothing(env: Env) -> None:
    police = env.adapters["police"]
    original_http = env.http
    message, jwe = police.compose("case_referral", demo_body("case_referral"), case_id="C-1",
                                  purpose="risk_management", subjects=SUBJECTS)
    first = await police.submit_http(env.http, jwe)
    assert first.status_code == 202, first.text
    mid = first.json()["message_id"]
    assert await wait_for(lambda: _received(env, "probation", mid) == 1 and _received(env, "nhs", mid) == 1)

    await _restart(env)
    try:
        before = await _counts(env)
        # the very same bytes, and the same SD-JWT sealed afresh: both the same message
        again = await police.submit_http(env.http, jwe)
        resealed = police.registry.current(BROKER, "enc")
        fresh = await police.submit_http(env.http, wire.seal_submission(message, resealed))
        over_amqp = await police.submit_amqp(env.amqp["police"], jwe)
        for resp in (again, fresh):
            assert resp.status_code == 202, resp.text
            assert resp.json()["receipt"] == first.json()["receipt"], "the original receipt, byte for byte"
            assert resp.json() == first.json()
        assert over_amqp["receipt"] == first.json()["receipt"]
        assert await _counts(env) == before, "a duplicate appended to the log or queued a delivery"

        # the same id with other content: refused and audited, nothing queued
        other = demo_body("case_referral")
        other["behaviour_summary"] = "a different account"
        _, forged = police.compose("case_referral", other, case_id="C-1", purpose="risk_management",
                                   subjects=SUBJECTS, jti=mid)
        replay = await police.submit_http(env.http, forged)
        assert replay.status_code == 409, replay.text
        assert replay.json()["type"] == PROBLEM_BASE + "replay"
        deliveries, head = await _counts(env)
        assert deliveries == before[0] and head == before[1] + 1
        async with env.service.exchange.sessions() as s:
            row = await s.get(AuditRow, head)
        assert row is not None
        refusal = AuditEntry.from_leaf(row.leaf)
        assert (refusal.kind, refusal.rules, refusal.message_id) == ("refused", ("ingress.replay",), mid)

        await asyncio.sleep(1.0)  # room for a wrongly queued delivery to arrive
        assert (_received(env, "probation", mid), _received(env, "nhs", mid)) == (1, 1)
        assert _received(env, "advocacy", mid) == 0
    finally:
        await env.http.aclose()
        await env.service.close()  # the fixture closes the process it started (closing is idempotent)
        env.http = original_http
