"""``masp demo``: the demonstration case of docs/domain.md §5 on the real RabbitMQ.

Everything runs in one process in an isolated namespace (its own exchanges and queues,
its own SQLite database and keys under the output directory): the broker and its workers,
and one adapter per agency. Every message starts as a native record of the sending
agency's own system (``native/<agency>/``) and every delivery ends as a file in the
recipient's outbox (``adapters/<agency>/outbox/``). Each step states what must happen; the
run exits 0 only if every expectation held and the audit log verifies.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from aio_pika.abc import AbstractRobustConnection
from sqlalchemy import select
from sqlmodel import col

from adapters.formats import native_format
from adapters.host import AgencyAdapter, Sent
from adapters.runtime import AdapterRuntime, wait_for
from broker.api.app import create_app
from broker.audit.entry import AuditEntry, normalise_identifier, pseudonym
from broker.crypto import jose
from broker.crypto.keys import AGENCIES, AgencyKeys, KeyRegistry
from broker.errors import MaspError
from broker.service import BrokerService, init_state, log_keys
from broker.settings import Settings
from broker.store.audit_export import deployment_witnesses, export_log, operator_trust, verify_database
from broker.store.models import AuditRow, DeliveryRow, OverrideReviewRow
from broker.transport import connect as amqp
from broker.transport import topology
from broker.wire import CTY_DELIVERY, new_id
from schemas import NEVER_TO_NHS, data_classes

#: The case as each agency's own system exports it (broker/demo/native/<agency>/).
NATIVE = resources.files("broker.demo").joinpath("native")

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


class Demo:
    """The scripted case, played against a running broker by the four agency adapters."""

    def __init__(self, service: BrokerService, connection: AbstractRobustConnection,
                 adapters_home: Path) -> None:
        self.service = service
        self.connection = connection
        self.home = adapters_home
        self.result = DemoResult()
        self.adapters: dict[str, AdapterRuntime] = {}
        self.agencies: dict[str, AgencyAdapter] = {}

    async def start_adapters(self) -> None:
        keys_dir = self.service.settings.keys_dir
        registry = KeyRegistry.from_public_dir(keys_dir)
        for agency in AGENCIES:
            rt = AdapterRuntime(AgencyKeys.load(keys_dir, agency), registry, self.home / agency,
                                names=self.service.names)
            self.agencies[agency] = AgencyAdapter(rt, native_format(agency), self._amqp_submitter(rt),
                                                  inbox=rt.home / "inbox", outbox=rt.home / "outbox")
            await rt.start(self.connection)
            self.adapters[agency] = rt

    def _amqp_submitter(self, rt: AdapterRuntime) -> Callable[[str], Awaitable[dict[str, Any]]]:
        async def submit(jwe: str) -> dict[str, Any]:
            return await rt.submit_amqp(self.connection, jwe)
        return submit

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

    async def _ingest(self, step: str, agency: str, fixture: str, *,
                      expect: set[str]) -> list[tuple[Sent, dict[str, str]]]:
        """Hand ``agency``'s adapter one native file; wait until every recipient has each message."""
        data = NATIVE.joinpath(agency, fixture).read_bytes()
        out = []
        for sent in await self.agencies[agency].ingest(fixture, data):
            mid = sent.message_id
            decisions = {d["recipient"]: d["decision"] for d in sent.decisions}
            # wait for every recipient the broker granted, not only those the step checks
            granted = {r for r, d in decisions.items() if d in ("permit", "permit_with_redaction")}
            await wait_for(self._all_received(mid, expect | granted))
            self.result.steps.append({
                "step": step, "native": f"{agency}/{fixture}", "record": sent.record,
                "masp_type": sent.masp_type, "message_id": mid, "decisions": sent.decisions,
                "received": {a: sorted(r["fields"]) for a in AGENCIES for r in self._received(a, mid)}})
            self.result.expect(step, f"broker accepted the {sent.masp_type} from {agency}'s {fixture}",
                               bool(mid))
            out.append((sent, decisions))
        return out

    def _all_received(self, mid: str, agencies: set[str]) -> Callable[[], bool]:
        return lambda: all(self._received(a, mid) for a in agencies)

    def _outbox(self, agency: str, mid: str) -> list[str]:
        """The native files ``agency``'s system got for message ``mid``, as text."""
        got = self._received(agency, mid)
        if len(got) != 1:
            return []
        delivery_id = got[0]["delivery"]["jti"]
        return [p.read_text() for p in self.agencies[agency].outbox_files() if delivery_id in p.name]

    def _received(self, agency: str, message_id: str) -> list[dict[str, Any]]:
        return [r for r in self.adapters[agency].received() if r["message"]["jti"] == message_id]

    def _fields(self, agency: str, mid: str) -> set[str]:
        got = self._received(agency, mid)
        return set(got[0]["fields"]) if len(got) == 1 else set()

    async def _step1(self) -> None:
        step = "1. police case_referral"
        [(sent, decisions)] = await self._ingest(step, "police", "1_referral.json",
                                                 expect={"probation", "nhs"})
        mid = sent.message_id
        classes = data_classes("case_referral")
        nhs = self._fields("nhs", mid)
        self.result.expect(step, "probation receives the full referral",
                           self._fields("probation", mid) == set(sent.fields))
        self.result.expect(step, "nhs receives perpetrator identity, offence, orders and risk",
                           {"perpetrator_name", "offence_codes", "orders", "sdash_yes_count",
                            "sash_concern_level"} <= nhs)
        self.result.expect(step, "nhs receives no victim location or safety plan field",
                           bool(nhs) and not any(classes[f] in NEVER_TO_NHS for f in nhs))
        self.result.expect(step, "nhs's record system gets a FHIR Bundle without the victim's address",
                           any('"resourceType": "Bundle"' in t and "Marlowe" not in t
                               for t in self._outbox("nhs", mid)))
        self.result.expect(step, "advocacy is refused until consent exists (P6)",
                           decisions.get("advocacy") == "deny" and not self._received("advocacy", mid))
        refusal = await self._audit(lambda e: e.message_id == mid and e.recipient == "advocacy"
                                    and e.kind == "refused")
        self.result.expect(step, "the refusal to advocacy is an audit entry citing the consent rule",
                           any(any(r.startswith("P6") for r in e.rules) for e in refusal))

    async def _step2(self) -> None:
        step = "2. police record the victim's consent, then a victim_advocacy_referral"
        [_, (referral, _)] = await self._ingest(step, "police", "2_advocacy_referral.json",
                                                expect={"advocacy"})
        consent = await self._audit(lambda e: e.kind == "consent_changed")
        self.result.expect(step, "the consent is registered and audited",
                           any(e.consent and e.consent.get("status") == "given" for e in consent))
        mid = referral.message_id
        self.result.expect(step, "advocacy receives the victim's contact details and safe times",
                           {"victim_address", "victim_phone", "victim_safe_contact_times"}
                           <= self._fields("advocacy", mid))
        self.result.expect(step, "the advocate gets a readable new-referral notification",
                           any(t.startswith("# New referral") for t in self._outbox("advocacy", mid)))

    async def _step3(self) -> None:
        step = "3. intervention_referral refused under investigation, accepted after charge"
        [(sent, decisions)] = await self._ingest(step, "probation", "3a_referral_under_investigation.csv",
                                                 expect=set())
        refusal = await self._audit(lambda e: e.message_id == sent.message_id and e.recipient == "nhs")
        self.result.expect(step, "refused while under active investigation (P8)",
                           decisions.get("nhs") == "deny"
                           and any("P8.eligibility" in e.rules for e in refusal)
                           and not self._received("nhs", sent.message_id))
        [(charge, _)] = await self._ingest(step, "police", "3_charge.json",
                                           expect={"probation", "nhs", "advocacy"})
        mid = charge.message_id
        self.result.expect(step, "advocacy gets the bail conditions that protect the victim",
                           "bail_conditions" in self._fields("advocacy", mid)
                           and any("Bail conditions" in t for t in self._outbox("advocacy", mid)))
        self.result.expect(step, "nhs gets the charge without the victim's exclusion zones",
                           "cj_status" in self._fields("nhs", mid)
                           and "exclusion_zones" not in self._fields("nhs", mid))
        [(sent, decisions)] = await self._ingest(step, "probation", "3b_referral_after_charge.csv",
                                                 expect={"nhs"})
        self.result.expect(step, "resubmitted after charge, it is accepted",
                           decisions.get("nhs") in ("permit", "permit_with_redaction")
                           and bool(self._fields("nhs", sent.message_id)))
        self.result.expect(step, "nhs's record system gets the referral as a FHIR ServiceRequest",
                           any('"ServiceRequest"' in t for t in self._outbox("nhs", sent.message_id)))

    async def _step4(self) -> None:
        step = "4. nhs status update, then a risk alert with a clinical note under override"
        [(sent, _)] = await self._ingest(step, "nhs", "4a_attendance.json", expect={"probation", "police"})
        mid = sent.message_id
        status = self._fields("probation", mid) | self._fields("police", mid)
        self.result.expect(step, "probation and police get attendance (3 of 4), no clinical detail",
                           "sessions_attended" in status
                           and not any(data_classes("intervention_status_update")[f] == "clinical_detail"
                                       for f in status)
                           and any("attended 3 of 4" in t for t in self._outbox("probation", mid)))
        [(sent, _)] = await self._ingest(step, "nhs", "4b_risk_disclosure.json",
                                         expect={"police", "probation"})
        mid = sent.message_id
        self.result.expect(step, "police receive the alert with the clinical note",
                           "clinical_note" in self._fields("police", mid)
                           and any("P2_SAME_DAY" in t for t in self._outbox("police", mid)))
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
        [(sent, _)] = await self._ingest(step, "police", "5_spo_breach.json",
                                         expect={"probation", "nhs", "advocacy"})
        mid = sent.message_id
        self.result.expect(step, "every partner hears of the breach",
                           all("orders" in self._fields(a, mid) for a in ("probation", "nhs", "advocacy")))
        self.result.expect(step, "the advocate's notification leads with the breach",
                           any(t.startswith("# URGENT: protective order breached")
                               for t in self._outbox("advocacy", mid)))
        [(sent, _)] = await self._ingest(step, "advocacy", "5_safety_review.json", expect={"police"})
        mid = sent.message_id
        self.result.expect(step, "police receive the new address",
                           "victim_address" in self._fields("police", mid)
                           and any('"location_marker_requested": true' in t
                                   for t in self._outbox("police", mid)))
        self.result.expect(step, "no other partner receives the new address",
                           all("victim_address" not in self._fields(a, mid)
                               for a in ("probation", "nhs")))

    async def _step6(self) -> None:
        step = "6. crafted override sending victim_location to nhs"
        [(sent, decisions)] = await self._ingest(step, "police", "6_crafted_override.json",
                                                 expect={"probation"})
        mid = sent.message_id
        self.result.expect(step, "nhs is refused outright", decisions.get("nhs") == "deny")
        refusal = await self._audit(lambda e: e.message_id == mid and e.recipient == "nhs"
                                    and e.kind == "refused")
        self.result.expect(step, "the refusal cites the hard rule (P4)",
                           any("P4.hard_rule" in e.rules for e in refusal))
        self.result.expect(step, "nhs receives nothing of this message", not self._received("nhs", mid))
        self._nhs_never_hears_of_the_victim()

    def _nhs_never_hears_of_the_victim(self) -> None:
        """Over the whole case: no victim subject and no victim reference in anything nhs
        decrypted (its signed JWTs, disclosures and the broker's tokens, decoded)."""
        rt = self.adapters["nhs"]
        seen = [s for r in rt.received() for s in r["message"]["subjects"]]
        text = "".join(_decoded(rt.keys, f.read_bytes()) for f in (rt.home / "deliveries").glob("*.jwe"))
        self.result.expect("audit", "nhs never hears of the victim: no victim subject, not her "
                                    "reference, in any delivery",
                           bool(seen) and all(s["category"] != "victim" for s in seen)
                           and normalise_identifier(VICTIM_REF) not in normalise_identifier(text))

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
        service = self.service
        settings = service.settings
        # the demo's relying party pins the operator's keys, and the witnesses have cosigned
        witnesses = deployment_witnesses(service.exchange.registry, [w.verifier for w in settings.witnesses])
        trust = await operator_trust(service.exchange.sessions, log_keys(settings), witnesses,
                                     settings.witness_quorum)
        report = await verify_database(service, trust)
        await export_log(service.exchange.sessions, out / "audit", settings.audit_origin)
        (out / "audit-trust.txt").write_text(trust.render(
            f"audit log {trust.origin}: the keys to pin, kept apart from the export\n"
            f"verify with: masp audit verify --export {out / 'audit'} --trust {out / 'audit-trust.txt'}"))
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


def _decoded(keys: AgencyKeys, jwe: bytes) -> str:
    """A delivery as its recipient can read it: the plaintext and every base64url part of
    the JWTs and disclosures inside it, decoded."""
    plain = jose.decrypt(jwe, keys.decryption_keys(), CTY_DELIVERY).decode()
    body = json.loads(plain)
    parts = [p for token in (body["sd_jwt"], body["delivery"]) for piece in token.split("~")
             for p in piece.split(".") if p]
    out = [plain]
    for part in parts:
        try:
            out.append(jose.b64url_decode(part).decode("utf-8", "replace"))
        except MaspError:
            continue
    return "\n".join(out)
