"""Broker metrics on the OpenTelemetry metrics SDK: scraped at ``/metrics``, exported over OTLP
when configured.

Counters follow the audit log (each committed entry is counted by kind: submitted, refused by
rule, acknowledged, expired, dead-lettered), so whatever appends an entry is counted without
being told; ``delivered`` (published to the recipient's inbox with a confirm) and the
end-to-end latency (accepted → acknowledged) are recorded where they happen. Gauges (queue
depths, audit size, checkpoint age, unacknowledged and overdue deliveries, consumers up) read
the last ``OpsSnapshot``, refreshed by ``broker/ops_state.py``.

Label values are agencies, message types, rule ids and queue names: ``label`` turns anything
else into ``other``, so no metric can carry a field value.
"""

from __future__ import annotations

import re
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricReader, MetricsData
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource

from broker.audit.entry import AuditEntry, EntryKind
from broker.crypto.keys import AGENCIES
from broker.telemetry import otlp_class

#: End-to-end latency buckets (seconds): a delivery waits on the recipient's systems, so up to hours.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
                   3600.0, 4 * 3600.0, 24 * 3600.0)
RATE_WINDOW_S = 60.0

_LABEL = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")
Kind = Literal["counter", "histogram", "gauge"]


@dataclass(frozen=True)
class Family:
    """One metric family as exposed: name (without ``_total``), kind and help text."""

    name: str
    kind: Kind
    help: str


FAMILIES = (
    Family("masp_messages_submitted", "counter", "Messages accepted for processing, by sender and type."),
    Family("masp_deliveries_delivered", "counter", "Deliveries published to a recipient inbox (confirmed)."),
    Family("masp_refusals", "counter", "Refusals (at ingress or by policy), by the rule that refused."),
    Family("masp_deliveries_acknowledged", "counter", "Recipient acknowledgements, by status."),
    Family("masp_deliveries_expired", "counter", "Deliveries that expired unacknowledged."),
    Family("masp_deliveries_dead_lettered", "counter", "Messages dead-lettered by RabbitMQ."),
    Family("masp_delivery_latency_seconds", "histogram",
           "Submission accepted to recipient acknowledgement, in seconds."),
    Family("masp_queue_messages", "gauge", "Messages ready in each queue."),
    Family("masp_queue_consumers", "gauge", "Consumers on each queue."),
    Family("masp_consumer_up", "gauge", "1 if this process's consumer on the queue is alive."),
    Family("masp_audit_entries", "gauge", "Entries in the audit log (size of the latest checkpoint)."),
    Family("masp_audit_checkpoint_age_seconds", "gauge", "Seconds since the latest audit checkpoint."),
    Family("masp_deliveries_unacknowledged", "gauge", "Deliveries queued or published, unacknowledged."),
    Family("masp_deliveries_overdue", "gauge", "Unacknowledged deliveries older than the overdue threshold."),
)


def label(value: object) -> str:
    """A label value: a known-shaped token, ``none`` for nothing, ``other`` for anything else."""
    if value is None:
        return "none"
    text = str(value)
    return text if _LABEL.fullmatch(text) else "other"


@dataclass
class OpsSnapshot:
    """What the gauges report; replaced as a whole by each sample."""

    taken_at: float = 0.0
    queues: dict[str, tuple[int, int]] = field(default_factory=dict)  # queue → (messages, consumers)
    consumers_up: dict[str, bool] = field(default_factory=dict)
    audit_entries: int | None = None
    checkpoint_age_s: float | None = None
    unacknowledged: dict[str, int] = field(default_factory=dict)
    overdue: dict[str, int] = field(default_factory=dict)


_GaugeRead = Callable[[OpsSnapshot], list[tuple[dict[str, str], float]]]
_Callback = Callable[[CallbackOptions], Iterable[Observation]]


class RateWindow:
    """Events per second over the last ``window_s`` seconds, per key (this process's view).

    Keys are ``in:<queue>`` (this process published to it, or saw it published) and
    ``out:<queue>`` (consumed from it); a key nobody measures has no rate (``None``), not 0.
    """

    def __init__(self, keys: Iterable[str], window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._events: dict[str, deque[float]] = {k: deque() for k in keys}

    def record(self, key: str, n: int = 1) -> None:
        events = self._events.get(key)
        if events is None:
            return
        now = time.monotonic()
        events.extend([now] * n)
        self._trim(events, now)

    def rate(self, key: str) -> float | None:
        events = self._events.get(key)
        if events is None:
            return None
        self._trim(events, time.monotonic())
        return round(len(events) / self.window_s, 4)

    def _trim(self, events: deque[float], now: float) -> None:
        while events and events[0] < now - self.window_s:
            events.popleft()


class BrokerMetrics:
    def __init__(self, *exporters: MetricReader, service: str = "masp-broker") -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(
            metric_readers=[self.reader, *exporters], shutdown_on_exit=False,
            resource=Resource.create({"service.name": service}),
            views=[View(instrument_name="masp_delivery_latency_seconds",
                        aggregation=ExplicitBucketHistogramAggregation(LATENCY_BUCKETS))])
        meter = self.provider.get_meter("masp")
        helps = {f.name: f.help for f in FAMILIES}
        self.submitted = meter.create_counter("masp_messages_submitted", description=helps[
            "masp_messages_submitted"])
        self.delivered = meter.create_counter("masp_deliveries_delivered", description=helps[
            "masp_deliveries_delivered"])
        self.refused = meter.create_counter("masp_refusals", description=helps["masp_refusals"])
        self.acknowledged = meter.create_counter("masp_deliveries_acknowledged", description=helps[
            "masp_deliveries_acknowledged"])
        self.expired = meter.create_counter("masp_deliveries_expired", description=helps[
            "masp_deliveries_expired"])
        self.dead_lettered = meter.create_counter("masp_deliveries_dead_lettered", description=helps[
            "masp_deliveries_dead_lettered"])
        self.latency = meter.create_histogram("masp_delivery_latency_seconds", unit="s", description=helps[
            "masp_delivery_latency_seconds"])
        self.snapshot = OpsSnapshot()
        inboxes = [f"{d}:inbox.{a}" for a in AGENCIES for d in ("in", "out")]
        ingress = [f"out:masp.ingress.{a}" for a in AGENCIES]  # the ingress consumers record these
        self.rates = RateWindow([*ingress, "in:masp.acks", "out:masp.acks",
                                 "in:masp.dead-letters", *inboxes])
        gauges: dict[str, _GaugeRead] = {
            "masp_queue_messages": lambda s: [({"queue": q}, m) for q, (m, _) in s.queues.items()],
            "masp_queue_consumers": lambda s: [({"queue": q}, c) for q, (_, c) in s.queues.items()],
            "masp_consumer_up": lambda s: [({"queue": q}, int(up)) for q, up in s.consumers_up.items()],
            "masp_audit_entries": lambda s: [] if s.audit_entries is None else [({}, s.audit_entries)],
            "masp_audit_checkpoint_age_seconds": lambda s: [] if s.checkpoint_age_s is None
            else [({}, s.checkpoint_age_s)],
            "masp_deliveries_unacknowledged": lambda s: [({"recipient": r}, n)
                                                         for r, n in s.unacknowledged.items()],
            "masp_deliveries_overdue": lambda s: [({"recipient": r}, n) for r, n in s.overdue.items()],
        }
        for name, read in gauges.items():
            meter.create_observable_gauge(name, callbacks=[self._observe(read)], description=helps[name])

    def _observe(self, read: _GaugeRead) -> _Callback:
        def callback(_: CallbackOptions) -> Iterable[Observation]:
            return [Observation(value, {k: label(v) for k, v in attrs.items()})
                    for attrs, value in read(self.snapshot)]
        return callback

    # --- recording ---------------------------------------------------------------------------

    def observe_audit(self, entries: Sequence[AuditEntry]) -> None:
        """Count committed audit entries by kind (an ``AuditLog`` observer)."""
        for e in entries:
            if e.kind == EntryKind.SUBMITTED:
                via = "http" if e.actor.auth == "agency-jwt" else e.actor.auth
                self.submitted.add(1, {"sender": label(e.sender), "masp_type": label(e.masp_type),
                                       "via": label(via)})
            elif e.kind == EntryKind.REFUSED:
                # a summary of repeated ingress refusals stands for that many refusals
                self.refused.add(e.repeated.count if e.repeated else 1,
                                 {"rule": label(refusing_rule(e)), "recipient": label(e.recipient)})
            elif e.kind in (EntryKind.ACKNOWLEDGED, EntryKind.REJECTED_BY_RECIPIENT):
                self.acknowledged.add(1, {"recipient": label(e.recipient), "status": label(e.decision)})
                self.rates.record(f"out:inbox.{e.recipient}")
                if e.actor.auth == "amqp":
                    self.rates.record("in:masp.acks")
                    self.rates.record("out:masp.acks")
            elif e.kind == EntryKind.EXPIRED:
                self.expired.add(1, {"recipient": label(e.recipient)})
            elif e.kind == EntryKind.DEAD_LETTERED:
                self.dead_lettered.add(1, {"recipient": label(e.recipient)})
                self.rates.record("in:masp.dead-letters")

    def record_delivered(self, recipient: str, masp_type: str) -> None:
        self.delivered.add(1, {"recipient": label(recipient), "masp_type": label(masp_type)})
        self.rates.record(f"in:inbox.{recipient}")

    def record_latency(self, recipient: str, accepted_at: datetime, acknowledged_at: datetime) -> None:
        """End to end: the submission was accepted (delivery created) → the recipient acknowledged."""
        elapsed = _aware(acknowledged_at) - _aware(accepted_at)
        self.latency.record(max(elapsed.total_seconds(), 0.0), {"recipient": label(recipient)})

    def collect(self) -> MetricsData | None:
        return self.reader.get_metrics_data()

    def shutdown(self) -> None:
        self.provider.shutdown()


def otlp_readers(endpoint: str | None, interval_s: float = 15.0) -> list[MetricReader]:
    """A periodic OTLP/HTTP exporting reader when an endpoint is configured (else none)."""
    if not endpoint:
        return []
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

    exporter = otlp_class("metric_exporter", "OTLPMetricExporter")(
        endpoint=endpoint.rstrip("/") + "/v1/metrics")
    return [PeriodicExportingMetricReader(exporter, export_interval_millis=interval_s * 1000)]


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)  # SQLite returns naive UTC


def refusing_rule(entry: AuditEntry) -> str:
    """The rule that refused: the one the reason starts with (``P6.consent: ...``), else the first."""
    head = (entry.reason or "").partition(":")[0]
    if head in entry.rules:
        return head
    return entry.rules[0] if entry.rules else "unknown"

