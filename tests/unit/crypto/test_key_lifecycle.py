"""Rotation keeps the replaced keys verifying for the overlap window only; revocation is immediate."""

from __future__ import annotations

import json
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest

from broker import wire
from broker.crypto import jose
from broker.crypto.keys import AgencyKeys, KeyRegistry, init_keys
from broker.crypto.rotation import revoke, rotate
from broker.errors import ConfigurationError, DecryptionFailed, KeyRevoked, UnknownKey

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    init_keys(tmp_path, NOW.date() - timedelta(days=30), ["police", "broker"])
    return tmp_path


def test_rotation_overlap_then_retirement(keys_dir: Path) -> None:
    registry = KeyRegistry.from_public_dir(keys_dir)  # loaded before the rotation, like a running broker
    old = AgencyKeys.load(keys_dir, "police")
    token = jose.sign({"iss": "police"}, old.sig, "masp-ack+jwt")

    done = rotate(keys_dir, "police", NOW, timedelta(hours=2))
    new = AgencyKeys.load(keys_dir, "police")
    assert done.new == {"sig": "police-sig-20261121", "enc": "police-enc-20261121"}
    assert done.retiring == {"sig": str(old.sig.kid), "enc": str(old.enc.kid)}
    assert new.sig.kid == "police-sig-20261121"
    private = keys_dir / "police" / "previous" / f"{old.sig.kid}.private.jwk"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600

    # the registry sees the rotation without being reloaded: new key current, old one still verifies
    assert registry.current("police", "sig").kid == new.sig.kid
    assert registry.current("police", "enc").kid == new.enc.kid
    lookup_at = lambda at: lambda kid: registry.get(kid, use="sig", agency="police", now=at)  # noqa: E731
    assert jose.verify(token, lookup_at(NOW + timedelta(hours=1)), "masp-ack+jwt")[1]["iss"] == "police"
    fresh = jose.sign({"iss": "police"}, new.sig, "masp-ack+jwt")
    assert jose.verify(fresh, lookup_at(NOW + timedelta(hours=3)), "masp-ack+jwt")[1]["iss"] == "police"
    with pytest.raises(KeyRevoked, match="retired at 2026-11-21T14:00:00Z"):
        jose.verify(token, lookup_at(NOW + timedelta(hours=2)), "masp-ack+jwt")

    statuses = {k["kid"]: k["status"] for k in registry.jwks(NOW)["keys"]}
    assert statuses[str(old.sig.kid)] == "retiring" and statuses[str(new.sig.kid)] == "active"
    assert {k["kid"]: k["status"] for k in registry.jwks(NOW + timedelta(days=1))["keys"]}[
        str(old.sig.kid)] == "retired"
    assert not any("d" in k for k in registry.jwks(NOW)["keys"])

    # a message sealed to the old encryption key before the rotation still opens for the holder
    sealed = jose.encrypt(b"in flight", old.enc, "masp-delivery+json")
    assert jose.decrypt(sealed, new.decryption_keys(NOW), "masp-delivery+json") == b"in flight"
    # and the process that loaded the old keys finds the new one, too
    to_new = jose.encrypt(b"after", new.enc, "masp-delivery+json")
    assert jose.decrypt(to_new, old.decryption_keys(NOW), "masp-delivery+json") == b"after"
    # once the overlap has ended, a recipient still opens what was sealed before the rotation
    # (it may wait in a queue as long as a delivery lives); the broker's submission key does
    # not: senders must seal to the new one
    after = NOW + timedelta(hours=2)
    assert str(old.enc.kid) in new.decryption_keys(NOW + timedelta(hours=1), retired=False)
    assert jose.decrypt(sealed, new.decryption_keys(after), "masp-delivery+json") == b"in flight"
    assert str(old.enc.kid) not in new.decryption_keys(after, retired=False)
    with pytest.raises(DecryptionFailed, match="not addressed to a current key"):
        jose.decrypt(sealed, new.decryption_keys(after, retired=False), "masp-delivery+json")

    # a second rotation the same day gets a distinct kid
    again = rotate(keys_dir, "police", NOW + timedelta(minutes=5), timedelta(hours=1))
    assert again.new["sig"] == "police-sig-20261121-1"


def test_revocation_is_immediate(keys_dir: Path) -> None:
    registry = KeyRegistry.from_public_dir(keys_dir)
    police = AgencyKeys.load(keys_dir, "police")
    kid = str(police.sig.kid)
    assert registry.get(kid, use="sig", agency="police") is not None
    revoke(keys_dir, kid, NOW, "compromised")
    with pytest.raises(KeyRevoked, match=f"key {kid} was revoked at 2026-11-21T12:00:00Z \\(compromised\\)"):
        registry.get(kid, use="sig", agency="police")
    with pytest.raises(KeyRevoked):
        wire.verify_agency_auth(wire.sign_agency_auth(police, datetime.now(UTC)), registry, datetime.now(UTC),
                                timedelta(minutes=5))
    assert {k["kid"]: k["status"] for k in registry.jwks()["keys"]}[kid] == "revoked"
    with pytest.raises(UnknownKey, match="no sig key registered for police"):
        registry.current("police", "sig")
    assert json.loads((keys_dir / "lifecycle.json").read_text())["keys"][kid]["status"] == "revoked"

    # a revoked encryption key opens nothing, whoever asks
    enc = str(police.enc.kid)
    sealed = jose.encrypt(b"x", police.enc, "masp-delivery+json")
    revoke(keys_dir, enc, NOW, "compromised")
    assert enc not in AgencyKeys.load(keys_dir, "police").decryption_keys(NOW)
    with pytest.raises(DecryptionFailed):
        jose.decrypt(sealed, AgencyKeys.load(keys_dir, "police").decryption_keys(NOW), "masp-delivery+json")


def test_revoke_refuses_unknown_keys_and_reasons(keys_dir: Path) -> None:
    with pytest.raises(UnknownKey):
        revoke(keys_dir, "police-sig-19990101", NOW, "compromised")
    with pytest.raises(UnknownKey):
        revoke(keys_dir, "not a kid", NOW, "compromised")
    with pytest.raises(ConfigurationError, match="reason must be one of"):
        revoke(keys_dir, str(AgencyKeys.load(keys_dir, "police").sig.kid), NOW, "because")


def test_keys_replaced_by_force_the_same_day_get_new_kids(tmp_path: Path) -> None:
    """Re-initialising keys the day they were made must not reuse a kid: a delivery sealed to
    the old key would then be taken for one to the new key, and fail as if tampered with."""
    day = NOW.date()
    init_keys(tmp_path, day, ["police"])
    first = AgencyKeys.load(tmp_path, "police")
    assert init_keys(tmp_path, day, ["police"]) == []  # kept without force
    assert init_keys(tmp_path, day, ["police"], force=True) == ["police"]
    second = AgencyKeys.load(tmp_path, "police")
    assert (str(first.sig.kid), str(second.sig.kid)) == ("police-sig-20261121", "police-sig-20261121-1")
    assert str(second.enc.kid) == "police-enc-20261121-1"
    init_keys(tmp_path, day, ["police"], force=True)  # and a third: never back to a kid used before
    assert str(AgencyKeys.load(tmp_path, "police").sig.kid) == "police-sig-20261121-2"
    init_keys(tmp_path, date(2026, 11, 22), ["police"], force=True)  # a new day starts afresh
    assert str(AgencyKeys.load(tmp_path, "police").sig.kid) == "police-sig-20261122"


def test_a_delivery_outlives_its_senders_key_overlap_but_not_a_revocation(tmp_path: Path) -> None:
    """A delivery sealed while the sender's old key was still retiring may wait in the queue past
    the overlap: its signatures are judged as the keys stood when the broker sealed it. A revoked
    key verifies nothing, whenever the delivery was sealed."""
    init_keys(tmp_path, NOW.date() - timedelta(days=30), ["police", "nhs", "broker"])
    old_police = AgencyKeys.load(tmp_path, "police")
    rotate(tmp_path, "police", NOW, timedelta(hours=1))  # old key retired at NOW + 1 h
    registry = KeyRegistry.from_public_dir(tmp_path)
    sealed_at = NOW + timedelta(minutes=30)
    message = wire.compose_message(old_police, "case_referral", {"offence_codes": ["PH97003"]},
                                   case_id="C-1", purpose="risk_management",
                                   subjects=[{"ref": "P-1", "category": "suspect"}], now=sealed_at)
    message_id = json.loads(jose.b64url_decode(message.jwt.split(".")[1]))["jti"]
    token = wire.sign_delivery_token(AgencyKeys.load(tmp_path, "broker"), {
        "aud": "nhs", "jti": wire.new_id(), "message_id": message_id, "sender": "police",
        "masp_type": "case_referral", "purpose": "risk_management",
        "disclosed": [d.digest for d in message.disclosures], "iat": wire.epoch(sealed_at)})
    nhs = AgencyKeys.load(tmp_path, "nhs")
    jwe = wire.seal_delivery(message, token, nhs.enc)
    assert datetime.now(UTC) > NOW + timedelta(hours=1)  # read long after the overlap ended
    assert wire.open_delivery(jwe, nhs, registry).token["sender"] == "police"

    revoke(tmp_path, str(old_police.sig.kid), NOW + timedelta(hours=2), "compromised")
    with pytest.raises(KeyRevoked):
        wire.open_delivery(jwe, nhs, registry)
