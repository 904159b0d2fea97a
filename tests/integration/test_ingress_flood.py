"""Bounded load test: a junk flood from one agency neither holds back another's submissions
nor grows the permanent audit log at the flood's rate.

On the real RabbitMQ, with every agency on its own RabbitMQ user and this namespace's topic
permissions loaded as ``deploy/rabbitmq/definitions.json`` has them, and the broker with its
default settings (600 submissions a minute per agency, refusals paced at 200 a second):

1. baseline: probation submits alone, one message at a time (well within its allowance);
   its latency, publish to the broker's reply, is sampled after a warm-up;
2. flood: nhs publishes 3,000 junk messages from a process of its own, 300 a second (five
   times its whole per-minute allowance every two seconds), while police sends valid
   traffic and probation samples again until the broker has dealt with every junk message;
3. baseline again, probation alone, pooled with the first: the shared machine's background
   load can change within a minute, and that must not pass for the flood's effect.

Asserted: probation's p99 during the flood is within max(2 x baseline, baseline + 100 ms).
The absolute floor: the baseline p99 is a few tens of milliseconds, and on the shared
2-core machine RabbitMQ taking in the flood, the flood's publisher and the broker receiving,
refusing and acknowledging each junk message all take CPU from the same cores, so the
probation path pays a scheduling cost of a few milliseconds per hop that no queueing
discipline removes; doubling a 30 ms figure is within that noise. With about a hundred
samples the p99 is the second slowest, and one pause of the process or of SQLite (seen:
one sample of 150-700 ms, the rest under 90 ms, in three of six full runs of the suite on
one day) decided it at a 50 ms floor; 100 ms keeps that out. What this guards against is
the old behaviour, where honest submissions waited behind the junk for tens of seconds.
Then: the audit log grew by at most one entry per kind of nhs refusal during the flood (the
first, in full) and one summary per kind when the windows closed, every junk message is
counted in them, no checkpoint was signed for the flood beyond its first refusals, and the
log verifies. The suite's only timed assertion; about 45 s.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aio_pika
import pytest
from sqlalchemy import func, select

from adapters.runtime import ingress_message
from adapters.submitter import AmqpSubmitter
from broker.audit.entry import AuditEntry
from broker.demo.run import demo_body
from broker.service import settle_heap
from broker.store.audit_export import verify_database
from broker.store.dead_letters import pending_count
from broker.store.models import AuditRow, CheckpointRow
from tests.integration.conftest import AMQP_URL, REPO, Env
from tests.integration.rabbitmq_users import AgencyUsers

FLOOD = 3000  # junk messages from nhs
FLOOD_RATE = 300.0  # per second
FLOOD_S = 12.0  # and never longer than this
WARMUP, SAMPLES = 15, 100  # probation's baseline: SAMPLES before and SAMPLES after the flood
GAP_S = 0.1  # between one probation reply and its next: within its allowance of 600/minute
POLICE_GAP_S = 0.5  # police's valid traffic: a third agency's honest messages flow meanwhile
SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}]

pytestmark = [pytest.mark.parametrize("database_url", ["sqlite"], indirect=True), pytest.mark.timeout(120)]


def p99(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=100, method="inclusive")[98]


async def _sample(submit: Callable[[], Awaitable[dict[str, object]]], count: int,
                  until: Callable[[], bool] | None = None,
                  when: list[float] | None = None) -> list[float]:
    """Latencies of ``count`` sequential submissions (or until ``until()`` once ``count`` are in);
    ``when`` collects their start times."""
    found: list[float] = []
    while len(found) < count or (until is not None and not until()):
        start = time.perf_counter()
        reply = await submit()
        found.append(time.perf_counter() - start)
        if when is not None:
            when.append(start)
        assert "audit_seq" in reply, reply
        await asyncio.sleep(GAP_S)
    return found


async def _queue_depth(env: Env, queue: str) -> int:
    async with env.connection.channel() as ch:
        declared = await ch.declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)


async def test_a_junk_flood_does_not_hold_back_another_agency(env: Env, agency_users: AgencyUsers) -> None:
    names = env.service.names
    agency_users.topic_permissions(names.ingress)  # each user may publish with its own routing key only
    nhs = env.amqp["nhs"]

    async def into_probations_queue() -> None:
        async with nhs.channel(publisher_confirms=True) as ch:
            target = await ch.get_exchange(names.ingress, ensure=False)
            await target.publish(ingress_message(b"junk", nhs), routing_key="probation")

    with pytest.raises((aio_pika.exceptions.ChannelClosed, aio_pika.exceptions.ChannelInvalidStateError)):
        await into_probations_queue()  # RabbitMQ refuses: nhs may use its own routing key only

    probation = AmqpSubmitter(env.amqp["probation"], names, "probation")
    police = AmqpSubmitter(env.amqp["police"], names, "police")
    await probation.start()
    await police.start()

    def referral(sender: str) -> Callable[[], Awaitable[dict[str, object]]]:
        rt, submitter = env.adapters[sender], probation if sender == "probation" else police
        return lambda: submitter.submit(rt.compose(
            "case_referral", demo_body("case_referral"), case_id="C-FLOOD-1", purpose="risk_management",
            subjects=SUBJECTS)[1], timeout=60)

    settle_heap()  # as `masp serve` does: no full collection rescans the start-up heap mid-test
    try:
        # 1. baseline: probation alone
        await _sample(referral("probation"), WARMUP)
        baseline = await _sample(referral("probation"), SAMPLES)
        async with env.service.exchange.sessions() as s:
            head = int((await s.execute(select(func.max(AuditRow.seq)))).scalar_one())

        # 2. nhs floods from its own process; police sends valid traffic; probation samples
        flooder = subprocess.Popen(  # noqa: ASYNC220 - a child process with its own event loop
            [sys.executable, "-m", "tests.integration.flood_publisher", names.ingress, "nhs",
             str(FLOOD), str(FLOOD_S), str(FLOOD_RATE)], cwd=REPO, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "FLOOD_URL": agency_users.url("nhs", AMQP_URL)})
        assert flooder.stdout is not None
        assert (await asyncio.to_thread(flooder.stdout.readline)).strip() == "started"
        flood_started = time.monotonic()
        flood_over = asyncio.create_task(asyncio.to_thread(flooder.communicate, timeout=60))
        drained = asyncio.Event()

        async def police_traffic() -> int:
            sent = 0
            while not drained.is_set():
                assert "audit_seq" in await referral("police")()
                sent += 1
                await asyncio.sleep(POLICE_GAP_S)
            return sent

        async def drain() -> None:  # the flood is over once the broker has dealt with all of it
            await asyncio.shield(flood_over)
            while await _queue_depth(env, names.ingress_queue("nhs")) > 0:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            drained.set()

        police_task = asyncio.create_task(police_traffic())
        drainer = asyncio.create_task(drain())
        started_at, when = time.perf_counter(), list[float]()
        during = await _sample(referral("probation"), SAMPLES, until=drained.is_set, when=when)
        await asyncio.wait_for(drainer, 60)
        flood_s = time.monotonic() - flood_started
        police_sent = await police_task
        out, _ = await flood_over
        report = json.loads(out.strip().splitlines()[-1])

        # 3. baseline again: the machine's background load may have changed meanwhile
        baseline += await _sample(referral("probation"), SAMPLES)
    finally:
        gc.unfreeze()
        await probation.close()
        await police.close()

    base, flooded = p99(baseline), p99(during)
    allowed = max(2 * base, base + 0.100)
    print(f"\nprobation p99 baseline {base * 1000:.1f} ms, during the flood {flooded * 1000:.1f} ms "
          f"(allowed {allowed * 1000:.1f} ms; medians {statistics.median(baseline) * 1000:.1f} / "
          f"{statistics.median(during) * 1000:.1f} ms; {len(during)} samples); nhs published "
          f"{report['published']} junk in {report['seconds']} s, dealt with in {flood_s:.1f} s; "
          f"police sent {police_sent}")
    assert report["published"] >= FLOOD * 0.9, report  # it really was a flood
    slowest = sorted(zip(during, when, strict=True), reverse=True)[:5]
    assert flooded <= allowed, (f"probation p99 {flooded * 1000:.1f} ms > {allowed * 1000:.1f} ms; "
                                "slowest " + ", ".join(f"{d * 1000:.0f} ms at {t - started_at:.1f} s"
                                                       for d, t in slowest))

    # the audit log grew with distinct events, not with the flood
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(AuditRow).where(AuditRow.seq > head))).scalars().all()  # type: ignore[arg-type]
    new = [AuditEntry.from_leaf(r.leaf) for r in rows]
    junk = [e for e in new if e.actor.agency == "nhs" and e.kind == "refused"]
    kinds = {e.rules[0] for e in junk}
    assert kinds <= {"ingress.malformed", "ingress.rate-limited"}, kinds
    assert len(junk) <= len(kinds), [e.rules for e in junk]  # only the first of each kind so far
    honest = [e for e in new if e not in junk]
    assert all(e.kind != "refused" or e.recipient is not None for e in honest)  # policy, not ingress
    async with env.service.exchange.sessions() as s:
        sizes = [head + 1, *(await s.execute(select(CheckpointRow.size).where(  # type: ignore[call-overload]
            CheckpointRow.size > head + 1).order_by(CheckpointRow.size))).scalars()]
    junk_seqs = {r.seq for r, e in zip(rows, new, strict=True) if e in junk}
    junk_only = sum(1 for a, b in itertools.pairwise(sizes) if set(range(a, b)) <= junk_seqs)
    print(f"audit: {len(new)} entries ({len(junk)} for the flood, {len(honest)} for honest traffic), "
          f"{len(sizes) - 1} checkpoints ({junk_only} for the flood alone), for {report['published']} "
          f"junk and {len(during) + 2 * SAMPLES + police_sent} honest submissions")
    # a checkpoint per unit of work: the flood's own are those of its first refusals only
    assert junk_only <= len(junk)

    await env.service.exchange.refusals.flush(everything=True)  # the windows close
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(AuditRow).where(AuditRow.seq > head))).scalars().all()  # type: ignore[arg-type]
    junk = [e for e in (AuditEntry.from_leaf(r.leaf) for r in rows)
            if e.actor.agency == "nhs" and e.kind == "refused"]
    assert len(junk) <= 2 * len(kinds)  # plus one summary per kind
    assert sum(e.repeated.count if e.repeated else 1 for e in junk) == report["published"]  # all on record
    async with env.service.exchange.sessions() as s:
        assert await pending_count(s) == 0  # refused and acknowledged: nothing requeued to death
    assert (await verify_database(env.service)).ok
