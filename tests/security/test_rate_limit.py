"""Per-agency rate limit on ``POST /v1/messages``: 429 with ``Retry-After`` and a problem
document, per agency, nothing processed; audited without personal data, the first refusal in
full and the rest of the window as one summary with a count and digests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from broker.audit.entry import payload_digest
from broker.errors import PROBLEM_BASE
from broker.rate_limit import AgencyRateLimit
from broker.store.audit_export import verify_database
from broker.store.models import SeenMessageRow
from tests.security.conftest import Api, serve_api


@pytest.fixture
async def limited(tmp_path: Path) -> AsyncIterator[Api]:
    async for api in serve_api(tmp_path, rate_limit="3/minute"):
        yield api


async def test_fourth_submission_in_a_minute_is_429_audited_once(limited: Api) -> None:
    api = limited
    for _ in range(3):
        assert (await api.post_message(api.referral("police")[1])).status_code == 202
    delivered = await api.deliveries()
    head = await api.head()

    message_id, jwe = api.referral("police")
    resp = await api.post_message(jwe)
    assert resp.status_code == 429, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    problem = resp.json()
    assert problem["type"] == PROBLEM_BASE + "rate-limited" and problem["status"] == 429
    assert problem["retry_after"] == int(resp.headers["retry-after"])

    # nothing of the refused submission was processed
    assert await api.deliveries() == delivered
    async with api.service.exchange.sessions() as s:
        assert await s.get(SeenMessageRow, message_id) is None

    # audited as an ingress refusal, naming the agency and the limit, nothing about anyone
    entries = await api.entries(after=head)
    assert len(entries) == 1
    refusal = entries[0]
    assert (refusal.kind, refusal.rules, refusal.decision) == ("refused", ("ingress.rate-limited",), "deny")
    assert refusal.actor.agency == "police" and refusal.reason == "Too many submissions"
    assert refusal.subjects == () and refusal.message_id is None and refusal.fields_disclosed == ()

    # a flood is refused, and audited as one more entry per window, not one per request
    for _ in range(3):
        assert (await api.post_message(api.referral("police")[1])).status_code == 429
    assert len(await api.entries(after=head)) == 1
    assert await api.service.exchange.refusals.flush(everything=True) == 1  # the window closes
    summary = (await api.entries(after=head))[1:]
    assert [(e.kind, e.rules, e.actor.agency, e.actor.auth) for e in summary] == [
        ("refused", ("ingress.rate-limited",), "police", "agency-jwt")]
    assert summary[0].repeated is not None and summary[0].repeated.count == 3
    assert summary[0].repeated.digests == (payload_digest(b""),) * 3  # nothing of the body was read
    assert summary[0].message_id is None and summary[0].subjects == ()
    assert (await verify_database(api.service)).ok

    # the limit is per agency: another agency is not held back by police's flood
    assert (await api.post_message(api.referral("probation")[1], agency="probation")).status_code != 429


async def test_rate_limit_is_checked_after_authentication(limited: Api) -> None:
    """An anonymous flood is 401 and does not spend an agency's allowance."""
    api = limited
    _, jwe = api.referral("police")
    for _ in range(5):
        resp = await api.http.post("/v1/messages", content=jwe, headers={"content-type": "application/jose"})
        assert resp.status_code == 401
    assert (await api.post_message(api.referral("police")[1])).status_code == 202


def test_a_bad_limit_is_refused_at_start() -> None:
    with pytest.raises(ValueError, match=r"rate limit|couldn't parse"):
        AgencyRateLimit("plenty")
