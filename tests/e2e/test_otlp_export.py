"""Issue 7: with ``MASP_OTLP_ENDPOINT`` set, ``masp serve`` exports traces and metrics over
OTLP/HTTP to a collector, and nothing personal travels with them.

The collector here is a small HTTP server on 127.0.0.1 that decodes what it receives with the
OpenTelemetry protobuf definitions, as a real collector's OTLP receiver would.
"""

from __future__ import annotations

import asyncio
import gzip
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import aio_pika
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from broker.transport import topology
from tests.integration.observability.flow import personal_values

REPO = Path(__file__).resolve().parents[2]
AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
#: Broker steps that must each leave a span (telemetry.step names).
BROKER_STEPS = {"masp.decrypt", "masp.verify", "masp.schema", "masp.policy", "masp.audit.append"}


@dataclass
class Collector:
    """What the fake collector received: decoded export requests, by signal."""

    traces: list[ExportTraceServiceRequest] = field(default_factory=list)
    metrics: list[ExportMetricsServiceRequest] = field(default_factory=list)
    raw: list[bytes] = field(default_factory=list)
    content_types: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def span_names(self, service: str) -> set[str]:
        with self.lock:
            return {span.name for request in self.traces for rs in request.resource_spans
                    if _service(rs.resource.attributes) == service
                    for ss in rs.scope_spans for span in ss.spans}

    def metric_names(self) -> set[str]:
        with self.lock:
            return {m.name for request in self.metrics for rm in request.resource_metrics
                    for sm in rm.scope_metrics for m in sm.metrics}

    def attribute_strings(self) -> list[str]:
        """Every string value of every span, event, resource and data-point attribute."""
        found: list[str] = []
        with self.lock:
            for t in self.traces:
                for rs in t.resource_spans:
                    found += _strings(rs.resource.attributes)
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            found.append(span.name)
                            found += _strings(span.attributes)
                            for event in span.events:
                                found += _strings(event.attributes)
            for m in self.metrics:
                for rm in m.resource_metrics:
                    for sm in rm.scope_metrics:
                        for metric in sm.metrics:
                            for kind in ("sum", "gauge", "histogram"):
                                if metric.HasField(kind):
                                    for point in getattr(metric, kind).data_points:
                                        found += _strings(point.attributes)
        return found


def _value(value: AnyValue) -> str:
    return str(getattr(value, value.WhichOneof("value") or "string_value"))


def _strings(attributes: object) -> list[str]:
    return [f"{kv.key}={_value(kv.value)}" for kv in attributes]  # type: ignore[attr-defined]


def _service(attributes: object) -> str | None:
    for kv in attributes:  # type: ignore[attr-defined]
        if kv.key == "service.name":
            return str(kv.value.string_value)
    return None


@pytest.fixture
def collector() -> Iterator[tuple[str, Collector]]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            with received.lock:
                received.raw.append(body)
                received.content_types.add(self.headers.get("Content-Type", ""))
                if self.path == "/v1/traces":
                    received.traces.append(ExportTraceServiceRequest.FromString(body))
                elif self.path == "/v1/metrics":
                    received.metrics.append(ExportMetricsServiceRequest.FromString(body))
            self.send_response(200 if self.path in ("/v1/traces", "/v1/metrics") else 404)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(predicate: Callable[[], bool], timeout: float, what: Callable[[], str], log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what()} within {timeout} s; broker log:\n{log.read_text()[-4000:]}")
        time.sleep(0.2)


@pytest.mark.rabbitmq
def test_serve_exports_traces_and_metrics_over_otlp(tmp_path: Path,
                                                    collector: tuple[str, Collector]) -> None:
    endpoint, received = collector
    namespace = f"t{uuid.uuid4().hex[:10]}."
    env = {**os.environ, "MASP_STATE_DIR": str(tmp_path / "state"),
           "MASP_DSA_DIR": str(REPO / "deploy" / "dsa"),
           "MASP_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'masp.db'}",
           "MASP_NAMESPACE": namespace, "MASP_AMQP_URL": AMQP_URL,
           "MASP_HTTP_PORT": str(_free_port()), "MASP_OTLP_ENDPOINT": endpoint, "MASP_LOG_LEVEL": "WARNING",
           "MASP_WITNESS_EVERY_S": "3600", "OTEL_BSP_SCHEDULE_DELAY": "500"}
    init = subprocess.run([sys.executable, "-m", "broker.cli", "init"], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60, check=False)
    assert init.returncode == 0, init.stdout + init.stderr
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "broker.cli", "serve", "--demo"], env=env, cwd=REPO,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        # The batch span processor exports every few seconds while the demo case plays.
        _wait(lambda: received.span_names("masp-broker") >= BROKER_STEPS, 60,
              lambda: f"not every broker step span was exported: {received.span_names('masp-broker')}", log)
        proc.send_signal(signal.SIGTERM)  # a clean stop flushes the last metrics and spans
        assert proc.wait(timeout=30) == 0, log.read_text()[-4000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        asyncio.run(_delete_namespace(namespace))

    assert received.content_types == {"application/x-protobuf"}
    metrics = received.metric_names()
    assert {"masp_messages_submitted", "masp_deliveries_delivered", "masp_deliveries_acknowledged",
            "masp_delivery_latency_seconds"} <= metrics, metrics
    exported = "\n".join(received.attribute_strings())
    assert "masp.message_id=" in exported  # ids travel; the test below would pass on an empty export
    lowered = exported.lower()
    assert [v for v in personal_values() if v.lower() in lowered] == []
    # and not hidden anywhere else in the payloads (names of people, addresses, references)
    blob = b"\n".join(received.raw).lower()
    assert [v for v in personal_values() if v.lower().encode() in blob] == []


async def _delete_namespace(namespace: str) -> None:
    """The queues and exchanges ``masp serve`` declared: a test removes what it made."""
    connection = await aio_pika.connect(AMQP_URL)
    async with connection, connection.channel() as channel:
        await topology.delete(channel, topology.Names(namespace))
