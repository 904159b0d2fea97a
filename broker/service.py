"""Assembles a running broker from settings: keys, DSA bundle (lint-gated), database, audit log, workers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import httpx
from aio_pika.abc import AbstractRobustConnection
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Connection, inspect, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from broker import policy
from broker.audit.note import NoteVerifier, public_key_raw
from broker.audit.witness import WITNESS_PREFIX
from broker.audit.witness_client import StandardWitness, WitnessClient
from broker.clock import Clock, system_clock
from broker.crypto.keys import BROKER, AgencyKeys, KeyRegistry, init_keys
from broker.crypto.log_keys import LogKeyStore, LogSigners
from broker.errors import ConfigurationError
from broker.exchange import Exchange
from broker.metrics import BrokerMetrics, otlp_readers
from broker.ops_state import OpsMonitor
from broker.rate_limit import AgencyRateLimit
from broker.refusals import RefusalLog
from broker.settings import Settings
from broker.store.audit_log import AuditLog
from broker.store.audit_witness import StoredLog
from broker.store.db import create_schema, is_postgres, make_engine, sessionmaker
from broker.transport import connect as amqp
from broker.transport.identity import AmqpIdentities
from broker.transport.topology import Names
from broker.transport.watch import DeliveryWatch
from broker.transport.workers import BrokerWorkers


def settle_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's sight.

    Modules, schemas, the DSA bundle and the key registry live as long as the process; left
    in the collected generations, every full collection rescans them (~110,000 objects),
    which cost ~40 µs per appended audit entry in ``masp bench --suite audit``. Call once a
    long-running process has opened its service.
    """
    gc.collect()
    gc.freeze()


def init_state(settings: Settings, today: date) -> list[str]:
    """Create what a fresh deployment needs under the state dir (idempotent)."""
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    created = init_keys(settings.keys_dir, today)
    if log_keys(settings).create(datetime.now(UTC)) is not None:
        created.append("log")
    pseudonym_secret(settings)
    return created


def pseudonym_secret(settings: Settings) -> bytes:
    if settings.pseudonym_secret:
        return settings.pseudonym_secret.encode()
    path = settings.state_dir / "pseudonym.secret"
    if not path.exists():
        settings.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    return path.read_text().strip().encode()


def log_keys(settings: Settings) -> LogKeyStore:
    """The audit log's own keys (``<keys_dir>/log``), named by its origin."""
    return LogKeyStore(settings.keys_dir, settings.audit_origin)


def audit_verifiers(settings: Settings) -> list[NoteVerifier]:
    """Every key this deployment's log has been signed with (this operator's own copy)."""
    return [k.verifier for k in log_keys(settings).all_keys()]


def standard_witnesses(settings: Settings, registry: KeyRegistry) -> list[StandardWitness]:
    """``MASP_WITNESSES`` as the client submits to them, checked against the key registry.

    A witness named ``masp.witness/<agency>`` is that agency's own witness key (its adapter's
    endpoint): its pinned key must be the agency's registered signing key, and its
    cosignatures are stored under the agency, the same rows its pull mode writes.
    """
    found = []
    agencies = registry.agencies() - {BROKER}
    for item in settings.witnesses:
        verifier = item.verifier
        agency = ""
        if verifier.name.startswith(WITNESS_PREFIX):
            agency = verifier.name[len(WITNESS_PREFIX):]
            if agency not in agencies:
                raise ConfigurationError(f"MASP_WITNESSES: {verifier.name} names no registered agency")
            public = registry.current(agency, "sig").public_key
            if not isinstance(public, Ed25519PublicKey) or (
                    public_key_raw(public) != public_key_raw(verifier.public_key)):
                raise ConfigurationError(f"MASP_WITNESSES: the key pinned for {verifier.name} is not "
                                         f"the registered signing key of {agency}")
        found.append(StandardWitness(item.url, verifier, agency))
    return found


@dataclass
class AuditStore:
    """The audit log alone: what ``masp audit`` and ``masp keys rotate log`` need.

    No agreement, no queues, no agency keys: a proof, an export or a verification needs only
    the database (and, to append, the log's own keys). Read-only use never creates or
    migrates a schema: a database without an audit log is refused as such.
    """

    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    audit: AuditLog | None = None

    @classmethod
    async def open(cls, settings: Settings, *, append: bool = False,
                   clock: Clock = system_clock) -> AuditStore:
        if not append:
            _require_sqlite_file(settings)
        engine = make_engine(settings.db_url)
        try:
            if append:
                await create_schema(engine)
            else:
                await _require_audit_tables(engine, settings)
        except BaseException:
            await engine.dispose()
            raise
        sessions = sessionmaker(engine)
        audit = (AuditLog(sessions, LogSigners(log_keys(settings), now=clock()), settings.audit_origin,
                          clock, postgres=is_postgres(engine)) if append else None)
        return cls(settings, engine, sessions, audit)

    async def close(self) -> None:
        await self.engine.dispose()


def _where(settings: Settings) -> str:
    return "MASP_DATABASE_URL" if settings.database_url else f"{settings.state_dir}/masp.db"


def _require_sqlite_file(settings: Settings) -> None:
    """SQLite creates a missing database file on connect: a read must not leave one behind."""
    url = make_url(settings.db_url)
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:" \
            and not Path(url.database).is_file():
        raise ConfigurationError(f"no audit log in the database ({_where(settings)}: no such file); "
                                 "set MASP_DATABASE_URL or MASP_STATE_DIR to the broker's")


async def _require_audit_tables(engine: AsyncEngine, settings: Settings) -> None:
    def tables(conn: Connection) -> set[str]:
        return set(inspect(conn).get_table_names())

    try:
        async with engine.connect() as conn:
            found = await conn.run_sync(tables)
    except (OSError, SQLAlchemyError) as exc:
        raise ConfigurationError(f"cannot open the database ({type(exc).__name__}); "
                                 "set MASP_DATABASE_URL or MASP_STATE_DIR") from None
    if not {"audit_entry", "audit_checkpoint"} <= found:
        where = (settings.database_url and "MASP_DATABASE_URL") or f"{settings.state_dir}/masp.db"
        raise ConfigurationError(f"no audit log in the database ({where}); set MASP_DATABASE_URL "
                                 "or MASP_STATE_DIR to the broker's")


@dataclass
class BrokerService:
    settings: Settings
    engine: AsyncEngine
    exchange: Exchange
    names: Names
    connection: AbstractRobustConnection | None = None
    workers: BrokerWorkers | None = None
    watch: DeliveryWatch | None = None
    monitor: OpsMonitor | None = None
    #: One per process, shared by POST /v1/messages and the AMQP ingress: one allowance per agency.
    rate_limit: AgencyRateLimit | None = None
    #: ``MASP_WITNESSES``, checked at start-up; ``start_witnessing`` submits to them
    witnesses: list[StandardWitness] = field(default_factory=list)
    _witnessing: asyncio.Task[None] | None = None
    _witness_http: httpx.AsyncClient | None = None

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock = system_clock) -> BrokerService:
        """Everything a broker process needs, or a typed refusal before anything is touched.

        The DSAs come first and through the lint gate: with a lint error anywhere this
        raises `policy.DsaRejected` before a database, queue or file is opened.
        """
        bundle = policy.load_enforced_bundle(settings.dsa_dir, clock().date())
        if not (settings.keys_dir / BROKER / "sig.private.jwk").exists():
            raise ConfigurationError(f"no broker keys under {settings.keys_dir}; run `masp keys init`")
        broker = AgencyKeys.load(settings.keys_dir, BROKER)
        registry = KeyRegistry.from_public_dir(settings.keys_dir)
        witnesses = standard_witnesses(settings, registry)  # before anything is opened
        engine = make_engine(settings.db_url)
        await create_schema(engine)
        sessions = sessionmaker(engine)
        audit = AuditLog(sessions, LogSigners(log_keys(settings), now=clock()), settings.audit_origin, clock,
                         postgres=is_postgres(engine))
        exchange = Exchange(broker=broker, registry=registry, bundle=bundle,
                            sessions=sessions, audit=audit, clock=clock,
                            pseudonym_secret=pseudonym_secret(settings),
                            max_message_bytes=settings.max_message_bytes,
                            metrics=BrokerMetrics(*otlp_readers(settings.otlp_endpoint)),
                            refusals=RefusalLog(timedelta(seconds=settings.refusal_window_s)),
                            options=settings.agency_options)
        limit = AgencyRateLimit(settings.rate_limit) if settings.rate_limit else None
        return cls(settings, engine, exchange, Names(settings.namespace), rate_limit=limit,
                   witnesses=witnesses)

    async def start_workers(self) -> None:
        self.connection = await amqp.connect_robust(self.settings)
        self.workers = BrokerWorkers(self.exchange, self.connection, self.names,
                                     delivery_limit=self.settings.delivery_limit,
                                     identities=AmqpIdentities.from_settings(self.settings),
                                     rate_limit=self.rate_limit,
                                     refusal_rate=self.settings.ingress_refusal_rate)
        await self.workers.start()
        self.watch = DeliveryWatch(self.exchange, self.connection, self.names,
                                   delivery_expiry=timedelta(seconds=self.settings.delivery_expiry_s),
                                   timer_interval_s=self.settings.timer_interval_s)
        await self.watch.start()
        self.monitor = OpsMonitor(self)
        self.monitor.start(self.settings.ops_sample_s)

    def witness_client(self, client: httpx.AsyncClient) -> WitnessClient:
        """Submits this log's checkpoints to ``MASP_WITNESSES`` over ``client``."""
        view = StoredLog(self.exchange.sessions, self.exchange.clock,
                         timedelta(seconds=self.settings.max_clock_skew_s))
        return WitnessClient(self.witnesses, view, client, timeout=self.settings.witness_timeout_s)

    def start_witnessing(self) -> None:
        """Submit new checkpoints to ``MASP_WITNESSES`` every ``MASP_WITNESS_EVERY_S`` (one
        process of a deployment does: ``masp serve``'s, not its extra workers)."""
        if not self.witnesses or self._witnessing is not None:
            return
        self._witness_http = httpx.AsyncClient(timeout=self.settings.witness_timeout_s,
                                               follow_redirects=False)
        self._witnessing = asyncio.create_task(
            self.witness_client(self._witness_http).run(self.settings.witness_every_s),
            name="witness-client")

    async def close(self) -> None:
        if self._witnessing is not None:
            self._witnessing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._witnessing
        if self._witness_http is not None:
            await self._witness_http.aclose()
        if self.monitor is not None:
            await self.monitor.stop()
        if self.watch is not None:
            await self.watch.stop()
        if self.workers is not None:
            await self.workers.stop()
        if self.connection is not None:
            await self.connection.close()
        await self.exchange.refusals.close()  # counted refusals go on record before the store closes
        await self.engine.dispose()
        self.exchange.metrics.shutdown()
