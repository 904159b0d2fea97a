"""C2SP tlog-proof text, witness quorums and the witness's forward-only rule."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from adapters.witness import pull_error
from broker.audit.merkle import CompactRange, consistency_proof, inclusion_proof, leaf_hash
from broker.audit.note import Checkpoint, CosignatureSigner, NoteSigner, sign_note
from broker.audit.proof import HEADER, TlogProof, TlogProofError
from broker.audit.tlog_witness import AddCheckpoint, FileWitnessState, Witness, WitnessRefusal
from broker.audit.witness import append_cosignatures, witness_name
from broker.errors import LogInconsistent, LogRollback

ORIGIN = "masp.audit/unit"
LOG = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
WITNESSES = [CosignatureSigner(witness_name(a), Ed25519PrivateKey.generate())
             for a in ("police", "probation", "nhs")]
LEAVES = [f'{{"kind":"disclosed","seq":{i}}}'.encode() for i in range(11)]
HASHES = [leaf_hash(x) for x in LEAVES]

# The specification's example, verbatim (its signatures are elided, so only the layout is checked).
SPEC_EXAMPLE = """c2sp.org/tlog-proof@v1
extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ
index 73894
gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=
B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=
EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=
RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=
AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=

example.com/fancylog
109482
sFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=

\u2014 example.com/fancylog hI2DJw[...]1roloI=
\u2014 witness1.example mJirIklj[...]qY9v2B/5bg==
"""


def _checkpoint(size: int) -> Checkpoint:
    tree = CompactRange()
    for h in HASHES[:size]:
        tree.append(h)
    return Checkpoint(ORIGIN, size, tree.root())


def _note(size: int, witnesses: int) -> str:
    body = _checkpoint(size).body()
    return append_cosignatures(sign_note(body, [LOG]),
                               [w.cosign(body, 1_790_000_000) for w in WITNESSES[:witnesses]])


def _proof(index: int, size: int, witnesses: int) -> TlogProof:
    path = inclusion_proof(index, size, HASHES.__getitem__)
    return TlogProof(index, tuple(path), _note(size, witnesses), extra=LEAVES[index])


def test_spec_example_parses_and_round_trips() -> None:
    proof = TlogProof.parse(SPEC_EXAMPLE)
    assert proof.index == 73894 and len(proof.hashes) == 5
    assert proof.extra == base64.b64decode("YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6kYXJ3aW4tYXJ")
    assert proof.checkpoint.startswith("example.com/fancylog\n109482\n")
    assert proof.text() == SPEC_EXAMPLE


def test_proof_verifies_with_log_key_and_witness_quorum() -> None:
    verifiers = [w.verifier() for w in WITNESSES]
    for index in range(11):
        text = _proof(index, 11, 2).text()
        assert text.startswith(HEADER + "\nextra ")
        checkpoint, cosigners = TlogProof.parse(text).verify(LOG.verifier(), verifiers, quorum=2)
        assert checkpoint.size == 11 and len(cosigners) == 2
    with pytest.raises(TlogProofError, match="witness cosignatures"):
        _proof(3, 11, 1).verify(LOG.verifier(), verifiers, quorum=2)


def test_tampered_proofs_fail() -> None:
    good = _proof(4, 11, 2)
    verifiers = [w.verifier() for w in WITNESSES]
    with pytest.raises(TlogProofError, match="inclusion"):
        good.verify(LOG.verifier(), verifiers, leaf=LEAVES[5])  # another entry's leaf
    with pytest.raises(TlogProofError, match="inclusion"):
        TlogProof(5, good.hashes, good.checkpoint, good.extra).verify(LOG.verifier())
    forged = good.checkpoint.replace(_checkpoint(11).body(), _checkpoint(10).body().replace(
        "\n10\n", "\n11\n"))
    with pytest.raises(TlogProofError, match="does not verify"):
        TlogProof(4, good.hashes, forged, good.extra).verify(LOG.verifier())
    other_log = NoteSigner(ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(TlogProofError, match="does not verify"):
        good.verify(other_log.verifier())
    with pytest.raises(TlogProofError, match="no leaf"):
        TlogProof(4, good.hashes, good.checkpoint).verify(LOG.verifier())


@pytest.mark.parametrize("bad", [
    "c2sp.org/tlog-proof@v2\nindex 0\n\ncp\n",
    "c2sp.org/tlog-proof@v1\nindex 01\n\ncp\n",
    "c2sp.org/tlog-proof@v1\nindex 0\nnot base64!\n\ncp\n",
    "c2sp.org/tlog-proof@v1\nindex 0\nAAAA\n\ncp\n",  # not a 32-byte hash
    "c2sp.org/tlog-proof@v1\nindex 0\n",
])
def test_malformed_proofs_are_refused(bad: str) -> None:
    with pytest.raises(TlogProofError):
        TlogProof.parse(bad)


def test_witness_moves_forward_only(tmp_path: Path) -> None:
    """The pull mode's view of the tlog-witness core: what it refuses, as typed errors."""
    witness = Witness(CosignatureSigner(witness_name("police"), Ed25519PrivateKey.generate()),
                      lambda o: [LOG.verifier()] if o == ORIGIN else [], FileWitnessState(tmp_path),
                      lambda: datetime(2026, 11, 21, tzinfo=UTC))

    def submit(old: int, cp: Checkpoint, proof: list[bytes]) -> None:
        try:
            witness.submit(AddCheckpoint.of(old, proof, sign_note(cp.body(), [LOG])))
        except WitnessRefusal as exc:
            raise pull_error(exc, old, cp.size) from None

    old, new = _checkpoint(6), _checkpoint(11)
    forked = Checkpoint(ORIGIN, 11, leaf_hash(b"another history"))
    submit(0, old, [])  # trust on first use
    submit(6, old, [])
    with pytest.raises(LogInconsistent, match="not an extension"):
        submit(6, forked, consistency_proof(6, 11, HASHES.__getitem__))
    submit(6, new, consistency_proof(6, 11, HASHES.__getitem__))
    with pytest.raises(LogRollback) as rollback:
        submit(11, old, [])
    assert rollback.value.extensions == {"witnessed_size": 11, "presented_size": 6}
    with pytest.raises(LogInconsistent, match="two different trees"):
        submit(11, forked, [])
    assert witness.latest(ORIGIN) == new
    assert not issubclass(LogInconsistent, LogRollback)
