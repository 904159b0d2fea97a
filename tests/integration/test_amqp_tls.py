"""The broker and an adapter over AMQPS, and over mutual TLS, to a RabbitMQ node this module starts.

The node is configured from deploy/rabbitmq/rabbitmq-tls.conf with a CA this test generates
(trustme); the shared RabbitMQ on 5672 is neither used nor touched.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import aio_pika
import pytest
import trustme
from aiormq.exceptions import AMQPConnectionError

from adapters.runtime import AdapterRuntime, wait_for
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.demo.run import demo_body
from broker.errors import ConfigurationError
from broker.service import BrokerService, init_state
from broker.settings import Settings
from broker.transport import connect as amqp
from tests.integration.conftest import REPO, make_settings
from tests.integration.delivery_support import SUBJECTS
from tests.integration.rabbitmq_node import Node, start_node

EXAMPLE = REPO / "deploy" / "rabbitmq" / "rabbitmq-tls.conf"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA(organization_name="MASP test partnership")


def _files(ca: trustme.CA, where: Path) -> dict[str, Path]:
    where.mkdir(parents=True, exist_ok=True)
    server = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("masp-broker.masp.internal")
    stranger = trustme.CA().issue_cert("masp-broker.masp.internal")
    out = {name: where / name for name in ("ca.pem", "server.crt", "server.key", "client.crt", "client.key",
                                           "stranger.crt", "stranger.key")}
    ca.cert_pem.write_to_path(out["ca.pem"])
    server.cert_chain_pems[0].write_to_path(out["server.crt"])
    server.private_key_pem.write_to_path(out["server.key"])
    client.cert_chain_pems[0].write_to_path(out["client.crt"])
    client.private_key_pem.write_to_path(out["client.key"])
    stranger.cert_chain_pems[0].write_to_path(out["stranger.crt"])
    stranger.private_key_pem.write_to_path(out["stranger.key"])
    return out


def _config(tls: Path, mutual: bool) -> str:
    text = EXAMPLE.read_text().replace("/etc/rabbitmq/tls/", f"{tls}/")
    text = text.replace("listeners.ssl.default = 5671", "listeners.ssl.default = 127.0.0.1:{port}")
    if not mutual:
        text = text.replace("ssl_options.verify = verify_peer", "ssl_options.verify = verify_none")
        text = text.replace("fail_if_no_peer_cert = true", "fail_if_no_peer_cert = false")
    assert "listeners.tcp = none" in text  # AMQPS only: no plain listener to fall back to
    return text


@pytest.fixture(scope="module", params=["amqps", "mutual-tls"])
def node(request: pytest.FixtureRequest, ca: trustme.CA) -> Iterator[tuple[str, Node, dict[str, Path]]]:
    # not under pytest's basetemp: other pytest runs on the machine prune old basetemps, and
    # the node's data directory must outlive them
    base = Path(tempfile.mkdtemp(prefix=f"masp-rmq-{request.param}-"))
    files = _files(ca, base / "tls")
    started = start_node(base / "node", _config(base / "tls", mutual=request.param == "mutual-tls"))
    try:
        yield request.param, started, files
    finally:
        started.stop()
        shutil.rmtree(base, ignore_errors=True)


def _settings(tmp_path: Path, node: Node, **tls: Path | None) -> Settings:
    base = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'masp.db'}")
    return base.model_copy(update={"amqp_url": f"amqps://guest:guest@localhost:{node.port}/", **tls})


async def test_broker_and_adapters_over_tls(node: tuple[str, Node, dict[str, Path]], tmp_path: Path) -> None:
    mode, rmq, files = node
    tls = {"amqp_ca_file": files["ca.pem"]}
    if mode == "mutual-tls":
        tls |= {"amqp_cert_file": files["client.crt"], "amqp_key_file": files["client.key"]}
    settings = _settings(tmp_path, rmq, **tls)
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings)
    await service.start_workers()  # the real connection code, from the settings
    connection = await amqp.connect_robust(settings)
    registry = KeyRegistry.from_public_dir(settings.keys_dir)
    police, probation = (AdapterRuntime(AgencyKeys.load(settings.keys_dir, a), registry, tmp_path / a,
                                        names=service.names) for a in ("police", "probation"))
    try:
        assert service.connection is not None and service.connection.transport is not None
        assert service.connection.transport.connection.url.scheme == "amqps"
        await probation.start(connection)
        _, jwe = police.compose("case_referral", demo_body("case_referral"), case_id="C-TLS-1",
                                purpose="risk_management", subjects=SUBJECTS)
        reply = await police.submit_amqp(connection, jwe)
        assert "message_id" in reply, reply
        assert await wait_for(lambda: any(r["message"]["jti"] == reply["message_id"]
                                          for r in probation.received()), timeout=30)
    finally:
        await probation.stop()
        await connection.close()
        await service.close()


async def test_untrusted_or_missing_credentials_refused(node: tuple[str, Node, dict[str, Path]],
                                                       tmp_path: Path) -> None:
    mode, rmq, files = node
    # the server's certificate is checked: without our CA (system trust only) there is no connection
    with pytest.raises((AMQPConnectionError, ConnectionError, OSError), match="CERTIFICATE_VERIFY_FAILED"):
        await amqp.connect(_settings(tmp_path, rmq))
    if mode == "amqps":
        async with await amqp.connect(_settings(tmp_path, rmq, amqp_ca_file=files["ca.pem"])):
            pass
        return
    # mutual TLS: no client certificate, or one from another CA, is refused in the handshake
    for cert, key in ((None, None), (files["stranger.crt"], files["stranger.key"])):
        with pytest.raises((AMQPConnectionError, ConnectionError, OSError)):
            await amqp.connect(_settings(tmp_path, rmq, amqp_ca_file=files["ca.pem"],
                                         amqp_cert_file=cert, amqp_key_file=key))
    # the URL query form (aiormq's own) works too
    url = (f"amqps://guest:guest@localhost:{rmq.port}/?cafile={files['ca.pem']}"
           f"&certfile={files['client.crt']}&keyfile={files['client.key']}")
    async with await aio_pika.connect(url, timeout=10):
        pass


def test_tls_settings_are_checked(tmp_path: Path) -> None:
    plain = make_settings(tmp_path, "sqlite+aiosqlite://").model_copy(
        update={"amqp_ca_file": tmp_path / "ca"})
    with pytest.raises(ConfigurationError, match="need an amqps://"):
        amqp.ssl_context(plain)
    missing = plain.model_copy(update={"amqp_url": "amqps://localhost/"})
    with pytest.raises(ConfigurationError, match="could not be loaded"):
        amqp.ssl_context(missing)
