"""The IG officer's override review queue (P7): list break-glass uses, approve or reject them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlmodel import col

from broker.api.auth import Principal, authenticate, require_role
from broker.api.params import Seq
from broker.api.problems import AUTHENTICATED, declare
from broker.audit.entry import Actor, AuditEntry, EntryKind
from broker.errors import MaspError, NotFound
from broker.exchange import Exchange
from broker.store.deliveries import iso
from broker.store.models import OverrideReviewRow

router = APIRouter(prefix="/v1/audit/overrides", tags=["audit"], responses=AUTHENTICATED)
Auth = Annotated[Principal, Depends(authenticate)]


class AlreadyDecided(MaspError):
    code = "already-decided"
    status = 409
    title = "Override already reviewed"


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    #: A code, not free text: the reason lands in the audit log, which holds no personal data.
    reason: str = Field(pattern=r"^[a-z][a-z0-9_]{1,63}$",
                        examples=["risk_evidenced", "consent_could_have_been_sought"])


def _row_json(row: OverrideReviewRow) -> dict[str, Any]:
    return {"seq": row.seq, "message_id": row.message_id, "sender": row.sender,
            "recipient": row.recipient, "authoriser_role": row.authoriser_role, "harm": row.harm,
            "status": row.status, "created_at": iso(row.created_at),
            "decided_by": row.decided_by, "decision_reason": row.decision_reason,
            "decided_at": iso(row.decided_at)}


@router.get("")
async def list_overrides(request: Request, who: Auth,
                         status: Literal["pending", "approved", "rejected"] | None = "pending",
                         ) -> dict[str, Any]:
    require_role(who, "ig_officer")
    exchange: Exchange = request.app.state.exchange
    q = select(OverrideReviewRow).order_by(col(OverrideReviewRow.seq))
    if status:
        q = q.where(col(OverrideReviewRow.status) == status)
    async with exchange.sessions() as session:
        rows = (await session.execute(q)).scalars().all()
    return {"overrides": [_row_json(r) for r in rows]}


async def _decide(request: Request, who: Principal, seq: int, verdict: str,
                  decision: ReviewDecision) -> dict[str, Any]:
    require_role(who, "ig_officer")
    exchange: Exchange = request.app.state.exchange
    now = exchange.clock()
    async with exchange.audit.transaction() as batch:
        row = await batch.session.get(OverrideReviewRow, seq)
        if row is None:
            raise NotFound(f"no override use at audit seq {seq}")
        if row.status != "pending":
            raise AlreadyDecided(f"override at seq {seq} is already {row.status}")
        row.status, row.decided_by, row.decided_at = verdict, who.id, now
        row.decision_reason = decision.reason
        batch.add(lambda s: AuditEntry(
            seq=s, kind=EntryKind.OVERRIDE_REVIEWED, at=now,
            actor=Actor(user_id=who.id, role=who.role, auth="role-token"),
            message_id=row.message_id, sender=row.sender, recipient=row.recipient,
            decision=verdict, reason=decision.reason,
            override={"override_seq": str(seq), "review_status": verdict},
            policy_hash=exchange.bundle.policy_hash))
        result = _row_json(row)
    return result


@router.post("/{seq}/approve", responses=declare(400, 404, 409))
async def approve(seq: Seq, decision: ReviewDecision, request: Request, who: Auth) -> dict[str, Any]:
    return await _decide(request, who, seq, "approved", decision)


@router.post("/{seq}/reject", responses=declare(400, 404, 409))
async def reject(seq: Seq, decision: ReviewDecision, request: Request, who: Auth) -> dict[str, Any]:
    return await _decide(request, who, seq, "rejected", decision)
