"""A whole broker on the real RabbitMQ and a real database, isolated per test.

Each test gets its own namespace of exchanges and queues (deleted afterwards), its own
state directory with fresh keys, and its own database: a SQLite file, or a fresh
PostgreSQL database on 127.0.0.1:5432 (dropped afterwards). Nothing here is faked.

The adapters connect as their own RabbitMQ users, as in production: one per agency, made
once per session (``rabbitmq_users.py``) with permissions on this session's namespaces
only, and mapped to their agencies with ``MASP_AMQP_AGENCY_USERS``. The broker and
``Env.connection`` (for tests that play RabbitMQ's other clients) use the default user.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import pytest
from aio_pika.abc import AbstractRobustConnection

from adapters.runtime import AdapterRuntime
from broker.api.app import create_app
from broker.clock import Clock, system_clock
from broker.crypto.keys import AGENCIES, AgencyKeys, KeyRegistry
from broker.service import BrokerService, init_state
from broker.settings import Settings
from broker.transport import topology
from tests.integration.rabbitmq_users import AgencyUsers, create_agency_users, delete_users

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
REPO = Path(__file__).resolve().parents[2]
#: Every namespace this session makes starts with it; the agency users may touch only those.
SESSION_TAG = f"t{uuid.uuid4().hex[:6]}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "chaos: restarts or breaks a real service mid-test (and restores it)")


@dataclass
class Env:
    settings: Settings
    service: BrokerService
    connection: AbstractRobustConnection
    adapters: dict[str, AdapterRuntime]
    registry: KeyRegistry
    http: httpx.AsyncClient
    #: each agency's own connection, as its RabbitMQ user (its adapter consumes on it)
    amqp: dict[str, AbstractRobustConnection]

    @property
    def keys(self) -> dict[str, AgencyKeys]:
        return {a: rt.keys for a, rt in self.adapters.items()}


@pytest.fixture(params=["sqlite", "postgres"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'masp.db'}"
        return
    name = f"masp_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    admin = await asyncpg.connect(PG_ADMIN)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def make_settings(tmp_path: Path, database_url: str) -> Settings:
    return Settings(state_dir=tmp_path / "state", database_url=database_url, amqp_url=AMQP_URL,
                    dsa_dir=REPO / "deploy" / "dsa", namespace=f"{SESSION_TAG}{uuid.uuid4().hex[:8]}.",
                    deployment="test")


@pytest.fixture(scope="session")
def agency_users() -> Iterator[AgencyUsers]:
    """One RabbitMQ user per agency for the whole session (a rabbitmqctl call costs a second)."""
    users = create_agency_users(SESSION_TAG, rf"{SESSION_TAG}[0-9a-f]{{8}}\.")
    try:
        yield users
    finally:
        delete_users(list(users.names.values()))


@pytest.fixture
def broker_clock() -> Clock:
    """The broker's clock; a test module overrides this fixture with a ``FrozenClock``."""
    return system_clock


@pytest.fixture
def amqp_url() -> str:
    """Where the broker and the adapters connect; a test module may override it."""
    return AMQP_URL


def _broker_options(request: pytest.FixtureRequest) -> dict[str, object]:
    """Settings a test module gives its broker by defining a ``broker_options`` fixture (parsed
    values: e.g. ``delivery_modes``); none otherwise. Looked up, not required, so modules that
    import ``env`` from here need not define it."""
    try:
        options: dict[str, object] = request.getfixturevalue("broker_options")
    except pytest.FixtureLookupError:
        return {}
    return options


@pytest.fixture
async def env(tmp_path: Path, database_url: str, broker_clock: Clock, amqp_url: str,
              agency_users: AgencyUsers, request: pytest.FixtureRequest) -> AsyncIterator[Env]:
    settings = make_settings(tmp_path, database_url).model_copy(update={
        "amqp_url": amqp_url, "amqp_agency_users": agency_users.names, **_broker_options(request)})
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings, clock=broker_clock)
    await service.start_workers()
    connection = await aio_pika.connect_robust(amqp_url)
    own = {a: await aio_pika.connect_robust(agency_users.url(a, amqp_url)) for a in AGENCIES}
    registry = KeyRegistry.from_public_dir(settings.keys_dir)
    adapters: dict[str, AdapterRuntime] = {}
    for agency in AGENCIES:
        rt = AdapterRuntime(AgencyKeys.load(settings.keys_dir, agency), registry,
                            tmp_path / "adapters" / agency, names=service.names)
        await rt.start(own[agency])
        adapters[agency] = rt
    app = create_app(service)
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://masp.test")
    try:
        yield Env(settings, service, connection, adapters, registry, http, own)
    finally:
        await http.aclose()
        for rt in adapters.values():
            await rt.stop()
        await service.close()
        for conn in (connection, *own.values()):
            await conn.close()
        # a fresh connection: clean-up must not depend on the state the test left behind
        cleanup = await aio_pika.connect(AMQP_URL)
        async with cleanup, cleanup.channel() as ch:
            await topology.delete(ch, service.names)


@pytest.fixture
async def audit_service(tmp_path: Path, database_url: str) -> AsyncIterator[BrokerService]:
    """A broker service on a fresh database, without queues: for audit log tests."""
    settings = make_settings(tmp_path, database_url)
    init_state(settings, datetime(2026, 12, 1, tzinfo=UTC).date())
    svc = await BrokerService.open(settings)
    try:
        yield svc
    finally:
        await svc.close()
