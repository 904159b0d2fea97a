"""A throw-away RabbitMQ node for one test, beside (never instead of) the shared one on 5672.

It gets its own node name, ports, data and log directories, configuration and Erlang
cookie (in its own HOME), so starting and stopping it cannot touch the shared node.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

_BIN = Path("/usr/lib/rabbitmq/bin")


def _tool(name: str) -> str:
    # the /usr/sbin wrappers switch to the rabbitmq user (and its cookie) when run as root
    direct = _BIN / name
    found = str(direct) if direct.exists() else shutil.which(name)
    if found is None:
        raise RuntimeError(f"{name} is not installed")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    port: int
    base: Path
    process: subprocess.Popen[bytes]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.base / "home")}

    def ctl(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run([_tool("rabbitmqctl"), "-n", self.name, *args], env=self.env,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def stop(self) -> None:
        """Stop this node only (by its name, then by the process this test started)."""
        self.ctl("stop", timeout=60)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: nothing else in it
            self.process.wait(timeout=30)


def start_node(base: Path, config: str) -> Node:
    """Start a node with ``config`` (rabbitmq.conf text; ``{port}`` is filled in) and wait for it."""
    home = base / "home"
    home.mkdir(parents=True)
    cookie = home / ".erlang.cookie"
    cookie.write_text(secrets.token_hex(16).upper())
    cookie.chmod(0o400)
    port = free_port()
    (base / "rabbitmq.conf").write_text(config.replace("{port}", str(port)))
    (base / "enabled_plugins").write_text("[].\n")
    (base / "rabbitmq-env.conf").write_text("")
    name = f"masp-tls-{secrets.token_hex(4)}@localhost"
    env = {**os.environ, "HOME": str(home), "RABBITMQ_NODENAME": name,
           "RABBITMQ_NODE_IP_ADDRESS": "127.0.0.1", "RABBITMQ_DIST_PORT": str(free_port()),
           "RABBITMQ_MNESIA_BASE": str(base / "mnesia"), "RABBITMQ_LOG_BASE": str(base / "log"),
           "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
           "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
           "RABBITMQ_CONF_ENV_FILE": str(base / "rabbitmq-env.conf"),
           "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
           "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
           "ERL_EPMD_ADDRESS": "127.0.0.1"}
    log = (base / "server.out").open("wb")
    process = subprocess.Popen([_tool("rabbitmq-server")], env=env, stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    node = Node(name, port, base, process)
    # the cookie works: rabbitmqctl reaches the new node, and only once it is fully up
    # (await_startup fails at once while the node has not registered with epmd yet: retry)
    deadline = time.monotonic() + 180
    waited = node.ctl("await_startup", "--timeout", "60", timeout=90)
    while waited.returncode != 0 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(1)
        waited = node.ctl("await_startup", "--timeout", "60", timeout=90)
    while waited.returncode == 0 and time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return node
        time.sleep(0.2)
    node.stop()
    log.close()
    raise RuntimeError(f"RabbitMQ node {name} did not start: {waited.stderr.strip()[-300:]}\n"
                       f"{(base / 'server.out').read_text(errors='replace')[-1500:]}")
