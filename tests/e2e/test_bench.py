"""``masp bench --json``: the pipeline beside raw RabbitMQ, small and bounded; figures are sane.

Timing thresholds belong to docs/performance.md, not to tests: the machine is shared.
This checks the contract (keys, units, relations that hold at any speed) and that the
benchmark's own audit log verifies.
"""

from __future__ import annotations

import json
import uuid

import asyncpg
import pytest

from tests.e2e.test_cli import masp

PG_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"
KEYS = {"raw_msgs_per_s", "e2e_disclosures_per_s", "ratio", "p50_ms_low_load",
        "raw_p50_ms_low_load", "peak_rss_mb", "e2e_msgs_per_s", "broker_cpu_s_per_msg",
        "adapters_cpu_s_per_msg", "latency_ms", "raw_latency_ms", "cost_by_size",
        "message_bytes", "audit_verified", "rabbitmq_cpu_s_per_msg", "raw_rabbitmq_cpu_s_per_msg",
        "database_cpu_s_per_msg", "total_cpu_s_per_msg", "cpu_bound_msgs_per_s"}


def _check(result: dict[str, object], count: int) -> None:
    assert result.keys() >= KEYS
    assert result["count"] == count and result["audit_verified"] is True
    r: dict[str, float] = {k: float(v) for k, v in result.items()  # type: ignore[arg-type]
                           if isinstance(v, int | float) and not isinstance(v, bool)}
    assert r["raw_msgs_per_s"] > 0 and r["e2e_msgs_per_s"] > 0
    # the report rounds: msgs/s to 0.1, the ratio to 0.001
    assert r["e2e_disclosures_per_s"] == pytest.approx(2 * r["e2e_msgs_per_s"], rel=0.01, abs=0.2)
    assert r["ratio"] == pytest.approx(r["e2e_disclosures_per_s"] / r["raw_msgs_per_s"], rel=0.02,
                                       abs=0.0011)
    assert 0 < r["raw_p50_ms_low_load"] < 10_000 and 0 < r["p50_ms_low_load"] < 60_000
    assert 20 < r["peak_rss_mb"] < 4096  # a real broker process was measured
    assert r["broker_cpu_s_per_msg"] > 0 and r["adapters_cpu_s_per_msg"] > 0
    assert 1000 < r["message_bytes"] < 256 * 1024  # a sealed referral, not a placeholder
    # RabbitMQ runs on this machine: its own CPU was read, for the raw run and the pipeline
    # (in clock ticks: a raw run of a few messages may read zero)
    assert r["rabbitmq_cpu_s_per_msg"] > 0 and r["raw_rabbitmq_cpu_s_per_msg"] >= 0
    database = result["database_cpu_s_per_msg"]
    assert (database is None) == (result["backend"] == "sqlite")  # SQLite works in the broker
    parts = r["broker_cpu_s_per_msg"] + r["adapters_cpu_s_per_msg"] + r["rabbitmq_cpu_s_per_msg"]
    assert r["total_cpu_s_per_msg"] == pytest.approx(parts + float(database or 0), abs=2e-5)
    assert r["cpu_bound_msgs_per_s"] == pytest.approx(
        int(result["conditions"]["cpus"]) / r["total_cpu_s_per_msg"], rel=0.01)  # type: ignore[index]
    latency = result["latency_ms"]
    assert isinstance(latency, dict)
    for phase in ("low_load", "saturation"):
        p = latency[phase]
        assert p["n"] > 0 and 0 < p["p50"] <= p["p95"] <= p["p99"]
    slices = result["cost_by_size"]
    assert isinstance(slices, list) and slices and slices[-1]["messages"] == count
    # CPU time is counted in clock ticks: a slice of a few messages may read zero
    assert all(s["broker_cpu_ms_per_msg"] >= 0 and s["msgs_per_s"] > 0 for s in slices)
    assert sum(s["broker_cpu_ms_per_msg"] for s in slices) > 0


def test_bench_json_on_sqlite() -> None:
    out = masp("bench", "--json", "--count", "20", timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["backend"] == "sqlite" and result["workers"] == 1
    _check(result, 20)


async def test_bench_two_workers_on_postgres_leaves_no_database() -> None:
    before = await _bench_databases()
    out = masp("bench", "--json", "--count", "10", "--workers", "2", "--database-url",
               f"postgresql://postgres@127.0.0.1:5432/{uuid.uuid4().hex}", timeout=240)
    assert out.returncode == 0, out.stdout + out.stderr
    result = json.loads(out.stdout)
    assert result["backend"] == "postgres" and result["workers"] == 2
    _check(result, 10)
    assert await _bench_databases() == before


def test_bench_refuses_workers_without_postgres() -> None:
    out = masp("bench", "--workers", "2")
    assert out.returncode == 2 and "PostgreSQL" in out.stderr and out.stderr.count("\n") == 1


async def _bench_databases() -> set[str]:
    conn = await asyncpg.connect(PG_SERVER)
    try:
        rows = await conn.fetch("SELECT datname FROM pg_database WHERE datname LIKE 'masp_bench_%'")
    finally:
        await conn.close()
    return {r["datname"] for r in rows}
