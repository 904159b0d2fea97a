"""deploy/k8s holds together: probes, limits, keys from Secrets, default-deny NetworkPolicies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
AGENCIES = ("police", "probation", "nhs", "advocacy")


@pytest.fixture(scope="module")
def kustomization() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return doc


@pytest.fixture(scope="module")
def objects(kustomization: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for resource in kustomization["resources"]:
        found += [d for d in yaml.safe_load_all((K8S / resource).read_text()) if d]
    for doc in found:
        assert {"apiVersion", "kind", "metadata"} <= set(doc), doc
    return found


def _kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def _pod_specs(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"]["template"]["spec"] for o in objects
            if o["kind"] in ("Deployment", "Job", "StatefulSet")}


def test_workloads(objects: list[dict[str, Any]]) -> None:
    deployments = {d["metadata"]["name"]: d for d in _kind(objects, "Deployment")}
    assert set(deployments) == {"masp-broker", *(f"masp-adapter-{a}" for a in AGENCIES)}
    assert deployments["masp-broker"]["spec"]["replicas"] == 2
    for agency in AGENCIES:
        args = deployments[f"masp-adapter-{agency}"]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args == ["masp", "adapter", "run", agency]
    job = _kind(objects, "Job")[0]["spec"]["template"]["spec"]["containers"][0]
    assert job["args"][:3] == ["masp", "db", "upgrade"]
    for d in deployments.values():
        labels = d["spec"]["template"]["metadata"]["labels"]
        assert d["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_broker_probes_are_healthz_and_readyz(objects: list[dict[str, Any]]) -> None:
    broker = _pod_specs(objects)["masp-broker"]["containers"][0]
    assert broker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert broker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    ports = {p["name"]: p["containerPort"] for p in broker["ports"]}
    assert broker["livenessProbe"]["httpGet"]["port"] in ports
    for agency in AGENCIES:
        adapter = _pod_specs(objects)[f"masp-adapter-{agency}"]["containers"][0]
        assert adapter["livenessProbe"]["exec"]["command"][0] == "python"


def test_limits_and_hardening(objects: list[dict[str, Any]]) -> None:
    for name, spec in _pod_specs(objects).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec.get("automountServiceAccountToken") is False, name
        for c in spec["containers"]:
            limits = c["resources"]["limits"]
            assert limits.get("cpu") and limits.get("memory"), name
            assert c["resources"]["requests"], name
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, name
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, name
            assert c["securityContext"]["capabilities"]["drop"] == ["ALL"], name


def _secret_volumes(spec: dict[str, Any]) -> dict[str, str]:
    """Volume name -> Secret name, for plain and projected secret volumes."""
    out: dict[str, str] = {}
    for v in spec["volumes"]:
        if "secret" in v:
            out[v["name"]] = v["secret"]["secretName"]
        for source in v.get("projected", {}).get("sources", []):
            if "secret" in source:
                out[v["name"]] = source["secret"]["name"]
    return out


def test_keys_come_from_secrets_nothing_inline(objects: list[dict[str, Any]],
                                                 kustomization: dict[str, Any]) -> None:
    generated = {s["name"] for s in kustomization["secretGenerator"]}
    assert not _kind(objects, "Secret"), "no Secret object with data in the manifests"
    for name, spec in _pod_specs(objects).items():
        refs = _secret_volumes(spec)
        assert set(refs.values()) <= generated, name
        for c in spec["containers"]:
            for env in c.get("env", []):
                sensitive = any(w in env["name"].lower() for w in ("password", "secret", "token", "url"))
                if "value" in env and sensitive:
                    assert env["value"].startswith("/run/secrets/"), (name, env)  # a path, not a value
    owner = {"masp-broker": "broker", **{f"masp-adapter-{a}": a for a in AGENCIES}}
    for name, agency in owner.items():
        spec = _pod_specs(objects)[name]
        keys = next(v for v in spec["volumes"] if v["name"] == "keys")["projected"]
        assert keys["defaultMode"] == 0o400
        private = [s["secret"] for s in keys["sources"] if "secret" in s]
        assert [p["name"] for p in private] == [f"masp-{agency}-keys"]
        paths = {i["path"] for i in private[0]["items"]}
        # the broker alone also holds the audit log's signing key
        log_key = {"log/current.skey"} if agency == "broker" else set()
        assert paths == {f"{agency}/sig.private.jwk", f"{agency}/enc.private.jwk", *log_key}
        public = next(s["configMap"] for s in keys["sources"] if "configMap" in s)
        assert "log/state.json" in {i["path"] for i in public["items"]}  # whom witnesses trust
    for s in kustomization["secretGenerator"]:
        for f in s["files"]:
            assert f.split("=", 1)[1].startswith(("keys/", "secrets/")), f
    for folder in ("keys", "secrets"):
        assert (K8S / folder / ".gitignore").read_text().startswith("*\n")


def _selects(policy: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = policy["spec"]["podSelector"].get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items())


def test_network_policies_default_deny_and_allow_only_the_architecture(objects: list[dict[str, Any]]) -> None:
    policies = {p["metadata"]["name"]: p for p in _kind(objects, "NetworkPolicy")}
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny

    def egress_ports(labels: dict[str, str]) -> set[int]:
        return {p["port"] for pol in policies.values() if _selects(pol, labels)
                for rule in pol["spec"].get("egress", []) for p in rule.get("ports", [])}

    broker = {"app.kubernetes.io/name": "masp-broker"}
    adapter = {"app.kubernetes.io/name": "masp-adapter", "masp.agency": "police"}
    migrate = {"app.kubernetes.io/name": "masp-migrate"}
    assert egress_ports(broker) == {53, 5671, 5432, 4318}
    assert egress_ports(adapter) == {53, 8000, 5671, 4318}  # never the database
    assert egress_ports(migrate) == {53, 5432}
    ingress = [pol for pol in policies.values() if "ingress" in pol["spec"]]
    assert [p["metadata"]["name"] for p in ingress] == ["broker-ingress"]  # nothing else accepts connections
    rules = policies["broker-ingress"]["spec"]["ingress"]
    assert {p["port"] for rule in rules for p in rule["ports"]} == {8000}
    # every workload's pods are covered by the deny-all and by some allow rule
    for name in _pod_specs(objects):
        owner = next(o for o in objects if o["metadata"]["name"] == name)
        labels = owner["spec"]["template"]["metadata"]["labels"]
        allowed = [p for p in policies.values() if _selects(p, labels)]
        assert {p["metadata"]["name"] for p in allowed} - {"default-deny", "allow-dns"}, name


def test_settings_config_map_names_real_settings(kustomization: dict[str, Any]) -> None:
    from broker.settings import Settings

    generators = {c["name"]: c for c in kustomization["configMapGenerator"]}
    literals = generators["masp-settings"]["literals"]
    for literal in literals:
        key, value = literal.split("=", 1)
        assert key.startswith("MASP_") and "@" not in value, literal
        if key != "MASP_SECRETS_DIR":
            assert key.removeprefix("MASP_").lower() in Settings.model_fields, key


def test_broker_ingress_settings_match_the_rabbitmq_definitions(objects: list[dict[str, Any]]) -> None:
    from tests.deploy.test_compose import check_ingress_identities

    broker = _pod_specs(objects)["masp-broker"]["containers"][0]
    check_ingress_identities({e["name"]: e["value"] for e in broker["env"] if "value" in e})
