"""Acknowledgements (docs/spec/acknowledgement.md): a recipient's signed receipt of a delivery, audited once.

Kept beside ``broker/exchange.py`` (submissions) and sharing its sequencer: one
acknowledgement at a time over HTTP, or a batch of them in one unit of work from the AMQP
consumer (group commit).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import structlog
from sqlalchemy import select
from sqlmodel import col

from broker import telemetry, wire
from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.errors import Conflict, DeliveryMismatch, Forbidden, MaspError
from broker.store.audit_log import Batch
from broker.store.models import DeliveryRow

if TYPE_CHECKING:
    from broker.exchange import Exchange

log = structlog.get_logger("masp.exchange")


async def acknowledge(exchange: Exchange, token: str, *, via: str, agency: str | None = None,
                      delivery_id: str | None = None) -> dict[str, Any]:
    """Record a recipient's signed acknowledgement (docs/spec/acknowledgement.md); idempotent.

    ``agency``: the authenticated caller, who must be the ack's signer. ``delivery_id``: the
    delivery the request is about (the URL's), which the signed ack must name. Both are
    checked before the audit transaction opens, and that the delivery is the signer's inside
    it before anything is written, so a refused ack changes nothing.
    """
    payload = wire.verify_ack(token, exchange.registry, exchange.clock())
    telemetry.annotate(delivery_id=payload["delivery_id"], message_id=payload["message_id"],
                       agency=payload["iss"], status=payload["status"])
    if agency is not None and payload["iss"] != agency:
        raise Forbidden("acknowledgement signed by another agency")
    if delivery_id is not None and payload["delivery_id"] != delivery_id:
        raise DeliveryMismatch("the signed acknowledgement names another delivery than the URL")
    async with telemetry.astep("masp.audit.append"), exchange.audit.transaction() as batch:
        result, row = await _record_ack(exchange, batch, payload, via)
    _acknowledged(exchange, payload, result, row)
    return result


async def acknowledge_many(exchange: Exchange, tokens: Sequence[str], *,
                           via: str) -> list[dict[str, Any] | Exception]:
    """Several acknowledgements in one audit transaction (group commit); a result per token.

    Signatures are checked first, one at a time; if the shared unit of work fails, each is
    retried alone so that one cannot take the others down.
    """
    results: list[dict[str, Any] | Exception | None] = [None] * len(tokens)
    verified: list[tuple[int, dict[str, Any]]] = []
    now = exchange.clock()
    for i, token in enumerate(tokens):
        try:
            verified.append((i, wire.verify_ack(token, exchange.registry, now)))
        except MaspError as exc:
            results[i] = exc
    done: list[tuple[dict[str, Any], dict[str, Any], DeliveryRow | None]] = []
    try:
        async with telemetry.astep("masp.audit.append"), exchange.audit.transaction() as batch:
            # one query for the batch's deliveries, not one round trip per acknowledgement
            rows = {r.delivery_id: r for r in (await batch.session.execute(
                select(DeliveryRow).where(col(DeliveryRow.delivery_id).in_(
                    [p["delivery_id"] for _, p in verified])))).scalars()}
            for i, payload in verified:
                try:
                    result, row = await _record_ack(exchange, batch, payload, via, rows)
                except MaspError as exc:  # no such delivery: nothing was written for it
                    results[i] = exc
                    continue
                results[i] = result
                done.append((payload, result, row))
    except Exception:
        log.warning("group_commit_failed", size=len(verified))
        for i, _ in verified:
            try:
                results[i] = await acknowledge(exchange, tokens[i], via=via)
            except Exception as exc:
                results[i] = exc
    else:
        for payload, result, row in done:
            _acknowledged(exchange, payload, result, row)
    return [r if r is not None else RuntimeError("no result") for r in results]


async def _record_ack(exchange: Exchange, batch: Batch, payload: dict[str, Any], via: str,
                      known: Mapping[str, DeliveryRow] | None = None,
                      ) -> tuple[dict[str, Any], DeliveryRow | None]:
    """Inside the sequencer: the delivery's new state and its audit entry (once per delivery).

    ``known``: the batch's deliveries, read together beforehand; without it, one read.
    """
    from broker.errors import NotFound

    now = exchange.clock()
    row = (known.get(payload["delivery_id"]) if known is not None
           else await batch.session.get(DeliveryRow, payload["delivery_id"]))
    if row is None or row.recipient != payload["iss"] or row.message_id != payload["message_id"]:
        raise NotFound("no such delivery for this agency")
    accepted = payload["status"] == "accepted"
    if row.state in ("acknowledged", "rejected"):
        if (row.state == "acknowledged") != accepted:  # the same ack again is idempotent; the other is not
            raise Conflict(f"the delivery was already {row.state}; an acknowledgement cannot change that")
        return {"delivery_id": row.delivery_id, "state": row.state, "duplicate": True}, None
    row.state = "acknowledged" if accepted else "rejected"
    row.acked_at = now
    row.jwe = None  # P9: ciphertext is kept only until acknowledgement
    batch.add(lambda seq: AuditEntry(
        seq=seq, kind=EntryKind.ACKNOWLEDGED if accepted else EntryKind.REJECTED_BY_RECIPIENT,
        at=now, actor=Actor(agency=payload["iss"], auth=via), message_id=row.message_id,
        delivery_id=row.delivery_id, masp_type=row.masp_type, sender=row.sender,
        recipient=row.recipient, decision=payload["status"],
        reason=_reason_code(payload.get("reason")), policy_hash=exchange.bundle.policy_hash))
    return {"delivery_id": payload["delivery_id"], "state": row.state, "duplicate": False}, row


def _acknowledged(exchange: Exchange, payload: dict[str, Any], result: dict[str, Any],
                  row: DeliveryRow | None) -> None:
    """After the commit: latency metric and log line for a newly recorded acknowledgement."""
    if row is None or row.acked_at is None:
        return
    exchange.metrics.record_latency(row.recipient, row.created_at, row.acked_at)
    log.info("delivery_acknowledged", delivery_id=payload["delivery_id"], agency=payload["iss"],
             status=payload["status"])


def _reason_code(reason: object) -> str | None:
    """Recipients' reasons are free text from another system: keep a bounded code only."""
    if not isinstance(reason, str):
        return None
    code = "".join(ch for ch in reason[:64] if (ch.isascii() and ch.isalnum()) or ch in "-_.: ")
    return code or None
