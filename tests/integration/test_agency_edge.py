"""A hostile partner at the HTTP edge, on SQLite and PostgreSQL: acknowledgements that name
another delivery than their URL.

The broker runs in process without RabbitMQ (no relay, no adapters), so deliveries stay
``queued`` in the outbox until this test acknowledges them itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from broker import wire
from broker.api.app import create_app
from broker.clock import FrozenClock
from broker.crypto.keys import AGENCIES, BROKER, AgencyKeys
from broker.errors import PROBLEM_BASE
from broker.service import BrokerService, init_state
from broker.store.models import AuditRow, CheckpointRow, DeliveryRow
from tests.integration.conftest import make_settings
from tests.security.conftest import Api


@pytest.fixture
async def api(tmp_path: Path, database_url: str) -> AsyncIterator[Api]:
    settings = make_settings(tmp_path, database_url)
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings, clock=FrozenClock(datetime.now(UTC).replace(microsecond=0)))
    app = create_app(service)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://masp.test")
    keys = {a: AgencyKeys.load(settings.keys_dir, a) for a in (*AGENCIES, BROKER)}
    try:
        yield Api(settings, service, http, keys, app)
    finally:
        await http.aclose()
        await service.close()


def _clock(api: Api) -> FrozenClock:
    clock = api.service.exchange.clock
    assert isinstance(clock, FrozenClock)
    return clock


# --- acknowledgements -----------------------------------------------------------------


async def _state(api: Api) -> dict[str, Any]:
    """Everything an acknowledgement could change: the deliveries, the log, its checkpoints."""
    async with api.service.exchange.sessions() as s:
        rows = (await s.execute(select(DeliveryRow).order_by(col(DeliveryRow.delivery_id)))).scalars().all()
        entries = (await s.execute(select(func.count()).select_from(AuditRow))).scalar_one()
        checkpoints = (await s.execute(select(func.count()).select_from(CheckpointRow))).scalar_one()
    return {"deliveries": [(r.delivery_id, r.recipient, r.state, r.acked_at, r.jwe is None) for r in rows],
            "entries": entries, "checkpoints": checkpoints}


async def test_an_ack_for_another_delivery_changes_nothing_then_the_right_one_is_recorded(api: Api) -> None:
    _, jwe = api.referral("police")
    assert (await api.post_message(jwe)).status_code == 202
    async with api.service.exchange.sessions() as s:
        mine = {r.recipient: r for r in (await s.execute(select(DeliveryRow))).scalars()}
    probation, nhs = mine["probation"], mine["nhs"]
    ack = wire.sign_ack(api.keys["probation"], {"delivery_id": probation.delivery_id,
                                                "message_id": probation.message_id}, _clock(api)())
    before = await _state(api)

    # the URL names another delivery (another agency's, or none at all) than the signed ack
    for path_id in (nhs.delivery_id, wire.new_id()):
        resp = await api.http.post(f"/v1/mailbox/{path_id}/ack", content=ack, headers=api.agency("probation"))
        assert resp.status_code == 422, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
        problem = resp.json()
        assert problem["type"] == PROBLEM_BASE + "delivery-mismatch" and problem["status"] == 422
        assert await _state(api) == before, "a refused acknowledgement changed something"

    # an ack of another agency's delivery, matching its URL: not this agency's, so 404 and nothing
    theirs = wire.sign_ack(api.keys["probation"], {"delivery_id": nhs.delivery_id,
                                                   "message_id": nhs.message_id}, _clock(api)())
    resp = await api.http.post(f"/v1/mailbox/{nhs.delivery_id}/ack", content=theirs,
                               headers=api.agency("probation"))
    assert resp.status_code == 404 and resp.json()["type"] == PROBLEM_BASE + "not-found"
    # signed by the delivery's recipient but presented by another agency
    resp = await api.http.post(f"/v1/mailbox/{probation.delivery_id}/ack", content=ack,
                               headers=api.agency("nhs"))
    assert resp.status_code == 403
    assert await _state(api) == before

    resp = await api.http.post(f"/v1/mailbox/{probation.delivery_id}/ack", content=ack,
                               headers=api.agency("probation"))
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"delivery_id": probation.delivery_id, "state": "acknowledged", "duplicate": False}
    after = await _state(api)
    assert after["entries"] == before["entries"] + 1
    changed = [d for d in after["deliveries"] if d not in before["deliveries"]]
    assert [(d[0], d[2], d[4]) for d in changed] == [(probation.delivery_id, "acknowledged", True)]
    kinds = [e.kind.value for e in await api.entries(after=before["entries"] - 1)]
    assert kinds == ["acknowledged"]
