"""A strict reader of the Prometheus text exposition format (0.0.4), for tests.

Every line must be a ``# HELP``, a ``# TYPE`` or a sample; every sample must belong to a
family whose ``# TYPE`` came before it; histogram buckets must be cumulative and end in
``le="+Inf"`` equal to ``_count``. Raises ``AssertionError`` naming the first bad line.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
VALUE = r"[+-]?(?:Inf|NaN|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?|\.[0-9]+(?:[eE][+-]?[0-9]+)?)"
HELP_LINE = re.compile(rf"# HELP ({NAME}) (.*)")
TYPE_LINE = re.compile(rf"# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)")
SAMPLE_LINE = re.compile(rf"({NAME})(\{{(?:{LABEL}(?:,{LABEL})*,?)?\}})? ({VALUE})(?: -?[0-9]+)?")
ONE_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


@dataclass
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class MetricFamily:
    name: str
    kind: str
    help: str = ""
    samples: list[Sample] = field(default_factory=list)


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: "\n" if m.group(1) == "n" else m.group(1), value)


def _family_of(sample: str, families: dict[str, MetricFamily]) -> MetricFamily | None:
    if sample in families:
        return families[sample]
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and base in families and families[base].kind in ("histogram", "summary"):
            return families[base]
    return None


def parse(text: str) -> dict[str, MetricFamily]:
    assert text.endswith("\n"), "exposition must end with a newline"
    families: dict[str, MetricFamily] = {}
    helps: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if m := HELP_LINE.fullmatch(line):
            assert m.group(1) not in helps, f"line {number}: second HELP for {m.group(1)}"
            helps[m.group(1)] = m.group(2)
        elif m := TYPE_LINE.fullmatch(line):
            assert m.group(1) not in families, f"line {number}: second TYPE for {m.group(1)}"
            families[m.group(1)] = MetricFamily(m.group(1), m.group(2), helps.get(m.group(1), ""))
        elif m := SAMPLE_LINE.fullmatch(line):
            family = _family_of(m.group(1), families)
            assert family is not None, f"line {number}: sample {m.group(1)} before its TYPE"
            labels = {k: _unescape(v) for k, v in ONE_LABEL.findall(m.group(2) or "")}
            family.samples.append(Sample(m.group(1), labels, float(m.group(3))))
        else:
            raise AssertionError(f"line {number} is not in the exposition format: {line!r}")
    for family in families.values():
        if family.kind == "histogram":
            _check_histogram(family)
        if family.kind == "counter":
            assert all(s.value >= 0 for s in family.samples), f"{family.name}: negative counter"
    return families


def _check_histogram(family: MetricFamily) -> None:
    series: dict[tuple[tuple[str, str], ...], list[Sample]] = {}
    for s in family.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        series.setdefault(key, []).append(s)
    for key, samples in series.items():
        buckets = [s for s in samples if s.name.endswith("_bucket")]
        count = [s.value for s in samples if s.name.endswith("_count")]
        assert buckets and len(count) == 1, f"{family.name}{key}: buckets and one _count needed"
        bounds = [math.inf if s.labels["le"] == "+Inf" else float(s.labels["le"]) for s in buckets]
        assert bounds == sorted(bounds) and bounds[-1] == math.inf, f"{family.name}{key}: bad le"
        values = [s.value for s in buckets]
        assert values == sorted(values), f"{family.name}{key}: buckets not cumulative"
        assert values[-1] == count[0], f"{family.name}{key}: +Inf bucket differs from _count"
