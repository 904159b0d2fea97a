"""Latency percentiles and process costs shared by the benchmarks."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Latencies:
    """Milliseconds."""

    n: int
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, seconds: Iterable[float]) -> Latencies:
        ms = sorted(s * 1000 for s in seconds)
        if not ms:
            return cls(0, 0.0, 0.0, 0.0)
        return cls(len(ms), statistics.median(ms), _pct(ms, 0.95), _pct(ms, 0.99))


def _pct(ordered: Sequence[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def cpu_seconds(procs: Iterable[psutil.Process]) -> float:
    """User + system CPU of these processes so far (children excluded)."""
    total = 0.0
    for p in procs:
        t = p.cpu_times()
        total += t.user + t.system
    return total
