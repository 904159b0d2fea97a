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

import aio_pika
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import select

from adapters.runtime import AdapterRuntime, wait_for
from broker.audit.entry import AuditEntry
from broker.crypto.keys import AGENCIES, AgencyKeys, KeyRegistry
from broker.service import BrokerService, init_state
from broker.settings import Settings
from broker.store.audit_export import export_log, verify_database
from broker.store.models import AuditRow, DeliveryRow
from broker.transport import topology
from broker.wire import new_id
from schemas import NEVER_TO_NHS, data_classes

CASE_ID = "HIOW-MASP-2026-0147"
PERPETRATOR_REF = "19/4471023K"  # police PNC id: the identifier an IG officer searches by
VICTIM_REF = "VIC-2026-0147-1"


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
        await self._step1(self.connection)
        await self._step6(self.connection)
        await self._settle(self.service)
        return self.result

    def _received(self, agency: str, message_id: str) -> list[dict[str, Any]]:
        return [r for r in self.adapters[agency].received() if r["message"]["jti"] == message_id]

    async def _step1(self, connection: AbstractRobustConnection) -> None:
        police = self.adapters["police"]
        body = demo_body("case_referral")
        _, jwe = police.compose("case_referral", body, case_id=CASE_ID, purpose="risk_management",
                                subjects=_subjects())
        reply = await police.submit_amqp(connection, jwe)
        mid = reply.get("message_id", "")
        await wait_for(lambda: bool(self._received("probation", mid)) and bool(self._received("nhs", mid)))
        step = "1. police case_referral"
        classes = data_classes("case_referral")
        prob = self._received("probation", mid)
        nhs = self._received("nhs", mid)
        self.result.expect(step, "broker accepted the referral", "receipt" in reply)
        self.result.expect(step, "probation receives the full referral",
                           len(prob) == 1 and set(prob[0]["fields"]) == set(body))
        nhs_fields = set(nhs[0]["fields"]) if len(nhs) == 1 else set()
        self.result.expect(step, "nhs receives perpetrator identity, offence, orders and risk",
                           {"perpetrator_name", "offence_codes", "orders", "sdash_yes_count",
                            "sash_concern_level"} <= nhs_fields)
        self.result.expect(step, "nhs receives no victim location or safety plan field",
                           len(nhs) == 1 and not any(classes[f] in NEVER_TO_NHS for f in nhs_fields))
        decisions = {d["recipient"]: d for d in reply.get("decisions", [])}
        self.result.expect(step, "advocacy is refused until consent exists (P6)",
                           decisions.get("advocacy", {}).get("decision") == "deny"
                           and not self._received("advocacy", mid))
        refusal = await self._audit(lambda e: e.message_id == mid and e.recipient == "advocacy"
                                    and e.kind == "refused")
        self.result.expect(step, "the refusal to advocacy is an audit entry citing the consent rule",
                           any(any(r.startswith("P6") for r in e.rules) for e in refusal))
        self.result.steps.append({"step": step, "message_id": mid, "decisions": reply.get("decisions"),
                                  "received": {a: sorted(r["fields"]) for a in AGENCIES
                                               for r in self._received(a, mid)}})

    async def _step6(self, connection: AbstractRobustConnection) -> None:
        police = self.adapters["police"]
        body = demo_body("case_referral")
        override = {
            "justification": {"risk_to": "victim", "harm": "serious_harm",
                              "consent_not_sought_reason": "would_increase_risk"},
            "legal_basis": "DPA 2018 s35(5) + Sch 8 para 4",
            "authoriser": {"id": "insp-2291", "role": "caldicott_guardian"},
            "subject_informed": False,
            "expires_at": (datetime.now(UTC) + timedelta(hours=4)).isoformat(),
            "data_classes": ["victim_location"], "recipients": ["nhs"]}
        _, jwe = police.compose("case_referral", body, case_id=CASE_ID, purpose="risk_management",
                                subjects=_subjects(), override=override)
        reply = await police.submit_amqp(connection, jwe)
        mid = reply.get("message_id", "")
        await wait_for(lambda: bool(self._received("probation", mid)))
        step = "6. crafted override sending victim_location to nhs"
        decisions = {d["recipient"]: d for d in reply.get("decisions", [])}
        self.result.expect(step, "nhs is refused outright",
                           decisions.get("nhs", {}).get("decision") == "deny")
        refusal = await self._audit(lambda e: e.message_id == mid and e.recipient == "nhs"
                                    and e.kind == "refused")
        self.result.expect(step, "the refusal cites the hard rule (P4)",
                           any("P4.hard_rule" in e.rules for e in refusal))
        self.result.expect(step, "nhs receives nothing of this message", not self._received("nhs", mid))
        self.result.steps.append({"step": step, "message_id": mid, "decisions": reply.get("decisions"),
                                  "received": {a: sorted(r["fields"]) for a in AGENCIES
                                               for r in self._received(a, mid)}})

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
    connection = await aio_pika.connect_robust(settings.amqp_url, timeout=10)
    demo = Demo(service, connection, out / "adapters")
    try:
        await service.start_workers()
        await demo.start_adapters()
        await demo.play()
        await demo.verify_and_export(out)
    finally:
        await demo.stop_adapters()
        await service.close()
        async with connection.channel() as ch:
            await topology.delete(ch, service.names)
        await connection.close()
    demo.write_artifacts(out)
    return demo.result
