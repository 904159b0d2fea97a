"""The audit log as a transparency log over HTTP (docs/architecture.md): proofs, consistency,
witness cosignatures, subject lookups and CSV export.

Entries, proofs, subject lookups and exports are for IG officers; consistency proofs are
also open to agencies, since each agency witnesses the log; cosignatures come from
agencies only. Every read of personal-data-bearing results (subject lookups, exports) is
itself appended to the log as ``audit_viewed`` / ``audit_exported``, holding the keyed
pseudonym, never the identifier.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime, timedelta
from typing import Annotated, Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

from broker.api.auth import Principal, authenticate, require_agency, require_role
from broker.api.params import MAX_INT64, Seq, TreeSize
from broker.api.problems import AUTHENTICATED, declare
from broker.audit.entry import Actor, AuditEntry, EntryKind, SubjectRef, pseudonym
from broker.audit.witness import witness_verifier
from broker.errors import ConfigurationError, NotFound
from broker.exchange import Exchange
from broker.store.audit_proofs import consistency, entry_proof
from broker.store.audit_queries import EntryFilter, csv_row, csv_text, find_entries, subject_disclosures
from broker.store.audit_witness import add_cosignature
from broker.store.models import AuditRow

Auth = Annotated[Principal, Depends(authenticate)]
TLOG_PROOF_MEDIA = "text/plain; charset=utf-8"
_CSV_PAGE = 1000

router = APIRouter(prefix="/v1/audit", tags=["audit"], responses=AUTHENTICATED)


def _exchange(request: Request) -> Exchange:
    exchange: Exchange = request.app.state.exchange
    return exchange


def _quorum(request: Request) -> int:
    return int(request.app.state.settings.witness_quorum)


def _person(who: Principal) -> Actor:
    return Actor(user_id=who.id, role=who.role, auth="role-token")


def _may_read(who: Principal, entry: AuditEntry) -> None:
    """IG officers read any entry; an agency only those naming it as sender or recipient."""
    if who.kind == "agency" and who.id in (entry.sender, entry.recipient):
        return
    if who.kind == "agency":
        raise NotFound(f"no audit entry {entry.seq} concerning {who.id}")
    require_role(who, "ig_officer")


async def search_entries(exchange: Exchange, who: Principal, flt: EntryFilter, *, after: int = -1,
                         limit: int = 200) -> Sequence[AuditRow]:
    """The IG entries search (API and console); a search about a person is itself on record."""
    require_role(who, "ig_officer")
    async with exchange.sessions() as session:
        rows = await find_entries(session, flt, after=after, limit=limit)
    if flt.pseudonym is not None:
        pseud, now = flt.pseudonym, exchange.clock()
        async with exchange.audit.transaction() as batch:
            batch.add(lambda seq: AuditEntry(
                seq=seq, kind=EntryKind.AUDIT_VIEWED, at=now, actor=_person(who),
                subjects=(SubjectRef(pseudonym=pseud, category="other"),),
                reason=f"entries search: {flt.described()}"))
    return rows


@router.get("/entries.csv", response_class=StreamingResponse)
async def entries_csv(
    request: Request, who: Auth, subject: str | None = None, agency: str | None = None,
    clause: str | None = None, decision: str | None = None, kind: str | None = None,
    from_: Annotated[datetime | None, Query(alias="from")] = None, to: datetime | None = None,
) -> StreamingResponse:
    """The IG query of ``GET /v1/audit/entries`` as CSV; the export itself is audited."""
    require_role(who, "ig_officer")
    exchange = _exchange(request)
    pseud = pseudonym(exchange.pseudonym_secret, subject) if subject else None
    flt = EntryFilter(pseud, agency, clause, decision, kind, from_, to)
    now = exchange.clock()
    async with exchange.audit.transaction() as batch:
        batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.AUDIT_EXPORTED, at=now, actor=_person(who),
            subjects=(SubjectRef(pseudonym=pseud, category="other"),) if pseud else (),
            reason=f"csv export: {flt.described()}"))

    async def body() -> AsyncIterator[str]:
        yield csv_text([], header=True)
        after = -1
        while True:
            async with exchange.sessions() as session:
                rows = await find_entries(session, flt, after=after, limit=_CSV_PAGE)
            if not rows:
                return
            yield csv_text(csv_row(r) for r in rows)
            after = rows[-1].seq

    return StreamingResponse(body(), media_type="text/csv; charset=utf-8", headers={
        "content-disposition": 'attachment; filename="audit-entries.csv"'})


@router.get("/entries/{seq}", responses=declare(400, 404))
async def entry_with_proof(request: Request, seq: Seq, who: Auth, size: TreeSize = None) -> dict[str, Any]:
    """One entry, its leaf, and its inclusion proof in the newest published checkpoint
    (``size`` picks another checkpoint). Agencies may fetch entries naming them as sender
    or recipient: their receipt that a disclosure concerning them is in the log."""
    exchange = _exchange(request)
    async with exchange.sessions() as session:
        found = await entry_proof(session, seq, quorum=_quorum(request), size=size)
    entry = AuditEntry.from_leaf(found.leaf)
    _may_read(who, entry)
    return {**entry.model_dump(mode="json", exclude_none=True), "leaf_hash": found.leaf_hash.hex(),
            "leaf": found.leaf.decode("utf-8"), "proof": found.as_json()}


@router.get("/entries/{seq}/proof", response_class=PlainTextResponse, responses=declare(400, 404))
async def entry_tlog_proof(request: Request, seq: Seq, who: Auth, size: TreeSize = None) -> PlainTextResponse:
    """The entry's C2SP tlog-proof (``c2sp.org/tlog-proof@v1``), the leaf as its extra data."""
    exchange = _exchange(request)
    async with exchange.sessions() as session:
        found = await entry_proof(session, seq, quorum=_quorum(request), size=size)
    _may_read(who, AuditEntry.from_leaf(found.leaf))
    return PlainTextResponse(found.proof.text(), media_type=TLOG_PROOF_MEDIA)


@router.get("/consistency", responses=declare(400, 404))
async def consistency_proof(
    request: Request, who: Auth, from_: Annotated[int | None, Query(alias="from", ge=0, le=MAX_INT64)] = None,
    to: TreeSize = None,
) -> dict[str, Any]:
    """RFC 6962 consistency proof from tree size ``from`` to checkpoint ``to`` (default newest),
    with that checkpoint's cosigned note. Witnessing agencies may call this too."""
    if who.kind != "agency":
        require_role(who, "ig_officer")
    exchange = _exchange(request)
    async with exchange.sessions() as session:
        return await consistency(session, from_, to)


@router.post("/cosignatures", responses=declare(400, 404, 409))
async def post_cosignature(request: Request, who: Auth, size: TreeSize = None) -> dict[str, object]:
    """A witness's ``cosignature/v1`` over a checkpoint this log issued.

    Body (text/plain): the cosigned checkpoint note, or the bare signature line with
    ``?size=``. The key is the agency's registered Ed25519 signing key.
    """
    agency = require_agency(who)
    exchange = _exchange(request)
    public = exchange.registry.current(agency, "sig").public_key
    if not isinstance(public, Ed25519PublicKey):
        raise ConfigurationError(f"the signing key of {agency} is not an Ed25519 key")
    body = (await request.body()).decode("utf-8", "replace")
    receipt = await add_cosignature(
        exchange.sessions, agency, witness_verifier(agency, public), body, size, exchange.clock(),
        timedelta(seconds=request.app.state.settings.max_clock_skew_s))
    return receipt.as_json(_quorum(request))


# 404: an identifier with a line break matches no route (Starlette's path segments exclude it)
@router.get("/subjects/{identifier:path}/disclosures", responses=declare(404))
async def disclosures_about(request: Request, identifier: str, who: Auth) -> dict[str, Any]:
    """Every disclosure about a person, each with its originating agency (for a subject access
    request). The lookup is appended to the log first, under the subject's pseudonym."""
    require_role(who, "ig_officer")
    exchange = _exchange(request)
    pseud = pseudonym(exchange.pseudonym_secret, identifier)
    now = exchange.clock()
    async with exchange.audit.transaction() as batch:
        found = await subject_disclosures(batch.session, pseud)
        viewed = batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.AUDIT_VIEWED, at=now, actor=_person(who),
            subjects=(SubjectRef(pseudonym=pseud, category="other"),),
            reason=f"subject disclosures lookup: {len(found)} found"))
    return {"pseudonym": pseud, "audit_seq": viewed.seq, "disclosures": found}
