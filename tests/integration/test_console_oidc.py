"""OIDC sign-in through the console's routes, against an in-process identity provider."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx

from broker.api.app import create_app
from broker.service import BrokerService, init_state
from tests.integration.conftest import make_settings
from tests.unit.ui.oidc_provider import ISSUER, Provider


async def test_oidc_sign_in_through_the_console(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'masp.db'}").model_copy(update={
        "oidc_issuer": ISSUER, "oidc_client_id": "masp-console", "ui_token_signin": False,
        "oidc_redirect_uri": "http://masp.test/ui/oidc/callback"})
    init_state(settings, datetime.now(UTC).date())
    service = await BrokerService.open(settings)
    provider = Provider({"masp_role": "ig_officer"})
    app = create_app(service)
    app.state.oidc_transport = httpx.MockTransport(provider.handle)
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://masp.test") as ui:
            page = await ui.get("/ui/sign-in")
            assert 'href="/ui/oidc/login"' in page.text and 'name="token"' not in page.text
            start = await ui.get("/ui/oidc/login")
            assert start.status_code == 303 and start.headers["location"].startswith(f"{ISSUER}/auth?")
            query = parse_qs(urlsplit(start.headers["location"]).query)
            provider.challenge, provider.nonce = query["code_challenge"][0], query["nonce"][0]

            forged = await ui.get("/ui/oidc/callback", params={"code": "the-code", "state": "guessed"})
            assert forged.status_code == 401 and "masp_session" not in forged.headers.get("set-cookie", "")

            done = await ui.get("/ui/oidc/callback", params={"code": "the-code", "state": query["state"][0]})
            assert done.status_code == 200 and 'http-equiv="refresh"' in done.text
            assert "masp_session=" in done.headers["set-cookie"]
            home = await ui.get("/ui")
            assert home.status_code == 200 and "jo.bloggs" in home.text and "ig_officer" in home.text
            assert (await ui.get("/ui/ig/dsa")).status_code == 200

            csrf = home.text.split('name="csrf" value="')[1].split('"')[0]
            again = await ui.post("/ui/sign-in", data={"csrf": csrf, "token": "y"})
            assert again.status_code == 403 and "switched off" in again.text
    finally:
        await service.close()
