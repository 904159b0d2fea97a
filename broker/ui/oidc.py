"""OpenID Connect sign-in for the console (authorization code flow with PKCE).

The provider is discovered from ``MASP_OIDC_ISSUER``; the ID token is checked (signature
against the provider's JWKS, issuer, audience, expiry, nonce) and the role is read from the
claim ``MASP_OIDC_ROLE_CLAIM``. The console then keeps a broker-signed role token for the
session, exactly as after a development sign-in, so every page checks one kind of session.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from broker.crypto import jose
from broker.errors import ConfigurationError, MalformedMessage, Unauthorized
from broker.settings import Settings

if TYPE_CHECKING:
    import httpx

ID_TOKEN_ALGS = ["RS256", "ES256", "EdDSA", "PS256"]
TIMEOUT_S = 10.0


@dataclass(frozen=True)
class OidcClient:
    issuer: str
    client_id: str
    client_secret: str | None
    redirect_uri: str
    role_claim: str
    scopes: str
    #: How to reach the provider; None is the network (tests pass an in-process transport).
    transport: httpx.AsyncBaseTransport | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcClient | None:
        """None when OIDC is not configured; an error when it is configured by halves."""
        if not settings.oidc_issuer:
            return None
        if not settings.oidc_client_id or not settings.oidc_redirect_uri:
            raise ConfigurationError("MASP_OIDC_ISSUER needs MASP_OIDC_CLIENT_ID and MASP_OIDC_REDIRECT_URI")
        return cls(settings.oidc_issuer, settings.oidc_client_id, settings.oidc_client_secret,
                   settings.oidc_redirect_uri, settings.oidc_role_claim, settings.oidc_scopes)

    async def _discover(self, http: httpx.AsyncClient) -> dict[str, Any]:
        resp = await http.get(f"{self.issuer.rstrip('/')}/.well-known/openid-configuration")
        resp.raise_for_status()
        meta: dict[str, Any] = resp.json()
        if meta.get("issuer") != self.issuer:
            raise ConfigurationError("the OIDC discovery document names another issuer")
        return meta

    async def authorization_url(self) -> tuple[str, dict[str, str]]:
        """Where to send the browser, and the state to keep (in a short-lived cookie) meanwhile."""
        import httpx  # on first sign-in, not at start-up: only OIDC deployments need it

        async with httpx.AsyncClient(timeout=TIMEOUT_S, transport=self.transport) as http:
            meta = await self._discover(http)
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
        pending = {"state": secrets.token_urlsafe(24), "nonce": secrets.token_urlsafe(24),
                   "verifier": verifier}
        query = urlencode({"response_type": "code", "client_id": self.client_id,
                           "redirect_uri": self.redirect_uri, "scope": self.scopes,
                           "state": pending["state"], "nonce": pending["nonce"],
                           "code_challenge": challenge.decode(), "code_challenge_method": "S256"})
        return f"{meta['authorization_endpoint']}?{query}", pending

    async def complete(self, code: str, pending: dict[str, str]) -> tuple[str, str]:
        """Exchange the code; return (subject, role) from the verified ID token."""
        import httpx

        async with httpx.AsyncClient(timeout=TIMEOUT_S, transport=self.transport) as http:
            meta = await self._discover(http)
            form = {"grant_type": "authorization_code", "code": code, "redirect_uri": self.redirect_uri,
                    "client_id": self.client_id, "code_verifier": pending["verifier"]}
            auth = (httpx.BasicAuth(self.client_id, self.client_secret) if self.client_secret
                    else httpx.USE_CLIENT_DEFAULT)  # a public client proves itself with PKCE alone
            resp = await http.post(meta["token_endpoint"], data=form, auth=auth)
            if resp.status_code != 200:
                raise Unauthorized(f"the identity provider refused the code (HTTP {resp.status_code})")
            id_token = resp.json().get("id_token")
            keys = (await http.get(meta["jwks_uri"])).json()
        if not isinstance(id_token, str):
            raise Unauthorized("the identity provider returned no ID token")
        try:  # the same strict base64url as every other token the broker reads
            jose.compact_segments(id_token, 3)
        except MalformedMessage:
            raise Unauthorized("the ID token is not a compact JWS in strict base64url") from None
        try:
            token = jwt.decode(id_token, KeySet.import_key_set(keys), algorithms=ID_TOKEN_ALGS)
            jwt.JWTClaimsRegistry(
                leeway=60, iss={"essential": True, "value": self.issuer},
                aud={"essential": True, "value": self.client_id},
                exp={"essential": True}, sub={"essential": True},
                nonce={"essential": True, "value": pending["nonce"]},
            ).validate(token.claims)
        except JoseError as exc:
            raise Unauthorized(f"the ID token does not verify ({type(exc).__name__})") from None
        role = token.claims.get(self.role_claim)
        if isinstance(role, list):  # providers often send group-like claims as lists
            role = next((r for r in role if r in ("admin", "ig_officer", "ops")), None)
        if not isinstance(role, str):
            raise Unauthorized(f"the ID token carries no MASP role in claim {self.role_claim!r}")
        return str(token.claims["sub"]), role
