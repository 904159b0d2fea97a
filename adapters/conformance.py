"""``masp adapter check AGENCY``: scripted exchanges against a broker, one verdict per contract point.

A new agency system certifies itself with it: every point of docs/spec/ that an
agency's side of the wire must meet is exercised against the running broker, with the
agency's own keys and its own native sample, and reported PASS or FAIL with the reason.
Points that need a delivery *to* the agency have a partner send one (its keys must be in
the key directory, as on a test deployment). Run it against a test deployment whose
adapter for this agency is stopped: the check reads and acknowledges the delivery itself.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx

from adapters.formats import native_format
from adapters.host import compose_outgoing
from adapters.native import Outgoing, prepare
from adapters.runtime import AdapterRuntime
from broker import wire
from broker.crypto import jose, sdjwt
from broker.crypto.keys import BROKER, AgencyKeys, KeyRegistry
from broker.errors import MaspError

#: native sample each agency sends, and the partner (with its sample) that sends to it
SAMPLES = {
    "police": "police/1_referral.json",
    "probation": "probation/3b_referral_after_charge.csv",
    "nhs": "nhs/4a_attendance.json",
    "advocacy": "advocacy/5_safety_review.json",
}
PEER = {
    "police": ("nhs", "nhs/4a_attendance.json", 0),
    "probation": ("police", "police/1_referral.json", 0),
    "nhs": ("police", "police/1_referral.json", 0),
    "advocacy": ("police", "police/2_advocacy_referral.json", 0),
}  # the consent_change
UUID7 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


@dataclass
class Point:
    ref: str  # what the point checks: a docs/spec page (message, submission, delivery,
    #: acknowledgement), or the audit log's checkpoints (docs/operations.md)
    title: str
    ok: bool = False
    detail: str = ""

    def line(self) -> str:
        return f"[{'PASS' if self.ok else 'FAIL'}] {self.ref:<15} {self.title}" + (
            f": {self.detail}" if self.detail else ""
        )


class _Failed(Exception):
    pass


def _require(cond: bool, why: str) -> None:
    if not cond:
        raise _Failed(why)


@dataclass
class ConformanceRun:
    agency: str
    keys_dir: Path
    client: httpx.AsyncClient
    samples: Path
    timeout: float = 20.0
    points: list[Point] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.registry = KeyRegistry.from_public_dir(self.keys_dir)
        self.keys = AgencyKeys.load(self.keys_dir, self.agency)
        self.runtime = AdapterRuntime(self.keys, self.registry, self.keys_dir.parent / "check" / self.agency)
        self.case_id = f"MASP-CHECK-{int(wire.new_id()[-12:], 16) % 10**12:012d}"

    async def point(self, ref: str, title: str, body: Callable[[], Awaitable[str | None]]) -> bool:
        p = Point(ref, title)
        try:
            p.detail = await body() or ""
            p.ok = True
        except _Failed as exc:
            p.detail = str(exc)
        except (MaspError, httpx.HTTPError, OSError, KeyError, ValueError) as exc:
            p.detail = f"{type(exc).__name__}: {getattr(exc, 'detail', exc)}"
        self.points.append(p)
        return p.ok

    def sample(self, agency: str, name: str, index: int = 0) -> Outgoing:
        path = self.samples / name
        out = prepare(native_format(agency), path.name, path.read_bytes())[index]
        return replace(out, case_id=self.case_id)

    async def run(self) -> list[Point]:
        state: dict[str, Any] = {}

        async def native() -> str:
            state["out"] = self.sample(self.agency, SAMPLES[self.agency])
            return f"{state['out'].record} -> {state['out'].masp_type}"

        if not await self.point("message", "native sample reads as a canonical message", native):
            return self.points
        out: Outgoing = state["out"]
        message, jwe = compose_outgoing(self.runtime, out)
        header, payload = _peek(message.jwt)
        await self.point(
            "message",
            "SD-JWT header: Ed25519, typ masp+sd-jwt, kid <agency>-sig-yyyymmdd",
            lambda: _check_header(header, self.agency),
        )
        await self.point(
            "message",
            "payload: iss, UUIDv7 jti, iat/exp within 24 h, type, schema, case, purpose, subjects, _sd_alg",
            lambda: _check_payload(payload, self.agency),
        )
        await self.point(
            "message",
            "disclosures: one per body field, each digest signed, salts >= 128 bits",
            lambda: _check_disclosures(message, payload, out.body),
        )
        await self.point(
            "submission",
            "JWE to the broker: ECDH-ES+A256KW, A256GCM, current broker kid, cty, no zip",
            lambda: self._check_jwe(jwe),
        )

        async def submit() -> str:
            resp = await self.runtime.submit_http(self.client, jwe)
            _require(resp.status_code == 202, f"HTTP {resp.status_code}: {resp.text[:200]}")
            state["receipt"] = resp.json()
            return f"message {state['receipt']['message_id']}"

        if await self.point("submission", "POST /v1/messages (application/jose) is accepted: 202", submit):
            await self.point(
                "submission",
                "receipt is signed by the broker and names this message",
                lambda: self._check_receipt(state["receipt"], str(payload["jti"])),
            )
            await self.point(
                "submission",
                "an identical resubmission gets the original receipt (delivered once)",
                lambda: self._resubmit(jwe, state["receipt"]),
            )
            # fresh salts: the same message id over other bytes
            _, reused = compose_outgoing(self.runtime, out, jti=str(payload["jti"]))
            await self.point(
                "submission",
                "the message id reused for other content is refused as a replay (409 problem)",
                lambda: self._expect_problem(reused, {409}),
            )
        await self.point(
            "submission",
            "a tampered submission is refused with a problem document",
            lambda: self._expect_problem(_flip(jwe), {400, 401}),
        )
        await self._receive()
        await self.point(
            "audit", "newest checkpoint verifies, extends the last one seen, and is cosigned", self._witness
        )
        return self.points

    # --- the points that need a delivery to this agency --------------------------------------------

    async def _receive(self) -> None:
        state: dict[str, Any] = {}

        async def delivered() -> str:
            peer, sample, index = PEER[self.agency]
            try:
                peer_keys = AgencyKeys.load(self.keys_dir, peer)
            except (MaspError, OSError) as exc:
                raise _Failed(f"no {peer} keys in {self.keys_dir} to send a delivery here ({exc})") from None
            peer_rt = AdapterRuntime(peer_keys, self.registry, self.keys_dir.parent / "check" / peer)
            out = self.sample(peer, sample, index)
            _, jwe = compose_outgoing(peer_rt, out)
            resp = await peer_rt.submit_http(self.client, jwe)
            _require(resp.status_code == 202, f"{peer} could not send: HTTP {resp.status_code}")
            mid = resp.json()["message_id"]
            state["raw"] = raw = await self._fetch(mid)
            state["delivery"] = d = wire.open_delivery(raw, self.keys, self.registry)
            _require(d.token.get("aud") == self.agency, "aud is not this agency")
            return f"{d.token['masp_type']} from {peer}: {len(d.message.disclosures)} disclosures verified"

        if not await self.point(
            "delivery", "delivery decrypts; broker and sender signatures, every digest and aud verify",
            delivered
        ):
            return
        await self.point(
            "delivery",
            "a delivery with an altered or an extra disclosure is rejected",
            lambda: self._tampered_delivery(state["raw"]),
        )

        async def ack() -> str:
            d: wire.Delivery = state["delivery"]
            token = wire.sign_ack(self.keys, d, self.runtime.clock())
            resp = await self.client.post(
                f"/v1/mailbox/{d.delivery_id}/ack", content=token, headers=self._auth()
            )
            _require(resp.status_code == 200, f"HTTP {resp.status_code}: {resp.text[:200]}")
            return f"delivery {d.delivery_id}: {resp.json().get('status', 'accepted')}"

        await self.point("acknowledgement", "signed acknowledgement (masp-ack+jwt) is accepted", ack)

    async def _fetch(self, message_id: str) -> str:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout
        while loop.time() < deadline:
            resp = await self.client.get("/v1/mailbox", headers=self._auth())
            resp.raise_for_status()
            for d in resp.json()["deliveries"]:
                if d["message_id"] == message_id:
                    item = await self.client.get(f"/v1/mailbox/{d['delivery_id']}", headers=self._auth())
                    if item.headers.get("content-type", "").startswith("application/jose"):
                        return item.text
            await asyncio.sleep(0.2)
        raise _Failed(f"no delivery of the partner's message within {self.timeout:.0f} s")

    async def _tampered_delivery(self, raw: str) -> str:
        body = json.loads(jose.decrypt(raw, {str(self.keys.enc.kid): self.keys.enc}, wire.CTY_DELIVERY))
        parts = body["sd_jwt"].split("~")
        forged = sdjwt.Disclosure.create("victim_address", {"lines": ["1 Forged Street"]}).encoded
        for name, sd in (
            ("an extra", "~".join([*parts[:-1], forged, ""])),
            ("an altered", "~".join([parts[0], forged, *parts[2:]])),
        ):
            sealed = jose.encrypt(
                json.dumps({**body, "sd_jwt": sd}).encode(), self.keys.enc, wire.CTY_DELIVERY
            )
            try:
                wire.open_delivery(sealed, self.keys, self.registry)
            except MaspError:
                continue
            raise _Failed(f"{name} disclosure was accepted")
        return "both refused"

    # --- plumbing ------------------------------------------------------------------------------------

    def _auth(self) -> dict[str, str]:
        return {"authorization": f"Bearer {wire.sign_agency_auth(self.keys, self.runtime.clock())}"}

    async def _check_jwe(self, jwe: str) -> str:
        h = jose.peek_header(jwe, 5)
        broker_kid = self.registry.current(BROKER, "enc").kid
        _require(h.get("alg") == "ECDH-ES+A256KW" and h.get("enc") == "A256GCM", "alg/enc")
        _require(h.get("kid") == broker_kid, "kid is not the broker's current encryption key")
        _require(h.get("cty") == wire.CTY_SUBMISSION and "zip" not in h, "cty or zip")
        return str(broker_kid)

    async def _check_receipt(self, receipt: dict[str, Any], jti: str) -> str:
        _, signed = jose.verify(
            receipt["receipt"], lambda kid: self.registry.get(kid, use="sig", agency=BROKER), wire.TYP_RECEIPT
        )
        _require(signed["message_id"] == jti == receipt["message_id"], "message_id differs")
        _require(isinstance(signed.get("decisions"), list), "no decisions")
        return ", ".join(f"{d['recipient']} {d['decision']}" for d in signed["decisions"])

    async def _resubmit(self, jwe: str, first: dict[str, Any]) -> str:
        resp = await self.runtime.submit_http(self.client, jwe)
        _require(resp.status_code == 202, f"HTTP {resp.status_code}")
        _require(resp.json()["receipt"] == first["receipt"], "a different receipt: delivered twice?")
        return "same receipt"

    async def _expect_problem(self, jwe: str, statuses: set[int]) -> str:
        resp = await self.runtime.submit_http(self.client, jwe)
        _require(resp.status_code in statuses, f"HTTP {resp.status_code}, expected {sorted(statuses)}")
        _require(
            resp.headers.get("content-type", "").startswith("application/problem+json"),
            "not application/problem+json",
        )
        return f"{resp.status_code} {resp.json().get('code')}"

    async def _witness(self) -> str:
        w = await self.runtime.witness(self.client)
        return f"size {w.checkpoint.size}, {w.witnesses} witness(es)"


def _peek(jwt: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = jwt.split(".")
    return json.loads(jose.b64url_decode(head)), json.loads(jose.b64url_decode(body))


async def _check_header(h: dict[str, Any], agency: str) -> str:
    _require(h.get("alg") in ("Ed25519", "EdDSA"), "alg")
    _require(h.get("typ") == "masp+sd-jwt", "typ")
    _require(bool(re.fullmatch(rf"{agency}-sig-\d{{8}}(-\d+)?", str(h.get("kid")))), "kid form")
    return str(h["kid"])


async def _check_payload(p: dict[str, Any], agency: str) -> str:
    _require(p.get("iss") == agency, "iss")
    _require(bool(UUID7.match(str(p.get("jti")))), "jti is not a UUIDv7")
    _require(
        isinstance(p.get("iat"), int)
        and isinstance(p.get("exp"), int)
        and 0 < p["exp"] - p["iat"] <= 24 * 3600,
        "exp must be after iat, within 24 h",
    )
    for claim in ("masp_type", "masp_schema", "case_id", "purpose"):
        _require(isinstance(p.get(claim), str), claim)
    _require(
        isinstance(p.get("subjects"), list)
        and all(isinstance(s, dict) and set(s) == {"..."} for s in p["subjects"]),
        'subjects: each entry a disclosure digest {"...": digest}',
    )
    _require(not {"consent_ref", "override"} & set(p), "consent_ref and override only as disclosures")
    _require(p.get("_sd_alg") == "sha-256", "_sd_alg")
    return f"{p['masp_type']} v{p['masp_schema']}"


async def _check_disclosures(message: sdjwt.SdJwt, p: dict[str, Any], body: dict[str, Any]) -> str:
    props = [d for d in message.disclosures if d.name is not None]
    elements = [d for d in message.disclosures if d.name is None]
    names = [d.name for d in props if d.name not in sdjwt.SD_ENVELOPE]
    _require(sorted(str(n) for n in names) == sorted(body), "disclosures differ from the body fields")
    _require(all(d.digest in p["_sd"] for d in props), "a digest is not in _sd")
    slots = {s["..."] for s in p["subjects"]}
    _require(bool(elements) and all(d.digest in slots for d in elements),
             "each subject is an array-element disclosure listed in subjects")
    _require(all(len(jose.b64url_decode(d.salt)) >= 16 for d in message.disclosures), "salt under 128 bits")
    return (f"{len(names)} disclosures, {len(elements)} subjects, "
            f"{len(p['_sd']) - len(props)} decoys")


def _flip(jwe: str) -> str:
    """The same JWE with one ciphertext character changed."""
    parts = jwe.split(".")
    c = parts[3]
    parts[3] = c[:-2] + ("A" if c[-2] != "A" else "B") + c[-1]
    return ".".join(parts)
