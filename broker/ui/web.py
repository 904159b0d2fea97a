"""Console plumbing: templates, the session cookie, CSRF, and errors as HTML pages.

The session is the broker-signed role token itself (pasted in development, minted after an
OIDC sign-in in production), kept in an HttpOnly, SameSite=Strict cookie so page scripts
never see it. Every POST carries a CSRF token that must equal a second HttpOnly cookie
(double submit): SameSite stops cross-site sends in modern browsers, the token covers the
rest, including sign-in itself.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from starlette.datastructures import FormData

from broker.api.auth import Principal, person_from_token
from broker.errors import Forbidden, MaspError, Unauthorized
from broker.exchange import Exchange

SESSION_COOKIE = "masp_session"
CSRF_COOKIE = "masp_csrf"
HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
#: ``same-origin`` (not ``no-referrer``) so browsers send a real ``Origin`` on our own POSTs;
#: console URLs carry no personal data (identifiers are only ever POSTed).
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'self'; img-src 'self' data:; object-src 'none'; "
                               "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "x-frame-options": "DENY", "x-content-type-options": "nosniff", "referrer-policy": "same-origin",
    "cache-control": "no-store",
}


class FormInvalid(MaspError):
    code = "invalid-form"
    status = 400
    title = "The form is not valid"


class SignInRequired(Exception):
    """No session, or one that no longer verifies: go to the sign-in page."""


def exchange_of(request: Request) -> Exchange:
    exchange: Exchange = request.app.state.exchange
    return exchange


async def viewer(request: Request) -> Principal:
    """The signed-in person (dependency of every console page but sign-in)."""
    token = request.cookies.get(SESSION_COOKIE)
    if not token:
        raise SignInRequired
    exchange = exchange_of(request)
    try:
        who = person_from_token(exchange.registry, token, exchange.clock())
    except Unauthorized:
        raise SignInRequired from None
    request.state.viewer = who
    return who


def _csrf(request: Request) -> str:
    token = request.cookies.get(CSRF_COOKIE) or getattr(request.state, "new_csrf", None)
    if not token:
        token = request.state.new_csrf = secrets.token_urlsafe(32)
    return str(token)


async def checked_form(request: Request) -> FormData:
    """The POSTed form, after the CSRF and same-origin checks."""
    origin = request.headers.get("origin")
    if origin and urlsplit(origin).netloc != request.headers.get("host"):  # "null" too
        raise Forbidden("cross-origin form post refused")
    form = await request.form()
    sent, kept = str(form.get("csrf", "")), request.cookies.get(CSRF_COOKIE, "")
    if not sent or not kept or not hmac.compare_digest(sent, kept):
        raise Forbidden("the form's CSRF token is missing or does not match; reload the page")
    return form


def secure_cookie(request: Request) -> bool:
    """Whether the console's cookies carry ``Secure``.

    ``MASP_UI_COOKIE_SECURE=always``: every time, whatever the request says, so no header can
    take it away. ``auto``: when the request came over HTTPS, as this process saw it or as a
    proxy in ``MASP_FORWARDED_ALLOW_IPS`` reports it in ``X-Forwarded-Proto`` (applied to
    ``request.url`` by the proxy-headers middleware, ``broker/api/app.py``); the header from
    any other peer changes nothing.
    """
    if request.app.state.settings.ui_cookie_secure == "always":
        return True
    return request.url.scheme == "https"


def forget_cookie(request: Request, response: Response, name: str, *, path: str,
                  samesite: Literal["lax", "strict"] = "strict") -> None:
    """Clear a console cookie with the attributes it was set with: a browser may refuse to
    overwrite a ``Secure`` cookie from a ``Set-Cookie`` without them."""
    response.delete_cookie(name, path=path, secure=secure_cookie(request), httponly=True,
                           samesite=samesite)


def finish(request: Request, response: Response) -> Response:
    """Security headers, and the CSRF cookie when this response introduced one."""
    response.headers.update(SECURITY_HEADERS)
    new = getattr(request.state, "new_csrf", None)
    if new:
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="strict", path="/ui",
                            secure=secure_cookie(request))
    return response


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    who: Principal | None = getattr(request.state, "viewer", None)
    response = templates.TemplateResponse(
        request, name, {"who": who, "csrf": _csrf(request), "path": request.url.path, **context},
        status_code=status)
    return finish(request, response)


def error_page(request: Request, status: int, title: str, detail: str) -> Response:
    return render(request, "error.html", status=status, title=title, detail=detail, code=status)


def go(request: Request, url: str) -> Response:
    """POST/redirect/GET."""
    return finish(request, RedirectResponse(url, status_code=303))


class ConsoleRoute(APIRoute):
    """Console routes answer with HTML: a sign-in redirect or an error page, never JSON."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        original = super().get_route_handler()

        async def handler(request: Request) -> Response:
            try:
                return await original(request)
            except SignInRequired:
                response = go(request, "/ui/sign-in")
                forget_cookie(request, response, SESSION_COOKIE, path="/ui")
                return response
            except MaspError as exc:
                return error_page(request, exc.status, exc.title, exc.detail)
            except RequestValidationError as exc:  # name the fields, never echo the input
                fields = ", ".join(".".join(str(p) for p in e.get("loc", ())) for e in exc.errors())
                return error_page(request, 422, "Request parameters are invalid", f"invalid: {fields}")

        return handler

