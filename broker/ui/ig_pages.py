"""IG officer pages: disclosure search, one entry with its checked proof, refusals, the
override review queue and the DSA register.

A search by a person's identifier is POSTed (the identifier never sits in a URL, so never
in an access log), turned into the keyed pseudonym at once, and recorded in the audit log
by the same function the API uses.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request, Response
from pydantic import ValidationError
from starlette.datastructures import FormData

from broker.api import audit_routes, ig_routes
from broker.api.auth import Principal, require_role
from broker.audit.entry import AuditEntry, EntryKind, pseudonym
from broker.audit.proof import TlogProofError
from broker.errors import ConfigurationError, NotFound
from broker.service import audit_verifiers
from broker.store.audit_export import deployment_witnesses
from broker.store.audit_proofs import entry_proof
from broker.store.audit_queries import EntryFilter
from broker.store.models import AuditRow
from broker.ui.web import ConsoleRoute, FormInvalid, checked_form, exchange_of, go, render, viewer

router = APIRouter(prefix="/ui/ig", route_class=ConsoleRoute, include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]
DECISIONS = ("permit", "permit_with_redaction", "deny")
REVIEW_REASONS = ("risk_evidenced", "proportionate_and_necessary", "consent_could_have_been_sought",
                  "risk_not_evidenced", "not_proportionate")
FILTERS = ("agency", "clause", "decision", "kind")


def ig(who: Principal) -> Principal:
    return require_role(who, "ig_officer")


def _day(value: object) -> date | None:
    text = str(value or "").strip()
    if not text:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise FormInvalid("dates are YYYY-MM-DD") from None


def _filter(values: FormData | dict[str, str], pseud: str | None) -> EntryFilter:
    since, until = _day(values.get("from")), _day(values.get("to"))
    agency, clause, decision, kind = (str(values.get(k) or "").strip() or None for k in FILTERS)
    return EntryFilter(
        pseud, agency, clause, decision, kind,
        datetime.combine(since, time(), UTC) if since else None,
        datetime.combine(until + timedelta(days=1), time(), UTC) if until else None)


def _summary(row: AuditRow) -> dict[str, Any]:
    e = AuditEntry.from_leaf(row.leaf)
    return {"seq": e.seq, "at": e.at, "kind": e.kind.value, "sender": e.sender, "recipient": e.recipient,
            "masp_type": e.masp_type, "clause": e.dsa.clause if e.dsa else None, "decision": e.decision,
            "rules": list(e.rules), "reason": e.reason}


def _choices(request: Request) -> dict[str, Any]:
    bundle = exchange_of(request).bundle
    return {"agencies": sorted({p for a in bundle.agreements for p in a.parties}),
            "clauses": sorted({c.id for a in bundle.agreements for c in a.clauses}),
            "decisions": DECISIONS, "kinds": [k.value for k in EntryKind]}


async def _search_page(request: Request, who: Principal, values: FormData | dict[str, str],
                       subject: str | None, title: str = "Search disclosures") -> Response:
    exchange = exchange_of(request)
    pseud = pseudonym(exchange.pseudonym_secret, subject) if subject else None
    flt = _filter(values, pseud)
    searched = pseud is not None or any(values.get(k) for k in (*FILTERS, "from", "to"))
    rows = await audit_routes.search_entries(exchange, who, flt, limit=500) if searched else []
    return render(request, "ig_search.html", title=title, values=values, searched=searched,
                  by_subject=pseud is not None, entries=[_summary(r) for r in rows], **_choices(request))


@router.get("/search")
async def search_form(request: Request, who: Viewer) -> Response:
    """Filters without an identifier may be a link (GET); the identifier is POSTed only."""
    ig(who)
    values = {k: v for k, v in request.query_params.items() if k != "subject"}
    return await _search_page(request, who, values, None)


@router.post("/search")
async def search(request: Request, who: Viewer) -> Response:
    ig(who)
    form = await checked_form(request)
    subject = str(form.get("subject", "")).strip() or None
    return await _search_page(request, who, form, subject)


@router.get("/refusals")
async def refusals(request: Request, who: Viewer) -> Response:
    ig(who)
    values = {**request.query_params, "kind": EntryKind.REFUSED.value}
    return await _search_page(request, who, values, None, title="Refusals")


@dataclass(frozen=True)
class ProofCheck:
    state: str  # verified, failed, pending
    detail: str
    size: int | None = None
    witnesses: tuple[str, ...] = ()


async def _check_proof(request: Request, seq: int) -> ProofCheck:
    """The entry's inclusion proof in the newest witnessed checkpoint, verified here against
    the broker's log key and the agencies' witness keys (not taken on trust from the store)."""
    exchange = exchange_of(request)
    settings = request.app.state.settings
    quorum = int(settings.witness_quorum)
    async with exchange.sessions() as session:
        try:
            found = await entry_proof(session, seq, quorum=quorum)
        except NotFound as exc:
            return ProofCheck("pending", exc.detail)
    try:
        log_keys = audit_verifiers(settings)
    except ConfigurationError as exc:  # this deployment's log keys are missing or another log's
        return ProofCheck("failed", f"the log's keys cannot be read: {exc.detail}", found.size)
    try:  # an unwitnessed checkpoint is still checked: the log's signature and the inclusion
        checkpoint, cosigners = found.proof.verify(
            log_keys,
            deployment_witnesses(exchange.registry, [w.verifier for w in settings.witnesses]),
            quorum if found.published else 0, leaf=found.leaf)
    except TlogProofError as exc:
        return ProofCheck("failed", str(exc), found.size)
    if not found.published:
        return ProofCheck("pending", f"included in the log's checkpoint of size {checkpoint.size}, which has "
                                     f"{len(cosigners)} of the {quorum} witness cosignatures needed so far",
                          checkpoint.size, tuple(cosigners))
    return ProofCheck("verified", f"included in the checkpoint of size {checkpoint.size}",
                      checkpoint.size, tuple(cosigners))


@router.get("/entries/{seq}")
async def entry_page(request: Request, seq: int, who: Viewer) -> Response:
    ig(who)
    async with exchange_of(request).sessions() as session:
        row = await session.get(AuditRow, seq)
    if row is None:
        raise NotFound(f"no audit entry {seq}")
    entry = AuditEntry.from_leaf(row.leaf)
    return render(request, "ig_entry.html", title=f"Audit entry {seq}", e=entry,
                  leaf_hash=row.leaf_hash.hex(), proof=await _check_proof(request, seq))


@router.get("/overrides")
async def overrides(request: Request, who: Viewer,
                    status: Literal["pending", "approved", "rejected", "all"] = "pending",
                    done: str | None = None) -> Response:
    ig(who)
    found = await ig_routes.list_overrides(request, who, status=None if status == "all" else status)
    return render(request, "ig_overrides.html", title="Override review", tab=status,
                  overrides=found["overrides"], reasons=REVIEW_REASONS, done=done)


@router.post("/overrides/{seq}")
async def review_override(request: Request, seq: int, who: Viewer) -> Response:
    ig(who)
    form = await checked_form(request)
    verdict = str(form.get("verdict", ""))
    try:
        decision = ig_routes.ReviewDecision(reason=str(form.get("reason", "")))
    except ValidationError:
        raise FormInvalid("choose a review reason from the list") from None
    if verdict == "approve":
        await ig_routes.approve(seq, decision, request, who)
    elif verdict == "reject":
        await ig_routes.reject(seq, decision, request, who)
    else:
        raise FormInvalid("the verdict is approve or reject")
    return go(request, f"/ui/ig/overrides?done={verdict}d-{seq}")


def dsa_warnings(valid_from: date, valid_until: date, review_date: date, today: date) -> list[str]:
    """Why an agreement needs attention: expired or expiring, review overdue or due."""
    found = []
    if valid_from > today:
        found.append(f"not in force until {valid_from.isoformat()}")
    if valid_until < today:
        found.append(f"expired on {valid_until.isoformat()}")
    elif valid_until <= today + timedelta(days=60):
        found.append(f"expires in {(valid_until - today).days} days")
    if review_date < today:
        found.append(f"review overdue since {review_date.isoformat()}")
    elif review_date <= today + timedelta(days=30):
        found.append(f"review due in {(review_date - today).days} days")
    return found


@router.get("/dsa")
async def dsa_register(request: Request, who: Viewer) -> Response:
    ig(who)
    exchange = exchange_of(request)
    today = exchange.clock().date()
    agreements = [{"a": a, "in_force": a.in_force_on(today),
                   "warnings": dsa_warnings(a.valid_from, a.valid_until, a.review_date, today)}
                  for a in exchange.bundle.agreements]
    return render(request, "ig_dsa.html", title="DSA register", agreements=agreements, today=today,
                  policy_hash=exchange.bundle.policy_hash)
