"""deploy/compose.yaml holds together: services, health, start order, networks, and no secret inline."""

from __future__ import annotations

import re
from graphlib import TopologicalSorter
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker.settings import Settings
from broker.transport.topology import quorum_args

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
AGENCIES = ("police", "probation", "nhs", "advocacy")
RABBITS = {"rabbitmq-1", "rabbitmq-2", "rabbitmq-3"}
BROKERS = {"broker-1", "broker-2"}
ADAPTERS = {f"adapter-{a}" for a in AGENCIES}
#: no probe possible (distroless image), or a job that runs once and exits
NO_HEALTHCHECK = {"otel-collector", "migrate"}
SECRET_WORDS = re.compile(r"pass|secret|token|cookie|private|credential|_key$", re.IGNORECASE)
URL_WITH_PASSWORD = re.compile(r"://[^/@\s:]+:[^/@\s]+@")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    return doc


def _services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]  # type: ignore[no-any-return]


def test_every_part_of_the_architecture_is_there(compose: dict[str, Any]) -> None:
    assert set(_services(compose)) == RABBITS | BROKERS | ADAPTERS | {
        "postgres", "migrate", "otel-collector", "prometheus"}
    for agency in AGENCIES:
        assert _services(compose)[f"adapter-{agency}"]["command"] == ["masp", "adapter", "run", agency]
    for broker in BROKERS:
        assert _services(compose)[broker]["command"] == ["masp", "serve"]
    assert _services(compose)["migrate"]["command"][:3] == ["masp", "db", "upgrade"]


def test_rabbitmq_is_a_three_node_quorum_cluster(compose: dict[str, Any]) -> None:
    conf = (DEPLOY / "rabbitmq" / "cluster.conf").read_text()
    for node in sorted(RABBITS):
        assert _services(compose)[node]["hostname"] == node
        assert f"= rabbit@{node}" in conf
    assert "cluster_partition_handling = pause_minority" in conf
    assert "listeners.tcp = none" in conf and "ssl_options.fail_if_no_peer_cert = true" in conf
    # the broker declares its queues as quorum queues with a delivery limit
    assert quorum_args(None, 5) == {"x-queue-type": "quorum", "x-delivery-limit": 5}
    cookie_targets = {s["target"] for node in RABBITS for s in _services(compose)[node]["secrets"]
                      if s["source"] == "rabbitmq_erlang_cookie"}
    assert cookie_targets == {"/var/lib/rabbitmq/.erlang.cookie"}


def test_healthchecks_and_start_order(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name, svc in services.items():
        if name in NO_HEALTHCHECK:
            continue
        check = svc.get("healthcheck")
        assert check and check["test"][0] == "CMD" and len(check["test"]) > 1, name
        assert "interval" in check and "retries" in check, name
    graph: dict[str, set[str]] = {}
    for name, svc in services.items():
        deps = svc.get("depends_on", {})
        assert isinstance(deps, dict), f"{name}: depends_on with conditions"
        for dep, cond in deps.items():
            assert dep in services, f"{name} depends on unknown {dep}"
            wanted = "service_healthy" if dep not in NO_HEALTHCHECK else cond["condition"]
            if dep == "migrate":
                wanted = "service_completed_successfully"
            assert cond["condition"] == wanted, (name, dep)
        graph[name] = set(deps)
    order = list(TopologicalSorter(graph).static_order())  # raises on a cycle
    for broker in BROKERS:
        assert set(services[broker]["depends_on"]) >= RABBITS | {"migrate"}
        assert order.index("migrate") < order.index(broker)
    for adapter in ADAPTERS:
        assert set(services[adapter]["depends_on"]) >= BROKERS
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}


def test_broker_probe_is_readiness(compose: dict[str, Any]) -> None:
    for broker in BROKERS:
        assert "/readyz" in " ".join(_services(compose)[broker]["healthcheck"]["test"])


def _env(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment", {})
    assert isinstance(env, dict)
    return {k: str(v) for k, v in env.items()}


def test_no_secret_inline(compose: dict[str, Any]) -> None:
    text = (DEPLOY / "compose.yaml").read_text()
    assert "BEGIN" not in text and not URL_WITH_PASSWORD.search(text)
    declared = compose["secrets"]
    for name, svc in _services(compose).items():
        for key, value in _env(svc).items():
            assert not URL_WITH_PASSWORD.search(value), (name, key)
            if SECRET_WORDS.search(key):
                # only a path to a mounted secret file, never the value
                assert key.endswith(("_FILE", "_DIR")) and value.startswith("/run/secrets"), (name, key)
        for ref in svc.get("secrets", []):
            source = ref if isinstance(ref, str) else ref["source"]
            assert source in declared, (name, source)
    for name, spec in declared.items():
        assert set(spec) == {"file"}, name
        assert spec["file"].startswith(("./secrets/", "./keys/")), name
    for folder in ("secrets", "keys"):  # never committed
        assert (DEPLOY / folder / ".gitignore").read_text().startswith("*\n")


def test_settings_the_services_pass_exist(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    for name, svc in _services(compose).items():
        for key in _env(svc):
            if key.startswith("MASP_") and key != "MASP_SECRETS_DIR":
                assert key.removeprefix("MASP_").lower() in fields, (name, key)
        for ref in svc.get("secrets", []):
            target = ref.get("target", "") if isinstance(ref, dict) else ""
            if target.startswith("masp_"):  # read through MASP_SECRETS_DIR
                assert target.removeprefix("masp_") in fields, (name, target)
                assert _env(svc)["MASP_SECRETS_DIR"] == "/run/secrets"
        for key, value in _env(svc).items():
            if key.endswith("_FILE") and value.startswith("/run/secrets/"):
                mounted = {r if isinstance(r, str) else r.get("target", r["source"])
                           for r in svc.get("secrets", [])}
                assert value.removeprefix("/run/secrets/") in mounted, (name, key)


def test_private_keys_only_where_they_belong(compose: dict[str, Any]) -> None:
    for name, svc in _services(compose).items():
        owners = {ref["source"].split("_")[0] for ref in svc.get("secrets", [])
                  if isinstance(ref, dict) and ref["source"].endswith("_private")}
        if name in BROKERS:
            assert owners == {"broker"}
        elif name in ADAPTERS:
            assert owners == {name.removeprefix("adapter-")}
        else:
            assert owners == set(), name


def test_networks_separate_data_from_agencies(compose: dict[str, Any]) -> None:
    networks = compose["networks"]
    assert networks["data"].get("internal") is True
    services = _services(compose)

    def nets(name: str) -> set[str]:
        value = services[name].get("networks", [])
        return set(value) if isinstance(value, (list, dict)) else set()

    for name in services:
        assert nets(name), f"{name} names its networks"
        assert nets(name) <= set(networks), name
    assert nets("postgres") == {"data"}
    assert {n for n in services if "data" in nets(n)} == BROKERS | {"postgres", "migrate"}
    for broker in BROKERS:
        assert nets(broker) == {"messaging", "data", "telemetry", "edge"}
    for adapter in ADAPTERS:
        assert "data" not in nets(adapter) and "messaging" in nets(adapter)
        assert _env(services[adapter])["MASP_HTTP_HOST"] == "broker"
    assert {n for n in services if "messaging" in nets(n)} == RABBITS | BROKERS | ADAPTERS


def test_committed_config_files_exist_and_parse(compose: dict[str, Any]) -> None:
    for name, spec in compose["configs"].items():
        path = DEPLOY / spec["file"]
        if spec["file"].startswith("./keys/"):
            continue  # public keys are the deployment's own, written by `masp keys init`
        assert path.is_file(), name
        if path.suffix in (".yaml", ".yml"):
            assert yaml.safe_load(path.read_text()), name
    collector = yaml.safe_load((DEPLOY / "otel" / "collector.yaml").read_text())
    assert collector["receivers"]["otlp"]["protocols"]["http"]["endpoint"].endswith(":4318")
    prom = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in prom["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert {f"{b}:8000" for b in BROKERS} <= targets
    for name in set(_services(compose)) - {"migrate"}:
        assert _services(compose)[name]["deploy"]["resources"]["limits"]["memory"], name


def _schema_keys() -> list[re.Pattern[str]]:
    """Every rabbitmq.conf key the installed RabbitMQ (and its plugins) accepts, as patterns."""
    schemas = sorted(Path("/usr/lib/rabbitmq/lib").glob("*/plugins/*/priv/schema/*.schema"))
    assert schemas, "RabbitMQ's configuration schemas are not installed"
    keys: list[re.Pattern[str]] = []
    for schema in schemas:
        for key in re.findall(r'\{mapping,\s*"([^"]+)"', schema.read_text(errors="replace")):
            parts = [r"[^.]+" if part.startswith("$") else re.escape(part) for part in key.split(".")]
            keys.append(re.compile(r"\.".join(parts)))
    return keys


@pytest.mark.parametrize("conf", ["cluster.conf", "rabbitmq-tls.conf"])
def test_rabbitmq_config_keys_are_known_to_rabbitmq(conf: str) -> None:
    """An unknown key stops RabbitMQ from starting at all: check them before a deployment does."""
    known = _schema_keys()
    for line in (DEPLOY / "rabbitmq" / conf).read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        key = line.split("=", 1)[0].strip()
        assert any(k.fullmatch(key) for k in known), f"{conf}: unknown key {key}"


def _definitions() -> dict[str, Any]:
    import json

    doc: dict[str, Any] = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    return doc


def check_ingress_identities(broker_env: dict[str, str]) -> None:
    """The broker maps exactly definitions.json's agency users to their agencies, and RabbitMQ
    lets each of them publish to masp.ingress with its own routing key and nothing more."""
    from broker.rate_limit import AgencyRateLimit
    from broker.transport.topology import Names

    defs, names = _definitions(), Names()
    settings = Settings(amqp_agency_users=broker_env["MASP_AMQP_AGENCY_USERS"],
                        rate_limit=broker_env["MASP_RATE_LIMIT"],
                        ingress_refusal_rate=broker_env["MASP_INGRESS_REFUSAL_RATE"],
                        refusal_window_s=broker_env["MASP_REFUSAL_WINDOW_S"])
    AgencyRateLimit(settings.rate_limit)  # parses
    users = settings.amqp_users  # RabbitMQ user -> agency
    assert set(users) == {u["name"] for u in defs["users"]} - {"masp-broker"}
    perms = {p["user"]: p for p in defs["permissions"]}
    topics = {(t["user"], t["exchange"]): t for t in defs["topic_permissions"]}
    for user, agency in users.items():
        write = re.compile(perms[user]["write"])
        assert write.fullmatch(names.ingress) and write.fullmatch(names.acks), user
        for target in ("amq.default", *(names.ingress_queue(a) for a in AGENCIES)):
            assert not write.fullmatch(target), (user, target)  # only through the exchange
        read = re.compile(perms[user]["read"])
        assert not any(read.fullmatch(names.ingress_queue(a)) for a in AGENCIES), user
        # topic permissions: the routing key must be the agency itself (RabbitMQ checks these on
        # topic exchanges only, which is why masp.ingress is one)
        ingress = topics[(user, names.ingress)]
        allowed = re.compile(ingress["write"])
        assert allowed.fullmatch(agency) and ingress["read"] == "^$", user
        assert not any(allowed.fullmatch(k) for k in ("", "#", "*", *(a for a in AGENCIES if a != agency)))
    broker = perms["masp-broker"]
    for agency in AGENCIES:  # the broker declares, binds and consumes every ingress queue
        for kind in ("configure", "read"):
            assert re.fullmatch(broker[kind], names.ingress_queue(agency)), (kind, agency)
    assert topics[("masp-broker", names.ingress)]["read"] == ".*"  # it binds every agency's key


def test_ingress_identities_and_limits(compose: dict[str, Any]) -> None:
    for broker in BROKERS:
        check_ingress_identities(_env(_services(compose)[broker]))
    for adapter in ADAPTERS:  # an adapter connects as its agency's own RabbitMQ user
        assert {"source": f"{adapter.removeprefix('adapter-')}_amqp_url", "target": "masp_amqp_url"} in \
            _services(compose)[adapter]["secrets"]
