"""Prometheus text exposition (format 0.0.4) of OpenTelemetry metrics data.

Counters are exposed as ``<name>_total``, histograms as cumulative ``_bucket{le=...}``
series with ``_sum`` and ``_count``, gauges as they are. Every family in ``families`` gets
its ``# HELP`` and ``# TYPE`` lines, with samples or without.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.sdk.metrics.export import Gauge, Histogram, MetricsData, Sum

from broker.metrics import Family

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

Sample = tuple[str, Mapping[str, object], float]


def render(families: Sequence[Family], data: MetricsData | None) -> str:
    points: dict[str, list[Sample]] = {f.name: [] for f in families}
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name in points:
                    points[metric.name].extend(_samples(metric.name, metric.data))
    lines: list[str] = []
    for family in families:
        exposed = f"{family.name}_total" if family.kind == "counter" else family.name
        lines.append(f"# HELP {exposed} {_escape_help(family.help)}")
        lines.append(f"# TYPE {exposed} {family.kind}")
        lines.extend(f"{name}{_labels(attrs)} {_value(value)}"
                     for name, attrs, value in sorted(points[family.name], key=_order))
    return "\n".join(lines) + "\n"


def _samples(name: str, data: object) -> Iterable[Sample]:
    if isinstance(data, Sum):
        suffix = "_total" if data.is_monotonic else ""
        for p in data.data_points:
            yield f"{name}{suffix}", dict(p.attributes or {}), float(p.value)
    elif isinstance(data, Gauge):
        for p in data.data_points:
            yield name, dict(p.attributes or {}), float(p.value)
    elif isinstance(data, Histogram):
        for hp in data.data_points:
            attrs = dict(hp.attributes or {})
            running = 0
            for bound, count in zip((*hp.explicit_bounds, math.inf), hp.bucket_counts, strict=True):
                running += count
                yield f"{name}_bucket", {**attrs, "le": _value(bound)}, float(running)
            yield f"{name}_sum", attrs, float(hp.sum)
            yield f"{name}_count", attrs, float(hp.count)


def _order(sample: Sample) -> tuple[str, str, float]:
    name, attrs, _ = sample
    le = attrs.get("le")
    rest = {k: v for k, v in attrs.items() if k != "le"}
    bound = math.inf if le in (None, "+Inf") else float(str(le))
    return (_labels(rest), name, bound)


def _labels(attrs: Mapping[str, object]) -> str:
    if not attrs:
        return ""
    return "{" + ",".join(f'{k}="{_escape_label(str(v))}"' for k, v in sorted(attrs.items())) + "}"


def _escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _value(v: float) -> str:
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    if math.isnan(v):
        return "NaN"
    return str(int(v)) if float(v).is_integer() and abs(v) < 2**53 else repr(float(v))
