"""Issue 7, done (1): a whole case goes through with every log line captured at DEBUG (libraries
too), every span recorded and every metric scraped, and no detail of the victim or the
perpetrator appears in any of them, nor in what the ops API shows."""

from __future__ import annotations

import io
import json
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from broker import wire
from broker.demo.run import demo_body
from tests.exposition import parse
from tests.integration.conftest import Env
from tests.integration.observability.flow import (
    compose_referral,
    leaks,
    ops_headers,
    personal_values,
    settled,
)


def _span_dump(exporter: InMemorySpanExporter) -> str:
    return json.dumps([{
        "name": s.name, "attributes": dict(s.attributes or {}),
        "events": [(e.name, dict(e.attributes or {})) for e in s.events],
        "links": [dict(link.attributes or {}) for link in s.links],
        "status": s.status.description, "resource": dict(s.resource.attributes),
    } for s in exporter.get_finished_spans()], default=str)


async def test_no_personal_data_in_logs_metrics_spans_or_ops_views(
        log_output: io.StringIO, spans: InMemorySpanExporter, env: Env) -> None:
    assert "Claire" in personal_values() and "14 Larkspur Road" in personal_values()
    police = env.adapters["police"]

    # the probation application fails once, quoting the victim, as real code does
    failures: list[str] = []

    async def picky_application(delivery: wire.Delivery) -> None:
        if not failures:
            failures.append(delivery.delivery_id)
            raise ValueError(f"cannot file {delivery.message.claims['victim_name']} at "
                             f"{delivery.message.claims['victim_address']}")

    env.adapters["probation"].on_delivery = picky_application

    over_http = await police.submit_http(env.http, compose_referral(env))
    assert over_http.status_code == 202, over_http.text
    over_amqp = await police.submit_amqp(env.amqp["police"], compose_referral(env))
    invalid = dict(demo_body("case_referral"), sdash_yes_count="Claire Hutton, 14 Larkspur Road")
    refused = await police.submit_http(env.http, compose_referral(env, invalid))
    assert refused.status_code == 422
    mids = [over_http.json()["message_id"], over_amqp["message_id"]]
    rows = await settled(env, mids)
    assert {r.recipient for r in rows} == {"probation", "nhs"} and failures

    ops = ops_headers(env)
    metrics = (await env.http.get("/metrics")).text
    views: dict[str, Any] = {
        "readyz": (await env.http.get("/readyz")).json(),
        "queues": (await env.http.get("/v1/ops/queues", headers=ops)).json(),
        "overdue": (await env.http.get("/v1/ops/acknowledgements/overdue?older_than_s=0",
                                       headers=ops)).json(),
    }
    logged = log_output.getvalue()
    spans_text = _span_dump(spans)

    assert leaks(logged) == []
    assert leaks(metrics) == []
    assert leaks(spans_text) == []
    assert leaks(json.dumps(views)) == []

    # ...and that is not because nothing was recorded
    lines = [json.loads(line) for line in logged.splitlines() if line.strip()]
    assert any(x.get("message_id") == mids[0] and x.get("trace_id") for x in lines)
    handled = [x for x in lines if x["event"] == "delivery_handling_failed"]
    assert handled and handled[0]["exception"].endswith("ValueError") and handled[0]["agency"] == "probation"
    assert any(x.get("logger", "").startswith(("aiormq", "aio_pika")) for x in lines)
    assert any(x.get("logger", "").startswith("sqlalchemy") for x in lines)
    names = {s.name for s in spans.get_finished_spans()}
    assert {"masp.adapter.submit", "masp.decrypt", "masp.policy", "masp.publish",
            "masp.adapter.receive", "masp.ack"} <= names
    families = parse(metrics)
    submitted = families["masp_messages_submitted_total"].samples
    assert {(s.labels["via"], s.value) for s in submitted} == {("http", 1), ("amqp", 1)}
    refusals = {s.labels["rule"]: s.value for s in families["masp_refusals_total"].samples}
    assert refusals["ingress.schema-invalid"] == 1 and any(r.startswith("P6") for r in refusals)
    acked = sum(s.value for s in families["masp_deliveries_acknowledged_total"].samples)
    latency = [s for s in families["masp_delivery_latency_seconds"].samples if s.name.endswith("_count")]
    assert acked == 4 and sum(s.value for s in latency) == 4
    depths = {s.labels["queue"] for s in families["masp_queue_messages"].samples}
    assert {"masp.ingress.police", "masp.acks", "inbox.nhs"} <= depths
    assert families["masp_audit_entries"].samples[0].value > 0
    assert views["readyz"]["ready"] is True
