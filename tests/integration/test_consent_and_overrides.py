"""Issue 3 through the real broker: the consent registry (P6) and the override review queue (P7)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from broker.api.auth import issue_user_token
from broker.audit.entry import AuditEntry
from broker.demo.run import demo_body
from broker.store import consent as consent_registry
from broker.store.models import AuditRow
from tests.integration.conftest import Env

SUBJECTS = [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-1", "category": "victim"}]
REF = "CONSENT-T-1"


async def _send(env: Env, agency: str, masp_type: str, body: dict[str, Any], purpose: str,
                **kw: Any) -> dict[str, Any]:
    _, jwe = env.adapters[agency].compose(masp_type, body, case_id="C-9", purpose=purpose,
                                          subjects=SUBJECTS, **kw)
    resp = await env.adapters[agency].submit_http(env.http, jwe)
    assert resp.status_code == 202, resp.text
    return {d["recipient"]: d["decision"] for d in resp.json()["decisions"]}


def _consent(status: str) -> dict[str, Any]:
    body = demo_body("consent_change")
    body["victim_consent"]["status"] = status
    if status == "withdrawn":
        body["victim_consent"]["withdrawal_reason"] = "subject_request"
    return body


async def _entries(env: Env) -> list[AuditEntry]:
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(AuditRow).order_by(AuditRow.seq))).scalars().all()  # type: ignore[arg-type]
    return [AuditEntry.from_leaf(r.leaf) for r in rows]


async def test_consent_given_then_withdrawn_stops_later_flows(env: Env) -> None:
    referral = demo_body("victim_advocacy_referral")
    assert (await _send(env, "police", "victim_advocacy_referral", referral, "victim_support",
                        consent_ref=REF))["advocacy"] == "deny"

    await _send(env, "police", "consent_change", _consent("given"), "case_management", consent_ref=REF)
    assert (await _send(env, "police", "victim_advocacy_referral", referral, "victim_support",
                        consent_ref=REF))["advocacy"] == "permit"
    # out of scope: the consent covers advocacy for these purposes, not this one
    assert (await _send(env, "police", "victim_advocacy_referral", referral, "safeguarding",
                        consent_ref="CONSENT-OTHER-2"))["advocacy"] == "deny"

    await _send(env, "police", "consent_change", _consent("withdrawn"), "case_management",
                consent_ref=REF)
    assert (await _send(env, "police", "victim_advocacy_referral", referral, "victim_support",
                        consent_ref=REF))["advocacy"] == "deny"

    entries = await _entries(env)
    changes = [e.consent for e in entries if e.kind == "consent_changed"]
    assert [c["status"] for c in changes if c] == ["given", "withdrawn"]
    refusals = [e for e in entries if e.kind == "refused" and e.recipient == "advocacy"]
    assert len(refusals) == 3 and all("P6.consent" in e.rules for e in refusals)


async def _registry(env: Env) -> list[tuple[str, str, str, str, str]]:
    async with env.service.exchange.sessions() as s:
        return [(r.consent_ref, r.subject, r.kind, r.status, r.recorded_by)
                for r in await consent_registry.history(s)]


async def _submit(env: Env, agency: str, masp_type: str, body: dict[str, Any], purpose: str,
                  subjects: list[dict[str, str]] = SUBJECTS, **kw: Any) -> Any:
    _, jwe = env.adapters[agency].compose(masp_type, body, case_id="C-9", purpose=purpose,
                                          subjects=subjects, **kw)
    return await env.adapters[agency].submit_http(env.http, jwe)


async def test_consent_cannot_be_forged_or_withdrawn_by_another_agency(env: Env) -> None:
    referral = demo_body("victim_advocacy_referral")
    # nhs is no recorder of a victim's consent: refused whole, nothing recorded or delivered
    forged = await _submit(env, "nhs", "consent_change", _consent("given"), "case_management",
                           subjects=[{"ref": "OTHER-1", "category": "victim"}], consent_ref=REF)
    assert forged.status_code == 403 and forged.json()["rule"] == "P6.consent_recorder"
    assert await _registry(env) == []
    assert (await _send(env, "police", "victim_advocacy_referral", referral, "victim_support",
                        consent_ref=REF))["advocacy"] == "deny"

    await _send(env, "police", "consent_change", _consent("given"), "case_management", consent_ref=REF)
    before = await _registry(env)
    assert [(k, st, by) for _, _, k, st, by in before] == [("victim", "given", "police")]
    # advocacy may record victim consent, but not under the reference police hold for her
    withdraw = await _submit(env, "advocacy", "consent_change", _consent("withdrawn"),
                             "case_management", consent_ref=REF)
    assert withdraw.status_code == 403 and withdraw.json()["rule"] == "P6.consent_owner"
    # a forged withdrawal by nhs changes nothing either
    forged = await _submit(env, "nhs", "consent_change", _consent("withdrawn"), "case_management",
                           consent_ref=REF)
    assert forged.status_code == 403
    assert await _registry(env) == before
    assert (await _send(env, "police", "victim_advocacy_referral", referral, "victim_support",
                        consent_ref=REF))["advocacy"] == "permit"
    # the consent is hers: the same reference cited about another victim is no consent
    other = [{"ref": "19/4471023K", "category": "suspect"}, {"ref": "VIC-2", "category": "victim"}]
    resp = await _submit(env, "police", "victim_advocacy_referral", referral, "victim_support",
                         subjects=other, consent_ref=REF)
    assert {d["recipient"]: d["decision"] for d in resp.json()["decisions"]}["advocacy"] == "deny"
    # the refusals are on record, with our rule ids and nothing the sender wrote: the first of
    # each kind at once, nhs's second forgery in its window's summary (a count and its digest)
    await env.service.exchange.refusals.flush(everything=True)
    refused = [e for e in await _entries(env) if e.kind == "refused" and not e.recipient]
    assert [(e.actor.agency, e.rules, e.repeated.count if e.repeated else 0) for e in refused] == [
        ("nhs", ("ingress.policy-refused", "P6.consent_recorder"), 0),
        ("advocacy", ("ingress.policy-refused", "P6.consent_owner"), 0),
        ("nhs", ("ingress.policy-refused", "P6.consent_recorder"), 1)]
    assert all(e.reason == "Refused by the data-sharing agreement" for e in refused[:2])


async def test_consent_change_without_ref_is_refused(env: Env) -> None:
    _, jwe = env.adapters["police"].compose("consent_change", _consent("given"), case_id="C-1",
                                            purpose="case_management", subjects=SUBJECTS)
    resp = await env.adapters["police"].submit_http(env.http, jwe)
    assert resp.status_code == 422 and resp.json()["fields"] == ["consent_ref"]


def _override(role: str, hours: float = 4) -> dict[str, Any]:
    return {"justification": {"risk_to": "victim", "harm": "serious_harm",
                              "consent_not_sought_reason": "would_increase_risk"},
            "legal_basis": "UK GDPR Art 9(2)(g) + DPA 2018 Sch 1 para 10",
            "authoriser": {"id": "cg-1", "role": role}, "subject_informed": False,
            "expires_at": (datetime.now(UTC) + timedelta(hours=hours)).isoformat(),
            "data_classes": ["clinical_detail"], "recipients": ["police"]}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_override_review_queue(env: Env) -> None:
    alert = demo_body("risk_concern_alert")
    # without a valid override the clinical note stays with nhs
    await _send(env, "nhs", "risk_concern_alert", alert, "risk_management",
                override=_override("team_manager"))
    await _send(env, "nhs", "risk_concern_alert", alert, "risk_management",
                override=_override("caldicott_guardian"))
    now = env.service.exchange.clock()
    broker = env.service.exchange.broker
    ig = {"authorization": f"Bearer {issue_user_token(broker, 'ig-7', 'ig_officer', now)}"}
    ops = {"authorization": f"Bearer {issue_user_token(broker, 'ops-7', 'ops', now)}"}

    pending = (await env.http.get("/v1/audit/overrides", headers=ig)).json()["overrides"]
    assert [(o["recipient"], o["authoriser_role"], o["status"]) for o in pending] == [
        ("police", "caldicott_guardian", "pending")]
    seq = pending[0]["seq"]
    assert (await env.http.get("/v1/audit/overrides", headers=ops)).status_code == 403
    assert (await env.http.post(f"/v1/audit/overrides/{seq}/approve", headers=ops,
                                json={"reason": "risk_evidenced"})).status_code == 403
    bad = await env.http.post(f"/v1/audit/overrides/{seq}/approve", headers=ig,
                              json={"reason": "Free text naming Claire Hutton"})
    assert bad.status_code == 422
    ok = await env.http.post(f"/v1/audit/overrides/{seq}/approve", headers=ig,
                             json={"reason": "risk_evidenced"})
    assert ok.status_code == 200 and ok.json()["status"] == "approved"
    again = await env.http.post(f"/v1/audit/overrides/{seq}/reject", headers=ig,
                                json={"reason": "second_thoughts"})
    assert again.status_code == 409 and again.json()["code"] == "already-decided"
    assert (await env.http.get("/v1/audit/overrides", headers=ig)).json()["overrides"] == []
    reviewed = [e for e in await _entries(env) if e.kind == "override_reviewed"]
    assert len(reviewed) == 1 and reviewed[0].decision == "approved"
    assert reviewed[0].actor.user_id == "ig-7" and reviewed[0].override == {
        "override_seq": str(seq), "review_status": "approved"}
    used = [e for e in await _entries(env) if e.kind == "override_used"]
    assert [e.seq for e in used] == [seq]


async def test_correction_reaches_each_earlier_recipient_with_only_what_it_had(env: Env) -> None:
    body = demo_body("case_referral")
    _, jwe = env.adapters["police"].compose("case_referral", body, case_id="C-9",
                                            purpose="risk_management", subjects=SUBJECTS)
    original = (await env.adapters["police"].submit_http(env.http, jwe)).json()["message_id"]
    correction = {"corrects_message_id": original, "corrects_masp_type": "case_referral",
                  "correction_reason": "factual_error", "victim_phone": "07700 900999",
                  "perpetrator_date_of_birth": "1984-03-21"}
    decisions = await _send(env, "police", "correction_notice", correction, "risk_management")
    # advocacy never received the referral, so it gets no correction
    assert set(decisions) == {"probation", "nhs"}
    entries = [e for e in await _entries(env) if e.kind in ("disclosed", "correction_sent")
               and e.masp_type == "correction_notice"]
    nhs = next(e for e in entries if e.kind == "disclosed" and e.recipient == "nhs")
    probation = next(e for e in entries if e.kind == "disclosed" and e.recipient == "probation")
    assert "victim_phone" in nhs.fields_withheld  # nhs never had it (and never may)
    assert "perpetrator_date_of_birth" in {f.name for f in nhs.fields_disclosed}
    assert {"victim_phone", "perpetrator_date_of_birth"} <= {f.name for f in probation.fields_disclosed}
    sent = [e for e in entries if e.kind == "correction_sent"]
    assert {e.recipient for e in sent} == {"probation", "nhs"}
    assert all(e.reason == f"corrects {original}" for e in sent)

    # only the originator may correct a message
    _, jwe = env.adapters["probation"].compose("correction_notice", correction, case_id="C-9",
                                               purpose="risk_management", subjects=SUBJECTS)
    refused = await env.adapters["probation"].submit_http(env.http, jwe)
    assert refused.status_code == 403 and refused.json()["rule"] == "P10.originator"
