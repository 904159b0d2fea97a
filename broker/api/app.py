"""The HTTP API (agencies' part: docs/spec/; the rest: docs/architecture.md), on FastAPI."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Query, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import col
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from broker import policy
from broker.acks import acknowledge
from broker.api import audit_routes, delivery_routes, ig_routes, ops_health, ops_routes, problems
from broker.api.auth import Principal, authenticate, require_agency, require_role
from broker.api.delivery_routes import DeliveryState
from broker.api.params import MAX_INT64
from broker.api.problems import AUTHENTICATED, declare
from broker.audit.entry import AuditEntry, pseudonym
from broker.errors import NotFound, PayloadTooLarge, RateLimited
from broker.service import BrokerService
from broker.store.assertions import UsedAssertions
from broker.store.audit_queries import EntryFilter
from broker.store.audit_witness import cosigned_note
from broker.store.deliveries import iso
from broker.store.models import AuditRow, DeliveryRow
from broker.ui import console

Auth = Annotated[Principal, Depends(authenticate)]


def create_app(service: BrokerService) -> FastAPI:
    app = FastAPI(title="MASP Exchange", version="1.0.0",
                  description="Secure inter-agency referral and information-sharing broker. "
                              "Errors are RFC 9457 problem documents.")
    app.state.service = service
    app.state.exchange = service.exchange
    app.state.settings = service.settings
    problems.install(app)
    exchange = service.exchange
    app.state.assertions = UsedAssertions(
        exchange.sessions, skew=timedelta(seconds=service.settings.max_clock_skew_s))

    limit = service.rate_limit  # shared with the AMQP ingress of this process
    ops_health.install(app)  # /healthz, /readyz, /metrics, overdue acks; a server span per request

    @app.get("/.well-known/jwks.json", tags=["keys"])
    async def jwks() -> dict[str, Any]:
        """The broker's own keys, and nothing else: what receipts, delivery tokens and notices
        are verified with (docs/spec/keys.md). Agencies' keys are at ``/v1/agency-keys``."""
        return exchange.registry.jwks(broker=True)

    @app.get("/v1/agency-keys", tags=["keys"])
    async def agency_keys() -> dict[str, Any]:
        """Every agency's public keys (JWKS), each marked with its agency in ``masp_agency``.
        Never the broker's: a verifier of broker-signed objects cannot pick one up here."""
        return exchange.registry.jwks(broker=False)

    @app.post("/v1/messages", status_code=202, tags=["agency"], openapi_extra=problems.jose_body(
        "The submission: a compact JWE (ECDH-ES+A256KW, A256GCM, cty masp+sd-jwt) to the broker's "
        "current encryption key, whose plaintext is the agency's SD-JWT (docs/spec/submission.md)."),
              responses={
        202: {"description": "the signed receipt (JSON, or the bare JWS with Accept: application/jose)",
              "content": {"application/jose": {"schema": {"type": "string"}}}},
        400: {"description": "malformed, undecryptable or expired"},
        401: {"description": "bad credentials or signature"},
        403: {"description": "not allowed"}, 409: {"description": "message id reused"},
        413: {"description": "too large"}, 422: {"description": "schema invalid"},
        429: {"description": "this agency's rate limit is exceeded; see Retry-After"}})
    async def post_message(request: Request, who: Auth) -> Response:
        agency = require_agency(who)
        if limit is not None:
            try:
                limit.check(agency)
            except RateLimited as exc:  # audited, repeats summarised per window; body never read
                await exchange.refuse_unread(exc, via="http", agency=agency, received=b"")
                raise
        body = await _read_bounded(request, exchange.max_message_bytes)
        if isinstance(body, PayloadTooLarge):
            await exchange.refuse_unread(body, via="http", agency=agency, received=b"")
            raise body
        receipt = await exchange.submit(bytes(body), via="http", agency=agency)
        if "application/jose" in request.headers.get("accept", ""):
            return PlainTextResponse(receipt.token, status_code=202, media_type="application/jose")
        return JSONResponse(receipt.as_json(), status_code=202)

    @app.get("/v1/mailbox", tags=["agency"], responses=AUTHENTICATED)
    async def mailbox(who: Auth, state: DeliveryState | None = None, limit: int = Query(100, ge=1, le=1000)
                      ) -> dict[str, Any]:
        agency = require_agency(who)
        async with exchange.sessions() as session:
            q = select(DeliveryRow).where(col(DeliveryRow.recipient) == agency)
            if state:
                q = q.where(col(DeliveryRow.state) == state)
            q = q.order_by(col(DeliveryRow.created_at)).limit(limit)
            rows = (await session.execute(q)).scalars().all()
        return {"deliveries": [_delivery_meta(r) for r in rows]}

    @app.get("/v1/mailbox/{delivery_id}", tags=["agency"], responses={
        200: {"description": "the delivery JWE, or its metadata once acknowledged",
              "content": {"application/jose": {"schema": {"type": "string"}}}},
        **AUTHENTICATED, **declare(404)})
    async def mailbox_item(delivery_id: str, who: Auth) -> Response:
        agency = require_agency(who)
        async with exchange.sessions() as session:
            row = await session.get(DeliveryRow, delivery_id)
        if row is None or row.recipient != agency:
            raise NotFound("no such delivery in this mailbox")
        if row.jwe is None:
            return JSONResponse(_delivery_meta(row))
        return PlainTextResponse(row.jwe, media_type="application/jose")

    @app.post("/v1/mailbox/{delivery_id}/ack", tags=["agency"],
              responses={**AUTHENTICATED, **declare(400, 404, 409, 422)},
              openapi_extra=problems.jose_body(
                  "The recipient's signed acknowledgement: a compact JWS, typ masp-ack+jwt "
                  "(docs/spec/acknowledgement.md)."))
    async def mailbox_ack(delivery_id: str, request: Request, who: Auth) -> dict[str, Any]:
        """Acknowledge one delivery of this agency's mailbox with its signed ack (``masp-ack+jwt``).

        The ack must name the delivery in the URL (422 ``delivery-mismatch`` otherwise) and
        the delivery must be this agency's (404); either refusal records nothing."""
        agency = require_agency(who)
        token = (await request.body()).decode("ascii", "replace").strip()
        return await acknowledge(exchange, token, via="http", agency=agency, delivery_id=delivery_id)

    @app.get("/v1/audit/entries", tags=["audit"], responses=AUTHENTICATED)
    async def audit_entries(
        who: Auth, subject: str | None = None, agency: str | None = None,
        clause: str | None = None, decision: str | None = None, kind: str | None = None,
        from_: Annotated[datetime | None, Query(alias="from")] = None,
        to: datetime | None = None, after: int = Query(-1, ge=-1, le=MAX_INT64),
        limit: int = Query(200, ge=1, le=1000),
    ) -> dict[str, Any]:
        require_role(who, "ig_officer")
        pseud = pseudonym(exchange.pseudonym_secret, subject) if subject else None
        flt = EntryFilter(pseud, agency, clause, decision, kind, from_, to)
        rows = await audit_routes.search_entries(exchange, who, flt, after=after, limit=limit)
        return {"entries": [_entry_json(r) for r in rows]}

    @app.get("/v1/audit/checkpoint", tags=["audit"], response_class=PlainTextResponse,
             responses={**AUTHENTICATED, **declare(404)})
    async def audit_checkpoint(who: Auth) -> PlainTextResponse:
        require_role(who, "ig_officer")
        async with exchange.sessions() as session:
            cp = await exchange.audit.latest_checkpoint(session)
            if cp is None:
                raise NotFound("the audit log is empty")
            note, _ = await cosigned_note(session, cp)
        return PlainTextResponse(note, media_type="text/plain; charset=utf-8")

    @app.get("/v1/dsa", tags=["policy"], responses=AUTHENTICATED)
    async def dsa(who: Auth) -> dict[str, Any]:
        return {"policy_hash": exchange.bundle.policy_hash, "agreements": [
            json.loads(a.model_dump_json(by_alias=True)) for a in exchange.bundle.agreements]}

    app.include_router(ig_routes.router)

    @app.post("/v1/dsa/explain", tags=["policy"], responses={**AUTHENTICATED, **declare(400)})
    async def dsa_explain(question: ExplainQuestion, who: Auth) -> dict[str, Any]:
        answer = policy.explain(exchange.bundle, question.sender, question.recipient,
                                question.masp_type, question.purpose, exchange.clock())
        return answer.as_dict()

    app.include_router(audit_routes.router)
    app.include_router(ops_routes.router)
    app.include_router(delivery_routes.router)
    console.install(app)  # the web console under /ui
    # Outermost, so every layer sees the scheme and client a trusted proxy reports. Here rather
    # than in uvicorn (server.py turns uvicorn's own off): one trust list, MASP_FORWARDED_ALLOW_IPS,
    # however the app is served, and a forwarded address is never checked against it a second time.
    app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=service.settings.forwarded_allow_ips)
    return app


async def _read_bounded(request: Request, limit: int) -> bytes | PayloadTooLarge:
    """The body, or the refusal if it is (or announces itself) larger than ``limit``: it is
    never read past the limit."""
    too_large = PayloadTooLarge(f"message exceeds {limit} bytes")
    try:
        declared = int(request.headers.get("content-length") or 0)
    except ValueError:
        declared = 0
    if declared > limit:
        return too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return too_large
    return bytes(body)


class ExplainQuestion(BaseModel):
    """May ``from`` send ``masp_type`` to ``to`` for ``purpose``?"""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")

    sender: str = Field(alias="from", min_length=1, max_length=32)
    recipient: str = Field(alias="to", min_length=1, max_length=32)
    masp_type: str = Field(min_length=1, max_length=64)
    purpose: str | None = Field(default=None, max_length=64)


def _delivery_meta(row: DeliveryRow) -> dict[str, Any]:
    return {"delivery_id": row.delivery_id, "message_id": row.message_id, "sender": row.sender,
            "masp_type": row.masp_type, "state": row.state, "audit_seq": row.audit_seq,
            "created_at": iso(row.created_at), "retention_until": iso(row.retention_until)}


def _entry_json(row: AuditRow) -> dict[str, Any]:
    entry = AuditEntry.from_leaf(row.leaf)
    return {**entry.model_dump(mode="json", exclude_none=True), "leaf_hash": row.leaf_hash.hex()}

