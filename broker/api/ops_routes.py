"""The ops API (docs/operations.md): queues, dead letters, delivery states, paused routes, alerts.

Ops staff see metadata only — ids, agencies, types, states, reasons, sizes and digests —
never message content: dead-letter bodies are neither returned nor logged. Every action
that changes something (replay, purge, pause, resume) is audited with the operator's id.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from broker import route_pause
from broker.api import ops_health
from broker.api.auth import Principal, authenticate, require_role
from broker.api.problems import AUTHENTICATED, declare
from broker.audit.entry import Actor
from broker.errors import Conflict, NotFound
from broker.service import BrokerService
from broker.store import dead_letters, deliveries
from broker.transport import dead_letters as dlq
from broker.transport.depths import queue_depths

router = APIRouter(prefix="/v1/ops", tags=["ops"], responses=AUTHENTICATED)
Auth = Annotated[Principal, Depends(authenticate)]
DeadLetterState = Literal["pending", "replayed", "purged"]
DeliveryState = Literal["queued", "published", "acknowledged", "rejected", "dead_lettered", "expired"]


class RouteChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: A code, not free text: it lands in the audit log, which holds no personal data.
    reason: str | None = Field(default=None, pattern=r"^[a-z][a-z0-9_]{1,63}$",
                               examples=["recipient_maintenance", "poison_investigation"])


def _ops(request: Request, who: Principal) -> tuple[BrokerService, Actor]:
    require_role(who, "ops")
    service: BrokerService = request.app.state.service
    return service, Actor(user_id=who.id, role=who.role, auth="role-token")


@router.get("/queues", responses=declare(409))
async def queues(request: Request, who: Auth) -> dict[str, Any]:
    """Depth and consumers of every queue, deliveries per recipient and state, paused routes."""
    service, _ = _ops(request, who)
    if service.connection is None or service.connection.is_closed:
        raise Conflict("this process has no RabbitMQ connection")
    depths = await queue_depths(service.connection, service.names)
    async with service.exchange.sessions() as session:
        counts = await deliveries.state_counts(session)
        pending = await dead_letters.pending_count(session)
    depths = await ops_health.monitor(request).queue_view(depths)  # + consumer alive, rates
    return {"queues": depths, "deliveries": counts, "dead_letters_pending": pending,
            "paused_routes": await route_pause.paused(service.exchange)}


@router.get("/dead-letters")
async def list_dead_letters(request: Request, who: Auth, state: DeadLetterState | None = "pending",
                            queue: str | None = None, limit: int = Query(200, ge=1, le=1000),
                            ) -> dict[str, Any]:
    service, _ = _ops(request, who)
    async with service.exchange.sessions() as session:
        rows = await dead_letters.find(session, state=state, queue=queue, limit=limit)
    return {"dead_letters": [dead_letters.dead_letter_json(r) for r in rows]}


@router.get("/dead-letters/{dead_letter_id}", responses=declare(404))
async def show_dead_letter(dead_letter_id: str, request: Request, who: Auth) -> dict[str, Any]:
    service, _ = _ops(request, who)
    async with service.exchange.sessions() as session:
        row = await dead_letters.get(session, dead_letter_id)
    if row is None:
        raise NotFound("no such dead letter")
    return dead_letters.dead_letter_json(row)


@router.post("/dead-letters/{dead_letter_id}/replay", responses=declare(404, 409))
async def replay_dead_letter(dead_letter_id: str, request: Request, who: Auth) -> dict[str, Any]:
    service, actor = _ops(request, who)
    if service.connection is None:
        raise Conflict("this process has no RabbitMQ connection")
    row = await dlq.replay(service.exchange, service.connection, service.names, dead_letter_id, actor)
    return dead_letters.dead_letter_json(row)


@router.post("/dead-letters/{dead_letter_id}/purge", responses=declare(404, 409))
async def purge_dead_letter(dead_letter_id: str, request: Request, who: Auth) -> dict[str, Any]:
    service, actor = _ops(request, who)
    return dead_letters.dead_letter_json(await dlq.purge(service.exchange, dead_letter_id, actor))


@router.get("/deliveries")
async def list_deliveries(request: Request, who: Auth, state: DeliveryState | None = None,
                          sender: str | None = None, recipient: str | None = None,
                          message_id: str | None = None, limit: int = Query(200, ge=1, le=1000),
                          ) -> dict[str, Any]:
    """Delivery states across all agencies (metadata only)."""
    service, _ = _ops(request, who)
    async with service.exchange.sessions() as session:
        rows = await deliveries.find_deliveries(session, sender=sender, recipient=recipient,
                                                state=state, message_id=message_id, limit=limit)
        timers = await deliveries.timers_for(session, [r.delivery_id for r in rows])
    return {"deliveries": [deliveries.delivery_json(r, timers.get(r.delivery_id)) for r in rows]}


@router.get("/routes")
async def routes(request: Request, who: Auth) -> dict[str, Any]:
    service, _ = _ops(request, who)
    return {"paused": await route_pause.paused(service.exchange)}


@router.post("/routes/{recipient}/pause", responses=declare(400, 404, 409))
async def pause_route(recipient: str, request: Request, who: Auth,
                      change: RouteChange | None = None) -> dict[str, Any]:
    service, actor = _ops(request, who)
    await route_pause.pause(service.exchange, recipient, actor, change.reason if change else None)
    return {"recipient": recipient, "paused": True}


@router.post("/routes/{recipient}/resume", responses=declare(400, 404, 409))
async def resume_route(recipient: str, request: Request, who: Auth,
                       change: RouteChange | None = None) -> dict[str, Any]:
    service, actor = _ops(request, who)
    await route_pause.resume(service.exchange, recipient, actor, change.reason if change else None)
    return {"recipient": recipient, "paused": False}


@router.get("/alerts")
async def alerts(request: Request, who: Auth) -> dict[str, Any]:
    """Escalated safeguarding deliveries still unacknowledged, and dead letters waiting."""
    service, _ = _ops(request, who)
    async with service.exchange.sessions() as session:
        escalated = await deliveries.open_alerts(session)
        pending = await dead_letters.pending_count(session)
    return {"escalations": [deliveries.delivery_json(d, t) for t, d in escalated],
            "dead_letters_pending": pending}
