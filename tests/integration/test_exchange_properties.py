"""Property tests through the real pipeline (real SQLite, real crypto, the sample DSA).

Random subsets of a referral's fields, random purposes and random overrides go through
``Exchange.submit``; whatever the policy decides, the outcome holds these invariants:
nothing of victim_location or victim_safety_plan is ever sealed for nhs; every candidate
recipient has exactly one decision entry; every withheld field is named in the audit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from broker import wire
from broker.audit.entry import AuditEntry
from broker.crypto import jose
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.demo.run import demo_body
from broker.errors import MaspError
from broker.service import BrokerService, init_state
from broker.store.models import AuditRow, DeliveryRow
from schemas import NEVER_TO_NHS, data_classes
from tests.integration.conftest import make_settings

BODY = demo_body("case_referral")
REQUIRED = {"perpetrator_name", "offence_codes", "cj_status", "referrer"}
OPTIONAL = sorted(set(BODY) - REQUIRED)
CLASSES = data_classes("case_referral")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[asyncio.Runner, BrokerService]]:
    tmp: Path = tmp_path_factory.mktemp("props")
    settings = make_settings(tmp, f"sqlite+aiosqlite:///{tmp / 'masp.db'}")
    init_state(settings, datetime.now(UTC).date())
    runner = asyncio.Runner()
    service = runner.run(BrokerService.open(settings))
    yield runner, service
    runner.run(service.close())
    runner.close()


def _override(kind: str) -> dict[str, Any] | None:
    if kind == "none":
        return None
    classes, role = {"hard_rule": (["victim_location", "victim_safety_plan"], "caldicott_guardian"),
                     "health": (["health_flags"], "caldicott_guardian"),
                     "wrong_role": (["victim_identity"], "receptionist")}[kind]
    return {"justification": {"risk_to": "victim", "harm": "serious_harm",
                              "consent_not_sought_reason": "would_increase_risk"},
            "legal_basis": "DPA 2018 s35(5) + Sch 8 para 4",
            "authoriser": {"id": "a-1", "role": role}, "subject_informed": False,
            "expires_at": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
            "data_classes": classes, "recipients": ["nhs", "advocacy", "probation"]}


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.sets(st.sampled_from(OPTIONAL)),
       purpose=st.sampled_from(["risk_management", "safeguarding", "victim_support", "marketing"]),
       override=st.sampled_from(["none", "hard_rule", "health", "wrong_role"]),
       consent_ref=st.sampled_from([None, "NO-SUCH-CONSENT-1"]))
def test_invariants_hold_for_any_referral(pipeline: tuple[asyncio.Runner, BrokerService],
                                          fields: set[str], purpose: str, override: str,
                                          consent_ref: str | None) -> None:
    runner, service = pipeline
    runner.run(_check(service, {n: BODY[n] for n in REQUIRED | fields}, purpose,
                      _override(override), consent_ref))


async def _check(service: BrokerService, body: dict[str, Any], purpose: str,
                 override: dict[str, Any] | None, consent_ref: str | None) -> None:
    exchange = service.exchange
    keys_dir = service.settings.keys_dir
    police = AgencyKeys.load(keys_dir, "police")
    registry = KeyRegistry.from_public_dir(keys_dir)
    message = wire.compose_message(police, "case_referral", body, case_id="P-1", purpose=purpose,
                                   subjects=[{"ref": "X-1", "category": "suspect"},
                                             {"ref": "VIC-7", "category": "victim"}],
                                   now=exchange.clock(), override=override, consent_ref=consent_ref)
    try:
        receipt = await exchange.submit(wire.seal_submission(message, registry.current("broker", "enc")),
                                        via="test", agency="police")
    except MaspError as exc:
        event(f"refused at ingress: {exc.code}")
        return  # refused at ingress: audited, nothing delivered
    async with exchange.sessions() as s:
        rows = (await s.execute(select(AuditRow).where(
            AuditRow.message_id == receipt.message_id))).scalars().all()
        deliveries = (await s.execute(select(DeliveryRow).where(
            DeliveryRow.message_id == receipt.message_id))).scalars().all()
    entries = [AuditEntry.from_leaf(r.leaf) for r in rows]
    decided = [e for e in entries if e.kind in ("disclosed", "refused") and e.recipient]
    event(f"{len(deliveries)} deliveries")
    assert sorted(e.recipient for e in decided) == sorted(d["recipient"] for d in receipt.decisions)
    for e in decided:
        shown = {f.name for f in e.fields_disclosed if f.name in CLASSES}  # body fields
        assert shown | set(e.fields_withheld) == set(body)  # every field accounted for
        assert not shown & set(e.fields_withheld)
        if e.kind == "refused":
            assert not shown
        if e.recipient == "nhs":
            assert not any(CLASSES[n] in NEVER_TO_NHS for n in shown)
    nhs_keys = AgencyKeys.load(keys_dir, "nhs")
    for d in deliveries:
        if d.recipient == "nhs":
            opened = wire.open_delivery(d.jwe or "", nhs_keys, registry)
            assert not any(CLASSES[n] in NEVER_TO_NHS for n in opened.message.claims)
            # nor the victim's reference, nor any mention of a victim subject
            assert [s.value["category"] for s in opened.message.subjects] in ([], ["suspect"])
            assert [s["category"] for s in opened.token["subjects"]] == ["suspect"]
            plain = jose.decrypt(d.jwe or "", nhs_keys.decryption_keys(), wire.CTY_DELIVERY)
            assert b"VIC-7" not in plain and b"VIC-7" not in b"".join(
                jose.b64url_decode(part) for part in plain.decode().replace('"', ".").replace(
                    "~", ".").split(".") if part and _is_b64(part))


def _is_b64(part: str) -> bool:
    try:
        jose.b64url_decode(part)
    except MaspError:
        return False
    return True
