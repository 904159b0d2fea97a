"""The broker pipeline of DESIGN.md §2: one submission in, audited decisions and deliveries out.

decrypt → verify sender & times → refuse replays → validate the schema → evaluate the DSA
per candidate recipient → build each recipient's presentation and JWE → one transaction
with the audit entries and the outbox rows. Refusals at any step are audited too.

This module owns the transaction (it is the unit of work a consumer or request runs); it
knows neither HTTP nor AMQP: both edges call ``Exchange.submit``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

import schemas
from broker import policy, telemetry, wire
from broker.audit.entry import (
    Actor,
    AuditEntry,
    DsaRef,
    EntryKind,
    FieldDigest,
    SubjectRef,
    payload_digest,
    pseudonym,
)
from broker.clock import Clock
from broker.crypto import jose
from broker.crypto.keys import AgencyKeys, KeyRegistry
from broker.errors import MalformedMessage, MaspError, PolicyRefused, ReplayDetected, SchemaInvalid
from broker.metrics import BrokerMetrics
from broker.policy.corrections import correction_recipients, scope_correction
from broker.policy.escalation import escalation_for
from broker.store import consent as consent_registry
from broker.store import trace_context
from broker.store.audit_log import AuditLog, Batch
from broker.store.deliveries import schedule_escalation
from broker.store.models import AuditRow, DeliveryRow, OverrideReviewRow, SeenMessageRow
from schemas import DataClass
from schemas.consent_change import ConsentChange
from schemas.correction_notice import CorrectionNotice, CorrectionNoticeBase

log = structlog.get_logger("masp.exchange")


@dataclass(frozen=True)
class Receipt:
    token: str
    message_id: str
    audit_seq: int
    decisions: list[dict[str, Any]]
    duplicate: bool = False

    def as_json(self) -> dict[str, Any]:
        return {"receipt": self.token, "message_id": self.message_id,
                "audit_seq": self.audit_seq, "decisions": self.decisions}


@dataclass
class Exchange:
    broker: AgencyKeys
    registry: KeyRegistry
    bundle: policy.DsaBundle
    sessions: async_sessionmaker[AsyncSession]
    audit: AuditLog
    clock: Clock
    pseudonym_secret: bytes
    max_message_bytes: int = 256 * 1024
    max_skew: timedelta = timedelta(minutes=5)
    #: Set after each commit that queued deliveries, so the outbox relay wakes at once.
    outbox_ready: asyncio.Event = field(default_factory=asyncio.Event)
    metrics: BrokerMetrics = field(default_factory=BrokerMetrics)

    def __post_init__(self) -> None:
        self.audit.observers.append(self.metrics.observe_audit)  # counters follow the audit log

    async def submit(self, token: str | bytes, *, via: str, agency: str | None = None) -> Receipt:
        """Process one submission; raise a ``MaspError`` (already audited) if it is refused.

        ``agency`` is the authenticated submitter on channels that authenticate (HTTP); the
        message's own ``iss`` must then match it.
        """
        actor = Actor(agency=agency, auth="agency-jwt" if via == "http" else via)
        digest = payload_digest(token)
        try:
            with telemetry.step("masp.decrypt"):
                raw = wire.decrypt_submission(token, self.broker.decryption_keys(),
                                              self.max_message_bytes)
            digest = payload_digest(raw)
            with telemetry.step("masp.verify"):
                sub = wire.verify_submission(raw, self.registry, self.clock(), self.max_skew)
                if agency is not None and sub.sender != agency:
                    raise MalformedMessage("message iss differs from the authenticated agency")
            with telemetry.step("masp.schema", masp_type=sub.claims["masp_type"]):
                body = self._validate(sub)
        except MaspError as exc:
            telemetry.annotate(outcome="refused", code=exc.code)
            await self._refuse_ingress(exc, actor, digest)
            raise
        with telemetry.observed(message_id=sub.message_id, agency=sub.sender,
                                masp_type=sub.claims["masp_type"]):
            receipt = await self._accept(sub, body, Actor(agency=sub.sender, auth=actor.auth), digest)
        telemetry.annotate(outcome="duplicate" if receipt.duplicate else "accepted",
                           audit_seq=receipt.audit_seq,
                           decisions=[f"{d['recipient']}:{d['decision']}" for d in receipt.decisions])
        return receipt

    async def refuse_unread(self, exc: MaspError, *, via: str, agency: str | None,
                            received: bytes) -> None:
        """Audit a submission an edge refused before handing it over (e.g. too large to read):
        every refusal at ingress is on record, with the digest of what was read of it."""
        actor = Actor(agency=agency, auth="agency-jwt" if via == "http" else via)
        await self._refuse_ingress(exc, actor, payload_digest(received))

    def _validate(self, sub: wire.Submission) -> schemas.CanonicalBody:
        claims = sub.claims
        if claims["masp_type"] == "consent_change" and not isinstance(claims.get("consent_ref"), str):
            raise SchemaInvalid("consent_change needs a consent_ref naming the consent it changes",
                                fields=["consent_ref"])
        try:
            return schemas.validate_body(claims["masp_type"], claims["masp_schema"], sub.message.claims)
        except schemas.SchemaInvalid as exc:
            raise SchemaInvalid(str(exc), fields=list(exc.fields)) from None

    async def _refuse_ingress(self, exc: MaspError, actor: Actor, digest: str,
                              sub: wire.Submission | None = None) -> None:
        now = self.clock()
        async with self.audit.transaction() as batch:
            batch.add(lambda seq: AuditEntry(
                seq=seq, kind=EntryKind.REFUSED, at=now, actor=actor, decision="deny",
                rules=(f"ingress.{exc.code}",), reason=exc.detail, payload_digest=digest,
                message_id=sub.message_id if sub else None, sender=sub.sender if sub else None,
                policy_hash=self.bundle.policy_hash,
            ))
        log.info("submission_refused", code=exc.code, via=actor.auth, agency=actor.agency)

    async def _accept(self, sub: wire.Submission, body: schemas.CanonicalBody, actor: Actor,
                      digest: str) -> Receipt:
        claims = sub.claims
        now = self.clock()
        present = sub.message.digests
        classes = {n: c for n, c in schemas.data_classes(claims["masp_type"]).items() if n in present}
        subjects = tuple(SubjectRef(pseudonym=pseudonym(self.pseudonym_secret, s["ref"]),
                                    category=s["category"]) for s in claims["subjects"])
        override = self._override(claims)
        targets: dict[str, set[str]] | None = None
        if isinstance(body, CorrectionNotice):
            try:
                targets = await self._correction_targets(sub, body)
            except MaspError as exc:
                await self._refuse_ingress(exc, actor, digest, sub)
                raise
        async with telemetry.astep("masp.audit.append"), self.audit.transaction() as batch:
            session = batch.session
            seen = await session.get(SeenMessageRow, sub.message_id)
            if seen is not None:
                if seen.payload_digest == digest and seen.sender == sub.sender:
                    return self._duplicate(seen)
            else:
                recipients = (policy.candidate_recipients(self.bundle, sub.sender, claims["masp_type"])
                              if targets is None else tuple(sorted(targets)))
                with telemetry.step("masp.policy"):
                    decisions = [policy.evaluate(self.bundle, policy.PolicyRequest(
                        sender=sub.sender, recipient=r, masp_type=claims["masp_type"],
                        purpose=claims["purpose"], fields=classes, at=now,
                        consent=await self._consent(session, claims, r, now), override=override,
                        facts=_facts(body))) for r in recipients]
                    telemetry.annotate(decisions=[f"{d.recipient}:{d.outcome.value}" for d in decisions])
                if targets is not None:
                    reference = {n for n, c in classes.items() if c == DataClass.MESSAGE_REFERENCE}
                    decisions = [scope_correction(d, targets[d.recipient], reference)
                                 for d in decisions]
                receipt = self._record(batch, session, sub, actor, digest, subjects, decisions, now)
                if isinstance(body, ConsentChange):
                    self._register_consent(batch, sub, body, subjects, actor, now)
                session.add(SeenMessageRow(jti=sub.message_id, sender=sub.sender,
                                           payload_digest=digest, receipt=receipt.token,
                                           received_at=now))
                trace_context.remember(session, sub.message_id)  # the relay publishes in this trace
        if seen is not None:
            replay = ReplayDetected(f"message id {sub.message_id} was already used for other content")
            await self._refuse_ingress(replay, actor, digest, sub)
            raise replay
        self.outbox_ready.set()
        log.info("submission_accepted", message_id=sub.message_id, agency=sub.sender,
                 masp_type=claims["masp_type"], deliveries=sum(
                     1 for d in receipt.decisions if d["decision"].startswith("permit")))
        return receipt

    def _record(self, batch: Batch, session: AsyncSession, sub: wire.Submission, actor: Actor,
                digest: str, subjects: tuple[SubjectRef, ...],
                decisions: list[policy.Decision], now: datetime) -> Receipt:
        claims = sub.claims
        common: dict[str, Any] = {
            "at": now, "actor": actor, "message_id": sub.message_id, "masp_type": claims["masp_type"],
            "case_id": claims["case_id"], "sender": sub.sender, "subjects": subjects,
            "purpose": claims["purpose"], "policy_hash": self.bundle.policy_hash,
            "payload_digest": digest,
        }
        digests = sub.message.digests
        submitted = batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.SUBMITTED,
            fields_disclosed=tuple(FieldDigest(name=n, digest=d) for n, d in sorted(digests.items())),
            consent={"ref": claims["consent_ref"], "status": "cited"} if claims.get("consent_ref") else None,
            **common))
        summary: list[dict[str, Any]] = []
        for d in decisions:
            entry = batch.add(partial(_decision_entry, decision=d, digests=digests, common=common))
            summary.append({"recipient": d.recipient, "decision": d.outcome.value,
                            "clause": d.clause.clause_id if d.clause else None})
            if d.override_used:
                used = batch.add(partial(_override_entry, decision=d, override=claims["override"],
                                         common=common))
                session.add(OverrideReviewRow(
                    seq=used.seq, message_id=sub.message_id, sender=sub.sender,
                    recipient=d.recipient, authoriser_role=claims["override"]["authoriser"]["role"],
                    harm=claims["override"]["justification"]["harm"], status="pending",
                    created_at=now))
            if d.outcome in (policy.Outcome.PERMIT, policy.Outcome.PERMIT_WITH_REDACTION):
                session.add(delivery := self._delivery(sub, d, entry.seq, now))
                schedule_escalation(session, delivery, escalation_for(
                    self.bundle, d.clause, claims["masp_type"], sub.message.claims))
                if claims["masp_type"] == "correction_notice":
                    batch.add(partial(_correction_entry, decision=d, common=common,
                                      corrects=str(sub.message.claims["corrects_message_id"])))
        token = wire.sign_receipt(self.broker, {
            "message_id": sub.message_id, "received_at": now.isoformat(),
            "audit_seq": submitted.seq, "decisions": summary})
        return Receipt(token, sub.message_id, submitted.seq, summary)

    async def _correction_targets(self, sub: wire.Submission,
                                  body: CorrectionNoticeBase) -> dict[str, set[str]]:
        """Earlier recipients of the corrected fields, with the fields each received (P10)."""
        original = str(body.corrects_message_id)
        async with self.sessions() as session:
            seen = await session.get(SeenMessageRow, original)
            if seen is None or seen.sender != sub.sender:
                raise PolicyRefused("only the originator of a message may correct it (P10)",
                                    rule="P10.originator")
            rows = (await session.execute(select(AuditRow).where(
                col(AuditRow.message_id) == original, col(AuditRow.kind) == EntryKind.DISCLOSED.value,
            ))).scalars().all()
        earlier: dict[str, set[str]] = {}
        for row in rows:
            entry = AuditEntry.from_leaf(row.leaf)
            if entry.recipient is not None:
                earlier.setdefault(entry.recipient, set()).update(f.name for f in entry.fields_disclosed)
        touched = (body.present_fields() - CorrectionNoticeBase.model_fields.keys()) | set(
            body.withdrawn_fields or ())
        return {r: earlier[r] for r in correction_recipients(earlier, touched)}

    def _register_consent(self, batch: Batch, sub: wire.Submission, body: ConsentChange,
                          subjects: tuple[SubjectRef, ...], actor: Actor, now: datetime) -> None:
        """Apply a consent decision to every later flow (P6), in the same transaction."""
        ref = str(sub.claims["consent_ref"])
        decision = body.victim_consent or body.intervention_consent
        assert decision is not None  # the schema requires exactly one
        rec = consent_registry.record_from_body(ref, decision)
        consent_registry.record(batch.session, rec, subjects=[s.pseudonym for s in subjects],
                                at=now, by=sub.sender, message_id=sub.message_id)
        batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.CONSENT_CHANGED, at=now, actor=actor,
            message_id=sub.message_id, masp_type=sub.claims["masp_type"],
            case_id=sub.claims["case_id"], sender=sub.sender, subjects=subjects,
            consent={"ref": ref, "status": rec.status,
                     "effective_date": rec.effective_date.isoformat()},
            policy_hash=self.bundle.policy_hash))

    def _delivery(self, sub: wire.Submission, d: policy.Decision, audit_seq: int,
                  now: datetime) -> DeliveryRow:
        claims = sub.claims
        shown = sub.message.token.present(d.disclosed)
        delivery_id = wire.new_id()
        token = wire.sign_delivery_token(self.broker, {
            "aud": d.recipient, "jti": delivery_id, "message_id": sub.message_id,
            "sender": sub.sender, "masp_type": claims["masp_type"],
            "dsa": _dsa_ref(d).model_dump() if d.clause else None,
            "purpose": claims["purpose"], "lawful_basis": d.lawful_basis,
            "disclosed": [x.digest for x in shown.disclosures], "withheld": len(d.withheld),
            "audit_seq": audit_seq,
            "retention_until": d.retention_until.isoformat() if d.retention_until else None,
            "iat": wire.epoch(now)})
        jwe = wire.seal_delivery(shown, token, self.registry.current(d.recipient, "enc"))
        return DeliveryRow(delivery_id=delivery_id, message_id=sub.message_id, sender=sub.sender,
                           recipient=d.recipient, masp_type=claims["masp_type"], state="queued",
                           audit_seq=audit_seq, jwe=jwe, created_at=now,
                           retention_until=d.retention_until)

    def _duplicate(self, seen: SeenMessageRow) -> Receipt:
        _, payload = jose.verify(seen.receipt, lambda kid: self.registry.get(
            kid, use="sig", agency="broker"), wire.TYP_RECEIPT)
        return Receipt(seen.receipt, seen.jti, payload["audit_seq"], payload["decisions"], True)

    @staticmethod
    def _override(claims: Mapping[str, Any]) -> policy.Override | None:
        raw = claims.get("override")
        if raw is None:
            return None
        try:
            return policy.Override.model_validate(raw)
        except ValidationError:
            raise MalformedMessage("override block is incomplete or malformed") from None

    async def _consent(self, session: AsyncSession, claims: Mapping[str, Any], recipient: str,
                       now: datetime) -> policy.ConsentState | None:
        """P6 input: the registry's current decision for the cited ``consent_ref``, if any."""
        ref = claims.get("consent_ref")
        if not isinstance(ref, str):
            return None
        rec = await consent_registry.current(session, ref)
        if rec is None:
            return None
        return rec.state_for(recipient, claims["masp_type"], claims["purpose"], now.date())


def _dsa_ref(d: policy.Decision) -> DsaRef:
    assert d.clause is not None
    return DsaRef(id=d.clause.dsa_id, version=d.clause.dsa_version, clause=d.clause.clause_id)


def _decision_entry(seq: int, *, decision: policy.Decision, digests: Mapping[str, str],
                    common: Mapping[str, Any]) -> AuditEntry:
    d = decision
    permitted = d.outcome in (policy.Outcome.PERMIT, policy.Outcome.PERMIT_WITH_REDACTION)
    return AuditEntry(
        seq=seq, kind=EntryKind.DISCLOSED if permitted else EntryKind.REFUSED,
        recipient=d.recipient, dsa=_dsa_ref(d) if d.clause else None,
        lawful_basis=d.lawful_basis, special_category_condition=d.special_category_condition,
        decision=d.outcome.value, rules=d.rules, reason=d.reason,
        fields_disclosed=tuple(FieldDigest(name=n, digest=digests[n]) for n in sorted(d.disclosed))
        if permitted else (),
        fields_withheld=tuple(sorted(d.withheld)) if permitted else tuple(sorted(digests)),
        classification=d.classification, retention_until=d.retention_until, **common)


def _override_entry(seq: int, *, decision: policy.Decision, override: Mapping[str, Any],
                    common: Mapping[str, Any]) -> AuditEntry:
    """The break-glass use itself, for the IG review queue: codes and roles, never free text."""
    return AuditEntry(
        seq=seq, kind=EntryKind.OVERRIDE_USED, recipient=decision.recipient,
        decision=decision.outcome.value, rules=decision.rules, dsa=_dsa_ref(decision),
        override={"authoriser_role": override["authoriser"]["role"],
                  "justification": override["justification"]["harm"], "review_status": "pending"},
        **common)


def _correction_entry(seq: int, *, decision: policy.Decision, common: Mapping[str, Any],
                      corrects: str) -> AuditEntry:
    return AuditEntry(seq=seq, kind=EntryKind.CORRECTION_SENT, recipient=decision.recipient,
                      decision=decision.outcome.value, rules=decision.rules,
                      reason=f"corrects {corrects}", dsa=_dsa_ref(decision),
                      fields_withheld=decision.withheld, **common)


def _facts(body: schemas.CanonicalBody) -> dict[str, object]:
    """Facts the eligibility rule (P8) reads from the body; never sent anywhere."""
    facts: dict[str, object] = {}
    status = getattr(body, "cj_status", None)
    if status is not None:
        facts["cj_status"] = getattr(status, "value", status)
    referrer = getattr(body, "referrer", None)
    if referrer is not None:
        facts["case_holder"] = bool(getattr(referrer, "case_holder", None))
    return facts


async def acknowledge(exchange: Exchange, token: str, *, via: str,
                      agency: str | None = None) -> dict[str, Any]:
    """Record a recipient's signed acknowledgement (DESIGN.md §3.4); idempotent per delivery."""
    from broker.errors import Forbidden, NotFound

    payload = wire.verify_ack(token, exchange.registry)
    telemetry.annotate(delivery_id=payload["delivery_id"], message_id=payload["message_id"],
                       agency=payload["iss"], status=payload["status"])
    if agency is not None and payload["iss"] != agency:
        raise Forbidden("acknowledgement signed by another agency")
    now = exchange.clock()
    async with telemetry.astep("masp.audit.append"), exchange.audit.transaction() as batch:
        row = await batch.session.get(DeliveryRow, payload["delivery_id"])
        if row is None or row.recipient != payload["iss"] or row.message_id != payload["message_id"]:
            raise NotFound("no such delivery for this agency")
        if row.state in ("acknowledged", "rejected"):
            return {"delivery_id": row.delivery_id, "state": row.state, "duplicate": True}
        accepted = payload["status"] == "accepted"
        row.state = "acknowledged" if accepted else "rejected"
        row.acked_at = now
        row.jwe = None  # P9: ciphertext is kept only until acknowledgement
        batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.ACKNOWLEDGED if accepted else EntryKind.REJECTED_BY_RECIPIENT,
            at=now, actor=Actor(agency=payload["iss"], auth=via), message_id=row.message_id,
            delivery_id=row.delivery_id, masp_type=row.masp_type, sender=row.sender,
            recipient=row.recipient, decision=payload["status"],
            reason=_reason_code(payload.get("reason")), policy_hash=exchange.bundle.policy_hash))
        state = row.state
    exchange.metrics.record_latency(row.recipient, row.created_at, now)
    log.info("delivery_acknowledged", delivery_id=payload["delivery_id"], agency=payload["iss"],
             status=payload["status"])
    return {"delivery_id": payload["delivery_id"], "state": state, "duplicate": False}


def _reason_code(reason: object) -> str | None:
    """Recipients' reasons are free text from another system: keep a bounded code only."""
    if not isinstance(reason, str):
        return None
    code = "".join(ch for ch in reason[:64] if ch.isalnum() or ch in "-_.: ")
    return code or None
