"""Where one message's time goes at low load: the pipeline's steps on one clock (a development tool).

``python -m bench.timeline [--count N] [--database-url URL]`` sends ``N`` police referrals
one at a time, as the low-load phase of ``masp bench`` does, and prints for each timed step
its median start (milliseconds after the submission was published) and median duration,
in the order they happen, with how often the step ran per message.

Unlike ``masp bench``, the broker runs in this process beside the adapters, so that one
clock times every step; the absolute figures are therefore a little lower than the
benchmark's (no hop between processes) and are not the figures of record. The steps are
timed by wrapping the named functions for the duration of the run: nothing in the product
is changed for it.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import inspect
import statistics
import tempfile
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import aio_pika

import adapters.runtime as adapter_runtime
import broker.store.audit_log as audit_log
import broker.transport.workers as workers
from adapters.runtime import AdapterRuntime
from adapters.submitter import AmqpSubmitter
from bench.e2e import RECIPIENTS, REPO, SUBJECTS, Options, Tracker, _database, _handed
from broker import wire
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.demo.run import demo_body
from broker.exchange import Exchange
from broker.service import BrokerService, init_state
from broker.settings import Settings
from broker.transport import topology

Timeline = list[tuple[str, float, float]]  # (step, start after publishing, duration), seconds

#: (owner, attribute, label): the steps on a message's path, in roughly the order they run.
STEPS: tuple[tuple[Any, str, str], ...] = (
    (workers.BrokerWorkers, "_on_ingress", "broker: ingress consumer (until the reply is sent)"),
    (wire, "decrypt_submission", "broker: decrypt the submission"),
    (wire, "verify_submission", "broker: verify the SD-JWT and its times"),
    (audit_log.AuditLog, "_tree", "broker: under the sequencer, read the tree head"),
    (Exchange, "_decide", "broker: replay guard, policy, entries, deliveries, receipt"),
    (wire, "sign_delivery_token", "broker: sign a delivery token"),
    (wire, "seal_delivery", "broker: seal a delivery (JWE)"),
    (audit_log.Batch, "write", "broker: insert the audit rows"),
    (audit_log.AuditLog, "_checkpoint", "broker: sign the checkpoint"),
    (workers.BrokerWorkers, "_reply", "broker: publish the signed receipt"),
    (workers.BrokerWorkers, "relay_once", "broker: outbox relay round"),
    (workers, "claim_queued", "broker: relay claims queued deliveries"),
    (workers.BrokerWorkers, "_publish", "broker: publish deliveries, wait for confirms"),
    (wire, "open_delivery", "adapter: decrypt and verify a delivery"),
    (adapter_runtime, "atomic_write", "adapter: fsynced hand-over"),
    (workers, "acknowledge_many", "broker: audit acknowledgements"),
)


@contextmanager
def timed(steps: tuple[tuple[Any, str, str], ...],
          events: list[tuple[str, float, float]]) -> Iterator[None]:
    """Wrap each step so that every call appends (label, start, end); unwrapped afterwards."""
    originals = [(owner, name, getattr(owner, name)) for owner, name, _ in steps]
    try:
        for (owner, name, label), (_, _, fn) in zip(steps, originals, strict=True):
            setattr(owner, name, _wrapped(fn, label, events))
        yield
    finally:
        for owner, name, fn in originals:
            setattr(owner, name, fn)


def _wrapped(fn: Callable[..., Any], label: str,
             events: list[tuple[str, float, float]]) -> Callable[..., Any]:
    if inspect.iscoroutinefunction(fn):
        @functools.wraps(fn)
        async def run_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                events.append((label, start, time.perf_counter()))
        return run_async

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            events.append((label, start, time.perf_counter()))
    return run


def summarise(timelines: list[Timeline]) -> list[tuple[float, float, str, float]]:
    """(median start ms, median duration ms, label, runs per message), ordered by start.

    The n-th call of a step in one message is matched with the n-th call in the others.
    """
    calls: dict[tuple[str, int], list[tuple[float, float]]] = defaultdict(list)
    for timeline in timelines:
        seen: dict[str, int] = defaultdict(int)
        for label, start, duration in sorted(timeline, key=lambda e: e[1]):
            seen[label] += 1
            calls[(label, seen[label])].append((start, duration))
    rows = [(statistics.median(s for s, _ in v) * 1000, statistics.median(d for _, d in v) * 1000,
             f"{label} #{n}", len(v) / len(timelines)) for (label, n), v in calls.items()]
    return sorted(rows)


async def run_timeline(amqp_url: str, count: int, database_url: str | None, workdir: Path,
                       warmup: int = 20) -> tuple[list[float], list[float], list[Timeline]]:
    url, drop = await _database(Options(amqp_url=amqp_url, database_url=database_url), workdir)
    settings = Settings(state_dir=workdir / "state", database_url=url, amqp_url=amqp_url,
                        dsa_dir=REPO / "deploy" / "dsa", namespace=f"timeline{uuid.uuid4().hex[:8]}.",
                        deployment="bench", log_level="WARNING", timer_interval_s=3600,
                        ops_sample_s=3600, rate_limit="")  # the pipeline's capacity, not the limit
    init_state(settings, datetime.now(UTC).date())
    events: list[tuple[str, float, float]] = []
    done: list[float] = []
    receipted: list[float] = []
    timelines: list[Timeline] = []
    service = await BrokerService.open(settings)
    try:
        with timed(STEPS, events):
            await service.start_workers()
            registry = KeyRegistry.from_public_dir(settings.keys_dir)
            police = AdapterRuntime(AgencyKeys.load(settings.keys_dir, "police"), registry,
                                    workdir / "police", names=service.names)
            tracker = Tracker()
            connection = await aio_pika.connect_robust(amqp_url)
            receivers = []
            for agency in RECIPIENTS:
                rt = AdapterRuntime(AgencyKeys.load(settings.keys_dir, agency), registry,
                                    workdir / agency, names=service.names,
                                    on_delivery=partial(_handed, tracker, agency))
                await rt.start(connection)
                receivers.append(rt)
            submitter = AmqpSubmitter(connection, service.names, "police")
            await submitter.start()
            body = demo_body("case_referral")
            try:
                for i in range(warmup + count):
                    mid = wire.new_id()
                    _, jwe = police.compose("case_referral", body, case_id="TIMELINE-1",
                                            purpose="risk_management", subjects=SUBJECTS, jti=mid)
                    handed: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                    tracker.waiters[mid] = handed
                    await asyncio.sleep(0.05)  # the previous message's acknowledgements settle
                    events.clear()
                    start = time.perf_counter()
                    await submitter.submit(jwe)
                    receipt = time.perf_counter()
                    await asyncio.wait_for(handed, 30)
                    end = time.perf_counter()
                    await asyncio.sleep(0.05)
                    if i >= warmup:
                        done.append(end - start)
                        receipted.append(receipt - start)
                        timelines.append([(label, s - start, e - s) for label, s, e in events])
            finally:
                await submitter.close()
                for rt in receivers:
                    await rt.stop()
                await connection.close()
    finally:
        await service.close()
        cleanup = await aio_pika.connect(amqp_url)
        async with cleanup, cleanup.channel() as ch:
            await topology.delete(ch, service.names)
        if drop is not None:
            await drop()
    return done, receipted, timelines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=60)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--amqp-url", default=Settings().amqp_url)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="masp-timeline-") as tmp:
        done, receipted, timelines = asyncio.run(
            run_timeline(args.amqp_url, args.count, args.database_url, Path(tmp)))
    print(f"{len(done)} referrals one at a time: both recipients handed over after "
          f"{statistics.median(done) * 1000:.1f} ms (p50), signed receipt after "
          f"{statistics.median(receipted) * 1000:.1f} ms")
    print(" start ms  duration ms  per message  step")
    for start, duration, label, per in summarise(timelines):
        print(f"{start:9.2f}  {duration:11.2f}  {per:11.2f}  {label}")


if __name__ == "__main__":
    main()
