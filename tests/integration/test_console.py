"""The web console's routes over the demo case, on SQLite and PostgreSQL (HTTP, no browser;
the browser scenarios are in tests/browser)."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import httpx
from fastapi import FastAPI
from sqlalchemy import select
from sqlmodel import col

from broker.api.app import create_app
from broker.audit.entry import AuditEntry
from broker.demo.run import PERPETRATOR_REF
from broker.store.models import AuditRow, OverrideReviewRow
from tests.integration.console_support import POISON, DemoBroker, demo_broker

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "page has no CSRF field"
    return found[1]


async def signed_in(broker: DemoBroker, role: str, sub: str, app: FastAPI | None = None
                    ) -> httpx.AsyncClient:
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app or create_app(broker.service)),
                               base_url="http://masp.test")
    page = await client.get("/ui/sign-in")
    resp = await client.post("/ui/sign-in", data={"csrf": csrf_of(page.text),
                                                  "token": broker.token(role, sub)})
    assert resp.status_code == 303 and resp.headers["location"] == "/ui"
    cookie = resp.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie
    return client


async def audit_kinds(broker: DemoBroker, after: int) -> list[AuditEntry]:
    async with broker.service.exchange.sessions() as s:
        rows = (await s.execute(select(AuditRow).where(col(AuditRow.seq) > after)
                                 .order_by(col(AuditRow.seq)))).scalars().all()
    return [AuditEntry.from_leaf(r.leaf) for r in rows]


async def head(broker: DemoBroker) -> int:
    async with broker.service.exchange.sessions() as s:
        rows = (await s.execute(select(col(AuditRow.seq)).order_by(col(AuditRow.seq).desc()).limit(1))).all()
    return int(rows[0][0])


async def test_console_over_the_demo_case(tmp_path: Path, database_url: str) -> None:
    async with demo_broker(tmp_path, database_url) as broker:
        anon = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(broker.service)),
                                 base_url="http://masp.test")
        assert (await anon.get("/ui/ig/search")).headers["location"] == "/ui/sign-in"
        bad = await anon.post("/ui/sign-in", data={"token": broker.token("ops", "x")})
        assert bad.status_code == 403 and "CSRF" in bad.text  # no token, no sign-in
        await anon.aclose()

        app = create_app(broker.service)
        ig = await signed_in(broker, "ig_officer", "ig-1", app)
        page = await ig.get("/ui/ig/search")
        before = await head(broker)
        found = await ig.post("/ui/ig/search", data={"csrf": csrf_of(page.text), "subject": PERPETRATOR_REF,
                                                     "kind": "disclosed"})
        assert found.status_code == 200
        seqs = [int(s) for s in re.findall(r'href="/ui/ig/entries/(\d+)"', found.text)]
        assert len(seqs) == 18  # the demo's disclosures about the perpetrator
        assert PERPETRATOR_REF not in found.text
        viewed = await audit_kinds(broker, before)
        assert [e.kind.value for e in viewed] == ["audit_viewed"]
        assert PERPETRATOR_REF not in (viewed[0].reason or "")
        evil = await ig.post("/ui/ig/search", data={"csrf": csrf_of(page.text), "subject": "x"},
                             headers={"origin": "http://evil.test"})
        assert evil.status_code == 403 and "cross-origin" in evil.text
        missing = await ig.get("/ui/ig/entries/999999")
        assert missing.status_code == 404 and missing.headers["content-type"].startswith("text/html")
        assert "default-src 'self'" in missing.headers["content-security-policy"]
        nothing = await ig.post("/ui/ig/search", data={"csrf": csrf_of(page.text), "subject": "nobody-9"})
        assert "No entries match" in nothing.text

        entry = await ig.get(f"/ui/ig/entries/{seqs[0]}")
        assert entry.status_code == 200
        assert 'data-testid="proof-state">verified<' in entry.text
        assert "Fields disclosed" in entry.text and "Rules that fired" in entry.text

        # the proof is checked here, not taken on trust: another log key fails it, a quorum
        # no checkpoint has reached leaves it pending
        for update, state in (({"deployment": "elsewhere"}, "failed"), ({"witness_quorum": 5}, "pending")):
            kept = app.state.settings
            app.state.settings = kept.model_copy(update=update)
            try:
                other = await ig.get(f"/ui/ig/entries/{seqs[0]}")
            finally:
                app.state.settings = kept
            assert f'data-testid="proof-state">{state}<' in other.text

        refusals = await ig.get("/ui/ig/refusals")
        assert refusals.status_code == 200 and "tag-deny" in refusals.text

        overrides = await ig.get("/ui/ig/overrides")
        pending = [int(s) for s in re.findall(r'action="/ui/ig/overrides/(\d+)"', overrides.text)]
        assert len(pending) == 1
        forged = await ig.post(f"/ui/ig/overrides/{pending[0]}",
                               data={"csrf": "forged", "verdict": "approve", "reason": "risk_evidenced"})
        assert forged.status_code == 403
        done = await ig.post(f"/ui/ig/overrides/{pending[0]}", data={
            "csrf": csrf_of(overrides.text), "verdict": "approve", "reason": "risk_evidenced"})
        assert done.status_code == 303
        async with broker.service.exchange.sessions() as s:
            row = await s.get(OverrideReviewRow, pending[0])
        assert row is not None and (row.status, row.decided_by) == ("approved", "ig-1")

        dsa = await ig.get("/ui/ig/dsa")
        assert dsa.status_code == 200 and "Clauses of" in dsa.text

        before = await head(broker)
        report = await ig.post("/ui/ig/subject", data={"csrf": csrf_of(page.text), "subject": PERPETRATOR_REF,
                                                       "format": "csv"})
        assert report.status_code == 200 and report.headers["content-type"].startswith("text/csv")
        rows = list(csv.DictReader(io.StringIO(report.text)))
        assert len(rows) == 18 and {r["originating_agency"] for r in rows} >= {"police", "probation"}
        pdf = await ig.post("/ui/ig/subject", data={"csrf": csrf_of(page.text), "subject": PERPETRATOR_REF,
                                                    "format": "pdf"})
        assert pdf.content.startswith(b"%PDF-") and pdf.headers["content-type"] == "application/pdf"
        assert [e.kind.value for e in await audit_kinds(broker, before)] == [
            "audit_viewed", "audit_exported", "audit_viewed", "audit_exported"]

        assert (await ig.get("/ui/ops")).status_code == 403
        dead = await ig.post("/ui/ops/dead-letters/x/replay", data={"csrf": csrf_of(page.text)})
        assert dead.status_code == 403
        await ig.aclose()

        ops = await signed_in(broker, "ops", "op-1")
        assert (await ops.get("/ui/ig/search")).status_code == 403
        queues = await ops.get("/ui/ops")
        assert queues.status_code == 200 and "<svg" in queues.text and "inbox.nhs" in queues.text
        assert (await ops.get("/ui/ops/deliveries?state=acknowledged")).text.count("<code>") >= 18
        assert (await ops.get("/ui/ops/deliveries?state=all")).status_code == 200
        bogus = await ops.get("/ui/ops/deliveries?state=bogus")
        assert bogus.status_code == 422 and "invalid: query.state" in bogus.text
        letters = await ops.get("/ui/ops/dead-letters")
        assert POISON.decode() not in letters.text and "Hutton" not in letters.text
        ids = re.findall(r'action="/ui/ops/dead-letters/([^/"]+)/replay"', letters.text)
        assert len(ids) == 1
        replayed = await ops.post(f"/ui/ops/dead-letters/{ids[0]}/replay",
                                  data={"csrf": csrf_of(letters.text)})
        assert replayed.status_code == 303
        after = await ops.get("/ui/ops/dead-letters?state=replayed")
        assert ids[0] in after.text and "by op-1" in after.text
        await ops.aclose()
