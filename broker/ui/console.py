"""The web console under ``/ui``: sign-in and sign-out, the home page, and mounting.

IG officers' pages are in ``ig_pages``, ops pages in ``ops_pages``; both call the same
service functions as the HTTP API, so the console shows nothing the API would not, and
every read or action that the API audits is audited here too.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from broker.api.auth import Principal, issue_user_token, person_from_token
from broker.errors import Forbidden, NotFound, Unauthorized
from broker.ui import ig_pages, ops_pages, subject_pages
from broker.ui.oidc import OidcClient
from broker.ui.web import (
    HERE,
    SESSION_COOKIE,
    ConsoleRoute,
    checked_form,
    exchange_of,
    forget_cookie,
    go,
    render,
    secure_cookie,
    viewer,
)

router = APIRouter(prefix="/ui", route_class=ConsoleRoute, include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]
OIDC_COOKIE = "masp_oidc"


def _oidc(request: Request) -> OidcClient | None:
    client = OidcClient.from_settings(request.app.state.settings)
    transport = getattr(request.app.state, "oidc_transport", None)  # an in-process provider (tests)
    return dataclasses.replace(client, transport=transport) if client and transport else client


def _start_session(request: Request, token: str, *, via_provider: bool = False) -> Response:
    """Set the session cookie. After the identity provider's cross-site redirect a browser
    would not send a Strict cookie on a further redirect in the same chain, so that path
    lands on a page of ours that moves on from here (a same-site navigation)."""
    response = (render(request, "signed_in.html", title="Signed in") if via_provider
                else go(request, "/ui"))
    response.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="strict", path="/ui",
                        secure=secure_cookie(request), max_age=8 * 3600)
    return response


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    settings = request.app.state.settings
    return render(request, "sign_in.html", title="Sign in", token_signin=settings.ui_token_signin,
                  oidc=settings.oidc_issuer is not None)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    form = await checked_form(request)
    if not request.app.state.settings.ui_token_signin:
        raise Forbidden("token sign-in is switched off here; sign in with the identity provider")
    exchange = exchange_of(request)
    token = str(form.get("token", "")).strip()
    try:
        person_from_token(exchange.registry, token, exchange.clock())
    except Unauthorized as exc:
        return render(request, "sign_in.html", status=401, title="Sign in", token_signin=True,
                      oidc=request.app.state.settings.oidc_issuer is not None, failed=exc.detail)
    return _start_session(request, token)


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    await checked_form(request)
    response = go(request, "/ui/sign-in")
    forget_cookie(request, response, SESSION_COOKIE, path="/ui")
    return response


@router.get("/oidc/login")
async def oidc_login(request: Request) -> Response:
    client = _oidc(request)
    if client is None:
        raise NotFound("OIDC sign-in is not configured (MASP_OIDC_ISSUER)")
    url, pending = await client.authorization_url()
    response = go(request, url)
    # Lax, not Strict: the provider's redirect back is a cross-site top-level navigation
    response.set_cookie(OIDC_COOKIE, json.dumps(pending), httponly=True, samesite="lax",
                        path="/ui/oidc", secure=secure_cookie(request), max_age=600)
    return response


@router.get("/oidc/callback")
async def oidc_callback(request: Request, code: str, state: str) -> Response:
    client = _oidc(request)
    if client is None:
        raise NotFound("OIDC sign-in is not configured (MASP_OIDC_ISSUER)")
    try:
        pending = json.loads(request.cookies.get(OIDC_COOKIE, "{}"))
    except ValueError:
        pending = {}
    # the cookie is ours, but a same-site page could set one: all three values, strings, or nothing
    if not isinstance(pending, dict) or pending.get("state") != state or \
            not all(isinstance(pending.get(k), str) for k in ("state", "nonce", "verifier")):
        raise Unauthorized("the sign-in attempt expired or did not start here; try again")
    sub, role = await client.complete(code, pending)
    exchange = exchange_of(request)
    try:
        token = issue_user_token(exchange.broker, sub, role, exchange.clock())
    except ValueError:
        raise Forbidden(f"the identity provider's role {role!r} is not a MASP role") from None
    response = _start_session(request, token, via_provider=True)
    forget_cookie(request, response, OIDC_COOKIE, path="/ui/oidc", samesite="lax")
    return response


@router.get("")
async def home(request: Request, who: Viewer) -> Response:
    return render(request, "home.html", title="MASP Exchange console")


def install(app: FastAPI) -> None:
    app.include_router(router)
    app.include_router(ig_pages.router)
    app.include_router(subject_pages.router)
    app.include_router(ops_pages.router)
    app.mount("/ui/static", StaticFiles(directory=HERE / "static"), name="ui-static")
