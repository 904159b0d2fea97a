"""Every endpoint by every kind of caller: who gets in, who gets 401, 403, or 404-for-not-yours.

One table per surface: ``ACCESS`` for the HTTP API, ``CONSOLE_ACCESS`` for the web console
under ``/ui`` (its callers and checks are in ``test_console_access.py``). ``ACCESS`` is the
API's whole table. Routes are enumerated from the app itself, so a new route
without a row fails ``test_every_route_has_a_row``; a row is one line (an ``Access`` and,
if the call needs one, a body). Each denial must be an RFC 9457 problem document.

Callers: nobody; the people roles ``ig_officer``, ``ops``, ``admin``; each agency with its
own single-use assertion; and an agency the broker does not know (keys of its own, never
registered), which must be treated like nobody.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
import pytest_asyncio
from fastapi import FastAPI
from fastapi.routing import iter_route_contexts
from sqlalchemy import select
from sqlmodel import col

from broker import wire
from broker.crypto.keys import AGENCIES, AgencyKeys
from broker.errors import PROBLEM_BASE
from broker.store.models import DeliveryRow
from tests.security.conftest import SUBJECTS, Api

PERSONS = ("ig_officer", "ops", "admin")
CALLERS = ("anonymous", *PERSONS, *AGENCIES, "unregistered-agency")

pytestmark = pytest.mark.asyncio(loop_scope="module")

OK = "ok"  # 2xx
PASSES = "passes"  # past the gate: neither 401 nor 403 (the fixture has no object to act on)


@dataclass(frozen=True)
class Access:
    """Who may call a route. ``admin`` holds every people role. ``owners``: of the agencies
    allowed, those the object belongs to; the others get 404 (never learn it exists)."""

    public: bool = False
    roles: frozenset[str] = frozenset()
    agencies: frozenset[str] = frozenset()
    owners: frozenset[str] | None = None
    outcome: str = OK

    def expect(self, caller: str) -> int | str:
        if self.public:
            return self.outcome
        if caller in ("anonymous", "unregistered-agency"):
            return 401
        if caller in PERSONS:
            allowed = caller in self.roles or (caller == "admin" and bool(self.roles))
            return self.outcome if allowed else 403
        if caller not in self.agencies:
            return 403
        return self.outcome if self.owners is None or caller in self.owners else 404


def _people(*roles: str, outcome: str = OK) -> Access:
    return Access(roles=frozenset(roles), outcome=outcome)


ALL_AGENCIES = frozenset(AGENCIES)
PUBLIC = Access(public=True)
IG = _people("ig_officer")
OPS = _people("ops")
AGENCY = Access(agencies=ALL_AGENCIES)
ANYONE = Access(roles=frozenset(PERSONS), agencies=ALL_AGENCIES)


@dataclass
class Fixture:
    """What exists before the calls: a police referral delivered to probation and nhs."""

    message_id: str
    delivery_id: str  # probation's
    seq: int  # the audit entry disclosing it to probation
    params: dict[str, str] = field(default_factory=dict)


Body = Callable[[Api, Fixture, str], dict[str, Any]]


def _submission(api: Api, fx: Fixture, caller: str) -> dict[str, Any]:
    sender = caller if caller in AGENCIES else "police"
    # a message each agency's agreements let it send for risk management
    masp_type = "case_referral" if sender in ("police", "probation") else "risk_concern_alert"
    return {"content": api.referral(sender, masp_type)[1], "headers": {"content-type": "application/jose"}}


def _ack(api: Api, fx: Fixture, caller: str) -> dict[str, Any]:
    signer = api.keys[caller if caller in AGENCIES else "probation"]
    ids = {"delivery_id": fx.delivery_id, "message_id": fx.message_id}
    return {"content": wire.sign_ack(signer, ids, api.service.exchange.clock())}


def _json(value: dict[str, Any]) -> Body:
    return lambda api, fx, caller: {"json": value}


@dataclass(frozen=True)
class Row:
    access: Access
    body: Body | None = None


#: ``"METHOD path"`` → who may call it. Extend this table with every new route.
ACCESS: dict[str, Row] = {
    "GET /openapi.json": Row(PUBLIC),
    "GET /docs": Row(PUBLIC),
    "GET /docs/oauth2-redirect": Row(PUBLIC),
    "GET /redoc": Row(PUBLIC),
    "GET /healthz": Row(PUBLIC),
    "GET /readyz": Row(Access(public=True, outcome=PASSES)),  # 503: no RabbitMQ in this fixture
    "GET /metrics": Row(PUBLIC),
    "GET /.well-known/jwks.json": Row(PUBLIC),
    "GET /v1/agency-keys": Row(PUBLIC),
    # agencies
    "POST /v1/messages": Row(AGENCY, _submission),
    "GET /v1/mailbox": Row(AGENCY),
    "GET /v1/mailbox/{delivery_id}": Row(Access(agencies=ALL_AGENCIES, owners=frozenset({"probation"}))),
    "POST /v1/mailbox/{delivery_id}/ack": Row(
        Access(agencies=ALL_AGENCIES, owners=frozenset({"probation"})), _ack),
    "GET /v1/messages/{message_id}": Row(Access(agencies=ALL_AGENCIES, owners=frozenset({"police"}))),
    "GET /v1/deliveries": Row(AGENCY),
    "GET /v1/notices": Row(AGENCY),
    "GET /v1/schemas/{masp_type}": Row(AGENCY),
    "POST /v1/audit/cosignatures": Row(Access(agencies=ALL_AGENCIES, outcome=PASSES)),  # no note sent
    # IG officers (and the agencies an entry concerns)
    "GET /v1/audit/entries": Row(IG),
    "GET /v1/audit/entries.csv": Row(IG),
    "GET /v1/audit/entries/{seq}": Row(Access(roles=frozenset({"ig_officer"}), agencies=ALL_AGENCIES,
                                              owners=frozenset({"police", "probation"}))),
    "GET /v1/audit/entries/{seq}/proof": Row(Access(roles=frozenset({"ig_officer"}), agencies=ALL_AGENCIES,
                                                    owners=frozenset({"police", "probation"}))),
    "GET /v1/audit/checkpoint": Row(IG),
    "GET /v1/audit/consistency": Row(Access(roles=frozenset({"ig_officer"}), agencies=ALL_AGENCIES)),
    "GET /v1/audit/subjects/{identifier:path}/disclosures": Row(IG),
    "GET /v1/audit/overrides": Row(IG),
    "POST /v1/audit/overrides/{seq}/approve": Row(_people("ig_officer", outcome=PASSES),
                                                  _json({"reason": "risk_evidenced"})),
    "POST /v1/audit/overrides/{seq}/reject": Row(_people("ig_officer", outcome=PASSES),
                                                 _json({"reason": "risk_evidenced"})),
    # anyone authenticated
    "GET /v1/dsa": Row(ANYONE),
    "POST /v1/dsa/explain": Row(ANYONE, _json({"from": "police", "to": "nhs",
                                               "masp_type": "case_referral"})),
    # ops
    "GET /v1/ops/queues": Row(_people("ops", outcome=PASSES)),  # 409: no RabbitMQ connection here
    "GET /v1/ops/dead-letters": Row(OPS),
    "GET /v1/ops/dead-letters/{dead_letter_id}": Row(_people("ops", outcome=PASSES)),
    "POST /v1/ops/dead-letters/{dead_letter_id}/replay": Row(_people("ops", outcome=PASSES)),
    "POST /v1/ops/dead-letters/{dead_letter_id}/purge": Row(_people("ops", outcome=PASSES)),
    "GET /v1/ops/deliveries": Row(OPS),
    "GET /v1/ops/routes": Row(OPS),
    "POST /v1/ops/routes/{recipient}/pause": Row(_people("ops", outcome=PASSES)),  # 409 the 2nd time
    "POST /v1/ops/routes/{recipient}/resume": Row(_people("ops", outcome=PASSES)),
    "GET /v1/ops/alerts": Row(OPS),
    "GET /v1/ops/acknowledgements/overdue": Row(OPS),
}

# --- the web console (/ui) ------------------------------------------------------------------
#: A console caller presents a credential in the ``masp_session`` cookie (never a bearer
#: header): a person's broker-signed role token; an agency's own bearer assertion; a role
#: token forged under the broker's kid with a key of the attacker's; one that has expired.
FORGED = ("forged-role-token", "expired-role-token")
CONSOLE_CALLERS = ("anonymous", *PERSONS, *AGENCIES, *FORGED)
SIGN_IN = "sign-in"  # 303 to /ui/sign-in, and a session cookie that was sent is cleared
SESSION = "session"  # 303 to /ui with the presented role token as the session cookie


@dataclass(frozen=True)
class ConsoleAccess:
    """Who may open a console route. Only a broker-signed role token is a session: any other
    cookie is no session at all, so that caller is sent to sign in like nobody. A person
    without the role gets a 403 error page; ``admin`` holds every role. ``token_form``: the
    route takes the caller's credential in the form (sign-in), and only a person's opens a
    session (anyone else: the sign-in page again, 401)."""

    public: bool = False
    roles: frozenset[str] = frozenset()
    outcome: int | str = OK
    token_form: bool = False

    def expect(self, caller: str) -> int | str:
        if self.token_form:
            return SESSION if caller in PERSONS else 401
        if self.public:
            return self.outcome
        if caller not in PERSONS:
            return SIGN_IN
        return self.outcome if caller in self.roles or caller == "admin" else 403


@dataclass(frozen=True)
class ConsoleRow:
    """``form``: the fields a POST sends (the valid CSRF token and same-origin ``Origin`` are
    added: the CSRF refusals have their own test). ``sample``: the URL to call, when the
    route's template is not one (a static mount, a query string)."""

    access: ConsoleAccess
    form: dict[str, str] | None = None
    sample: str | None = None


def _console(*roles: str, outcome: int | str = OK) -> ConsoleAccess:
    return ConsoleAccess(roles=frozenset(roles), outcome=outcome)


CONSOLE_IG = _console("ig_officer")
CONSOLE_OPS = _console("ops")

#: ``"METHOD path"`` under ``/ui`` → who may open it. Extend this table with every new page.
CONSOLE_ACCESS: dict[str, ConsoleRow] = {
    "GET /ui/sign-in": ConsoleRow(ConsoleAccess(public=True)),
    "POST /ui/sign-in": ConsoleRow(ConsoleAccess(token_form=True), {}),
    "POST /ui/sign-out": ConsoleRow(ConsoleAccess(public=True, outcome=SIGN_IN), {}),
    # OIDC is configured in the fixture; a callback that did not start here opens nothing
    "GET /ui/oidc/login": ConsoleRow(ConsoleAccess(public=True, outcome=303)),  # to the provider
    "GET /ui/oidc/callback": ConsoleRow(ConsoleAccess(public=True, outcome=401),
                                        sample="/ui/oidc/callback?code=the-code&state=not-started-here"),
    "* /ui/static": ConsoleRow(ConsoleAccess(public=True), sample="/ui/static/console.css"),
    "GET /ui": ConsoleRow(_console(*PERSONS)),
    # IG officers
    "GET /ui/ig/search": ConsoleRow(CONSOLE_IG),
    "POST /ui/ig/search": ConsoleRow(CONSOLE_IG, {"subject": SUBJECTS[0]["ref"]}),
    "GET /ui/ig/refusals": ConsoleRow(CONSOLE_IG),
    "GET /ui/ig/entries/{seq}": ConsoleRow(CONSOLE_IG),
    "GET /ui/ig/overrides": ConsoleRow(CONSOLE_IG),
    "POST /ui/ig/overrides/{seq}": ConsoleRow(_console("ig_officer", outcome=PASSES),  # not an override
                                              {"verdict": "approve", "reason": "risk_evidenced"}),
    "GET /ui/ig/dsa": ConsoleRow(CONSOLE_IG),
    "GET /ui/ig/subject": ConsoleRow(CONSOLE_IG),
    "POST /ui/ig/subject": ConsoleRow(CONSOLE_IG, {"subject": SUBJECTS[0]["ref"], "format": "csv"}),
    # ops
    "GET /ui/ops": ConsoleRow(CONSOLE_OPS),
    "GET /ui/ops/deliveries": ConsoleRow(CONSOLE_OPS),
    "GET /ui/ops/dead-letters": ConsoleRow(CONSOLE_OPS),
    "POST /ui/ops/dead-letters/{dead_letter_id}/replay": ConsoleRow(_console("ops", outcome=PASSES), {}),
}


def app_routes(app: FastAPI) -> set[str]:
    found: set[str] = set()
    for route in iter_route_contexts(app.routes):
        methods = sorted((getattr(route.original_route, "methods", None) or {"*"}) - {"HEAD"})
        found.update(f"{m} {route.path}" for m in methods)
    return found


def is_console(route: str) -> bool:
    path = route.split(" ", 1)[1]
    return path == "/ui" or path.startswith("/ui/")


async def test_every_route_has_a_row(shared_api: Api) -> None:
    routes = app_routes(shared_api.app)
    console = {r for r in routes if is_console(r)}
    assert routes - console - ACCESS.keys() == set(), "routes without an access rule: add them to ACCESS"
    assert console - CONSOLE_ACCESS.keys() == set(), \
        "console routes without an access rule: add them to CONSOLE_ACCESS"
    assert ACCESS.keys() - (routes - console) == set(), "rules for API routes that no longer exist"
    assert CONSOLE_ACCESS.keys() - console == set(), "rules for console routes that no longer exist"


async def make_fixture(api: Api) -> Fixture:
    message_id, jwe = api.referral("police")
    receipt = await api.service.exchange.submit(jwe, via="http", agency="police")
    async with api.service.exchange.sessions() as s:
        row = (await s.execute(select(DeliveryRow).where(
            col(DeliveryRow.recipient) == "probation", col(DeliveryRow.message_id) == message_id))
        ).scalars().one()
    seq = row.audit_seq
    fx = Fixture(message_id, row.delivery_id, seq)
    assert receipt.audit_seq < seq
    fx.params = {"delivery_id": row.delivery_id, "message_id": message_id, "seq": str(seq),
                 "identifier:path": SUBJECTS[0]["ref"], "recipient": "nhs", "masp_type": "case_referral",
                 "dead_letter_id": "01a1fe7b-0000-7000-8000-000000000000"}
    return fx


def _headers(api: Api, caller: str, outsider: AgencyKeys) -> dict[str, str]:
    if caller == "anonymous":
        return {}
    if caller in PERSONS:
        return api.person(caller)
    if caller == "unregistered-agency":
        return {"authorization": f"Bearer {wire.sign_agency_auth(outsider, api.service.exchange.clock())}"}
    return api.agency(caller)


def _path(template: str, fx: Fixture) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: fx.params[m.group(1)], template)


def _check(resp_status: int, expected: int | str) -> bool:
    if expected == OK:
        return 200 <= resp_status < 300
    if expected == PASSES:
        return resp_status not in (401, 403)
    return resp_status == expected


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def fx(shared_api: Api) -> Fixture:
    return await make_fixture(shared_api)


@pytest.mark.parametrize("route", sorted(ACCESS), ids=sorted(ACCESS))
async def test_route_access(shared_api: Api, fx: Fixture, route: str) -> None:
    api = shared_api
    row = ACCESS[route]
    method, template = route.split(" ", 1)
    outsider = AgencyKeys.generate("outsider", date(2026, 11, 1))
    wrong: list[str] = []
    # owners last: their call may change the object (an acknowledgement) for the others
    order = sorted(CALLERS, key=lambda c: row.access.owners is not None and c in row.access.owners)
    for caller in order:
        expected = row.access.expect(caller)
        extra = row.body(api, fx, caller) if row.body else {}
        headers = {**extra.pop("headers", {}), **_headers(api, caller, outsider)}
        resp = await api.http.request(method, _path(template, fx), headers=headers, **extra)
        if not _check(resp.status_code, expected):
            wrong.append(f"{caller}: got {resp.status_code}, expected {expected}: {resp.text[:160]}")
            continue
        if resp.status_code in (401, 403, 404):
            problem = resp.json()
            code = {401: "unauthorized", 403: "forbidden", 404: "not-found"}[resp.status_code]
            if resp.headers["content-type"] != "application/problem+json" or \
                    problem.get("type") != PROBLEM_BASE + code or problem.get("status") != resp.status_code:
                wrong.append(f"{caller}: {resp.status_code} is not an RFC 9457 {code} problem: {problem}")
    assert wrong == [], "\n".join(wrong)
