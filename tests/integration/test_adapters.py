"""Each adapter end to end: a native file in, the other agencies' native files out.

Through the real broker, its real policy and the real RabbitMQ (the ``env`` fixture); the
agency adapters are the same ``AgencyAdapter`` that ``masp adapter run`` and ``masp demo``
use. Invalid native files are refused whole, naming record and field, and send nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
from fhir.resources.R4B.bundle import Bundle
from sqlalchemy import func, select

from adapters.conformance import ConformanceRun
from adapters.endpoint import create_endpoint
from adapters.formats import native_format
from adapters.host import AgencyAdapter, Sent, http_submitter
from adapters.runtime import wait_for
from broker.crypto.keys import AGENCIES
from broker.store.models import AuditRow, DeliveryRow
from tests.integration.conftest import Env

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "broker" / "demo" / "native"
ASSETS = REPO / "tests" / "assets"


@pytest.fixture
def agencies(env: Env) -> dict[str, AgencyAdapter]:
    return {a: AgencyAdapter(rt, native_format(a), http_submitter(rt, env.http),
                             inbox=rt.home / "inbox", outbox=rt.home / "outbox")
            for a, rt in env.adapters.items()}


def _granted(sent: Sent) -> set[str]:
    return {d["recipient"] for d in sent.decisions if d["decision"] in ("permit", "permit_with_redaction")}


async def _outputs(agencies: dict[str, AgencyAdapter], sent: Sent) -> dict[str, list[Path]]:
    """Wait until every granted recipient has its native files for ``sent``; return them."""
    def files(agency: str) -> list[Path]:
        rt = agencies[agency].runtime
        ids = [r["delivery"]["jti"] for r in rt.received() if r["message"]["jti"] == sent.message_id]
        return [p for p in agencies[agency].outbox_files() for i in ids if i in p.name]

    assert await wait_for(lambda: all(files(a) for a in _granted(sent)))
    return {a: files(a) for a in AGENCIES}


async def _ingest(agencies: dict[str, AgencyAdapter], agency: str, path: Path) -> list[Sent]:
    return await agencies[agency].ingest(path.name, path.read_bytes())


async def test_police_export_reaches_probation_csv_and_nhs_fhir(agencies: dict[str, AgencyAdapter]) -> None:
    [sent] = await _ingest(agencies, "police", DEMO / "police" / "1_referral.json")
    assert {d["recipient"]: d["decision"] for d in sent.decisions} == {
        "probation": "permit", "nhs": "permit_with_redaction", "advocacy": "deny"}
    out = await _outputs(agencies, sent)
    assert not out["advocacy"] and not out["police"]
    probation = {p.suffix: p for p in out["probation"]}
    entry = json.loads(probation[".json"].read_text())
    assert entry["contact_type"] == "MASP_PARTNER_CASE_REFERRAL"
    assert entry["fields"]["victim_address"]["postcode"] == "PO99 4LT"  # probation: the full picture
    assert "Partnership referral: Daniel James Marsh" in probation[".csv"].read_text()
    [nhs] = out["nhs"]
    text = nhs.read_text()
    bundle = Bundle.model_validate_json(text)  # what the EPR gets is valid FHIR
    assert [e.resource.get_resource_type() for e in bundle.entry or []] == ["Patient", "Communication"]
    for located in ("Marlowe", "PO99 4LT", "07700 900461", "claire.hutton", "Southsea Library"):
        assert located not in text


async def test_probation_referral_becomes_an_nhs_service_request(agencies: dict[str, AgencyAdapter]) -> None:
    early = DEMO / "probation" / "3a_referral_under_investigation.csv"
    [refused] = await _ingest(agencies, "probation", early)
    assert {d["recipient"]: d["decision"] for d in refused.decisions} == {"nhs": "deny"}  # P8
    [sent] = await _ingest(agencies, "probation", DEMO / "probation" / "3b_referral_after_charge.csv")
    [bundle_file] = (await _outputs(agencies, sent))["nhs"]
    bundle = Bundle.model_validate_json(bundle_file.read_text())
    resources = {e.resource.get_resource_type(): e.resource for e in bundle.entry or []}
    patient, request = resources["Patient"], resources["ServiceRequest"]
    assert {i.system.rsplit("/", 1)[-1]: i.value for i in patient.identifier} == {
        "pnc": "19/4471023K", "probation-crn": "X482913"}
    assert request.subject.reference == bundle.entry[0].fullUrl
    assert any(i.value == "HIOW-MASP-2026-0147" for i in request.identifier)
    notes = " ".join(n.text for n in request.note)
    assert "Bail conditions: Not to contact the victim" in notes and "Case holder: Jo Fenwick" in notes


async def test_probation_release_and_recall_reach_police_and_nhs(agencies: dict[str, AgencyAdapter]) -> None:
    release, recall = await _ingest(agencies, "probation", ASSETS / "probation" / "release_and_recall.csv")
    out = await _outputs(agencies, release)
    task = json.loads(out["police"][0].read_text())
    assert task["category"] == "OFFENDER_MANAGEMENT"
    assert task["details"]["exclusion_zones"][0]["imposed_by"] == "licence"  # police may see them
    nhs = out["nhs"][0].read_text()
    assert "licence_conditions" in nhs and "Bitterne" not in nhs  # nhs: never the exclusion zone
    out = await _outputs(agencies, recall)
    assert json.loads(out["police"][0].read_text())["details"]["recall_reason"] == "contact_with_victim"


async def test_nhs_bundles_reach_police_and_probation(agencies: dict[str, AgencyAdapter]) -> None:
    [status] = await _ingest(agencies, "nhs", DEMO / "nhs" / "4a_attendance.json")
    out = await _outputs(agencies, status)
    csv_file = next(p for p in out["probation"] if p.suffix == ".csv")
    assert "Intervention in_treatment: attended 3 of 4, engagement partial" in csv_file.read_text()
    assert "grievance" not in json.dumps([p.read_text() for ps in out.values() for p in ps])
    [alert] = await _ingest(agencies, "nhs", DEMO / "nhs" / "4b_risk_disclosure.json")
    out = await _outputs(agencies, alert)
    police = json.loads(out["police"][0].read_text())
    assert police["category"] == "RISK_ALERT" and police["priority"] == "P2_SAME_DAY"
    assert police["clinical_note_under_override"].startswith("Ruminative grievance")
    assert police["call_back"]["name"] == "Dr Priya Raman" and police["partnership"]["override"] is True
    probation = json.loads(next(p for p in out["probation"] if p.suffix == ".json").read_text())
    assert "clinical_note" not in probation["fields"]
    assert probation["headline"].startswith("RISK ALERT (same_day)")


async def test_nhs_alert_without_override_never_carries_the_clinical_note(
        agencies: dict[str, AgencyAdapter]) -> None:
    [alert] = await _ingest(agencies, "nhs", ASSETS / "nhs" / "risk_disclosure_without_override.json")
    assert "clinical_note" not in alert.fields
    out = await _outputs(agencies, alert)
    assert json.loads(out["police"][0].read_text())["clinical_note_under_override"] is None


async def test_advocacy_update_reaches_police_only_and_alerts_reach_the_advocate(
        agencies: dict[str, AgencyAdapter]) -> None:
    for fixture in ("1_referral.json", "2_advocacy_referral.json"):
        for sent in await _ingest(agencies, "police", DEMO / "police" / fixture):
            await _outputs(agencies, sent)
    [breach] = await _ingest(agencies, "police", DEMO / "police" / "5_spo_breach.json")
    notice = (await _outputs(agencies, breach))["advocacy"][0]
    text = notice.read_text()
    assert notice.suffix == ".md" and text.startswith("# URGENT: protective order breached")
    assert "Breach on 2026-12-18" in text
    [update] = await _ingest(agencies, "advocacy", DEMO / "advocacy" / "5_safety_review.json")
    out = await _outputs(agencies, update)
    task = json.loads(out["police"][0].read_text())
    assert task["victim_contact_update"]["address"]["postcode"] == "PO99 6RJ"
    assert task["location_marker_requested"] is True
    assert not out["nhs"] and not out["probation"]  # probation: no consent in scope for it


async def _counts(env: Env) -> tuple[int, int]:
    async with env.service.exchange.sessions() as s:
        audit = (await s.execute(select(func.count()).select_from(AuditRow))).scalar_one()
        deliveries = (await s.execute(select(func.count()).select_from(DeliveryRow))).scalar_one()
    return int(audit), int(deliveries)


@pytest.mark.parametrize(("agency", "fixture"), [
    ("police", "police/invalid_export.json"), ("probation", "probation/invalid_extract.csv"),
    ("nhs", "nhs/invalid_nhs_number.json"), ("advocacy", "advocacy/invalid_safety_review.json")])
async def test_invalid_native_file_in_the_inbox_is_refused_whole(
        env: Env, agencies: dict[str, AgencyAdapter], agency: str, fixture: str) -> None:
    adapter = agencies[agency]
    adapter.inbox.mkdir(parents=True)
    (adapter.inbox / Path(fixture).name).write_bytes((ASSETS / fixture).read_bytes())
    before = await _counts(env)
    [moved] = await adapter.poll_inbox()
    assert moved.parent.name == "refused"
    report = moved.with_name(moved.name + ".report.txt").read_text()
    assert report.startswith(f"{moved.name}: refused, nothing of this file was sent")
    assert len(report.splitlines()) >= 3  # every bad record and field, one per line
    assert await _counts(env) == before  # not one message of the file reached the broker


async def test_local_endpoint_sends_a_file_or_answers_a_problem(env: Env,
                                                                agencies: dict[str, AgencyAdapter]) -> None:
    app = create_endpoint(agencies["probation"])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://adapter") as local:
        bad = await local.post("/records", params={"name": "extract.csv"},
                               content=(ASSETS / "probation" / "invalid_extract.csv").read_bytes())
        assert bad.status_code == 422 and bad.headers["content-type"] == "application/problem+json"
        problem = bad.json()
        assert problem["code"] == "native-record-invalid" and problem["instance"] == "extract.csv"
        expected = {"record": "row 3 (CRN K20411)", "field": "rosh_level", "reason": "unknown_code"}
        assert expected in problem["problems"]
        good = await local.post("/records", params={"name": "release.csv"},
                                content=(ASSETS / "probation" / "release_and_recall.csv").read_bytes())
        assert good.status_code == 202, good.text
        sent = good.json()["sent"]
        assert [s["masp_type"] for s in sent] == ["offender_management_update"] * 2
    assert all(s["message_id"] for s in sent)


async def test_a_watched_inbox_sends_and_files_receipts(agencies: dict[str, AgencyAdapter]) -> None:
    police = agencies["police"]
    police.inbox.mkdir(parents=True)
    (police.inbox / "referral.json").write_bytes((DEMO / "police" / "1_referral.json").read_bytes())
    (police.inbox / ".half-written.json").write_text("{")
    [moved] = await police.poll_inbox()
    assert moved == police.inbox / "sent" / "referral.json"
    filed = police.inbox / "sent" / "referral.json.receipts.json"
    receipts: list[dict[str, Any]] = json.loads(filed.read_text())
    assert receipts[0]["masp_type"] == "case_referral" and receipts[0]["message_id"]


@pytest.mark.parametrize("agency", AGENCIES)
async def test_conformance_check_passes_for_each_agency(env: Env, agency: str) -> None:
    await env.adapters[agency].stop()  # the check reads and acknowledges this agency's delivery itself
    run = ConformanceRun(agency, env.settings.keys_dir, env.http, DEMO)
    points = await run.run()
    assert all(p.ok for p in points), "\n".join(p.line() for p in points)
    assert len(points) == 14
    assert {p.ref for p in points} == {"message", "submission", "delivery", "acknowledgement", "audit"}


async def test_a_file_resent_after_an_outage_delivers_each_record_once(
        env: Env, agencies: dict[str, AgencyAdapter]) -> None:
    police = agencies["police"]
    submit, calls = police.submit, 0

    async def broker_goes_away_after_the_first(jwe: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise httpx.ConnectError("broker away")
        return await submit(jwe)

    police.submit = broker_goes_away_after_the_first
    path = DEMO / "police" / "2_advocacy_referral.json"  # two messages: consent, then the referral
    with pytest.raises(httpx.ConnectError):
        await _ingest(agencies, "police", path)
    police.submit = submit
    consent, referral = await _ingest(agencies, "police", path)  # the same file again
    again = await _ingest(agencies, "police", path)  # and once more, for good measure
    assert [s.message_id for s in again] == [consent.message_id, referral.message_id]
    await _outputs(agencies, referral)
    async with env.service.exchange.sessions() as s:
        rows = (await s.execute(select(DeliveryRow))).scalars().all()
    pairs = [(r.message_id, r.recipient) for r in rows]
    assert sorted(pairs) == sorted({(consent.message_id, "advocacy"), (consent.message_id, "probation"),
                                    (referral.message_id, "advocacy")})
    assert len(agencies["advocacy"].outbox_files(".md")) == 2  # one notification per message


async def test_a_message_the_broker_refuses_is_reported_by_record(
        agencies: dict[str, AgencyAdapter]) -> None:
    police = agencies["police"]
    submit, calls = police.submit, 0

    async def refuse_the_second(jwe: str) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        if calls == 2:  # as a refusal comes back over AMQP: a problem document
            return {"code": "expired", "detail": "message has expired", "status": 400}
        return await submit(jwe)

    police.submit = refuse_the_second
    police.inbox.mkdir(parents=True)
    (police.inbox / "var.json").write_bytes((DEMO / "police" / "2_advocacy_referral.json").read_bytes())
    [moved] = await police.poll_inbox()
    assert moved == police.inbox / "refused" / "var.json"
    report = (police.inbox / "refused" / "var.json.report.txt").read_text()
    assert report == ("var.json: the broker refused event EV-118734-02 (victim_advocacy_referral, "
                      "message 2 of 2; those before it were accepted): expired: message has expired\n")
