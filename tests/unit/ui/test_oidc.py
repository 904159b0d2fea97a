"""OIDC sign-in against an in-process provider: discovery, PKCE, and every ID-token check."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from joserfc.jwk import ECKey

from broker.errors import ConfigurationError, Unauthorized
from broker.settings import Settings
from broker.ui.oidc import OidcClient
from tests.unit.ui.oidc_provider import ISSUER, Provider


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


_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@pytest.mark.parametrize("respell", [
    lambda t: t[:-1] + _RFC4648[_RFC4648.index(t[-1]) + 1],  # the same signature, non-canonical
    lambda t: t + "==",
    lambda t: t.replace(".", ".\n", 1),
], ids=["non-canonical signature", "padded", "whitespace"])
async def test_an_id_token_not_in_strict_base64url_is_refused(respell: Callable[[str], str]) -> None:
    provider = Provider({"masp_role": "ops"})
    provider.respell = respell
    with pytest.raises(Unauthorized, match="strict base64url"):
        await sign_in(provider)


def test_half_configured_oidc_is_a_configuration_error() -> None:
    assert OidcClient.from_settings(Settings()) is None
    with pytest.raises(ConfigurationError, match="CLIENT_ID"):
        OidcClient.from_settings(Settings(oidc_issuer=ISSUER))
