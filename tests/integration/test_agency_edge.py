"""A hostile partner at the HTTP edge, on SQLite and PostgreSQL: acknowledgements that name
another delivery than their URL, and the single-use assertion table, which must not grow
forever nor record what it refuses.

The broker runs in process without RabbitMQ (no relay, no adapters), so deliveries stay
``queued`` in the outbox until this test acknowledges them itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlmodel import col

from broker import wire
from broker.api.app import create_app
from broker.clock import FrozenClock
from broker.crypto import jose
from broker.crypto.keys import AGENCIES, BROKER, AgencyKeys
from broker.errors import PROBLEM_BASE
from broker.service import BrokerService, init_state
from broker.store.assertions import UsedAssertions
from broker.store.models import AuditRow, CheckpointRow, DeliveryRow, UsedAssertionRow
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
    # every time the API gives carries its UTC offset, SQLite (which drops it) included
    listed = (await api.http.get("/v1/mailbox", headers=api.agency("probation"))).json()["deliveries"]
    assert [d["created_at"][-6:] for d in listed] == ["+00:00"]
    assert all(d["retention_until"] is None or d["retention_until"].endswith("+00:00") for d in listed)
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

    # the same ack again is idempotent; one saying the opposite is a conflict and changes nothing
    resp = await api.http.post(f"/v1/mailbox/{probation.delivery_id}/ack", content=ack,
                               headers=api.agency("probation"))
    assert resp.status_code == 200 and resp.json()["duplicate"] is True
    reversal = wire.sign_ack(api.keys["probation"], {"delivery_id": probation.delivery_id,
                                                     "message_id": probation.message_id},
                             _clock(api)(), status="rejected")
    resp = await api.http.post(f"/v1/mailbox/{probation.delivery_id}/ack", content=reversal,
                               headers=api.agency("probation"))
    assert resp.status_code == 409 and resp.json()["type"] == PROBLEM_BASE + "conflict"
    assert "already acknowledged" in resp.json()["detail"]
    assert await _state(api) == after


# --- the single-use assertion table ---------------------------------------------------


async def _jtis(api: Api) -> set[str]:
    async with api.service.exchange.sessions() as s:
        return set((await s.execute(select(col(UsedAssertionRow.jti)))).scalars())


async def _put(api: Api, expires_at: datetime, n: int = 1) -> list[str]:
    jtis = [wire.new_id() for _ in range(n)]
    async with api.service.exchange.sessions() as s, s.begin():
        s.add_all(UsedAssertionRow(jti=j, agency="police", expires_at=expires_at) for j in jtis)
    return jtis


def _bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


async def test_dead_assertions_are_pruned_and_a_live_one_is_still_refused_twice(api: Api) -> None:
    clock = _clock(api)
    skew = timedelta(seconds=api.settings.max_clock_skew_s)
    dead = await _put(api, clock() - skew - timedelta(seconds=1), n=3)
    # expired, but another process whose clock is behind (within the skew) could still take it
    lagging = await _put(api, clock() - skew + timedelta(seconds=5))
    assert await _jtis(api) == {*dead, *lagging}

    # the first assertion this process records prunes what can no longer be replayed anywhere
    token = wire.sign_agency_auth(api.keys["police"], clock())
    jti = jose.verify(token, lambda kid: api.keys["police"].sig, wire.TYP_AUTH)[1]["jti"]
    assert (await api.http.get("/v1/mailbox", headers=_bearer(token))).status_code == 200
    assert await _jtis(api) == {*lagging, jti}

    replay = await api.http.get("/v1/mailbox", headers=_bearer(token))
    assert replay.status_code == 401 and "already used" in replay.json()["detail"]
    assert await _jtis(api) == {*lagging, jti}

    # once its exp and the skew are past, the live one goes too (it is refused as expired anyway)
    clock.advance(seconds=60 + skew.total_seconds() + 1)
    assert await api.app.state.assertions.prune(clock()) == 2
    assert await _jtis(api) == set()
    replay = await api.http.get("/v1/mailbox", headers=_bearer(token))
    assert replay.status_code == 401 and "expired" in replay.json()["detail"]
    assert await _jtis(api) == set()


async def test_pruning_is_bounded_per_run_and_every_nth_insert(api: Api) -> None:
    clock = _clock(api)
    used = UsedAssertions(api.service.exchange.sessions, skew=timedelta(minutes=5), every=3, batch=2)
    await _put(api, clock() - timedelta(hours=1), n=5)
    assert [await used.prune(clock()) for _ in range(4)] == [2, 2, 1, 0]
    assert await _jtis(api) == set()

    dead = await _put(api, clock() - timedelta(hours=1), n=4)
    live = [wire.new_id() for _ in range(4)]
    expires = clock() + timedelta(minutes=1)
    remaining: list[int] = []
    for jti in live:  # inserts 1 and 4 prune (one batch each); 2 and 3 do not
        assert await used.spend(jti, "police", expires, clock())
        remaining.append(len(await _jtis(api) & set(dead)))
    assert remaining == [2, 2, 2, 0]
    assert not await used.spend(live[0], "police", expires, clock()), "a replay is refused"
    assert await _jtis(api) == set(live)


async def test_refused_assertions_record_nothing(api: Api) -> None:
    clock = _clock(api)
    police = api.keys["police"]
    now = wire.epoch(clock())

    def claims(**change: object) -> dict[str, object]:
        return {"iss": "police", "sub": "police", "aud": BROKER, "jti": wire.new_id(),
                "iat": now, "exp": now + 60, **change}

    honest = wire.sign_agency_auth(police, clock())
    head, body, signature = honest.split(".")
    refused = {
        "expired": jose.sign(claims(iat=now - 120, exp=now - 60), police.sig, wire.TYP_AUTH),
        "another audience": jose.sign(claims(aud="nhs"), police.sig, wire.TYP_AUTH),
        "signed by another agency": jose.sign(claims(), api.keys["nhs"].sig, wire.TYP_AUTH),
        "police's kid, nhs's signature": ".".join([head, body, jose.sign(
            claims(), api.keys["nhs"].sig, wire.TYP_AUTH).split(".")[2]]),
        "signature padded": f"{head}.{body}.{signature}==",
        "jti of 65 characters": jose.sign(claims(jti="x" * 65), police.sig, wire.TYP_AUTH),
    }
    for what, token in refused.items():
        resp = await api.http.get("/v1/mailbox", headers=_bearer(token))
        assert resp.status_code == 401, what
        assert await _jtis(api) == set(), f"{what}: a refused assertion was recorded"
    assert (await api.http.get("/v1/mailbox", headers=_bearer(honest))).status_code == 200
    assert len(await _jtis(api)) == 1
