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


def listening_process(url_port: int, host: str = "127.0.0.1") -> psutil.Process | None:
    """The local process that listens on ``host:url_port`` (RabbitMQ's or PostgreSQL's server),
    or None when it is elsewhere or not ours to read: its CPU is then simply not reported."""
    try:
        for conn in psutil.net_connections(kind="tcp"):
            if (conn.status == psutil.CONN_LISTEN and conn.pid is not None
                    and conn.laddr.port == url_port and conn.laddr.ip in (host, "0.0.0.0", "::")):
                return psutil.Process(conn.pid)
    except (psutil.AccessDenied, psutil.NoSuchProcess):
        return None
    return None


@dataclass
class ServerCpu:
    """CPU of a local server process and its children (PostgreSQL's backends are children)
    over a span of a run. A child that exits during the span takes its CPU with it, so this
    reads low rather than high."""

    server: psutil.Process | None
    _start: dict[int, float] | None = None

    def _now(self) -> dict[int, float]:
        assert self.server is not None
        seen: dict[int, float] = {}
        for p in (self.server, *self.server.children(recursive=True)):
            try:
                t = p.cpu_times()
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
            seen[p.pid] = t.user + t.system
        return seen

    def start(self) -> None:
        self._start = self._now() if self.server is not None else None

    def seconds(self) -> float | None:
        """CPU seconds since ``start``; None if the server could not be read."""
        if self.server is None or self._start is None:
            return None
        try:
            now = self._now()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            return None
        return sum(cpu - self._start.get(pid, 0.0) for pid, cpu in now.items())
