"""broker/metrics.py and broker/prometheus.py: the exposition parses line by line, values are
right, and label values cannot carry free text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from broker import prometheus
from broker.metrics import FAMILIES, BrokerMetrics, Family, OpsSnapshot, RateWindow, label
from tests.exposition import parse

T0 = datetime(2026, 11, 21, 10, 0, tzinfo=UTC)


def test_exposition_of_every_family_parses_with_right_values() -> None:
    m = BrokerMetrics()
    m.record_delivered("nhs", "case_referral")
    m.record_delivered("nhs", "case_referral")
    m.record_delivered("probation", "case_referral")
    m.record_latency("nhs", T0, T0 + timedelta(seconds=0.3))
    m.record_latency("nhs", T0.replace(tzinfo=None), T0 + timedelta(seconds=7))  # SQLite: naive UTC
    m.snapshot = OpsSnapshot(queues={"inbox.nhs": (3, 1), "masp.ingress": (0, 1)},
                             consumers_up={"masp.ingress": True, "masp.acks": False},
                             audit_entries=42, checkpoint_age_s=1.5, unacknowledged={"nhs": 3},
                             overdue={"nhs": 1})
    families = parse(prometheus.render(FAMILIES, m.collect()))

    assert {f.name for f in families.values()} == {
        f"{f.name}_total" if f.kind == "counter" else f.name for f in FAMILIES}
    delivered = {(s.labels["recipient"], s.value)
                 for s in families["masp_deliveries_delivered_total"].samples}
    assert delivered == {("nhs", 2), ("probation", 1)}
    hist = families["masp_delivery_latency_seconds"]
    by_le = {s.labels["le"]: s.value for s in hist.samples if s.name.endswith("_bucket")}
    assert by_le["0.25"] == 0 and by_le["0.5"] == 1 and by_le["10"] == 2 and by_le["+Inf"] == 2
    total = next(s.value for s in hist.samples if s.name.endswith("_sum"))
    assert abs(total - 7.3) < 1e-9
    depth = {s.labels["queue"]: s.value for s in families["masp_queue_messages"].samples}
    assert depth == {"inbox.nhs": 3, "masp.ingress": 0}
    up = {s.labels["queue"]: s.value for s in families["masp_consumer_up"].samples}
    assert up == {"masp.ingress": 1, "masp.acks": 0}
    assert families["masp_audit_entries"].samples[0].value == 42
    assert families["masp_deliveries_overdue"].samples[0].labels == {"recipient": "nhs"}
    assert families["masp_messages_submitted_total"].samples == []  # declared, nothing yet


def test_label_values_are_tokens_or_other() -> None:
    assert label("case_referral") == "case_referral" and label("P6.consent") == "P6.consent"
    assert label(None) == "none"
    assert label("Claire Hutton") == "other" and label("c.hutton@example.org") == "other"
    m = BrokerMetrics()
    m.record_delivered("Claire Hutton", "14 Larkspur Road")
    text = prometheus.render(FAMILIES, m.collect())
    assert "Claire" not in text and 'recipient="other",masp_type="other"' in text.replace(
        'masp_type="other",recipient="other"', 'recipient="other",masp_type="other"')


def test_label_escaping_round_trips() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader], shutdown_on_exit=False)
    odd = 'a "quoted" \\ back\nslash'
    provider.get_meter("t").create_counter("odd").add(1, {"v": odd})
    family = Family("odd", "counter", "help with \\ and\nnewline")
    text = prometheus.render([family], reader.get_metrics_data())
    (sample,) = parse(text)["odd_total"].samples
    assert sample.labels == {"v": odd} and sample.value == 1
    provider.shutdown()


def test_rates_only_for_what_is_measured() -> None:
    rates = RateWindow(["in:inbox.nhs"], window_s=10)
    rates.record("in:inbox.nhs", 5)
    rates.record("in:elsewhere")
    assert rates.rate("in:inbox.nhs") == 0.5 and rates.rate("in:elsewhere") is None


def test_a_summary_of_repeated_refusals_counts_as_that_many() -> None:
    from broker.audit.entry import Actor, AuditEntry, EntryKind, Repeated

    m = BrokerMetrics()
    first = AuditEntry(seq=0, kind=EntryKind.REFUSED, at=T0, actor=Actor(agency="nhs", auth="amqp"),
                       decision="deny", rules=("ingress.rate-limited",))
    summary = first.model_copy(update={"seq": 1, "repeated": Repeated(
        count=2399, digests=("sha-256:00",), digests_sha256="sha-256:11", first_at=T0, last_at=T0)})
    m.observe_audit([first, summary])
    refused = parse(prometheus.render(FAMILIES, m.collect()))["masp_refusals_total"].samples
    assert [(s.labels["rule"], s.value) for s in refused] == [("ingress.rate-limited", 2400)]
