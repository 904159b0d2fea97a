"""Who is calling: agencies by signed single-use assertions, people by role-bearing tokens."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from fastapi import Request

from broker import wire
from broker.crypto import jose
from broker.crypto.keys import BROKER, AgencyKeys, KeyRegistry
from broker.errors import Forbidden, MaspError, Unauthorized
from broker.store.assertions import UsedAssertions

TYP_USER = "masp-user+jwt"
Role = Literal["ig_officer", "ops", "admin"]
ROLES: tuple[str, ...] = ("ig_officer", "ops", "admin")
#: Agencies send a UUID (36 characters); the bound keeps a hostile one from storing kilobytes a request.
MAX_JTI_CHARS = 64


@dataclass(frozen=True)
class Principal:
    kind: Literal["agency", "person"]
    id: str
    role: str | None = None

    @property
    def agency(self) -> str | None:
        return self.id if self.kind == "agency" else None


def issue_user_token(broker: AgencyKeys, sub: str, role: str, now: datetime,
                     ttl: timedelta = timedelta(hours=8)) -> str:
    """A development role token, signed by the broker (production uses OIDC instead)."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}")
    return jose.sign({"iss": BROKER, "sub": sub, "role": role, "iat": wire.epoch(now),
                      "exp": wire.epoch(now + ttl)}, broker.sig, TYP_USER)


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("a bearer token is required")
    return token.strip()


def person_from_token(registry: KeyRegistry, token: str, now: datetime) -> Principal:
    """A person from a broker-signed role token (the API's bearer, the console's cookie)."""
    try:
        _, p = jose.verify(token, lambda kid: registry.get(kid, use="sig", agency=BROKER), TYP_USER)
    except Unauthorized:
        raise
    except MaspError as exc:
        raise Unauthorized(f"credentials refused: {exc.detail}") from None
    if not isinstance(p.get("exp"), int) or wire.from_epoch(p["exp"]) <= now:
        raise Unauthorized("token expired")
    if p.get("role") not in ROLES or not isinstance(p.get("sub"), str):
        raise Unauthorized("token carries no valid role")
    return Principal("person", p["sub"], p["role"])


async def authenticate(request: Request) -> Principal:
    token = _bearer(request)
    state = request.app.state
    registry: KeyRegistry = state.exchange.registry
    now = state.exchange.clock()
    try:
        typ = jose.peek_header(token, 3).get("typ")
        if typ == TYP_USER:
            return person_from_token(registry, token, now)
        claims = wire.verify_agency_auth(token, registry, now,
                                         timedelta(seconds=state.settings.auth_token_max_age_s))
    except Unauthorized:
        raise
    except MaspError as exc:
        raise Unauthorized(f"credentials refused: {exc.detail}") from None
    await _spend(request, claims, now)
    return Principal("agency", claims["iss"])


async def _spend(request: Request, claims: dict[str, Any], now: datetime) -> None:
    """An assertion is single-use: its jti is recorded until it expires (and pruned after).

    Only an assertion that verified in full gets here, so a refused one records nothing;
    one that verified is spent even if the route then refuses the request, so it cannot be
    presented again elsewhere.
    """
    jti = claims["jti"]
    if len(jti) > MAX_JTI_CHARS:  # every request stores it: a partner may not choose its size
        raise Unauthorized(f"assertion jti is longer than {MAX_JTI_CHARS} characters")
    used: UsedAssertions = request.app.state.assertions
    if not await used.spend(jti, claims["iss"], wire.from_epoch(claims["exp"]), now):
        raise Unauthorized("assertion already used")


def require_agency(p: Principal) -> str:
    if p.kind != "agency":
        raise Forbidden("this endpoint is for agencies")
    return p.id


def require_role(p: Principal, *roles: str) -> Principal:
    if p.kind != "person" or p.role not in (*roles, "admin"):
        raise Forbidden(f"requires role {' or '.join(roles)}")
    return p
