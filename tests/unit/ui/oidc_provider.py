"""Just enough of an OpenID Provider, in process (an httpx transport), for the console's tests."""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import httpx
from joserfc import jwt
from joserfc.jwk import ECKey

ISSUER = "https://sso.example.test/realms/masp"


class Provider:
    """Just enough of an OpenID Provider: discovery, a token endpoint that checks PKCE, JWKS."""

    def __init__(self, claims: dict[str, Any]) -> None:
        self.key = ECKey.generate_key("P-256")
        self.key_dict = {**self.key.as_dict(private=False), "kid": "k1", "use": "sig", "alg": "ES256"}
        self.claims = claims
        self.challenge = ""
        self.nonce = ""
        #: applied to the signed ID token before it is sent (a test may respell it)
        self.respell: Callable[[str], str] = lambda token: token

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
            return httpx.Response(200, json={"id_token": self.respell(token), "token_type": "Bearer"})
        return httpx.Response(404)
