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
    assert LOG.vkey.rsplit("+", 1)[1] not in str(caught.value)
