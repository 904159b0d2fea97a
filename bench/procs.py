"""Broker worker processes for the benchmark: the broker runs apart from the adapters.

The adapters and the broker sharing one interpreter would share one GIL and one RSS, and
neither figure would mean anything; each broker worker is its own process, as in
production, and its CPU time and RSS are read from outside with psutil.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Iterator
from contextlib import contextmanager
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event

import psutil


def _broker_main(settings_json: str, ready: Event, stop: Event, profile: str | None) -> None:
    import os

    from broker.logs import configure
    from broker.settings import Settings

    settings = Settings.model_validate_json(settings_json)
    configure(json=False, level=settings.log_level, library_level=settings.log_library_level)

    async def run() -> None:
        from broker.service import BrokerService

        service = await BrokerService.open(settings)
        try:
            await service.start_workers()
            ready.set()
            await asyncio.get_running_loop().run_in_executor(None, stop.wait)
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


@contextmanager
def broker_processes(settings_json: str, workers: int, *, profile: str | None = None,
                     timeout: float = 60.0
                     ) -> Iterator[list[psutil.Process]]:
    """Start ``workers`` broker processes (consumers + relay each), yield them, stop them."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    started: list[tuple[BaseProcess, Event]] = []
    try:
        for _ in range(workers):
            ready = ctx.Event()
            proc: BaseProcess = ctx.Process(target=_broker_main, daemon=True,
                                            args=(settings_json, ready, stop, profile))
            proc.start()
            started.append((proc, ready))
        for proc, ready in started:
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
