"""OIDC sign-in against an in-process provider: discovery, PKCE, and every ID-token check."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import ECKey

from broker.errors import ConfigurationError, Unauthorized
from broker.settings import Settings
from broker.ui.oidc import OidcClient

ISSUER = "https://sso.example.test/realms/masp"


class Provider:
    """Just enough of an OpenID Provider: discovery, a token endpoint that checks PKCE, JWKS."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.key = ECKey.generate_key("P-256")
        self.key_dict = {**self.key.as_dict(private=False), "kid": "k1", "use": "sig", "alg": "ES256"}
        self.claims = claims
        self.challenge = ""
        self.nonce = ""

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(200, json={
                "issuer": ISSUER, "authorization_endpoint": f"{ISSUER}/auth",
                "token_endpoint": f"{ISSUER}/token", "jwks_uri": f"{ISSUER}/certs"})
        if path.endswith("/certs"):
            return httpx.Response(200, json={"keys": [self.key_dict]})
        if path.endswith("/token"):
            form = parse_qs(request.content.decode())
            verifier = form["code_verifier"][0].encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(verifier).digest()).rstrip(b"=").decode()
            if form["code"] != ["the-code"] or digest != self.challenge:
                return httpx.Response(400, json={"error": "invalid_grant"})
            now = int(time.time())
            claims = {"iss": ISSUER, "aud": "masp-console", "sub": "jo.bloggs", "iat": now,
                      "exp": now + 300, "nonce": self.nonce, **self.claims}
            token = jwt.encode({"alg": "ES256", "kid": "k1"}, claims, self.key)
            return httpx.Response(200, json={"id_token": token, "token_type": "Bearer"})
        return httpx.Response(404)


def client_for(provider: Provider) -> OidcClient:
    settings = Settings(oidc_issuer=ISSUER, oidc_client_id="masp-console",
                        oidc_redirect_uri="https://masp.test/ui/oidc/callback")
    client = OidcClient.from_settings(settings)
    assert client is not None
    return dataclasses.replace(client, transport=httpx.MockTransport(provider.handle))


async def sign_in(provider: Provider, code: str = "the-code") -> tuple[str, str]:
    client = client_for(provider)
    url, pending = await client.authorization_url()
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{ISSUER}/auth?") and query["code_challenge_method"] == ["S256"]
    assert query["state"] == [pending["state"]] and query["redirect_uri"] == ["https://masp.test/ui/oidc/callback"]
    provider.challenge = query["code_challenge"][0]
    provider.nonce = provider.claims.pop("_nonce", query["nonce"][0])
    return await client.complete(code, pending)


async def test_a_verified_id_token_signs_in_with_its_role() -> None:
    assert await sign_in(Provider({"masp_role": "ig_officer"})) == ("jo.bloggs", "ig_officer")
    assert await sign_in(Provider({"masp_role": ["staff", "ops"]})) == ("jo.bloggs", "ops")


@pytest.mark.parametrize(("claims", "why"), [
    ({"masp_role": "ig_officer", "_nonce": "replayed"}, "does not verify"),
    ({"masp_role": "ig_officer", "aud": "another-client"}, "does not verify"),
    ({"masp_role": "ig_officer", "iss": "https://evil.test"}, "does not verify"),
    ({"masp_role": "ig_officer", "exp": 1}, "does not verify"),
    ({}, "no MASP role"),
])
async def test_an_id_token_failing_any_check_is_refused(claims: dict[str, Any], why: str) -> None:
    with pytest.raises(Unauthorized, match=why):
        await sign_in(Provider(claims))


async def test_a_wrong_code_or_verifier_is_refused() -> None:
    with pytest.raises(Unauthorized, match="refused the code"):
        await sign_in(Provider({"masp_role": "ops"}), code="stolen")


async def test_another_key_is_refused() -> None:
    provider = Provider({"masp_role": "ops"})
    provider.key_dict = {**ECKey.generate_key("P-256").as_dict(private=False), "kid": "k1"}
    with pytest.raises(Unauthorized, match="does not verify"):
        await sign_in(provider)


def test_half_configured_oidc_is_a_configuration_error() -> None:
    assert OidcClient.from_settings(Settings()) is None
    with pytest.raises(ConfigurationError, match="CLIENT_ID"):
        OidcClient.from_settings(Settings(oidc_issuer=ISSUER))
