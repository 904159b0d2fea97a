"""Ops pages: queue depths and throughput over time, delivery states, overdue
acknowledgements, dead letters with replay. Metadata only, as in the ops API whose
functions these pages call: no page has a message body to show.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Request, Response

from broker.api import ops_health, ops_routes
from broker.api.auth import Principal, require_role
from broker.errors import Conflict
from broker.store import ops_queries
from broker.ui.chart import Series, line_chart
from broker.ui.web import ConsoleRoute, checked_form, exchange_of, go, render, viewer

router = APIRouter(prefix="/ui/ops", route_class=ConsoleRoute, include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]
THROUGHPUT_MINUTES = 60


def ops(who: Principal) -> Principal:
    return require_role(who, "ops")


def _depth_chart(request: Request) -> tuple[Any, list[tuple[Any, dict[str, int]]]]:
    history = list(ops_health.monitor(request).history)
    names = sorted({q for _, depths in history for q in depths})
    series = [Series(q, [(at, float(d.get(q, 0))) for at, d in history]) for q in names]
    return line_chart("depth", "Queue depth (messages waiting) over time", series, "messages"), history[-10:]


async def _throughput_chart(request: Request) -> tuple[Any, list[tuple[Any, int, int]]]:
    exchange = exchange_of(request)
    since, until = ops_queries.recent_window(exchange.clock(), THROUGHPUT_MINUTES)
    async with exchange.sessions() as session:
        buckets = await ops_queries.throughput(session, since, until, THROUGHPUT_MINUTES)
    chart = line_chart("throughput", f"Deliveries per minute, last {THROUGHPUT_MINUTES} minutes", [
        Series("created", [(t, float(c)) for t, c, _ in buckets]),
        Series("acknowledged", [(t, float(a)) for t, _, a in buckets])], "per minute")
    return chart, [b for b in buckets if b[1] or b[2]]


@router.get("")
async def queues_page(request: Request, who: Viewer) -> Response:
    ops(who)
    try:
        view: dict[str, Any] | None = await ops_routes.queues(request, who)
        unavailable = None
    except Conflict as exc:
        view, unavailable = None, exc.detail
    depth_chart, recent_depths = _depth_chart(request)
    throughput_chart, busy_minutes = await _throughput_chart(request)
    overdue = await ops_health.overdue_acknowledgements(request, who, older_than_s=None, recipient=None,
                                                        limit=50)
    return render(request, "ops_queues.html", title="Queues", view=view, unavailable=unavailable,
                  depth_chart=depth_chart, recent_depths=recent_depths, throughput_chart=throughput_chart,
                  busy_minutes=busy_minutes, overdue=overdue,
                  namespace=request.app.state.service.names.namespace)


@router.get("/deliveries")
async def deliveries_page(request: Request, who: Viewer,
                          state: ops_routes.DeliveryState | Literal["all"] = "all") -> Response:
    ops(who)
    found = await ops_routes.list_deliveries(request, who, state=None if state == "all" else state,
                                             sender=None, recipient=None, message_id=None, limit=200)
    return render(request, "ops_deliveries.html", title="Deliveries", state=state,
                  states=get_args(ops_routes.DeliveryState), deliveries=found["deliveries"])


@router.get("/dead-letters")
async def dead_letters_page(request: Request, who: Viewer,
                            state: ops_routes.DeadLetterState | Literal["all"] = "pending",
                            done: str | None = None) -> Response:
    ops(who)
    found = await ops_routes.list_dead_letters(request, who, state=None if state == "all" else state,
                                               queue=None, limit=200)
    return render(request, "ops_dead_letters.html", title="Dead letters", state=state,
                  dead_letters=found["dead_letters"], done=done,
                  namespace=request.app.state.service.names.namespace)


@router.post("/dead-letters/{dead_letter_id}/replay")
async def replay(request: Request, dead_letter_id: str, who: Viewer) -> Response:
    ops(who)
    await checked_form(request)
    await ops_routes.replay_dead_letter(dead_letter_id, request, who)  # audited with the operator's id
    return go(request, "/ui/ops/dead-letters?done=replayed")
