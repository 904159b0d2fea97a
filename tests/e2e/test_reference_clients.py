"""The reference clients in examples/, in Java (the JDK alone) and Node.js (panva/jose), each
against a real ``masp serve`` on the real RabbitMQ: the proof that docs/spec suffices to
integrate. Built and run exactly as their READMEs say; then the broker's own record is read
back to check what each client reported.

The broker runs as a deployment with one mailbox-only agency (advocacy) and one whose tokens
are signed with the alg name ``EdDSA`` (probation), so both clients meet both variants. Java
runs against SQLite, Node against PostgreSQL. Everything a run declares lives under its own
namespace and is deleted after.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aio_pika
import asyncpg
import httpx
import pytest

from broker import wire
from broker.api.auth import issue_user_token
from broker.crypto.keys import AgencyKeys
from broker.transport import topology
from broker.transport.topology import Names
from tests.e2e.test_adapter_cli import MASP, REPO, _free_port, _wait_http

AMQP_URL = "amqp://guest:guest@127.0.0.1:5672/"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"
JAVA = REPO / "examples" / "java"
NODE = REPO / "examples" / "node"
RECIPIENTS = {"probation", "nhs", "advocacy"}


@dataclass
class Broker:
    env: dict[str, str]
    url: str

    @property
    def keys_dir(self) -> Path:
        return Path(self.env["MASP_STATE_DIR"]) / "keys"

    def client_env(self) -> dict[str, str]:
        return {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8",
                "HOME": os.environ.get("HOME", str(self.keys_dir.parent)), "MASP_URL": self.url,
                "MASP_AMQP_URL": AMQP_URL, "MASP_NAMESPACE": self.env["MASP_NAMESPACE"],
                "MASP_KEYS_DIR": str(self.keys_dir), "MASP_TIMEOUT_S": "60",
                "MASP_DELIVERY_MODES": self.env["MASP_DELIVERY_MODES"],
                "MASP_JWS_ALG_NAMES": self.env["MASP_JWS_ALG_NAMES"]}

    def agency_headers(self, agency: str) -> dict[str, str]:
        keys = AgencyKeys.load(self.keys_dir, agency)
        return {"authorization": f"Bearer {wire.sign_agency_auth(keys, datetime.now(UTC))}"}

    def ig_headers(self) -> dict[str, str]:
        token = issue_user_token(AgencyKeys.load(self.keys_dir, "broker"), "ig-1", "ig_officer",
                                 datetime.now(UTC))
        return {"authorization": f"Bearer {token}"}


def _admin(statement: str) -> None:
    """One statement as PostgreSQL's administrator (CREATE or DROP DATABASE)."""
    async def run() -> None:
        admin = await asyncpg.connect(PG_ADMIN)
        try:
            await admin.execute(statement)
        finally:
            await admin.close()

    asyncio.run(run())


@pytest.fixture(params=["sqlite", "postgres"])
def broker(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Broker]:
    namespace = f"rc{uuid.uuid4().hex[:10]}"
    port = _free_port()
    env = {**os.environ, "MASP_STATE_DIR": str(tmp_path / "state"), "MASP_NAMESPACE": namespace,
           "MASP_HTTP_PORT": str(port), "MASP_DSA_DIR": str(REPO / "deploy" / "dsa"),
           "MASP_DELIVERY_MODES": "advocacy=mailbox", "MASP_JWS_ALG_NAMES": "probation=EdDSA",
           "MASP_WITNESS_EVERY_S": "3600", "PYTHONUNBUFFERED": "1"}
    database = None
    if request.param == "postgres":
        database = f"masp_rc_{uuid.uuid4().hex[:10]}"
        _admin(f'CREATE DATABASE "{database}"')
        env["MASP_DATABASE_URL"] = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}"
    log = (tmp_path / "serve.log").open("wb")
    server: subprocess.Popen[bytes] | None = None
    try:
        init = subprocess.run([*MASP, "init"], env=env, cwd=REPO, capture_output=True, check=False)
        assert init.returncode == 0, init.stderr.decode()
        server = subprocess.Popen([*MASP, "serve"], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        _wait_http(f"http://127.0.0.1:{port}/healthz")
        yield Broker(env, f"http://127.0.0.1:{port}")
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
        log.close()
        asyncio.run(_delete_namespace(namespace))
        _delete_leftover_queues(namespace)
        if database is not None:
            _admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


async def _delete_namespace(namespace: str) -> None:
    connection = await aio_pika.connect(AMQP_URL)
    async with connection, connection.channel() as ch:
        await topology.delete(ch, Names(namespace))


def _delete_leftover_queues(namespace: str) -> None:
    """Any queue a client declared under the namespace and left behind (a client deletes its
    own events queue; one that failed half-way may not have)."""
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "name"],  # noqa: S607
                            capture_output=True, text=True, timeout=60, check=False)
    for name in listed.stdout.split():
        if name.startswith(f"{namespace}."):
            subprocess.run(["rabbitmqctl", "-q", "delete_queue", name],  # noqa: S607
                           capture_output=True, timeout=60, check=False)


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300) -> str:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _round_trip_checked(broker: Broker, stdout: str) -> dict[str, Any]:
    """The client's own report, and the broker's record of the same message."""
    lines = stdout.strip().splitlines()
    assert not [line for line in lines if line.startswith("FAIL")], stdout
    steps = [line.split()[1] for line in lines if line.startswith("ok ")]
    assert len(steps) >= 8, stdout
    report = json.loads(lines[-1])
    mid = report["message_id"]

    # the sender's view: every delivery acknowledged
    status = httpx.get(f"{broker.url}/v1/messages/{mid}", headers=broker.agency_headers("police"), timeout=30)
    assert status.status_code == 200, status.text
    states = {d["recipient"]: d["state"] for d in status.json()["deliveries"]}
    assert states == dict.fromkeys(RECIPIENTS, "acknowledged"), states

    # the audit log: each acknowledgement once, advocacy's over HTTP (mailbox), the others over AMQP
    entries = httpx.get(f"{broker.url}/v1/audit/entries", params={"kind": "acknowledged", "limit": 1000},
                        headers=broker.ig_headers(), timeout=30).json()["entries"]
    acked = [e for e in entries if e["message_id"] == mid]
    assert sorted(e["recipient"] for e in acked) == sorted(RECIPIENTS)
    assert {e["recipient"]: e["actor"]["auth"] for e in acked} == {
        "advocacy": "http", "probation": "amqp", "nhs": "amqp"}

    # nothing was left in the inboxes; the mailbox agency's queue never held anything
    async def depths() -> dict[str, int]:
        names = Names(broker.env["MASP_NAMESPACE"])
        connection = await aio_pika.connect(AMQP_URL)
        async with connection, connection.channel() as ch:
            return {a: int((await ch.declare_queue(names.inbox(a), passive=True)).declaration_result
                           .message_count or 0) for a in RECIPIENTS}

    assert asyncio.run(depths()) == dict.fromkeys(RECIPIENTS, 0)
    return report


@pytest.mark.parametrize("broker", ["sqlite"], indirect=True)
def test_the_java_client_built_from_the_spec_alone_completes_a_round_trip(broker: Broker,
                                                                          tmp_path: Path) -> None:
    javac, java = shutil.which("javac"), shutil.which("java")
    assert javac and java, "the JDK is installed by scripts/test-preflight's instructions"
    out = tmp_path / "out"
    sources = sorted(str(p) for p in (JAVA / "src").rglob("*.java"))
    _run([javac, "-encoding", "UTF-8", "-d", str(out), *sources], JAVA, broker.client_env())
    env = broker.client_env()
    self_test = _run([java, "-cp", str(out), "masp.example.SelfTest"], JAVA, env)
    assert "FAIL" not in self_test
    _run([java, "-cp", str(out), "masp.example.SpecExamples", str(REPO / "docs" / "spec")], JAVA, env)
    _round_trip_checked(broker, _run([java, "-cp", str(out), "masp.example.Main"], JAVA, env))


@pytest.mark.parametrize("broker", ["postgres"], indirect=True)
def test_the_node_client_built_from_the_spec_alone_completes_a_round_trip(broker: Broker) -> None:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm
    assert (NODE / "node_modules" / "jose").is_dir(), "npm ci --prefix examples/node (scripts/test-preflight)"
    _run([npm, "test", "--prefix", str(NODE)], REPO, broker.client_env())
    _round_trip_checked(broker, _run([node, "examples/node/client.mjs"], REPO, broker.client_env()))


def test_the_clients_read_no_python() -> None:
    """Built from docs/spec: neither client reads the broker's source or shells out to it."""
    for folder in (JAVA, NODE):
        for path in folder.rglob("*"):
            if "node_modules" in path.parts or path.suffix not in (".java", ".mjs", ".js"):
                continue
            text = path.read_text("utf-8")
            # the broker's source files (docs/spec/examples/keys/broker/ is the spec's, and fine)
            assert not re.search(r"(?<![\w/])(broker|adapters|schemas)/[\w/]*\.py\b", text), path
            for needle in ("wire.py", "python", sys.executable):
                assert needle not in text, f"{path.relative_to(REPO)} mentions {needle}"
