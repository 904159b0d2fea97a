"""The trust file a relying party keeps: strict, and never naming key material in errors."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from broker.audit.note import CosignatureSigner, NoteSigner
from broker.audit.trust import PinnedLogKey, Trust, TrustInvalid

LOG = NoteSigner("masp.audit/test", Ed25519PrivateKey.generate())
NEXT = NoteSigner("masp.audit/test", Ed25519PrivateKey.generate())
WITNESSES = [CosignatureSigner(f"masp.witness/{a}", Ed25519PrivateKey.generate()) for a in ("police", "nhs")]


def test_render_and_parse_round_trip() -> None:
    trust = Trust((PinnedLogKey(LOG.verifier()), PinnedLogKey(NEXT.verifier(), 41)),
                  tuple(w.verifier() for w in WITNESSES), 2)
    text = trust.render("pinned on 2026-12-06\nby the IG officer")
    assert text.startswith("# pinned on 2026-12-06\n# by the IG officer\n")
    assert f"log {NEXT.vkey} since 41\n" in text
    assert Trust.parse(text) == trust
    assert trust.origin == "masp.audit/test"


def test_defaults_and_command_line_pins() -> None:
    assert Trust.parse(f"log {LOG.vkey}\n").quorum == 0
    assert Trust.parse(f"log {LOG.vkey}\nwitness {WITNESSES[0].vkey}\n").quorum == 1
    assert Trust.of([LOG.vkey], [w.vkey for w in WITNESSES]).quorum == 2
    assert Trust.of([LOG.vkey], [w.vkey for w in WITNESSES], 0).quorum == 0


@pytest.mark.parametrize(("text", "why"), [
    ("", "no log key is pinned"),
    (f"witness {WITNESSES[0].vkey}\n", "no log key is pinned"),
    (f"log {WITNESSES[0].vkey}\n", "line 1: not a log verifier key"),
    (f"log {LOG.vkey}\nwitness {LOG.vkey}\n", "line 2: not a cosignature/v1 witness key"),
    (f"log {LOG.vkey}\nlog {LOG.vkey}\n", "pinned twice"),
    (f"log {LOG.vkey}\nquorum 1\n", "a quorum of 1 needs at least that many witness keys"),
    (f"log {LOG.vkey}\nquorum 0\nquorum 0\n", "line 3"),
    (f"log {LOG.vkey} since -1\n", "line 1"),
    (f"log {LOG.vkey} since 01\n", "line 1"),
    (f"log {LOG.vkey}\nlog {NoteSigner('masp.audit/other', Ed25519PrivateKey.generate()).vkey}\n",
     "more than one log"),
    (f"trust {LOG.vkey}\n", "line 1: expected"),
])
def test_malformed_trust_files_are_refused(text: str, why: str) -> None:
    with pytest.raises(TrustInvalid, match=why) as caught:
        Trust.parse(text)
    key = LOG.vkey.split("+", 2)[2]  # name+id+base64 key: the key may itself hold a '+'
    assert key and key not in str(caught.value)


def test_a_witness_with_two_pinned_keys_counts_once_towards_the_quorum() -> None:
    """An agency's witness key before and after its rotation may both be pinned; one witness
    cosigning with both is still one witness."""
    from broker.audit.merkle import leaf_hash
    from broker.audit.note import Checkpoint, sign_note
    from broker.audit.verify import verify_log
    from broker.audit.witness import append_cosignatures

    leaf = b'{"actor":{"auth":"system"},"at":"2026-12-06T09:00:00Z","kind":"audit_viewed","seq":0}'
    body = Checkpoint("masp.audit/test", 1, leaf_hash(leaf)).body()
    police_new = CosignatureSigner("masp.witness/police", Ed25519PrivateKey.generate())
    lines = [w.cosign(body, 1_790_000_000) for w in (WITNESSES[0], police_new)]
    note = append_cosignatures(sign_note(body, [LOG]), lines)
    twice = Trust((PinnedLogKey(LOG.verifier()),), (WITNESSES[0].verifier(), police_new.verifier(),
                                                    WITNESSES[1].verifier()), 2)
    report = verify_log([(0, leaf, leaf_hash(leaf))], [(1, note)], twice)
    assert not report.ok and "has 1 of the 2 cosignatures" in (report.problem or "")
    assert report.cosignatures == 1
    third = WITNESSES[1].cosign(body, 1_790_000_000)
    report = verify_log([(0, leaf, leaf_hash(leaf))], [(1, note + third + "\n")], twice)
    assert report.ok and report.cosigned_by == ("masp.witness/police", "masp.witness/nhs")
