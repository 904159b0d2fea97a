"""``masp adapter check`` and ``masp adapter run`` as an agency runs them, beside ``masp serve``.

Real processes on the real RabbitMQ, in a namespace of their own that is deleted after.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import aio_pika
import httpx
import pytest

from broker.transport import topology
from broker.transport.topology import Names

REPO = Path(__file__).resolve().parents[2]
MASP = [sys.executable, "-m", "broker.cli"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not come up in {timeout:.0f} s")


@dataclass
class Deployment:
    env: dict[str, str]
    started: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def adapter(self, agency: str, port: int) -> None:
        self.started.append(subprocess.Popen(
            [*MASP, "adapter", "run", agency, "--port", str(port), "--poll", "0.5"], env=self.env, cwd=REPO,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        _wait_http(f"http://127.0.0.1:{port}/healthz")


@pytest.fixture
def deployment(tmp_path: Path) -> Iterator[Deployment]:
    namespace = f"e2e{uuid.uuid4().hex[:8]}."
    env = {**os.environ, "MASP_STATE_DIR": str(tmp_path), "MASP_NAMESPACE": namespace,
           "MASP_HTTP_PORT": str(_free_port()), "MASP_DSA_DIR": str(REPO / "deploy" / "dsa"),
           "MASP_WITNESS_EVERY_S": "3600", "PYTHONUNBUFFERED": "1"}
    init = subprocess.run([*MASP, "init"], env=env, cwd=REPO, capture_output=True, check=False)
    assert init.returncode == 0
    dep = Deployment(env)
    dep.started.append(subprocess.Popen([*MASP, "serve"], env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL))
    try:
        _wait_http(f"http://127.0.0.1:{env['MASP_HTTP_PORT']}/healthz")
        yield dep
    finally:
        for proc in dep.started:
            proc.terminate()
        for proc in dep.started:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        asyncio.run(_delete(namespace))


async def _delete(namespace: str) -> None:
    connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
    async with connection, connection.channel() as ch:
        await topology.delete(ch, Names(namespace))


def test_check_certifies_an_agency_and_fails_without_a_broker(deployment: Deployment) -> None:
    result = subprocess.run([*MASP, "adapter", "check", "nhs"], env=deployment.env, cwd=REPO,
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 15 and lines[-1] == "14/14 points passed"
    assert all(line.startswith(("[PASS] message ", "[PASS] submission ", "[PASS] delivery ",
                                "[PASS] acknowledgement ", "[PASS] audit ")) for line in lines[:-1])
    gone = subprocess.run([*MASP, "adapter", "check", "nhs", "--url", f"http://127.0.0.1:{_free_port()}"],
                          env=deployment.env, cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=False)
    assert gone.returncode != 0


def test_adapters_turn_a_police_export_into_probation_files(deployment: Deployment) -> None:
    state = Path(deployment.env["MASP_STATE_DIR"])
    police, probation = _free_port(), _free_port()
    deployment.adapter("police", police)
    deployment.adapter("probation", probation)
    export = (REPO / "broker" / "demo" / "native" / "police" / "1_referral.json").read_bytes()
    resp = httpx.post(f"http://127.0.0.1:{police}/records", params={"name": "ref.json"}, content=export,
                      timeout=30)
    assert resp.status_code == 202, resp.text
    [sent] = resp.json()["sent"]
    outbox = state / "adapters" / "probation" / "outbox"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not list(outbox.glob("case_referral_*.json")):
        time.sleep(0.5)
    [entry_file] = outbox.glob("case_referral_*.json")
    entry = json.loads(entry_file.read_text())
    assert entry["partnership"]["message_id"] == sent["message_id"]
    assert entry["fields"]["perpetrator_probation_id"] == "X482913"
    # a bad extract dropped in probation's inbox folder is refused whole, with a report
    inbox = state / "adapters" / "probation" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    bad = REPO / "tests" / "assets" / "probation" / "invalid_extract.csv"
    (inbox / "extract.csv").write_bytes(bad.read_bytes())
    report = inbox / "refused" / "extract.csv.report.txt"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not report.exists():
        time.sleep(0.5)
    assert "row 3 (CRN K20411): rosh_level: unknown_code" in report.read_text()
