"""Issue 7, done (2): one trace from the sending adapter over HTTP (and AMQP), through the broker
and RabbitMQ, into the receiving adapter and back with its acknowledgement; W3C trace context
only, never baggage, and carried even when the broker records no spans."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from aio_pika.abc import AbstractIncomingMessage
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from broker import telemetry, wire
from broker.store.models import DeliveryRow
from tests.exposition import parse
from tests.integration.conftest import Env
from tests.integration.observability.flow import compose_referral, deliveries, ig_headers, ops_headers

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE}-00f067aa0ba902b7-01"
ALLOWED_ATTRIBUTES = {"error.type", "http.response.status_code", "http.route"}


def _one(spans: Sequence[ReadableSpan], name: str, **attrs: object) -> ReadableSpan:
    found = [s for s in spans if s.name == name and all(
        (s.attributes or {}).get(f"masp.{k}") == v for k, v in attrs.items())]
    assert len(found) == 1, f"{len(found)} spans {name} {attrs}: {[s.name for s in spans]}"
    return found[0]


async def _finished(exporter: InMemorySpanExporter, name: str, timeout: float = 20.0,
                    **attrs: object) -> ReadableSpan:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        found = [s for s in exporter.get_finished_spans() if s.name == name and all(
            (s.attributes or {}).get(f"masp.{k}") == v for k, v in attrs.items())]
        if found:
            return found[0]
        assert loop.time() < deadline, f"no finished span {name} {attrs}"
        await asyncio.sleep(0.05)


async def _acknowledged(env: Env, delivery_id: str, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        async with env.service.exchange.sessions() as session:
            row = await session.get(DeliveryRow, delivery_id)
        if row is not None and row.state == "acknowledged":
            return
        assert loop.time() < deadline, f"{delivery_id} not acknowledged"
        await asyncio.sleep(0.05)


def _child_of(child: ReadableSpan, parent: ReadableSpan, *, remote: bool) -> bool:
    assert child.parent is not None and parent.context is not None
    return child.parent.span_id == parent.context.span_id and child.parent.is_remote is remote


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_one_trace_from_sending_adapter_to_receiving_adapter(spans: InMemorySpanExporter,
                                                                   env: Env) -> None:
    resp = await env.adapters["police"].submit_http(env.http, compose_referral(env))
    assert resp.status_code == 202
    mid = resp.json()["message_id"]
    nhs = next(r for r in await deliveries(env, mid) if r.recipient == "nhs")
    ack = await _finished(spans, "masp.ack", delivery_id=nhs.delivery_id)
    finished = spans.get_finished_spans()

    submit = _one(finished, "masp.adapter.submit", agency="police", via="http")
    assert submit.context is not None
    tid = submit.context.trace_id
    in_trace = [s for s in finished if s.context is not None and s.context.trace_id == tid]
    server = _one(in_trace, "POST /v1/messages")
    assert server.kind == SpanKind.SERVER and _child_of(server, submit, remote=True)
    assert (server.attributes or {})["masp.message_id"] == mid
    assert (server.attributes or {})["masp.outcome"] == "accepted"
    for step in ("masp.decrypt", "masp.verify", "masp.schema", "masp.policy"):
        assert _one(in_trace, step).parent is not None
    append = next(s for s in in_trace if s.name == "masp.audit.append" and _child_of(s, server, remote=False))
    policy = _one(in_trace, "masp.policy")
    assert "nhs:permit_with_redaction" in (policy.attributes or {})["masp.decisions"]

    publish = _one(in_trace, "masp.publish", delivery_id=nhs.delivery_id)
    assert publish.kind == SpanKind.PRODUCER and _child_of(publish, append, remote=True)
    receive = _one(in_trace, "masp.adapter.receive", delivery_id=nhs.delivery_id)
    assert receive.kind == SpanKind.CONSUMER and _child_of(receive, publish, remote=True)
    assert (receive.attributes or {})["masp.agency"] == "nhs"
    adapter_ack = _one(in_trace, "masp.adapter.ack", delivery_id=nhs.delivery_id)
    assert _child_of(adapter_ack, receive, remote=False)
    assert ack.context is not None and ack.context.trace_id == tid
    assert _child_of(ack, adapter_ack, remote=True)
    probation = next(r for r in await deliveries(env, mid) if r.recipient == "probation")
    assert _one(in_trace, "masp.adapter.receive", delivery_id=probation.delivery_id)

    for s in in_trace:  # identifiers and outcomes, nothing else
        assert all(k.startswith("masp.") or k in ALLOWED_ATTRIBUTES for k in s.attributes or {}), s.name

    # the same over AMQP: the ingress consumer continues the adapter's producer span
    reply = await env.adapters["police"].submit_amqp(env.amqp["police"], compose_referral(env))
    ingress = await _finished(spans, "masp.ingress", message_id=reply["message_id"])
    producer = [s for s in spans.get_finished_spans() if s.name == "masp.adapter.submit"
                and (s.attributes or {}).get("masp.via") == "amqp"]
    assert len(producer) == 1 and _child_of(ingress, producer[0], remote=True)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_http_spans_continue_only_the_callers_headers(spans: InMemorySpanExporter, env: Env) -> None:
    with telemetry.tracer().start_as_current_span("caller") as caller:
        await env.http.get("/healthz")
        await env.http.get("/v1/audit/subjects/19%2F4471023K/disclosures", headers=ig_headers(env))
    health = _one(spans.get_finished_spans(), "GET /healthz")
    assert health.parent is None and health.context is not None
    assert health.context.trace_id != caller.get_span_context().trace_id  # no header, new trace
    lookup = [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER and "subjects" in s.name]
    assert [s.name for s in lookup] == ["GET /v1/audit/subjects/{identifier:path}/disclosures"]
    assert "4471023K" not in str(dict(lookup[0].attributes or {}))


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_trace_context_crosses_the_untraced_broker_without_baggage(env: Env) -> None:
    assert not isinstance(trace.get_tracer_provider(), SdkTracerProvider)  # no SDK in this process
    await env.adapters["nhs"].stop()  # its delivery stays in the inbox for us to read
    police = env.adapters["police"]
    resp = await env.http.post("/v1/messages", content=compose_referral(env).encode(), headers={
        "content-type": "application/jose", "traceparent": TRACEPARENT, "tracestate": "police=7",
        "baggage": "victim=Claire%20Hutton,case=HIOW-MASP-2026-0147",
        "authorization": f"Bearer {wire.sign_agency_auth(police.keys, police.clock())}"})
    assert resp.status_code == 202
    channel = await env.connection.channel()
    try:
        inbox = await channel.get_queue(env.service.names.inbox("nhs"), ensure=False)
        message: AbstractIncomingMessage | None = None
        for _ in range(200):
            message = await inbox.get(fail=False)
            if message is not None:
                break
            await asyncio.sleep(0.05)
        assert message is not None
        headers = dict(message.headers)
        await message.nack(requeue=True)
    finally:
        await channel.close()
    assert headers["traceparent"] == TRACEPARENT and headers["tracestate"] == "police=7"
    assert "baggage" not in headers and not any("Claire" in str(v) for v in headers.values())
    rows = await deliveries(env, resp.json()["message_id"])
    # so that only the delivery to nhs is left waiting
    await _acknowledged(env, next(r.delivery_id for r in rows if r.recipient == "probation"))

    # the unacknowledged delivery shows as overdue to ops, and in the gauges
    overdue = (await env.http.get("/v1/ops/acknowledgements/overdue?older_than_s=0",
                                  headers=ops_headers(env))).json()
    assert [(d["recipient"], d["message_id"]) for d in overdue["deliveries"]] == [
        ("nhs", resp.json()["message_id"])]
    assert set(overdue["deliveries"][0]) == {"delivery_id", "message_id", "sender", "recipient",
                                             "masp_type", "state", "created_at", "age_s"}
    gauges = parse((await env.http.get("/metrics")).text)
    unacked = {s.labels["recipient"]: s.value for s in gauges["masp_deliveries_unacknowledged"].samples}
    assert unacked.get("nhs") == 1
    queues = (await env.http.get("/v1/ops/queues", headers=ops_headers(env))).json()["queues"]
    by_name = {q["queue"].removeprefix(env.service.names.namespace): q for q in queues}
    assert by_name["inbox.nhs"]["messages"] == 1 and by_name["masp.ingress.police"]["consumer_alive"] is True
    assert by_name["inbox.nhs"]["rates_per_s"]["in"] > 0  # this process published to it
