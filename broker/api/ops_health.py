"""Health, readiness, metrics and overdue acknowledgements over HTTP, and request tracing.

- ``GET /healthz``: the process is alive (no dependency is touched).
- ``GET /readyz``: 200 only if RabbitMQ, the database, the keys, the DSA bundle, every
  consumer of this process and the outbox relay are all well; otherwise 503 naming what
  failed (``failed``, and per queue in ``consumers``).
- ``GET /metrics``: Prometheus text exposition (``broker/metrics.py``).
- ``GET /v1/ops/acknowledgements/overdue`` (ops): unacknowledged deliveries older than a
  threshold, metadata only. (``GET /v1/ops/queues`` is in ``ops_routes.py``; it adds the
  consumer state and rates from ``OpsMonitor.queue_view``.)

``TraceMiddleware`` gives every request a server span continuing the caller's W3C trace
context; the span is named after the route template, never the raw path (paths may hold a
subject identifier).
"""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from opentelemetry.trace import SpanKind
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from broker import prometheus, telemetry
from broker.api.auth import Principal, authenticate, require_role
from broker.api.params import MAX_AGE_S
from broker.api.problems import AUTHENTICATED
from broker.metrics import FAMILIES
from broker.ops_state import OpsMonitor
from broker.service import BrokerService
from broker.store import ops_queries

router = APIRouter(tags=["ops"])
Auth = Annotated[Principal, Depends(authenticate)]


def monitor(request: Request) -> OpsMonitor:
    """The service's background monitor, or one for this app if the workers were not started."""
    service: BrokerService = request.app.state.service
    if service.monitor is not None:
        return service.monitor
    if getattr(request.app.state, "ops_monitor", None) is None:
        request.app.state.ops_monitor = OpsMonitor(service)
    found: OpsMonitor = request.app.state.ops_monitor
    return found


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "alive"}


@router.get("/readyz", responses={503: {
    "description": "not ready: names what failed", "content": {"application/json": {}}}})
async def readyz(request: Request) -> JSONResponse:
    readiness = await monitor(request).readiness()
    return JSONResponse(readiness.as_json(), status_code=200 if readiness.ready else 503)


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    ops = monitor(request)
    await ops.sample()  # a scrape sees the state at the scrape, not the last background sample
    text = prometheus.render(FAMILIES, ops.service.exchange.metrics.collect())
    return PlainTextResponse(text, media_type=prometheus.CONTENT_TYPE)


@router.get("/v1/ops/acknowledgements/overdue", responses=AUTHENTICATED)
async def overdue_acknowledgements(
    request: Request, who: Auth, older_than_s: int | None = Query(None, ge=0, le=MAX_AGE_S),
    recipient: str | None = None, limit: int = Query(200, ge=1, le=1000),
) -> dict[str, Any]:
    """Deliveries not acknowledged within ``older_than_s`` (default ``MASP_ACK_OVERDUE_S``)."""
    require_role(who, "ops")
    ops = monitor(request)
    threshold = timedelta(seconds=older_than_s) if older_than_s is not None else ops.overdue_after
    now = ops.service.exchange.clock()
    async with ops.service.exchange.sessions() as session:
        rows = await ops_queries.overdue(session, now - threshold, recipient=recipient, limit=limit)
        counts = await ops_queries.awaiting_ack(session, now - threshold)
    return {
        "older_than_s": int(threshold.total_seconds()),
        "counts": counts,
        "deliveries": [{
            "delivery_id": r.delivery_id, "message_id": r.message_id, "sender": r.sender,
            "recipient": r.recipient, "masp_type": r.masp_type, "state": r.state,
            "created_at": ops_queries.aware(r.created_at).isoformat(),
            "age_s": int((now - ops_queries.aware(r.created_at)).total_seconds()),
        } for r in rows],
    }


class TraceMiddleware:
    """A server span per HTTP request, continuing ``traceparent``/``tracestate`` (never baggage)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", ())
                   if k.decode("latin-1").lower() in telemetry.TRACE_HEADERS}
        method = scope.get("method", "HTTP")
        with telemetry.continue_trace(headers, method, SpanKind.SERVER, via="http") as span:
            async def traced_send(message: Message) -> None:
                if message["type"] == "http.response.start" and span.is_recording():
                    span.set_attribute("http.response.status_code", int(message["status"]))
                    route = getattr(scope.get("route"), "path", None)
                    span.update_name(f"{method} {route}" if route else method)
                    if route:
                        span.set_attribute("http.route", route)
                await send(message)
            await self.app(scope, receive, traced_send)


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.add_middleware(TraceMiddleware)
