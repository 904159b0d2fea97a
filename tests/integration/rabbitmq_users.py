"""RabbitMQ users for tests, made with ``rabbitmqctl import_definitions`` and deleted afterwards.

Each ``rabbitmqctl`` call starts an Erlang VM (about a second), so users are made once per
test session in one import, never per test, and removed in parallel at the end. Names carry
a unique tag, so nothing here touches another run's users or a real account.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from yarl import URL

from broker.crypto.keys import AGENCIES

#: Reply queues: server-named (amq.gen-…), or named by aio-pika's robust channels (amq_<hex>).
REPLY_QUEUES = r"amq\.gen-.*|amq_[0-9a-f]{32}"


def rabbitmqctl(*args: str) -> subprocess.Popen[bytes]:
    # the /usr/sbin wrapper runs it as the rabbitmq user (and its cookie) when run as root
    return subprocess.Popen(["rabbitmqctl", "-q", *args], stdin=subprocess.PIPE,  # noqa: S607
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def password_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt ‖ sha256(salt ‖ password))."""
    salt = os.urandom(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def import_definitions(definitions: dict[str, Any]) -> None:
    """Load ``definitions`` (users, permissions, ...) into the shared node; raise if refused."""
    # rabbitmqctl runs as the rabbitmq user, which cannot read pytest's private tmp_path
    folder = Path(tempfile.mkdtemp(prefix="masp-defs-"))
    try:
        folder.chmod(0o755)
        path = folder / "definitions.json"
        path.write_text(json.dumps(definitions))
        path.chmod(0o644)
        loaded = rabbitmqctl("import_definitions", str(path))
        _, err = loaded.communicate(timeout=60)
    finally:
        shutil.rmtree(folder)
    if loaded.returncode != 0:
        raise RuntimeError(f"rabbitmqctl import_definitions failed: {err.decode()[-500:]}")


def delete_users(names: list[str]) -> None:
    for proc in [rabbitmqctl("delete_user", name) for name in names]:  # in parallel
        proc.communicate(timeout=60)


@dataclass(frozen=True)
class AgencyUsers:
    """One RabbitMQ user per agency in vhost ``/``, allowed only what an adapter needs there."""

    tag: str
    names: dict[str, str]  # agency -> RabbitMQ user
    passwords: dict[str, str]

    def url(self, agency: str, base: str) -> str:
        """``base`` (an AMQP URL) with this agency's user and password."""
        return str(URL(base).with_user(self.names[agency]).with_password(self.passwords[agency]))

    def topic_permissions(self, ingress_exchange: str) -> None:
        """Let each agency publish to ``ingress_exchange`` with its own routing key only, as
        ``deploy/rabbitmq/definitions.json`` does (one rabbitmqctl call). Topic permissions
        name one exchange, not a pattern, so this is per namespace, for the tests that need it."""
        import_definitions({"topic_permissions": [
            {"user": user, "vhost": "/", "exchange": ingress_exchange, "write": f"^{agency}$",
             "read": "^$"} for agency, user in self.names.items()]})


def create_agency_users(tag: str, namespace_pattern: str) -> AgencyUsers:
    """Users ``<tag>-<agency>`` with random passwords and permissions like definitions.json's,
    for the queues and exchanges of any namespace matching ``namespace_pattern`` (a regex)."""
    names = {a: f"{tag}-{a}" for a in AGENCIES}
    passwords = {a: secrets.token_urlsafe(18) for a in AGENCIES}
    ns = namespace_pattern
    import_definitions({
        "users": [{"name": names[a], "password_hash": password_hash(passwords[a]),
                   "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": []} for a in AGENCIES],
        "permissions": [{
            "user": names[a], "vhost": "/",
            "configure": rf"^({REPLY_QUEUES})$",
            "write": rf"^({ns}masp\.ingress|{ns}masp\.acks|{REPLY_QUEUES})$",
            "read": rf"^({ns}inbox\.{a}|{REPLY_QUEUES})$",
        } for a in AGENCIES],
    })
    return AgencyUsers(tag, names, passwords)
