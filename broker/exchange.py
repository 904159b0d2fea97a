"""The broker pipeline of docs/architecture.md: one submission in, audited decisions and deliveries out.

decrypt → verify sender & times → refuse replays → validate the schema → evaluate the DSA
per candidate recipient → build each recipient's presentation and JWE → one transaction
with the audit entries and the outbox rows. Refusals at any step are audited too.

This module owns the transaction (it is the unit of work a consumer or request runs); it
knows neither HTTP nor AMQP: both edges call ``Exchange.submit``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import structlog
from opentelemetry.trace import SpanKind
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

import schemas
from broker import policy, telemetry, wire
from broker.agencies import AgencyOptions
from broker.audit.entry import (
    Actor,
    AuditEntry,
    DsaRef,
    EntryKind,
    FieldDigest,
    SubjectRef,
    normalise_identifier,
    payload_digest,
    pseudonym,
    recipient_pseudonym,
)
from broker.audit.refusals import RefusalKey
from broker.clock import Clock
from broker.crypto import jose
from broker.crypto.keys import BROKER, AgencyKeys, KeyRegistry
from broker.errors import (
    MalformedMessage,
    MaspError,
    PolicyRefused,
    PurposeNotAgreed,
    ReplayDetected,
    SchemaInvalid,
)
from broker.metrics import BrokerMetrics
from broker.outbox import Outbox
from broker.policy.consent import CATEGORIES_OF_KIND, ConsentRecord, combined_state
from broker.policy.corrections import correction_recipients, scope_correction
from broker.policy.escalation import escalation_for
from broker.refusals import RefusalLog
from broker.store import consent as consent_registry
from broker.store import trace_context
from broker.store.audit_log import AuditLog, Batch
from broker.store.deliveries import QueuedDelivery, paused_names, schedule_escalation
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


@dataclass(frozen=True)
class _Prepared:
    """A verified, valid submission with what was worked out before taking the sequencer."""

    sub: wire.Submission
    body: schemas.CanonicalBody
    actor: Actor
    digest: str
    classes: dict[str, DataClass]
    subjects: tuple[SubjectRef, ...]
    override: policy.Override | None
    targets: dict[str, set[str]] | None
    trace: Mapping[str, Any] | None = None
    #: For a consent_change: the kind of consent it records (victim or intervention).
    consent_kind: str | None = None


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
    #: Deliveries committed here and not yet published: the outbox relay takes them at once.
    outbox: Outbox = field(default_factory=Outbox)
    metrics: BrokerMetrics = field(default_factory=BrokerMetrics)
    #: Repeated ingress refusals are audited once per window, with a count and digests.
    refusals: RefusalLog = field(default_factory=RefusalLog)
    #: Each agency's delivery mode and JWS alg name (``MASP_DELIVERY_MODES``, ``MASP_JWS_ALG_NAMES``).
    options: AgencyOptions = field(default_factory=AgencyOptions)

    def __post_init__(self) -> None:
        self.audit.observers.append(self.metrics.observe_audit)  # counters follow the audit log
        #: the purposes some clause lets each sender send each message type for
        agreed: dict[tuple[str, str], set[str]] = {}
        for agreement in self.bundle.agreements:
            for clause in agreement.clauses:
                for masp_type in clause.message_types:
                    agreed.setdefault((clause.from_, masp_type), set()).update(clause.purposes)
        self._agreed = {flow: frozenset(purposes) for flow, purposes in agreed.items()}

    async def submit(self, token: str | bytes, *, via: str, agency: str | None = None) -> Receipt:
        """Process one submission; raise a ``MaspError`` (already audited) if it is refused.

        ``agency`` is the authenticated submitter on channels that authenticate (HTTP); the
        message's own ``iss`` must then match it.
        """
        sub, body, actor, digest = await self._admit(token, via, agency)
        with telemetry.observed(message_id=sub.message_id, agency=sub.sender,
                                masp_type=sub.claims["masp_type"]):
            receipt = await self._accept(await self._prepare(sub, body, actor, digest))
        telemetry.annotate(outcome="duplicate" if receipt.duplicate else "accepted",
                           audit_seq=receipt.audit_seq,
                           decisions=[f"{d['recipient']}:{d['decision']}" for d in receipt.decisions])
        return receipt

    async def submit_many(self, items: Sequence[tuple[str | bytes, Mapping[str, Any] | None, str | None]],
                          *, via: str) -> list[Receipt | Exception]:
        """Several submissions in one audit transaction (group commit); a result per token.

        Checks that need no sequencer (decrypt, signatures, schema) run first, one message at
        a time; the accepted ones then share one hold of the sequencer, one checkpoint and
        one commit. If that shared unit of work fails, each message is retried alone, so
        one bad message cannot take the others down with it. Each item is ``(token, trace,
        agency)``: the trace headers of the consumer that took it, so its spans stay in its
        own trace, and the agency the channel authenticated, which the message's ``iss`` must
        name (None: no authenticated agency).
        """
        results: list[Receipt | Exception | None] = [None] * len(items)
        ready: list[tuple[int, _Prepared]] = []
        for i, (token, trace, agency) in enumerate(items):
            try:
                with _in_trace(trace):
                    ready.append((i, await self._prepare(*await self._admit(token, via, agency),
                                                         trace=trace)))
            except Exception as exc:  # MaspError: refused and audited; else infrastructure
                results[i] = exc
        if ready:
            replays: list[tuple[int, _Prepared]] = []
            try:
                async with telemetry.astep("masp.audit.append"), self.audit.transaction() as batch:
                    # one query for the batch's replay guard, not one (and a flush) per message
                    seen = {r.jti: r for r in (await batch.session.execute(
                        select(SeenMessageRow).where(col(SeenMessageRow.jti).in_(
                            [p.sub.message_id for _, p in ready])))).scalars()}
                    paused = await paused_names(batch.session)
                    for i, prep in ready:
                        with _in_trace(prep.trace):
                            results[i] = await self._decide(batch, prep, seen, paused)
                        if results[i] is None:
                            replays.append((i, prep))
            except Exception:
                log.warning("group_commit_failed", size=len(ready))
                for i, prep in ready:
                    try:
                        with _in_trace(prep.trace):
                            results[i] = await self._accept(prep)
                    except Exception as exc:
                        results[i] = exc
            else:
                for i, prep in replays:
                    with _in_trace(prep.trace):
                        results[i] = await self._refuse_replay(prep)
                self._accepted([(p, r) for i, p in ready if isinstance(r := results[i], Receipt)])
        return [r if r is not None else RuntimeError("no result") for r in results]

    async def _admit(self, token: str | bytes, via: str, agency: str | None,
                     ) -> tuple[wire.Submission, schemas.CanonicalBody, Actor, str]:
        """Decrypt, verify sender and times, validate: (submission, body, actor, digest)."""
        actor = Actor(agency=agency, auth="agency-jwt" if via == "http" else via)
        digest = payload_digest(token)
        sub: wire.Submission | None = None
        try:
            with telemetry.step("masp.decrypt"):
                raw = wire.decrypt_submission(token, self.broker.decryption_keys(self.clock(), retired=False),
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
        return sub, body, Actor(agency=sub.sender, auth=actor.auth), digest

    async def refuse_unread(self, exc: MaspError, *, via: str, agency: str | None,
                            received: bytes) -> None:
        """Audit a submission an edge refused before handing it over (e.g. too large to read):
        every refusal at ingress is on record, with the digest of what was read of it."""
        actor = Actor(agency=agency, auth="agency-jwt" if via == "http" else via)
        await self._refuse_ingress(exc, actor, payload_digest(received))

    def _validate(self, sub: wire.Submission) -> schemas.CanonicalBody:
        claims = sub.claims
        agreed = self._agreed.get((sub.sender, claims["masp_type"]), frozenset())
        if claims["purpose"] not in agreed:
            # refused, not evaluated: every recipient denied would look like a silent
            # non-delivery. A mistyped purpose and one agreed only for other flows alike: say
            # which would do (the agreements' words; the sender's is not repeated)
            raise PurposeNotAgreed(
                f"no agreement lets {sub.sender} send a {claims['masp_type']} for this purpose; "
                f"agreed purposes: {', '.join(sorted(agreed)) or 'none'}", claim="purpose",
                agreed_purposes=sorted(agreed))
        refs = {normalise_identifier(s["ref"]) for s in claims["subjects"]}
        for claim in ("case_id", "consent_ref"):
            # a reference in the shape of a code is still a reference: not in clear, not logged
            if normalise_identifier(str(claims.get(claim, ""))) in refs:
                raise MalformedMessage(f"{claim} repeats a subject's reference", claim=claim)
        if claims["masp_type"] == "consent_change" and not isinstance(claims.get("consent_ref"), str):
            raise SchemaInvalid("consent_change needs a consent_ref naming the consent it changes",
                                fields=["consent_ref"])
        try:
            return schemas.validate_body(claims["masp_type"], claims["masp_schema"], sub.message.claims)
        except schemas.SchemaInvalid as exc:
            raise SchemaInvalid(str(exc), fields=list(exc.fields)) from None

    async def _refuse_ingress(self, exc: MaspError, actor: Actor, digest: str,
                              sub: wire.Submission | None = None) -> None:
        """Audit an ingress refusal: in full if it is the first of its kind from this sender and
        channel in the window, else counted into that window's summary (``broker/refusals.py``)."""
        now = self.clock()
        written = await self.refusals.refuse(
            self.audit, RefusalKey(actor.agency, actor.auth, exc.code, _refusing_rule(exc)), digest,
            lambda seq: AuditEntry(
                seq=seq, kind=EntryKind.REFUSED, at=now, actor=actor, decision="deny",
                # the title, not the detail: a detail may describe what the sender wrote
                rules=_ingress_rules(exc), reason=exc.title, payload_digest=digest,
                message_id=sub.message_id if sub else None, sender=sub.sender if sub else None,
                policy_hash=self.bundle.policy_hash,
            ), self.bundle.policy_hash)
        if written:
            log.info("submission_refused", code=exc.code, via=actor.auth, agency=actor.agency)

    async def _prepare(self, sub: wire.Submission, body: schemas.CanonicalBody, actor: Actor,
                       digest: str, *, trace: Mapping[str, Any] | None = None) -> _Prepared:
        """Everything about a submission that does not need the sequencer."""
        claims = sub.claims
        present = sub.message.digests
        classes = {n: c for n, c in schemas.data_classes(claims["masp_type"]).items() if n in present}
        subjects = tuple(SubjectRef(pseudonym=pseudonym(self.pseudonym_secret, s["ref"]),
                                    category=s["category"]) for s in claims["subjects"])
        try:
            override = self._override(claims)
            targets = (await self._correction_targets(sub, body)
                       if isinstance(body, CorrectionNotice) else None)
            kind = (await self._consent_recorder(sub, body, subjects)
                    if isinstance(body, ConsentChange) else None)
        except MaspError as exc:
            await self._refuse_ingress(exc, actor, digest, sub)
            raise
        return _Prepared(sub, body, actor, digest, classes, subjects, override, targets, trace, kind)

    async def _accept(self, prep: _Prepared) -> Receipt:
        async with telemetry.astep("masp.audit.append"), self.audit.transaction() as batch:
            receipt = await self._decide(batch, prep)
        if receipt is None:
            raise await self._refuse_replay(prep)
        self._accepted([(prep, receipt)])
        return receipt

    async def _refuse_replay(self, prep: _Prepared) -> ReplayDetected:
        replay = ReplayDetected(f"message id {prep.sub.message_id} was already used for other content")
        await self._refuse_ingress(replay, prep.actor, prep.digest, prep.sub)
        return replay

    def _accepted(self, accepted: Sequence[tuple[_Prepared, Receipt]]) -> None:
        for prep, r in accepted:
            if not r.duplicate:
                log.info("submission_accepted", message_id=r.message_id, agency=prep.sub.sender,
                         masp_type=prep.sub.claims["masp_type"], deliveries=sum(
                             1 for d in r.decisions if d["decision"].startswith("permit")))

    async def _decide(self, batch: Batch, prep: _Prepared,
                      known: dict[str, SeenMessageRow] | None = None,
                      paused: set[str] | None = None) -> Receipt | None:
        """Inside the sequencer: replay guard, policy, audit entries, deliveries, receipt.

        None if the message id was already used for other content (a replay to refuse once
        this unit of work has committed). ``known``: the batch's replay guard rows, read
        together beforehand (and kept up to date here); without it, one read per message.
        ``paused``: the routes paused now, likewise; read under the sequencer, which pausing
        and resuming hold too, so a delivery is handed to the relay at once (``Outbox``)
        exactly when its route was not paused before this unit of work.
        """
        sub, claims, now = prep.sub, prep.sub.claims, self.clock()
        session = batch.session
        seen = (known.get(sub.message_id) if known is not None
                else await session.get(SeenMessageRow, sub.message_id))
        if seen is not None:
            if seen.payload_digest == prep.digest and seen.sender == sub.sender:
                return self._duplicate(seen)
            return None
        targets = prep.targets
        recipients = (policy.candidate_recipients(self.bundle, sub.sender, claims["masp_type"])
                      if targets is None else tuple(sorted(targets)))
        consents = await self._consents(session, claims, prep.subjects)
        with telemetry.step("masp.policy"):
            decisions = [policy.evaluate(self.bundle, policy.PolicyRequest(
                sender=sub.sender, recipient=r, masp_type=claims["masp_type"],
                purpose=claims["purpose"], fields=prep.classes, at=now,
                consent_by_kind=_consent_states(consents, claims, r, now),
                override=prep.override, facts=_facts(prep.body))) for r in recipients]
            telemetry.annotate(decisions=[f"{d.recipient}:{d.outcome.value}" for d in decisions])
        if targets is not None:
            reference = {n for n, c in prep.classes.items() if c == DataClass.MESSAGE_REFERENCE}
            decisions = [scope_correction(d, targets[d.recipient], reference) for d in decisions]
        trace = trace_context.remember(session, sub.message_id)  # the relay publishes in this trace
        if paused is None:
            paused = await paused_names(session)
        receipt = self._record(batch, session, sub, prep.actor, prep.digest, prep.subjects,
                               decisions, now, trace, paused)
        if isinstance(prep.body, ConsentChange) and prep.consent_kind is not None \
                and any(d.delivers for d in decisions):
            # a consent_change nobody may receive is refused as a whole: it records nothing
            self._register_consent(batch, sub, prep.body, prep.subjects, prep.consent_kind,
                                   prep.actor, now)
        session.add(guard := SeenMessageRow(jti=sub.message_id, sender=sub.sender,
                                            payload_digest=prep.digest, receipt=receipt.token,
                                            received_at=now))
        if known is not None:
            known[sub.message_id] = guard
        return receipt

    def _record(self, batch: Batch, session: AsyncSession, sub: wire.Submission, actor: Actor,
                digest: str, subjects: tuple[SubjectRef, ...],
                decisions: list[policy.Decision], now: datetime, trace: dict[str, str],
                paused: set[str]) -> Receipt:
        claims = sub.claims
        common: dict[str, Any] = {
            "at": now, "actor": actor, "message_id": sub.message_id, "masp_type": claims["masp_type"],
            "case_id": claims["case_id"], "sender": sub.sender, "subjects": subjects,
            "purpose": claims["purpose"], "policy_hash": self.bundle.policy_hash,
            "payload_digest": digest,
        }
        digests = sub.message.digests
        envelope = _envelope_digests(sub)
        submitted = batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.SUBMITTED,
            fields_disclosed=(*(FieldDigest(name=n, digest=d) for n, d in sorted(digests.items())),
                              *envelope),
            consent={"ref": claims["consent_ref"], "status": "cited"} if claims.get("consent_ref") else None,
            **common))
        summary: list[dict[str, Any]] = []
        queued: list[QueuedDelivery] = []
        for d in decisions:
            shown = self._envelope_for(sub, d) if d.delivers else _EnvelopeView((), [])
            entry = batch.add(partial(_decision_entry, decision=d, digests=digests, common=common,
                                      envelope=shown.disclosed))
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
                session.add(delivery := self._delivery(sub, d, shown, entry.seq, now))
                if d.recipient not in paused:  # a paused route's deliveries wait in the table
                    queued.append(QueuedDelivery(
                        delivery.delivery_id, sub.message_id, sub.sender, d.recipient,
                        claims["masp_type"], str(delivery.jwe), trace))
                schedule_escalation(session, delivery, escalation_for(
                    self.bundle, d.clause, claims["masp_type"], sub.message.claims))
                if claims["masp_type"] == "correction_notice":
                    batch.add(partial(_correction_entry, decision=d, common=common,
                                      corrects=str(sub.message.claims["corrects_message_id"])))
        if queued:
            batch.after_commit.append(partial(self.outbox.committed, queued))
        # who signed it, for whom, when, and which bytes it acknowledges: the digest of the
        # SD-JWT as submitted, the same as the audit log's `submitted` entry holds
        token = wire.sign_receipt(self.broker, {
            "iss": BROKER, "aud": sub.sender, "iat": wire.epoch(now),
            "message_id": sub.message_id, "received_at": now.isoformat(),
            "payload_digest": digest, "audit_seq": submitted.seq, "decisions": summary},
            self.options.alg_for(sub.sender))
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

    async def _consent_recorder(self, sub: wire.Submission, body: ConsentChange,
                                subjects: tuple[SubjectRef, ...]) -> str:
        """Whether the sender may record this consent decision; its kind if so.

        Only an agency the DSA names as a recorder of that kind may record one, only about
        a subject of the message whose role makes it theirs, and never under a reference
        another agency holds for the same person: knowing a consent_ref is not enough to
        forge or withdraw it. Refused otherwise, as a whole, before anything is recorded.
        """
        kind = "victim" if body.victim_consent is not None else "intervention"
        if not self.bundle.may_record_consent(sub.sender, kind, self.clock().date()):
            raise PolicyRefused(f"{sub.sender} is not a recorder of {kind} consent under the "
                                "agreements in force", rule="P6.consent_recorder")
        about = [s.pseudonym for s in subjects if s.category in CATEGORIES_OF_KIND[kind]]
        if not about:
            raise PolicyRefused(f"a {kind} consent decision must name the subject it is about",
                                rule="P6.consent_subject")
        async with self.sessions() as session:
            holders = await consent_registry.owners(session, str(sub.claims["consent_ref"]),
                                                    about, kind)
        if holders - {sub.sender}:
            raise PolicyRefused("the consent reference is held by another agency for this subject",
                                rule="P6.consent_owner")
        return kind

    def _register_consent(self, batch: Batch, sub: wire.Submission, body: ConsentChange,
                          subjects: tuple[SubjectRef, ...], kind: str, actor: Actor,
                          now: datetime) -> None:
        """Apply a consent decision to every later flow (P6), in the same transaction."""
        ref = str(sub.claims["consent_ref"])
        decision = body.victim_consent or body.intervention_consent
        assert decision is not None  # the schema requires exactly one
        rec = consent_registry.record_from_body(ref, decision)
        about = tuple(s for s in subjects if s.category in CATEGORIES_OF_KIND[kind])
        for s in about:
            consent_registry.record(batch.session, rec, subject=s.pseudonym, kind=kind, at=now,
                                    by=sub.sender, message_id=sub.message_id)
        batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.CONSENT_CHANGED, at=now, actor=actor,
            message_id=sub.message_id, masp_type=sub.claims["masp_type"],
            case_id=sub.claims["case_id"], sender=sub.sender, subjects=about,
            consent={"kind": kind, "ref": ref, "status": rec.status,
                     "effective_date": rec.effective_date.isoformat()},
            policy_hash=self.bundle.policy_hash))

    def _envelope_for(self, sub: wire.Submission, d: policy.Decision) -> _EnvelopeView:
        """The envelope disclosures and subject pseudonyms one recipient gets."""
        disclosed: list[FieldDigest] = []
        subjects: list[dict[str, str]] = []
        for element in sub.message.subjects:
            subject = element.value
            view = policy.subject_view(d, subject["category"])
            if view is policy.SubjectView.NONE:
                continue
            seen = {"category": subject["category"], "ref": recipient_pseudonym(
                self.pseudonym_secret, d.recipient, subject["ref"])}
            if view is policy.SubjectView.REFERENCE:  # the sender's own reference, disclosed
                disclosed.append(FieldDigest(name=f"subject.{subject['category']}",
                                             digest=element.digest))
                seen["disclosure"] = element.digest
            subjects.append(seen)
        consent = sub.message.envelope.get("consent_ref")
        if consent is not None and policy.sees_consent_ref(d, str(sub.claims["masp_type"])):
            disclosed.append(FieldDigest(name="consent_ref", digest=consent.digest))
        return _EnvelopeView(tuple(disclosed), subjects)

    def _delivery(self, sub: wire.Submission, d: policy.Decision, envelope: _EnvelopeView,
                  audit_seq: int, now: datetime) -> DeliveryRow:
        claims = sub.claims
        digests = sub.message.digests
        shown = sub.message.token.present(
            [digests[n] for n in d.disclosed] + [f.digest for f in envelope.disclosed])
        delivery_id = wire.new_id()
        payload: dict[str, Any] = {
            "aud": d.recipient, "jti": delivery_id, "message_id": sub.message_id,
            "sender": sub.sender, "masp_type": claims["masp_type"],
            "dsa": _dsa_ref(d).model_dump() if d.clause else None,
            "purpose": claims["purpose"], "lawful_basis": d.lawful_basis,
            "disclosed": [x.digest for x in shown.disclosures], "withheld": len(d.withheld),
            # each subject as a pseudonym keyed for this recipient; its own reference only
            # among the disclosures, where the clause grants that identity
            "subjects": envelope.subjects,
            "audit_seq": audit_seq,
            "retention_until": d.retention_until.isoformat() if d.retention_until else None,
            "iat": wire.epoch(now)}
        if d.override_used:
            ov = claims["override"]
            payload["override"] = {"authoriser_role": ov["authoriser"]["role"],
                                   "justification": ov["justification"]["harm"]}
        token = wire.sign_delivery_token(self.broker, payload, self.options.alg_for(d.recipient))
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

    async def _consents(self, session: AsyncSession, claims: Mapping[str, Any],
                        subjects: tuple[SubjectRef, ...]) -> dict[str, list[ConsentRecord | None]]:
        """P6 input, read once per message: for each kind of consent, the decision in force
        for each subject of the message whose consent that kind is, under the cited ref."""
        ref = claims.get("consent_ref")
        if not isinstance(ref, str):
            return {}
        return {kind: [await consent_registry.current(session, ref, s.pseudonym, kind)
                       for s in subjects if s.category in categories]
                for kind, categories in CATEGORIES_OF_KIND.items()}


@dataclass(frozen=True)
class _EnvelopeView:
    """What one recipient gets of the envelope: disclosures (audited) and subject pseudonyms."""

    disclosed: tuple[FieldDigest, ...]
    subjects: list[dict[str, str]]


def _consent_states(consents: Mapping[str, list[ConsentRecord | None]], claims: Mapping[str, Any],
                    recipient: str, now: datetime) -> dict[str, policy.ConsentState]:
    return {kind: combined_state(records, recipient, claims["masp_type"], claims["purpose"],
                                 now.date(), str(claims.get("consent_ref")))
            for kind, records in consents.items()}


def _envelope_digests(sub: wire.Submission) -> tuple[FieldDigest, ...]:
    """The envelope's disclosures as the submitted entry lists them (names are ours)."""
    out = [FieldDigest(name=f"subject.{e.value['category']}", digest=e.digest)
           for e in sub.message.subjects]
    out += [FieldDigest(name=n, digest=d.digest) for n, d in sorted(sub.message.envelope.items())]
    return tuple(out)


def _refusing_rule(exc: MaspError) -> str | None:
    rule = exc.extensions.get("rule")
    return rule if isinstance(rule, str) else None


def _ingress_rules(exc: MaspError) -> tuple[str, ...]:
    """``ingress.<code>``, and the policy rule that refused, if one did (our ids only)."""
    rule = _refusing_rule(exc)
    return (f"ingress.{exc.code}", rule) if rule else (f"ingress.{exc.code}",)


def _in_trace(trace: Mapping[str, Any] | None) -> AbstractContextManager[object]:
    """A span for one message of a batch, in that message's own trace (if it has one)."""
    if not trace:
        return nullcontext()
    return telemetry.continue_trace(trace, "masp.submit", SpanKind.INTERNAL)


def _dsa_ref(d: policy.Decision) -> DsaRef:
    assert d.clause is not None
    return DsaRef(id=d.clause.dsa_id, version=d.clause.dsa_version, clause=d.clause.clause_id)


def _decision_entry(seq: int, *, decision: policy.Decision, digests: Mapping[str, str],
                    common: Mapping[str, Any], envelope: tuple[FieldDigest, ...]) -> AuditEntry:
    d = decision
    permitted = d.outcome in (policy.Outcome.PERMIT, policy.Outcome.PERMIT_WITH_REDACTION)
    return AuditEntry(
        seq=seq, kind=EntryKind.DISCLOSED if permitted else EntryKind.REFUSED,
        recipient=d.recipient, dsa=_dsa_ref(d) if d.clause else None,
        lawful_basis=d.lawful_basis, special_category_condition=d.special_category_condition,
        decision=d.outcome.value, rules=d.rules, reason=d.reason,
        fields_disclosed=(*(FieldDigest(name=n, digest=digests[n]) for n in sorted(d.disclosed)),
                          *envelope) if permitted else (),
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
