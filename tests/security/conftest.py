"""The HTTP API in process on a real store (a SQLite file per test), without RabbitMQ.

Security tests talk to the app the way a client would (httpx over ASGI) with real keys,
real role tokens and real agency assertions; deliveries stay in the outbox, which is
where "nothing was delivered" is checked. Tests that need delivery itself use the
integration ``env`` fixture on the real RabbitMQ instead.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from fastapi import FastAPI
from sqlalchemy import func, select

from broker import wire
from broker.api.app import create_app
from broker.api.auth import issue_user_token
from broker.audit.entry import AuditEntry
from broker.crypto.keys import AGENCIES, BROKER, AgencyKeys
from broker.demo.run import demo_body
from broker.service import BrokerService, init_state
from broker.settings import Settings
from broker.store.models import AuditRow, DeliveryRow

REPO = Path(__file__).resolve().parents[2]
SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}]


@dataclass
class Api:
    settings: Settings
    service: BrokerService
    http: httpx.AsyncClient
    keys: dict[str, AgencyKeys]
    app: FastAPI

    def person(self, role: str, sub: str = "user-1") -> dict[str, str]:
        token = issue_user_token(self.keys[BROKER], sub, role, self.service.exchange.clock())
        return {"authorization": f"Bearer {token}"}

    def agency(self, agency: str) -> dict[str, str]:
        """A fresh single-use assertion (each request spends one)."""
        token = wire.sign_agency_auth(self.keys[agency], self.service.exchange.clock())
        return {"authorization": f"Bearer {token}"}

    def referral(self, sender: str = "police", masp_type: str = "case_referral",
                 **kw: Any) -> tuple[str, str]:
        """A valid message (a case referral unless told) sealed to the broker: (message id, JWE)."""
        jti = kw.pop("jti", None) or wire.new_id()
        kw.setdefault("purpose", "risk_management")
        message = wire.compose_message(
            self.keys[sender], masp_type, demo_body(masp_type), case_id="C-1",
            subjects=SUBJECTS, now=self.service.exchange.clock(), jti=jti, **kw)
        return jti, wire.seal_submission(message, self.keys[BROKER].enc)

    async def post_message(self, jwe: str | bytes, agency: str = "police",
                           headers: dict[str, str] | None = None) -> httpx.Response:
        body = jwe.encode("ascii") if isinstance(jwe, str) else jwe
        return await self.http.post("/v1/messages", content=body, headers={
            "content-type": "application/jose", **self.agency(agency), **(headers or {})})

    async def deliveries(self) -> int:
        async with self.service.exchange.sessions() as s:
            return int((await s.execute(select(func.count()).select_from(DeliveryRow))).scalar_one())

    async def entries(self, after: int = -1) -> list[AuditEntry]:
        async with self.service.exchange.sessions() as s:
            rows = (await s.execute(select(AuditRow).where(AuditRow.seq > after)  # type: ignore[arg-type]
                                    .order_by(AuditRow.seq))).scalars().all()  # type: ignore[arg-type]
        return [AuditEntry.from_leaf(r.leaf) for r in rows]

    async def head(self) -> int:
        async with self.service.exchange.sessions() as s:
            found = (await s.execute(select(func.max(AuditRow.seq)))).scalar_one()  # type: ignore[arg-type]
        return -1 if found is None else int(found)


def api_settings(tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(state_dir=tmp_path / "state", database_url=f"sqlite+aiosqlite:///{tmp_path / 'masp.db'}",
                    dsa_dir=REPO / "deploy" / "dsa", deployment="test", namespace="unused.",
                    **overrides)


async def open_api(settings: Settings) -> tuple[BrokerService, FastAPI, httpx.AsyncClient]:
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings)
    app = create_app(service)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://masp.test")
    return service, app, http


async def serve_api(tmp_path: Path, **overrides: Any) -> AsyncIterator[Api]:
    """The API in process over ``api_settings(tmp_path, **overrides)``, with every agency's keys."""
    settings = api_settings(tmp_path, **overrides)
    service, app, http = await open_api(settings)
    keys = {a: AgencyKeys.load(settings.keys_dir, a) for a in (*AGENCIES, BROKER)}
    try:
        yield Api(settings, service, http, keys, app)
    finally:
        await http.aclose()
        await service.close()


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    async for served in serve_api(tmp_path):
        yield served


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Api]:
    """One store for a whole module (its tests run on the module's event loop): for tests that
    only compare before and after, so they need not pay for fresh keys and schema each."""
    async for served in serve_api(tmp_path_factory.mktemp("api")):
        yield served
