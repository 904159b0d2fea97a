"""The console's cookies behind a TLS-terminating proxy (``MASP_FORWARDED_ALLOW_IPS``,
``MASP_UI_COOKIE_SECURE``; docs/console.md).

``Secure`` follows the scheme the browser used: the app's own, or ``X-Forwarded-Proto`` from
a peer in the trusted list, never from anyone else, and always with ``always``. Each case
signs in the way a browser does (CSRF double submit, same-origin ``Origin``) from a chosen
peer address, and reads the ``Set-Cookie`` headers of the sign-in page, the sign-in and the
sign-out.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from broker.settings import Settings
from broker.ui.web import CSRF_COOKIE, SESSION_COOKIE
from tests.security.conftest import Api, serve_api

CSRF = "csrf-token-of-this-browser-0123456789abcdef"
PROXY = "10.20.0.7"  # a TLS-terminating proxy in the pod network
STRANGER = "203.0.113.9"  # anyone else who can reach the port


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[Any]:
    """``await make_api(**settings)``: the API in process with those settings."""
    opened: list[AsyncGenerator[Api, None]] = []

    async def make(**overrides: Any) -> Api:
        served = serve_api(tmp_path / str(len(opened)), **overrides)
        assert isinstance(served, AsyncGenerator)
        opened.append(served)
        return await anext(served)

    yield make
    for served in opened:
        await served.aclose()


def _attributes(resp: httpx.Response, name: str) -> set[str]:
    """The lower-cased attribute names of the ``Set-Cookie`` this response sends for ``name``."""
    for header in resp.headers.get_list("set-cookie"):
        cookie, *attributes = (part.strip() for part in header.split(";"))
        if cookie.partition("=")[0] == name:
            return {a.partition("=")[0].lower() for a in attributes}
    raise AssertionError(f"no Set-Cookie for {name}")


async def _console_cookies(api: Api, peer: str, scheme: str = "http",
                           forwarded: str | None = None) -> dict[str, bool]:
    """Sign in and out from ``peer``; whether each cookie set on the way was ``Secure``."""
    transport = httpx.ASGITransport(app=api.app, client=(peer, 40000))
    origin = f"{scheme}://masp.test"
    headers = {"x-forwarded-proto": forwarded} if forwarded else {}
    async with httpx.AsyncClient(transport=transport, base_url=origin, headers=headers) as browser:
        page = await browser.get("/ui/sign-in")
        browser.cookies.clear()  # only the cookie header below, whatever the answers set
        signed_in = await browser.post(
            "/ui/sign-in", data={"csrf": CSRF, "token": api.person("ig_officer")["authorization"][7:]},
            headers={"origin": origin, "cookie": f"{CSRF_COOKIE}={CSRF}"})
        assert signed_in.status_code == 303, signed_in.text
        browser.cookies.clear()
        signed_out = await browser.post(
            "/ui/sign-out", data={"csrf": CSRF},
            headers={"origin": origin, "cookie": f"{CSRF_COOKIE}={CSRF}"})
        assert signed_out.status_code == 303, signed_out.text
    return {"csrf": "secure" in _attributes(page, CSRF_COOKIE),
            "session": "secure" in _attributes(signed_in, SESSION_COOKIE),
            "session cleared": "secure" in _attributes(signed_out, SESSION_COOKIE)}


ALL_SECURE = {"csrf": True, "session": True, "session cleared": True}
NONE_SECURE = {"csrf": False, "session": False, "session cleared": False}


async def test_cookies_are_secure_behind_a_trusted_proxy_that_forwards_https(make_api: Any) -> None:
    api = await make_api(forwarded_allow_ips="10.20.0.0/16,192.0.2.1")
    assert await _console_cookies(api, PROXY, forwarded="https") == ALL_SECURE
    # the same proxy forwarding plain HTTP, or saying nothing: no Secure (the browser used http)
    assert await _console_cookies(api, PROXY, forwarded="http") == NONE_SECURE
    assert await _console_cookies(api, PROXY) == NONE_SECURE
    # by default only a proxy on the loopback interface is believed (uvicorn's default)
    loopback = await make_api()
    assert await _console_cookies(loopback, "127.0.0.1", forwarded="https") == ALL_SECURE
    assert await _console_cookies(loopback, "::1", forwarded="https") == ALL_SECURE


async def test_forwarded_proto_from_anyone_else_changes_nothing(make_api: Any) -> None:
    api = await make_api(forwarded_allow_ips="10.20.0.0/16")
    assert await _console_cookies(api, STRANGER, forwarded="https") == NONE_SECURE
    # nor can a stranger take Secure away when the app itself is reached over HTTPS
    assert await _console_cookies(api, STRANGER, scheme="https", forwarded="http") == ALL_SECURE
    # the trust list switched off: not even the proxy, nor the loopback interface, is believed
    off = await make_api(forwarded_allow_ips="")
    assert await _console_cookies(off, PROXY, forwarded="https") == NONE_SECURE
    assert await _console_cookies(off, "127.0.0.1", forwarded="https") == NONE_SECURE
    assert await _console_cookies(off, "127.0.0.1", scheme="https") == ALL_SECURE


async def test_always_makes_every_console_cookie_secure_whatever_the_request_says(make_api: Any) -> None:
    api = await make_api(ui_cookie_secure="always", forwarded_allow_ips="10.20.0.0/16")
    assert await _console_cookies(api, STRANGER) == ALL_SECURE
    assert await _console_cookies(api, STRANGER, forwarded="http") == ALL_SECURE
    assert await _console_cookies(api, PROXY, forwarded="http") == ALL_SECURE


@pytest.mark.parametrize("value", ["proxy.internal", "10.20.0.7/16", "*,10.0.0.1", "300.1.1.1"])
def test_a_trust_list_that_uvicorn_would_misread_is_refused_at_start(value: str) -> None:
    with pytest.raises(ValidationError, match="MASP_FORWARDED_ALLOW_IPS"):
        Settings(forwarded_allow_ips=value)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASP_FORWARDED_ALLOW_IPS", " 10.0.0.0/8 , fd00::/8 ")
    monkeypatch.setenv("MASP_UI_COOKIE_SECURE", "always")
    settings = Settings()
    assert settings.forwarded_allow_ips == "10.0.0.0/8,fd00::/8"
    assert settings.ui_cookie_secure == "always"
    monkeypatch.setenv("MASP_UI_COOKIE_SECURE", "never")
    with pytest.raises(ValidationError):
        Settings()
