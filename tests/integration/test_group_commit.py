"""Group commit (Exchange.submit_many, acknowledge_many) on the real stack.

A batch mixing good messages, a duplicate, a replay and garbage gives each its own outcome,
exactly as one-at-a-time processing would, and the audit log stays intact.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import select

from adapters.runtime import wait_for
from broker import wire
from broker.acks import acknowledge_many
from broker.demo.run import demo_body
from broker.errors import MaspError, NotFound, ReplayDetected
from broker.exchange import Receipt
from broker.store.audit_export import verify_database
from broker.store.models import AuditRow, DeliveryRow
from tests.integration.conftest import Env

SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}]


def _referral(env: Env, jti: str | None = None, case_id: str = "C-1") -> str:
    _, jwe = env.adapters["police"].compose("case_referral", demo_body("case_referral"),
                                            case_id=case_id, purpose="risk_management",
                                            subjects=SUBJECTS, jti=jti)
    return jwe


async def test_a_mixed_batch_gives_each_message_its_own_outcome(env: Env) -> None:
    exchange = env.service.exchange
    good = [_referral(env) for _ in range(3)]
    jti = wire.new_id()
    first, replay = _referral(env, jti), _referral(env, jti, case_id="C-2")  # same id, other content
    items: list[tuple[str | bytes, Any, str | None]] = [(t, None, "police") for t in
                                                        [*good, first, good[0], replay, "not-a-jwe"]]
    results = await exchange.submit_many(items, via="amqp")

    receipts = [r for r in results[:4] if isinstance(r, Receipt)]
    assert len(receipts) == 4 and not any(r.duplicate for r in receipts)
    duplicate = results[4]
    assert isinstance(duplicate, Receipt) and duplicate.duplicate
    assert duplicate.audit_seq == receipts[0].audit_seq  # the receipt it was first given
    assert isinstance(results[5], ReplayDetected)
    assert isinstance(results[6], MaspError) and not isinstance(results[6], ReplayDetected)
    # one sequencer hold: the four accepted messages' entries are contiguous
    seqs = sorted(r.audit_seq for r in receipts)
    assert seqs == [seqs[0] + 4 * k for k in range(4)]  # submitted + three decisions each

    async with exchange.sessions() as s:
        kinds = [(r.kind, r.message_id, r.recipient)
                 for r in (await s.execute(select(AuditRow))).scalars()]
    assert sum(1 for k, _, _ in kinds if k == "submitted") == 4
    ingress = [m for k, m, to in kinds if k == "refused" and to is None]  # not a recipient's refusal
    assert sorted(ingress, key=str) == sorted([jti, None], key=str)  # the replay and the garbage
    for r in receipts:
        mid = r.message_id
        assert await wait_for(lambda m=mid: all(  # type: ignore[misc]
            any(x["message"]["jti"] == m for x in env.adapters[a].received())
            for a in ("probation", "nhs")))
    report = await verify_database(env.service)
    assert report.ok, report.problem


async def test_acknowledgements_in_one_batch_each_recorded_once(env: Env) -> None:
    exchange = env.service.exchange
    receipt = await exchange.submit(_referral(env), via="amqp")
    mid = receipt.message_id
    assert await wait_for(lambda: any(x["message"]["jti"] == mid
                                      for x in env.adapters["probation"].received()))

    async def acked() -> bool:
        async with exchange.sessions() as s:
            rows = (await s.execute(select(DeliveryRow).where(DeliveryRow.message_id == mid))).scalars().all()
        return len(rows) == 2 and all(r.state == "acknowledged" for r in rows)

    for _ in range(200):  # the adapters acknowledge over AMQP, through the batching consumer
        if await acked():
            break
        await asyncio.sleep(0.05)
    assert await acked()
    async with exchange.sessions() as s:
        row = (await s.execute(select(DeliveryRow).where(DeliveryRow.message_id == mid,
                                                         DeliveryRow.recipient == "probation"))).scalar_one()
    delivery = {"delivery_id": row.delivery_id, "message_id": mid}
    again = wire.sign_ack(env.keys["probation"], delivery, exchange.clock())
    stranger = wire.sign_ack(env.keys["nhs"], delivery, exchange.clock())  # not nhs's delivery
    results = await acknowledge_many(exchange, [again, again, stranger, "junk"], via="amqp")
    assert results[0] == results[1] == {"delivery_id": row.delivery_id, "state": "acknowledged",
                                        "duplicate": True}
    assert isinstance(results[2], NotFound)
    assert isinstance(results[3], MaspError)
    async with exchange.sessions() as s:
        acks = (await s.execute(select(AuditRow).where(
            AuditRow.kind == "acknowledged", AuditRow.delivery_id == row.delivery_id))).scalars().all()
    assert len(acks) == 1
    assert (await verify_database(env.service)).ok
