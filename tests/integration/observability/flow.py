"""Shared steps of the observability tests: submit the demo referral, wait for acknowledgements."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from sqlalchemy import select
from sqlmodel import col

from broker.api.auth import issue_user_token
from broker.demo.run import CASE_ID, PERPETRATOR_REF, VICTIM_REF, demo_body
from broker.store.models import DeliveryRow
from tests.integration.conftest import Env

SUBJECTS = [{"ref": PERPETRATOR_REF, "category": "suspect"}, {"ref": VICTIM_REF, "category": "victim"}]


def compose_referral(env: Env, body: dict[str, Any] | None = None) -> str:
    _, jwe = env.adapters["police"].compose(
        "case_referral", body if body is not None else demo_body("case_referral"), case_id=CASE_ID,
        purpose="risk_management", subjects=SUBJECTS)
    return jwe


async def deliveries(env: Env, message_id: str) -> list[DeliveryRow]:
    async with env.service.exchange.sessions() as session:
        rows = (await session.execute(
            select(DeliveryRow).where(col(DeliveryRow.message_id) == message_id))).scalars().all()
    return list(rows)


async def settled(env: Env, message_ids: list[str], timeout: float = 20.0) -> list[DeliveryRow]:
    """Wait until every delivery of the messages is acknowledged; return them."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        rows = [r for mid in message_ids for r in await deliveries(env, mid)]
        if rows and all(r.state == "acknowledged" for r in rows):
            return rows
        assert loop.time() < deadline, f"not acknowledged: {[(r.recipient, r.state) for r in rows]}"
        await asyncio.sleep(0.05)


def ops_headers(env: Env) -> dict[str, str]:
    token = issue_user_token(env.service.exchange.broker, "ops-1", "ops", env.service.exchange.clock())
    return {"authorization": f"Bearer {token}"}


def ig_headers(env: Env) -> dict[str, str]:
    token = issue_user_token(env.service.exchange.broker, "ig-1", "ig_officer", env.service.exchange.clock())
    return {"authorization": f"Bearer {token}"}


def personal_values() -> list[str]:
    """Every value of the demo referral that says something about a person, and the subject refs.

    Left out: enumeration codes (``ex_partner``) and recent dates, which legitimately
    appear elsewhere (message types, timestamps).
    """
    found: set[str] = set()

    def walk(value: object) -> None:
        if isinstance(value, str):
            found.add(value)
        elif isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)

    walk(demo_body("case_referral"))
    generic = {s for s in found if re.fullmatch(r"[a-z_]+|20\d\d-\d\d-\d\d|\d\d:\d\d:\d\d", s)}
    return sorted((found - generic) | {PERPETRATOR_REF, VICTIM_REF, "4471023K", "Claire", "Hutton",
                                       "Daniel", "Marsh", "Larkspur", "Orchard"})


def leaks(text: str) -> list[str]:
    lowered = text.lower()
    return [v for v in personal_values() if v.lower() in lowered]
