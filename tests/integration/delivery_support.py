"""Small helpers shared by the delivery tests (dead letters, states, timers, events, chaos)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from broker.api.auth import issue_user_token
from broker.audit.entry import AuditEntry
from broker.demo.run import demo_body
from broker.exchange import Exchange
from broker.store.models import AuditRow, DeliveryRow
from tests.integration.conftest import Env

SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}]


async def refer(env: Env, sender: str = "police", masp_type: str = "case_referral",
                body: dict[str, Any] | None = None, purpose: str = "risk_management") -> str:
    """Submit one message over HTTP as ``sender``; the message id."""
    rt = env.adapters[sender]
    _, jwe = rt.compose(masp_type, body or demo_body(masp_type), case_id="C-DLV-1", purpose=purpose,
                        subjects=SUBJECTS)
    resp = await rt.submit_http(env.http, jwe)
    assert resp.status_code == 202, resp.text
    return str(resp.json()["message_id"])


def person(env: Env, role: str = "ops", sub: str = "op-1") -> dict[str, str]:
    token = issue_user_token(env.service.exchange.broker, sub, role, env.service.exchange.clock())
    return {"authorization": f"Bearer {token}"}


def agency(env: Env, name: str) -> dict[str, str]:
    from broker import wire

    rt = env.adapters[name]
    return {"authorization": f"Bearer {wire.sign_agency_auth(rt.keys, rt.clock())}"}


async def deliveries(env: Env, message_id: str) -> dict[str, DeliveryRow]:
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(DeliveryRow).where(col(DeliveryRow.message_id) == message_id))
                ).scalars().all()
    return {r.recipient: r for r in rows}


async def entries(env: Env, kind: str | None = None) -> list[AuditEntry]:
    return await audit_entries(env.service.exchange, kind)


async def audit_entries(exchange: Exchange, kind: str | None = None) -> list[AuditEntry]:
    async with exchange.sessions() as s:
        q = select(AuditRow).order_by(col(AuditRow.seq))
        if kind:
            q = q.where(col(AuditRow.kind) == kind)
        rows = (await s.execute(q)).scalars().all()
    return [AuditEntry.from_leaf(r.leaf) for r in rows]


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 20.0, step: float = 0.05) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return True
        await asyncio.sleep(step)
    return await check()


async def states(env: Env, message_id: str) -> dict[str, str]:
    return {r: d.state for r, d in (await deliveries(env, message_id)).items()}
