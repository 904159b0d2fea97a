"""Extra broker worker processes: consumers and outbox relay, no HTTP (``masp serve --workers N``).

One Python process uses one core; the crypto and policy work per message is CPU-bound, so
a broker scales on one machine by running several processes that consume the same quorum
queues. They share the audit sequencer through PostgreSQL's advisory lock and the outbox
through ``FOR UPDATE SKIP LOCKED``, so more than one process needs PostgreSQL. The
benchmark starts its broker the same way, apart from the adapters, so that its CPU time and
RSS can be read from outside with psutil.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

import psutil


def _worker_main(settings_json: str, ready: Event, stop: Event, profile: str | None) -> None:
    import os

    from broker.logs import configure
    from broker.settings import Settings

    settings = Settings.model_validate_json(settings_json)
    configure(json=settings.log_json, level=settings.log_level, library_level=settings.log_library_level)

    async def run() -> None:
        from broker.service import BrokerService, settle_heap

        service = await BrokerService.open(settings)
        settle_heap()
        try:
            await service.start_workers()
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, _until_stopped, stop)
        finally:
            await service.close()

    if profile is None:
        asyncio.run(run())
        return
    from pyinstrument import Profiler  # dev dependency: only with --profile

    with Profiler(async_mode="disabled", interval=0.002) as profiler:
        asyncio.run(run())
    with open(os.path.join(profile, f"broker-{os.getpid()}.txt"), "w") as fh:
        fh.write(profiler.output_text(unicode=True, show_all=False))
    with open(os.path.join(profile, f"broker-{os.getpid()}.flat.txt"), "w") as fh:
        fh.write(profiler.output_text(unicode=True, flat=True))


def _until_stopped(stop: Event) -> None:
    """Return when told to stop, or when the parent is gone (killed, or ended by a signal
    before it could say so): a worker never outlives its ``masp serve``."""
    import os

    parent = os.getppid()
    while not stop.wait(1.0):
        if os.getppid() != parent:
            return


@contextmanager
def worker_processes(settings_json: str, workers: int, *, profile: str | None = None,
                     timeout: float = 60.0
                     ) -> Iterator[list[psutil.Process]]:
    """Start ``workers`` broker processes (consumers + relay each), yield them, stop them.

    The database schema must exist already (the caller opened a ``BrokerService``). Each
    process still runs the idempotent schema statements as it opens, and PostgreSQL refuses
    two concurrent ``CREATE OR REPLACE FUNCTION`` of the same trigger function ("tuple
    concurrently updated"), so the processes start one after another. ``profile``: a
    directory for a pyinstrument profile of each process (a development dependency).
    """
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    started: list[tuple[BaseProcess, Event]] = []
    try:
        for _ in range(workers):
            ready = ctx.Event()
            proc: BaseProcess = ctx.Process(target=_worker_main, daemon=True,
                                            args=(settings_json, ready, stop, profile))
            proc.start()
            started.append((proc, ready))
            for _ in range(int(timeout * 10)):
                if ready.wait(0.1) or not proc.is_alive():
                    break
            if not ready.is_set():
                raise RuntimeError(f"a broker worker process did not start (exit code {proc.exitcode})")
        yield [psutil.Process(proc.pid) for proc, _ in started]
    finally:
        stop.set()
        for proc, _ in started:
            proc.join(30)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
