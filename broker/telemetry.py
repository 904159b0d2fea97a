"""Traces across agencies: OpenTelemetry spans, W3C trace context on the wire, OTLP when configured.

A message's trace runs from the sending adapter's submit span, over HTTP (``traceparent``
header) or AMQP (``traceparent`` in the message headers), through the broker's spans for
decrypt, verify, schema, policy and the audit append, into the outbox (the context is kept
with the message, ``broker/store/trace_context.py``), onto the published delivery, into the
receiving adapter and back with its acknowledgement.

What crosses an agency boundary is ``traceparent`` and ``tracestate`` only: baggage is never
extracted nor injected, and a trace is only ever continued from the wire, never from
whatever span happens to be current in the process. Span attributes are ids, message
types, agencies, rules and outcomes from ``ATTRIBUTES``; field values are never attributes,
and exceptions are recorded as their type and code, never their message.

Without ``MASP_OTLP_ENDPOINT`` no SDK is installed: spans are the API's non-recording spans
(a context lookup each), yet the incoming trace context still flows through to the outgoing
messages, so agencies that do trace keep one trace across the broker.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from typing import Any

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from broker.errors import ConfigurationError, MaspError

TRACER_NAME = "masp"
#: The only trace headers read from or written to the wire (W3C trace context).
TRACE_HEADERS = ("traceparent", "tracestate")
OTLP_PACKAGE = "opentelemetry-exporter-otlp-proto-http"

#: Span attribute names (``masp.<name>``): identifiers and outcomes only.
ATTRIBUTES = frozenset({
    "message_id", "delivery_id", "masp_type", "sender", "recipient", "agency", "via", "outcome",
    "code", "rule", "decisions", "deliveries", "audit_seq", "audit_entries", "status", "queue",
    "duplicate", "redelivered",
})

_propagator = TraceContextTextMapPropagator()


@dataclass
class _State:
    provider: TracerProvider | None = None
    cached: tuple[object, trace.Tracer] | None = None


_state = _State()


def tracer() -> trace.Tracer:
    """The tracer of the installed provider (the API's global one unless ``use_provider`` set one)."""
    provider = _state.provider or trace.get_tracer_provider()
    if _state.cached is None or _state.cached[0] is not provider:
        _state.cached = (provider, provider.get_tracer(TRACER_NAME))
    return _state.cached[1]


@contextmanager
def use_provider(provider: TracerProvider | None) -> Iterator[None]:
    """Trace with ``provider`` inside the block (tests use an SDK provider with an in-memory exporter)."""
    previous = _state.provider
    _state.provider = provider
    try:
        yield
    finally:
        _state.provider = previous


def setup(otlp_endpoint: str | None, *, service: str, sample_ratio: float = 1.0) -> SdkTracerProvider | None:
    """Install an SDK tracer provider exporting over OTLP/HTTP, if an endpoint is configured.

    Raises ``ConfigurationError`` naming the missing package when an endpoint is set but the
    OTLP exporter is not installed: a configured export must never silently do nothing.
    """
    if not otlp_endpoint:
        return None
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    exporter_cls = otlp_class("trace_exporter", "OTLPSpanExporter")
    provider = SdkTracerProvider(resource=Resource.create({"service.name": service}),
                                 sampler=ParentBased(TraceIdRatioBased(sample_ratio)))
    provider.add_span_processor(BatchSpanProcessor(
        exporter_cls(endpoint=otlp_endpoint.rstrip("/") + "/v1/traces")))
    _state.provider = provider
    trace.set_tracer_provider(provider)
    return provider


def otlp_class(module: str, name: str) -> Any:
    """``opentelemetry.exporter.otlp.proto.http.<module>.<name>``, or a clear configuration error."""
    try:
        found = importlib.import_module(f"opentelemetry.exporter.otlp.proto.http.{module}")
    except ImportError:
        raise ConfigurationError(
            f"MASP_OTLP_ENDPOINT is set but the OTLP exporter is not installed: add the package "
            f"{OTLP_PACKAGE} (or unset MASP_OTLP_ENDPOINT)") from None
    return getattr(found, name)


# --- propagation ---------------------------------------------------------------------------


def extract(carrier: Mapping[str, Any] | None) -> Context:
    """The trace context in ``carrier`` (HTTP or AMQP headers), from an empty context.

    Only ``traceparent``/``tracestate`` are read: baggage from another agency is dropped, and
    nothing current in this process (a caller's span in the same event loop) is inherited.
    """
    headers: dict[str, str] = {}
    for key, value in (carrier or {}).items():
        name = str(key).lower()
        if name in TRACE_HEADERS:
            headers[name] = value.decode("latin-1") if isinstance(value, bytes) else str(value)
    return _propagator.extract(headers, context=Context())


def inject() -> dict[str, Any]:
    """``traceparent``/``tracestate`` of the current span, for an outgoing message; never baggage.

    (String values, typed ``Any`` so the dict fits both HTTP and AMQP header parameters.)
    """
    headers: dict[str, str] = {}
    _propagator.inject(headers)
    return {k: v for k, v in headers.items() if k in TRACE_HEADERS}


# --- spans ---------------------------------------------------------------------------------


def _attributes(attrs: Mapping[str, object]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in attrs.items():
        if key not in ATTRIBUTES or value is None:  # an unlisted name never reaches a span
            continue
        if isinstance(value, list | tuple):
            out[f"masp.{key}"] = [str(v) for v in value]
        elif isinstance(value, bool | int | float | str):
            out[f"masp.{key}"] = value
        else:
            out[f"masp.{key}"] = str(value)
    return out


def annotate(**attrs: object) -> None:
    """Set attributes on the current span (ids and outcomes, see ``ATTRIBUTES``)."""
    span = trace.get_current_span()
    if span.is_recording():
        span.set_attributes(_attributes(attrs))


@contextmanager
def _span(name: str, context: Context | None, kind: SpanKind, attrs: Mapping[str, object]
          ) -> Iterator[Span]:
    with tracer().start_as_current_span(
        name, context=context, kind=kind, attributes=_attributes(attrs),
        record_exception=False, set_status_on_exception=False,  # messages may quote values
    ) as span:
        try:
            yield span
        except BaseException as exc:
            if span.is_recording():
                code = exc.code if isinstance(exc, MaspError) else type(exc).__name__
                span.set_status(Status(StatusCode.ERROR, code))
                span.set_attribute("error.type", type(exc).__name__)
                span.set_attribute("masp.outcome", "refused" if isinstance(exc, MaspError) else "error")
            raise


@contextmanager
def step(name: str, kind: SpanKind = SpanKind.INTERNAL, **attrs: object) -> Iterator[Span]:
    """A child span of the current one: ``masp.decrypt``, ``masp.policy``, ..."""
    with _span(name, None, kind, attrs) as span:
        yield span


@asynccontextmanager
async def astep(name: str, **attrs: object) -> AsyncIterator[Span]:
    """``step`` for an ``async with`` line beside other asynchronous context managers."""
    with _span(name, None, SpanKind.INTERNAL, attrs) as span:
        yield span


@contextmanager
def continue_trace(carrier: Mapping[str, Any] | None, name: str, kind: SpanKind, **attrs: object
                   ) -> Iterator[Span]:
    """A span continuing the trace in ``carrier`` (or a new trace): where work arrives over the wire."""
    with _span(name, extract(carrier), kind, attrs) as span:
        yield span


@contextmanager
def publishing(parent: Mapping[str, str] | None, name: str, **attrs: object) -> Iterator[dict[str, Any]]:
    """A producer span under ``parent``; yields the trace headers to put on the message."""
    with _span(name, extract(parent), SpanKind.PRODUCER, attrs):
        yield inject()


@contextmanager
def observed(**ids: object) -> Iterator[None]:
    """Bind ids to every log line in the block and set them on the current span."""
    annotate(**ids)
    with structlog.contextvars.bound_contextvars(**{k: v for k, v in ids.items() if v is not None}):
        yield


__all__ = ["ATTRIBUTES", "OTLP_PACKAGE", "TRACE_HEADERS", "annotate", "astep", "continue_trace", "extract",
           "inject", "observed", "otlp_class", "publishing", "setup", "step", "tracer", "use_provider"]
