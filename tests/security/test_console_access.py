"""The web console by every kind of caller: ``CONSOLE_ACCESS`` (next to the API's ``ACCESS`` in
``test_authorisation_matrix.py``) checked route by route, and every form POST refused
without the CSRF double submit or from another origin.

The console's session is the ``masp_session`` cookie holding a broker-signed role token
(``broker/ui/web.py``). Callers present their credential there the way a browser would: the
people roles; each agency's own fresh bearer assertion (an agency never gets a console
session, from the cookie or from the sign-in form); a role token forged under the broker's
kid; an expired one. Nobody gets a session cookie they did not present as a valid role token.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
import pytest_asyncio
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker import wire
from broker.api.auth import TYP_USER, issue_user_token
from broker.crypto.jose import SIG_ALG
from broker.crypto.keys import AGENCIES, BROKER
from broker.ui.web import CSRF_COOKIE, SESSION_COOKIE
from tests.security.conftest import Api
from tests.security.jose_forge import ed25519_signer, forge_jws
from tests.security.test_authorisation_matrix import (
    CONSOLE_ACCESS,
    CONSOLE_CALLERS,
    OK,
    PASSES,
    PERSONS,
    SESSION,
    SIGN_IN,
    ConsoleRow,
    Fixture,
    _path,
    make_fixture,
)
from tests.unit.ui.oidc_provider import ISSUER, Provider

pytestmark = pytest.mark.asyncio(loop_scope="module")

ORIGIN = "http://masp.test"
CSRF = "csrf-token-of-this-browser-0123456789abcdef"


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(shared_api: Api) -> AsyncIterator[tuple[Api, Fixture, httpx.AsyncClient]]:
    """The shared app with OIDC sign-in configured (an in-process provider), a police
    referral delivered (so audit entries exist), and a browser-like client."""
    app = shared_api.app
    app.state.settings = shared_api.settings.model_copy(update={
        "oidc_issuer": ISSUER, "oidc_client_id": "masp-console",
        "oidc_redirect_uri": f"{ORIGIN}/ui/oidc/callback"})
    app.state.oidc_transport = httpx.MockTransport(Provider({"masp_role": "admin"}).handle)
    fx = await make_fixture(shared_api)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=ORIGIN) as client:
        yield shared_api, fx, client


def credential(api: Api, caller: str) -> str | None:
    """What the caller puts in the session cookie (or, signing in, in the form)."""
    now = api.service.exchange.clock()
    broker = api.keys[BROKER]
    if caller == "anonymous":
        return None
    if caller in PERSONS:
        return issue_user_token(broker, "user-1", caller, now)
    if caller in AGENCIES:
        return wire.sign_agency_auth(api.keys[caller], now)
    if caller == "expired-role-token":
        return issue_user_token(broker, "user-1", "admin", now - timedelta(hours=9))
    assert caller == "forged-role-token", caller
    claims = {"iss": BROKER, "sub": "user-1", "role": "admin", "iat": wire.epoch(now),
              "exp": wire.epoch(now + timedelta(hours=1))}
    return forge_jws(claims, ed25519_signer(Ed25519PrivateKey.generate()),
                     header={"alg": SIG_ALG, "kid": str(broker.sig.kid), "typ": TYP_USER})


def session_cookies(resp: httpx.Response) -> list[str]:
    """The values this response sets for ``masp_session`` ("" when it clears it)."""
    found = []
    for header in resp.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        if name.strip() == SESSION_COOKIE:
            found.append(rest.split(";", 1)[0].strip('"'))
    return found


async def send(client: httpx.AsyncClient, method: str, url: str, *, cookies: dict[str, str],
               form: dict[str, str] | None, origin: str | None = ORIGIN) -> httpx.Response:
    client.cookies.clear()  # only what this caller presents, nothing a previous answer set
    headers = {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items())} if cookies else {}
    if form is None:
        return await client.request(method, url, headers=headers)
    if origin is not None:
        headers["origin"] = origin
    return await client.request(method, url, headers=headers, data=form)


def _url(route: str, row: ConsoleRow, fx: Fixture) -> tuple[str, str]:
    method, template = route.split(" ", 1)
    return ("GET" if method == "*" else method), row.sample or _path(template, fx)


def wrong_answer(resp: httpx.Response, expected: int | str, caller: str, token: str | None,
                 sent_session: bool) -> str | None:
    status, location = resp.status_code, resp.headers.get("location")
    opened = [v for v in session_cookies(resp) if v]
    if opened and (caller not in PERSONS or opened != [token]):
        return f"set a console session cookie for {caller}"
    if expected == SIGN_IN:
        ok = status == 303 and location == "/ui/sign-in" and (not sent_session or "" in session_cookies(resp))
    elif expected == SESSION:
        ok = status == 303 and location == "/ui" and opened == [token]
    elif expected == OK:
        ok = 200 <= status < 300
    elif expected == PASSES:
        ok = status not in (401, 403) and not (status == 303 and location == "/ui/sign-in")
    else:
        ok = status == expected
    if not ok:
        return f"got {status} (location {location}), expected {expected}: {resp.text[:160]}"
    if status >= 400 and not resp.headers["content-type"].startswith("text/html"):
        return f"{status} is not an HTML error page: {resp.headers['content-type']}"
    if status >= 400 and resp.headers.get("x-frame-options") != "DENY":
        return f"{status} page lacks the console's security headers"
    return None


@pytest.mark.parametrize("route", sorted(CONSOLE_ACCESS), ids=sorted(CONSOLE_ACCESS))
async def test_console_route_access(console: tuple[Api, Fixture, httpx.AsyncClient], route: str) -> None:
    api, fx, client = console
    row = CONSOLE_ACCESS[route]
    method, url = _url(route, row, fx)
    wrong: list[str] = []
    for caller in CONSOLE_CALLERS:
        token = credential(api, caller)
        cookies = {SESSION_COOKIE: token} if token and not row.access.token_form else {}
        form = None
        if row.form is not None:
            cookies[CSRF_COOKIE] = CSRF
            form = {**row.form, "csrf": CSRF}
            if row.access.token_form:
                form["token"] = token or ""
        resp = await send(client, method, url, cookies=cookies, form=form)
        problem = wrong_answer(resp, row.access.expect(caller), caller, token, SESSION_COOKIE in cookies)
        if problem:
            wrong.append(f"{caller}: {problem}")
    assert wrong == [], "\n".join(wrong)


CSRF_BREAKS = ("no token in the form", "token differs from the cookie", "no CSRF cookie",
               "cross-origin Origin", "Origin null")
POSTS = sorted(r for r in CONSOLE_ACCESS if r.startswith("POST "))


@pytest.mark.parametrize("attack", CSRF_BREAKS)
@pytest.mark.parametrize("route", POSTS)
async def test_console_post_without_csrf_is_refused(console: tuple[Api, Fixture, httpx.AsyncClient],
                                                    route: str, attack: str) -> None:
    """The caller is one the matrix lets through (admin; for sign-in, an IG officer's token
    in the form), so only the broken CSRF check can stop the POST: 403, nothing done."""
    api, fx, client = console
    row = CONSOLE_ACCESS[route]
    assert row.form is not None
    method, url = _url(route, row, fx)
    cookies = {} if attack == "no CSRF cookie" else {CSRF_COOKIE: CSRF}
    form = {**row.form, "csrf": CSRF}
    if row.access.token_form:
        form["token"] = str(credential(api, "ig_officer"))
    else:
        cookies[SESSION_COOKIE] = str(credential(api, "admin"))
    if attack == "no token in the form":
        del form["csrf"]
    elif attack == "token differs from the cookie":
        form["csrf"] = CSRF[::-1]
    origin = {"cross-origin Origin": "https://attacker.example", "Origin null": "null"}.get(attack, ORIGIN)
    before = await api.head()
    resp = await send(client, method, url, cookies=cookies, form=form, origin=origin)
    assert resp.status_code == 403, resp.text[:200]
    assert resp.headers["content-type"].startswith("text/html")
    why = ("cross-origin form post refused" if "Origin" in attack
           else "CSRF token is missing or does not match")
    assert why in resp.text, resp.text[:400]
    assert session_cookies(resp) == [], "a refused POST neither opens nor ends a session"
    assert await api.head() == before, "a refused POST recorded something"


@pytest.mark.parametrize("pending", ['{"state": "s"}', '{"state": "s", "nonce": 1, "verifier": "v"}', "[]",
                                     "not json"])
async def test_oidc_callback_with_a_tampered_pending_cookie_opens_nothing(
        console: tuple[Api, Fixture, httpx.AsyncClient], pending: str) -> None:
    """The sign-in attempt's cookie is the console's own, but a same-site page can still set
    one: whatever it holds, the callback refuses (401 page), never a 500 and never a session."""
    _, _, client = console
    resp = await send(client, "GET", "/ui/oidc/callback?code=the-code&state=s",
                      cookies={"masp_oidc": pending}, form=None)
    assert resp.status_code == 401, resp.text[:200]
    assert resp.headers["content-type"].startswith("text/html")
    assert session_cookies(resp) == []
