"""``masp serve --workers N``: N broker processes consume the same queues (PostgreSQL only)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import aio_pika
import asyncpg
import httpx
import psutil

from broker.crypto.keys import AGENCIES
from broker.transport import topology
from tests.e2e.test_cli import REPO, masp

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_several_workers_need_postgres(tmp_path: Path) -> None:
    result = masp("serve", "--workers", "2", env={"MASP_STATE_DIR": str(tmp_path)}, timeout=60)
    assert result.returncode == 2
    assert "PostgreSQL" in result.stderr and result.stderr.count("\n") == 1


async def test_two_workers_consume_the_queues_and_stop_together(tmp_path: Path) -> None:
    dbname = f"masp_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(PG_ADMIN)
    await admin.execute(f'CREATE DATABASE "{dbname}"')
    await admin.close()
    names = topology.Names(f"t{uuid.uuid4().hex[:10]}.")
    port = _free_port()
    env = {**os.environ, "MASP_STATE_DIR": str(tmp_path / "state"), "MASP_NAMESPACE": names.namespace,
           "MASP_DATABASE_URL": f"postgresql+asyncpg://postgres@127.0.0.1:5432/{dbname}",
           "MASP_DSA_DIR": str(REPO / "deploy" / "dsa"), "MASP_HTTP_PORT": str(port),
           "MASP_LOG_LEVEL": "WARNING", "MASP_AMQP_URL": AMQP_URL}
    assert masp("init", env=env).returncode == 0
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "broker.cli", "serve", "--workers", "2"],  # noqa: ASYNC220
                            env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(600):
                try:
                    if (await client.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                await asyncio.sleep(0.1)
        connection = await aio_pika.connect(AMQP_URL)
        async with connection, connection.channel() as ch:
            for queue in (*(names.ingress_queue(a) for a in AGENCIES), names.acks):
                declared = await ch.declare_queue(queue, passive=True)
                assert declared.declaration_result.consumer_count == 2, queue
        workers = [p for p in psutil.Process(proc.pid).children(recursive=True)
                   if "spawn_main" in " ".join(p.cmdline())]
        assert len(workers) == 1  # this process plus one more
        proc.terminate()
        assert proc.wait(timeout=30) is not None
        _, alive = psutil.wait_procs(workers, timeout=20)  # however the parent ended
        assert not alive
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
        cleanup = await aio_pika.connect(AMQP_URL)
        async with cleanup, cleanup.channel() as ch:
            await topology.delete(ch, names)
        admin = await asyncpg.connect(PG_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        await admin.close()
