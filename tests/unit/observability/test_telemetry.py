"""broker/telemetry.py: W3C trace context only across boundaries, no values on spans, cheap
when nothing is configured, OTLP only when configured (and then for real or not at all)."""

from __future__ import annotations

import importlib

import pytest
from opentelemetry import baggage, context, trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from broker import metrics, telemetry
from broker.errors import ConfigurationError, SchemaInvalid

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE}-{PARENT}-01"


def test_extract_reads_trace_context_only_and_never_the_local_span(spans: InMemorySpanExporter) -> None:
    carrier = {"Traceparent": TRACEPARENT, "tracestate": "masp=1", "baggage": "victim=Claire%20Hutton"}
    with telemetry.step("local"):
        ctx = telemetry.extract(carrier)
        empty = telemetry.extract({})
    remote = trace.get_current_span(ctx).get_span_context()
    assert format(remote.trace_id, "032x") == TRACE and format(remote.span_id, "016x") == PARENT
    assert remote.is_remote and remote.trace_state.get("masp") == "1"
    assert baggage.get_all(ctx) == {}
    assert not trace.get_current_span(empty).get_span_context().is_valid  # not the local span


def test_inject_never_carries_baggage(spans: InMemorySpanExporter) -> None:
    token = context.attach(baggage.set_baggage("victim", "Claire Hutton"))
    try:
        with telemetry.continue_trace({"traceparent": TRACEPARENT}, "masp.publish", SpanKind.PRODUCER):
            headers = telemetry.inject()
    finally:
        context.detach(token)
    assert set(headers) == {"traceparent"} and TRACE in headers["traceparent"]
    assert PARENT not in headers["traceparent"]  # our own span is the parent now


def test_spans_carry_listed_ids_and_codes_never_values_or_messages(spans: InMemorySpanExporter) -> None:
    with pytest.raises(SchemaInvalid), telemetry.step("masp.schema", masp_type="case_referral",
                                                      victim_name="Claire Hutton"):
        raise SchemaInvalid("victim_name: 'Claire Hutton' is not valid")
    (span,) = spans.get_finished_spans()
    assert dict(span.attributes or {}) == {"masp.masp_type": "case_referral", "error.type": "SchemaInvalid",
                                           "masp.outcome": "refused"}
    assert span.status.status_code == StatusCode.ERROR and span.status.description == "schema-invalid"
    assert not span.events  # no exception event with its message and stack


def test_without_an_sdk_spans_cost_nothing_but_the_context_still_flows() -> None:
    carrier = {"traceparent": TRACEPARENT}
    with telemetry.use_provider(trace.NoOpTracerProvider()):
        with telemetry.continue_trace(carrier, "masp.ingress", SpanKind.CONSUMER) as span:
            assert not span.is_recording()
            with telemetry.step("masp.decrypt") as inner:
                assert not inner.is_recording()
                assert telemetry.inject() == {"traceparent": TRACEPARENT}
        with telemetry.continue_trace(None, "masp.ingress", SpanKind.CONSUMER):
            assert telemetry.inject() == {}  # nothing to keep for the relay, no row written


def test_otlp_export_is_real_when_configured_or_fails_naming_the_package() -> None:
    assert telemetry.setup(None, service="t") is None and metrics.otlp_readers(None) == []
    try:
        importlib.import_module("opentelemetry.exporter.otlp.proto.http")
        installed = True
    except ModuleNotFoundError:
        installed = False
    if installed:
        assert telemetry.otlp_class("trace_exporter", "OTLPSpanExporter").__name__ == "OTLPSpanExporter"
        (reader,) = metrics.otlp_readers("http://127.0.0.1:4318")
        reader.shutdown()
    else:
        with pytest.raises(ConfigurationError, match=telemetry.OTLP_PACKAGE):
            telemetry.setup("http://127.0.0.1:4318", service="t")
        with pytest.raises(ConfigurationError, match="MASP_OTLP_ENDPOINT"):
            metrics.otlp_readers("http://127.0.0.1:4318")
