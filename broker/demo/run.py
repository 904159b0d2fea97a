"""``masp demo``: the demonstration case of DOMAIN.md §5 on the real RabbitMQ.

Everything runs in one process in an isolated namespace (its own exchanges and queues,
its own SQLite database and keys under the output directory): the broker and its workers,
and one adapter per agency. Each step states what must happen; the run exits 0 only if
every expectation held and the audit log verifies.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import select
from sqlmodel import col

from adapters.runtime import AdapterRuntime, wait_for
from broker.api.app import create_app
from broker.audit.entry import AuditEntry, pseudonym
from broker.crypto.keys import AGENCIES, AgencyKeys, KeyRegistry
from broker.service import BrokerService, init_state
from broker.settings import Settings
from broker.store.audit_export import export_log, verify_database
from broker.store.models import AuditRow, DeliveryRow, OverrideReviewRow
from broker.transport import connect as amqp
from broker.transport import topology
from broker.wire import new_id
from schemas import NEVER_TO_NHS, data_classes

CASE_ID = "HIOW-MASP-2026-0147"
PERPETRATOR_REF = "19/4471023K"  # police PNC id: the identifier an IG officer searches by
VICTIM_REF = "VIC-2026-0147-1"
CONSENT_REF = "CONSENT-HIOW-0147-V1"


@dataclass
class Check:
    step: str
    what: str
    ok: bool

    def line(self) -> str:
        return f"  [{'PASS' if self.ok else 'FAIL'}] {self.what}"


@dataclass
class DemoResult:
    checks: list[Check] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def expect(self, step: str, what: str, ok: bool) -> None:
        self.checks.append(Check(step, what, ok))


def demo_body(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(resources.files("broker.demo").joinpath(f"{name}.json").read_text())
    return data


def _subjects() -> list[dict[str, str]]:
    return [{"ref": PERPETRATOR_REF, "category": "suspect"}, {"ref": VICTIM_REF, "category": "victim"}]


class Demo:
    """The scripted case, played against a running broker by the four agency adapters."""

    def __init__(self, service: BrokerService, connection: AbstractRobustConnection,
                 adapters_home: Path) -> None:
        self.service = service
        self.connection = connection
        self.home = adapters_home
        self.result = DemoResult()
        self.adapters: dict[str, AdapterRuntime] = {}

    async def start_adapters(self) -> None:
        keys_dir = self.service.settings.keys_dir
        registry = KeyRegistry.from_public_dir(keys_dir)
        for agency in AGENCIES:
            rt = AdapterRuntime(AgencyKeys.load(keys_dir, agency), registry, self.home / agency,
                                names=self.service.names)
            await rt.start(self.connection)
            self.adapters[agency] = rt

    async def stop_adapters(self) -> None:
        for rt in self.adapters.values():
            await rt.stop()

    async def play(self) -> DemoResult:
        await self._step1()
        await self._step2()
        await self._step3()
        await self._step4()
        await self._step5()
        await self._step6()
        await self._settle(self.service)
        await self._subject_lookup()
        await self._witness()
        return self.result

    def api_client(self) -> httpx.AsyncClient:
        """An HTTP client on this broker's API, in process (no port needed)."""
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(self.service)),
                                 base_url="http://masp.demo")

    async def _witness(self) -> None:
        """Every agency checks the newest checkpoint against what it saw before, and cosigns."""
        step = "audit"
        async with self.api_client() as client:
            results = [await rt.witness(client) for rt in self.adapters.values()]
        quorum = self.service.settings.witness_quorum
        self.result.expect(step, f"the newest checkpoint is cosigned by all four agencies "
                                 f"(published at {quorum})",
                           results[-1].witnesses == len(AGENCIES) and results[-1].published)

    async def _send(self, step: str, agency: str, masp_type: str, body: dict[str, Any], purpose: str,
                    *, expect: set[str], consent_ref: str | None = None,
                    override: dict[str, Any] | None = None) -> tuple[str, dict[str, str]]:
        """Submit as ``agency`` over AMQP; wait until every recipient in ``expect`` has it."""
        adapter = self.adapters[agency]
        _, jwe = adapter.compose(masp_type, body, case_id=CASE_ID, purpose=purpose,
                                 subjects=_subjects(), consent_ref=consent_ref, override=override)
        reply = await adapter.submit_amqp(self.connection, jwe)
        mid = str(reply.get("message_id", ""))
        decisions = {d["recipient"]: d["decision"] for d in reply.get("decisions", [])}
        # wait for every recipient the broker granted, not only those the step checks
        granted = {r for r, d in decisions.items() if d in ("permit", "permit_with_redaction")}
        await wait_for(lambda: all(self._received(a, mid) for a in expect | granted))
        self.result.steps.append({
            "step": step, "message_id": mid, "decisions": reply.get("decisions"),
            "received": {a: sorted(r["fields"]) for a in AGENCIES for r in self._received(a, mid)}})
        self.result.expect(step, f"broker accepted the {masp_type}", "receipt" in reply)
        return mid, decisions

    def _received(self, agency: str, message_id: str) -> list[dict[str, Any]]:
        return [r for r in self.adapters[agency].received() if r["message"]["jti"] == message_id]

    def _fields(self, agency: str, mid: str) -> set[str]:
        got = self._received(agency, mid)
        return set(got[0]["fields"]) if len(got) == 1 else set()

    async def _step1(self) -> None:
        step = "1. police case_referral"
        body = demo_body("case_referral")
        mid, decisions = await self._send(step, "police", "case_referral", body, "risk_management",
                                          expect={"probation", "nhs"})
        classes = data_classes("case_referral")
        nhs = self._fields("nhs", mid)
        self.result.expect(step, "probation receives the full referral",
                           self._fields("probation", mid) == set(body))
        self.result.expect(step, "nhs receives perpetrator identity, offence, orders and risk",
                           {"perpetrator_name", "offence_codes", "orders", "sdash_yes_count",
                            "sash_concern_level"} <= nhs)
        self.result.expect(step, "nhs receives no victim location or safety plan field",
                           bool(nhs) and not any(classes[f] in NEVER_TO_NHS for f in nhs))
        self.result.expect(step, "advocacy is refused until consent exists (P6)",
                           decisions.get("advocacy") == "deny" and not self._received("advocacy", mid))
        refusal = await self._audit(lambda e: e.message_id == mid and e.recipient == "advocacy"
                                    and e.kind == "refused")
        self.result.expect(step, "the refusal to advocacy is an audit entry citing the consent rule",
                           any(any(r.startswith("P6") for r in e.rules) for e in refusal))

    async def _step2(self) -> None:
        step = "2. police record the victim's consent, then a victim_advocacy_referral"
        await self._send(step, "police", "consent_change", demo_body("consent_change"),
                         "case_management", consent_ref=CONSENT_REF, expect={"advocacy"})
        consent = await self._audit(lambda e: e.kind == "consent_changed")
        self.result.expect(step, "the consent is registered and audited",
                           any(e.consent and e.consent.get("status") == "given" for e in consent))
        mid, _ = await self._send(step, "police", "victim_advocacy_referral",
                                  demo_body("victim_advocacy_referral"), "victim_support",
                                  consent_ref=CONSENT_REF, expect={"advocacy"})
        self.result.expect(step, "advocacy receives the victim's contact details and safe times",
                           {"victim_address", "victim_phone", "victim_safe_contact_times"}
                           <= self._fields("advocacy", mid))

    async def _step3(self) -> None:
        step = "3. intervention_referral refused under investigation, accepted after charge"
        referral = {**demo_body("intervention_referral"), "cj_status": "under_investigation"}
        referral.pop("bail_conditions", None)
        mid, decisions = await self._send(step, "probation", "intervention_referral", referral,
                                          "intervention", expect=set())
        refusal = await self._audit(lambda e: e.message_id == mid and e.recipient == "nhs")
        self.result.expect(step, "refused while under active investigation (P8)",
                           decisions.get("nhs") == "deny"
                           and any("P8.eligibility" in e.rules for e in refusal)
                           and not self._received("nhs", mid))
        charge = demo_body("cj_status_update")
        mid, _ = await self._send(step, "police", "cj_status_update", charge, "risk_management",
                                  consent_ref=CONSENT_REF, expect={"probation", "nhs", "advocacy"})
        self.result.expect(step, "advocacy gets the bail conditions that protect the victim",
                           "bail_conditions" in self._fields("advocacy", mid))
        self.result.expect(step, "nhs gets the charge without the victim's exclusion zones",
                           "cj_status" in self._fields("nhs", mid)
                           and "exclusion_zones" not in self._fields("nhs", mid))
        mid, decisions = await self._send(step, "probation", "intervention_referral",
                                          demo_body("intervention_referral"), "intervention",
                                          expect={"nhs"})
        self.result.expect(step, "resubmitted after charge, it is accepted",
                           decisions.get("nhs") in ("permit", "permit_with_redaction")
                           and bool(self._fields("nhs", mid)))

    async def _step4(self) -> None:
        step = "4. nhs status update, then a risk alert with a clinical note under override"
        mid, _ = await self._send(step, "nhs", "intervention_status_update",
                                  demo_body("intervention_status_update"), "intervention",
                                  expect={"probation", "police"})
        status = self._fields("probation", mid) | self._fields("police", mid)
        self.result.expect(step, "probation and police get attendance (3 of 4), no clinical detail",
                           "sessions_attended" in status
                           and not any(data_classes("intervention_status_update")[f] == "clinical_detail"
                                       for f in status))
        override = {
            "justification": {"risk_to": "victim", "harm": "serious_harm",
                              "consent_not_sought_reason": "would_increase_risk"},
            "legal_basis": "UK GDPR Art 9(2)(g) + DPA 2018 Sch 1 para 10",
            "authoriser": {"id": "cg-0042", "role": "caldicott_guardian"},
            "subject_informed": False,
            "expires_at": (datetime.now(UTC) + timedelta(hours=4)).isoformat(),
            "data_classes": ["clinical_detail"], "recipients": ["police"]}
        mid, _ = await self._send(step, "nhs", "risk_concern_alert", demo_body("risk_concern_alert"),
                                  "risk_management", override=override, expect={"police", "probation"})
        self.result.expect(step, "police receive the alert with the clinical note",
                           "clinical_note" in self._fields("police", mid))
        self.result.expect(step, "probation receives the alert without the clinical note",
                           bool(self._fields("probation", mid))
                           and "clinical_note" not in self._fields("probation", mid))
        async with self.service.exchange.sessions() as s:
            queued = (await s.execute(select(OverrideReviewRow).where(
                col(OverrideReviewRow.message_id) == mid))).scalars().all()
        self.result.expect(step, "the override is in the IG review queue",
                           [(r.recipient, r.status) for r in queued] == [("police", "pending")])

    async def _step5(self) -> None:
        step = "5. SPO breach to all partners; advocacy's new address to police only"
        mid, _ = await self._send(step, "police", "cj_status_update", demo_body("spo_breach"),
                                  "risk_management", consent_ref=CONSENT_REF,
                                  expect={"probation", "nhs", "advocacy"})
        self.result.expect(step, "every partner hears of the breach",
                           all("orders" in self._fields(a, mid) for a in ("probation", "nhs", "advocacy")))
        mid, _ = await self._send(step, "advocacy", "victim_safety_update",
                                  demo_body("victim_safety_update"), "safeguarding",
                                  consent_ref=CONSENT_REF, expect={"police"})
        self.result.expect(step, "police receive the new address",
                           "victim_address" in self._fields("police", mid))
        self.result.expect(step, "no other partner receives the new address",
                           all("victim_address" not in self._fields(a, mid)
                               for a in ("probation", "nhs")))

    async def _step6(self) -> None:
        step = "6. crafted override sending victim_location to nhs"
        override = {
            "justification": {"risk_to": "victim", "harm": "serious_harm",
                              "consent_not_sought_reason": "would_increase_risk"},
            "legal_basis": "DPA 2018 s35(5) + Sch 8 para 4",
            "authoriser": {"id": "insp-2291", "role": "caldicott_guardian"},
            "subject_informed": False,
            "expires_at": (datetime.now(UTC) + timedelta(hours=4)).isoformat(),
            "data_classes": ["victim_location"], "recipients": ["nhs"]}
        mid, decisions = await self._send(step, "police", "case_referral", demo_body("case_referral"),
                                          "risk_management", override=override, expect={"probation"})
        self.result.expect(step, "nhs is refused outright", decisions.get("nhs") == "deny")
        refusal = await self._audit(lambda e: e.message_id == mid and e.recipient == "nhs"
                                    and e.kind == "refused")
        self.result.expect(step, "the refusal cites the hard rule (P4)",
                           any("P4.hard_rule" in e.rules for e in refusal))
        self.result.expect(step, "nhs receives nothing of this message", not self._received("nhs", mid))

    async def _subject_lookup(self) -> None:
        step = "audit"
        exchange = self.service.exchange
        pseud = pseudonym(exchange.pseudonym_secret, PERPETRATOR_REF)
        about = await self._audit(lambda e: any(s.pseudonym == pseud for s in e.subjects)
                                  and e.kind == "disclosed")
        async with exchange.sessions() as s:
            deliveries = (await s.execute(select(DeliveryRow))).scalars().all()
        self.result.expect(step, f"a subject lookup for the perpetrator lists every disclosure "
                                 f"({len(about)})",
                           {e.seq for e in about} == {d.audit_seq for d in deliveries})

    async def _settle(self, service: BrokerService) -> None:
        async def unacked() -> int:
            async with service.exchange.sessions() as s:
                rows = (await s.execute(select(DeliveryRow))).scalars().all()
            return sum(1 for r in rows if r.state != "acknowledged")

        for _ in range(200):
            if await unacked() == 0:
                break
            await asyncio.sleep(0.05)
        self.result.expect("delivery", "every delivery is acknowledged by its recipient",
                           await unacked() == 0)

    async def _audit(self, where: Callable[[AuditEntry], bool]) -> list[AuditEntry]:
        return [e for e in await self._entries() if where(e)]

    async def _entries(self) -> list[AuditEntry]:
        async with self.service.exchange.sessions() as s:
            rows = (await s.execute(select(AuditRow).order_by(AuditRow.seq))).scalars().all()  # type: ignore[arg-type]
        return [AuditEntry.from_leaf(r.leaf) for r in rows]

    async def verify_and_export(self, out: Path) -> None:
        report = await verify_database(self.service)
        await export_log(self.service, out / "audit")
        self.result.audit = {"entries": report.entries, "checkpoints": report.checkpoints,
                             "root": report.root_hex, "problem": report.problem}
        self.result.expect("audit", f"audit log verifies ({report.entries} entries)", report.ok)

    def write_artifacts(self, out: Path) -> None:
        deliveries = out / "deliveries"
        for agency, rt in self.adapters.items():
            target = deliveries / agency
            target.mkdir(parents=True, exist_ok=True)
            for f in sorted((rt.home / "deliveries").glob("*.jwe")):
                shutil.copyfile(f, target / f.name)
        summary = {"ok": self.result.ok, "case_id": CASE_ID, "steps": self.result.steps,
                   "checks": [c.__dict__ for c in self.result.checks], "audit": self.result.audit}
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


async def run_demo(out: Path, base: Settings) -> DemoResult:
    """Play the case in an isolated namespace with state under ``out``; clean the namespace up."""
    out.mkdir(parents=True, exist_ok=True)
    settings = base.model_copy(update={
        "state_dir": out, "database_url": f"sqlite+aiosqlite:///{(out / 'masp.db').resolve()}",
        "namespace": f"demo-{new_id()[-12:]}.", "deployment": "demo"})
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings)
    connection = await amqp.connect_robust(settings)
    demo = Demo(service, connection, out / "adapters")
    try:
        await service.start_workers()
        await demo.start_adapters()
        await demo.play()
        await demo.verify_and_export(out)
    finally:
        await demo.stop_adapters()
        await service.close()
        await connection.close()
        cleanup = await amqp.connect(settings)
        async with cleanup, cleanup.channel() as ch:
            await topology.delete(ch, service.names)
    demo.write_artifacts(out)
    return demo.result
