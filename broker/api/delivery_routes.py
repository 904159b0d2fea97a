"""What a sending agency can ask about its own messages: delivery states and broker notices.

An agency sees the deliveries of messages it sent (never another agency's), and the signed
notices the broker raised for it: non-delivery reports for expired deliveries and
safeguarding escalations. Metadata only; the ciphertext stays in the recipient's mailbox.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request

from broker.api.auth import Principal, authenticate, require_agency
from broker.api.problems import AUTHENTICATED, declare
from broker.crypto import jose
from broker.errors import NotFound
from broker.exchange import Exchange
from broker.policy import receivable_classes
from broker.store import deliveries
from broker.store.models import SeenMessageRow
from schemas import MESSAGE_TYPES, data_classes
from schemas.export import received_schema as received_schema_of

router = APIRouter(prefix="/v1", tags=["agency"], responses=AUTHENTICATED)
Auth = Annotated[Principal, Depends(authenticate)]
DeliveryState = Literal["queued", "published", "acknowledged", "rejected", "dead_lettered", "expired"]


def _exchange(request: Request) -> Exchange:
    exchange: Exchange = request.app.state.exchange
    return exchange


@router.get("/messages/{message_id}", responses=declare(404))
async def message_status(message_id: str, request: Request, who: Auth) -> dict[str, Any]:
    """The sender's view of one message: the broker's decisions and each delivery's state."""
    agency = require_agency(who)
    exchange = _exchange(request)
    async with exchange.sessions() as session:
        seen = await session.get(SeenMessageRow, message_id)
        if seen is None or seen.sender != agency:
            raise NotFound("no such message from this agency")
        rows = await deliveries.find_deliveries(session, message_id=message_id)
        timers = await deliveries.timers_for(session, [r.delivery_id for r in rows])
    receipt = json.loads(jose.b64url_decode(seen.receipt.split(".")[1]))  # signed by us at intake
    return {"message_id": message_id, "received_at": deliveries.iso(seen.received_at),
            "audit_seq": receipt["audit_seq"], "decisions": receipt["decisions"],
            "deliveries": [deliveries.delivery_json(r, timers.get(r.delivery_id)) for r in rows]}


@router.get("/deliveries")
async def sent_deliveries(request: Request, who: Auth, state: DeliveryState | None = None,
                          limit: int = Query(200, ge=1, le=1000)) -> dict[str, Any]:
    """Deliveries of this agency's messages, optionally in one state (e.g. ``expired``)."""
    agency = require_agency(who)
    async with _exchange(request).sessions() as session:
        rows = await deliveries.find_deliveries(session, sender=agency, state=state, limit=limit)
    return {"deliveries": [deliveries.delivery_json(r) for r in rows]}


@router.get("/schemas/{masp_type}", responses=declare(404))
async def received_schema(masp_type: str, request: Request, who: Auth) -> dict[str, Any]:
    """The JSON Schema of what this agency may receive of ``masp_type`` under the loaded
    agreements: only the fields some clause could disclose to it, none required, nothing else.
    Validate each delivery's disclosed fields against it (docs/spec/delivery.md)."""
    agency = require_agency(who)
    if masp_type not in MESSAGE_TYPES:
        raise NotFound("no such message type")
    exchange = _exchange(request)
    classes = receivable_classes(exchange.bundle, agency, masp_type)
    fields = [name for name, cls in data_classes(masp_type).items() if cls in classes]
    return received_schema_of(masp_type, fields, recipient=agency)


@router.get("/notices")
async def notices(request: Request, who: Auth,
                  kind: Literal["non_delivery", "escalation"] | None = None,
                  limit: int = Query(100, ge=1, le=1000)) -> dict[str, Any]:
    """Signed broker notices for this agency (JWS ``masp-notice+jwt``), oldest first."""
    agency = require_agency(who)
    async with _exchange(request).sessions() as session:
        rows = await deliveries.notices_for(session, agency, kind, limit)
    return {"notices": [{"notice_id": r.notice_id, "kind": r.kind, "delivery_id": r.delivery_id,
                         "message_id": r.message_id, "created_at": deliveries.iso(r.created_at),
                         "token": r.token} for r in rows]}
