"""The IG side of the transparency log over HTTP, after a real referral on the real stack:
entry proofs, subject lookups (themselves audited), CSV export and consistency proofs."""

from __future__ import annotations

import base64
import csv
import io

import pytest

from broker import wire
from broker.api.auth import issue_user_token
from broker.audit.entry import AuditEntry, normalise_identifier
from broker.audit.merkle import leaf_hash, verify_consistency, verify_inclusion
from broker.audit.note import Checkpoint
from broker.audit.proof import TlogProof
from broker.demo.run import demo_body
from broker.store.audit_export import verify_database
from broker.store.audit_queries import _cell
from broker.store.audit_witness import note_text
from tests.integration.conftest import Env
from tests.integration.observability.flow import settled

PERPETRATOR = "19/4471023K"
SUBJECTS = [{"ref": PERPETRATOR, "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}]


def _ig(env: Env, role: str = "ig_officer") -> dict[str, str]:
    exchange = env.service.exchange
    return {"authorization": f"Bearer {issue_user_token(exchange.broker, 'ig-7', role, exchange.clock())}"}


async def _refer(env: Env) -> str:
    _, jwe = env.adapters["police"].compose("case_referral", demo_body("case_referral"), case_id="C-9",
                                            purpose="risk_management", subjects=SUBJECTS)
    resp = await env.adapters["police"].submit_http(env.http, jwe)
    assert resp.status_code == 202, resp.text
    message_id: str = resp.json()["message_id"]
    return message_id


async def test_subject_disclosures_name_the_originator_and_the_lookup_is_audited(env: Env) -> None:
    message_id = await _refer(env)
    resp = await env.http.get(f"/v1/audit/subjects/{PERPETRATOR}/disclosures", headers=_ig(env))
    assert resp.status_code == 200, resp.text
    found = resp.json()
    assert {(d["originating_agency"], d["recipient"]) for d in found["disclosures"]} == {
        ("police", "probation"), ("police", "nhs")}
    assert all(d["message_id"] == message_id and d["categories"] == ["suspect"]
               for d in found["disclosures"])
    nhs = next(d for d in found["disclosures"] if d["recipient"] == "nhs")
    assert "victim_location" not in nhs["fields_disclosed"] and nhs["fields_disclosed"]

    async with env.service.exchange.sessions() as s:
        from broker.store.models import AuditRow

        row = await s.get(AuditRow, found["audit_seq"])
    assert row is not None
    viewed = AuditEntry.from_leaf(row.leaf)
    assert viewed.kind == "audit_viewed" and viewed.actor.user_id == "ig-7"
    assert [s.pseudonym for s in viewed.subjects] == [found["pseudonym"]]
    for form in (PERPETRATOR, normalise_identifier(PERPETRATOR), "4471023"):
        assert form.encode().lower() not in row.leaf.lower(), "the identifier never enters a leaf"

    # the lookup itself shows up when IG asks what happened about this person
    entries = (await env.http.get("/v1/audit/entries", params={"subject": PERPETRATOR},
                                  headers=_ig(env))).json()["entries"]
    assert "audit_viewed" in {e["kind"] for e in entries}
    nobody = (await env.http.get("/v1/audit/subjects/someone-else/disclosures", headers=_ig(env))).json()
    assert nobody["disclosures"] == []
    assert (await env.http.get(f"/v1/audit/subjects/{PERPETRATOR}/disclosures",
                               headers=_ig(env, "ops"))).status_code == 403
    assert (await verify_database(env.service)).ok


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_entry_proofs_csv_and_consistency(env: Env) -> None:
    # the recipients' acknowledgements append to the log: let them land before comparing proofs
    await settled(env, [await _refer(env)])
    ig = _ig(env)
    log_key = env.service.exchange.audit.signer.verifier()
    seq = (await env.http.get("/v1/audit/entries", params={"kind": "disclosed"}, headers=ig)).json()[
        "entries"][0]["seq"]
    entry = (await env.http.get(f"/v1/audit/entries/{seq}", headers=ig)).json()
    assert entry["kind"] == "disclosed" and bytes.fromhex(entry["leaf_hash"]) == leaf_hash(
        entry["leaf"].encode())
    proof = entry["proof"]
    checkpoint = Checkpoint.parse(note_text(proof["checkpoint"]))
    verify_inclusion(leaf_hash(entry["leaf"].encode()), seq, proof["tree_size"],
                     [base64.b64decode(h) for h in proof["hashes"]], checkpoint.root_hash)
    text = (await env.http.get(f"/v1/audit/entries/{seq}/proof", headers=ig)).text
    assert TlogProof.parse(text).verify(log_key)[0] == checkpoint

    missing = await env.http.get("/v1/audit/entries/999", headers=ig)
    assert missing.status_code == 404 and missing.headers["content-type"] == "application/problem+json"
    assert (await env.http.get("/v1/audit/entries/0", params={"size": seq}, headers=ig)).json()[
        "code"] == "not-found"  # no checkpoint of that size
    assert (await env.http.get("/v1/audit/entries/1", headers=_ig(env, "ops"))).status_code == 403

    size = checkpoint.size
    await _refer(env)  # a second batch, a second checkpoint
    nhs_auth = wire.sign_agency_auth(env.keys["nhs"], env.service.exchange.clock())
    agency = {"authorization": f"Bearer {nhs_auth}"}
    grown = (await env.http.get("/v1/audit/consistency", params={"from": size}, headers=agency)).json()
    newer = Checkpoint.parse(note_text(grown["checkpoint"]))
    outside = await env.http.get(f"/v1/audit/entries/{size}", params={"size": size}, headers=ig)
    assert outside.status_code == 400 and outside.json()["code"] == "invalid-range"
    assert grown["from"] == size and grown["to"] == newer.size > size
    verify_consistency(size, newer.size, [base64.b64decode(h) for h in grown["proof"]],
                       checkpoint.root_hash, newer.root_hash)
    beyond = await env.http.get("/v1/audit/consistency", params={"from": newer.size + 1, "to": newer.size},
                                headers=ig)
    assert beyond.status_code == 400 and beyond.json()["code"] == "invalid-range"
    assert (await env.http.get("/v1/audit/consistency", headers=_ig(env, "ops"))).status_code == 403

    resp = await env.http.get("/v1/audit/entries.csv", params={"decision": "deny"}, headers=ig)
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(resp.text)))
    assert [(r["recipient"], r["kind"], r["sender"]) for r in rows] == [("advocacy", "refused", "police")] * 2
    assert rows[0]["rules"] and rows[0]["fields_withheld"]
    exported = (await env.http.get("/v1/audit/entries", params={"kind": "audit_exported"},
                                   headers=ig)).json()["entries"]
    assert [e["reason"] for e in exported] == ["csv export: decision=deny"]
    assert (await env.http.get("/v1/audit/entries.csv", headers=_ig(env, "ops"))).status_code == 403


def test_csv_cells_never_start_a_formula() -> None:
    assert [_cell(v) for v in ("=1+1", "+x", "-2", "@SUM(A1)", "police", None, 3)] == [
        "'=1+1", "'+x", "'-2", "'@SUM(A1)", "police", "", "3"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sender_and_recipient_get_tlog_proofs_of_disclosures_about_them(env: Env) -> None:
    await _refer(env)
    disclosed = (await env.http.get("/v1/audit/entries", params={"kind": "disclosed"},
                                    headers=_ig(env))).json()["entries"]
    to_nhs = next(e for e in disclosed if e["recipient"] == "nhs")
    log_key = env.service.exchange.audit.signer.verifier()

    def auth(agency: str) -> dict[str, str]:
        token = wire.sign_agency_auth(env.keys[agency], env.service.exchange.clock())
        return {"authorization": f"Bearer {token}"}

    for agency in ("police", "nhs"):  # the sender and the recipient
        text = await env.http.get(f"/v1/audit/entries/{to_nhs['seq']}/proof", headers=auth(agency))
        assert text.status_code == 200
        checkpoint, _ = TlogProof.parse(text.text).verify(log_key)
        assert checkpoint.size > to_nhs["seq"]
    # a partner the disclosure does not concern sees nothing of it
    other = await env.http.get(f"/v1/audit/entries/{to_nhs['seq']}", headers=auth("advocacy"))
    assert other.status_code == 404
