"""The log side of tlog-witness: what the broker sends, how it resynchronises, what it keeps.

The witness behind the client is the real core (``broker.audit.tlog_witness.Witness``) on an
in-process HTTP transport; the log is an in-memory view of a real Merkle tree. The round trip
over real HTTP with a real broker is ``tests/integration/test_tlog_witness.py``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from broker.audit.note import CosignatureSigner, CosignatureVerifier, NoteError
from broker.audit.tlog_witness import Witness, WitnessRefusal
from broker.audit.witness_client import StandardWitness, WitnessClient
from broker.errors import CosignatureInvalid
from broker.settings import Settings
from tests.unit.audit.tlog_support import (
    FORKED,
    LEAVES,
    LOG,
    ORIGIN,
    SPEC_RESPONSE,
    WITNESS,
    body,
    checkpoint,
    make_witness,
    proof,
    signed,
)


class MemoryLog:
    """A log that issued checkpoints at ``sizes`` of ``leaves``; keeps what it is given."""

    def __init__(self, sizes: list[int], leaves: list[bytes] = LEAVES) -> None:
        self.sizes = sizes
        self.leaves = leaves
        self.stored: dict[tuple[str, int], tuple[str, str]] = {}

    async def newest(self) -> tuple[int, str] | None:
        return (self.sizes[-1], signed(self.sizes[-1], self.leaves)) if self.sizes else None

    async def cosigned_size(self, witness: str) -> int:
        return max((size for name, size in self.stored if name == witness), default=0)

    async def issued(self, size: int) -> bool:
        return size in self.sizes

    async def proof(self, old: int, new: int) -> list[bytes]:
        return proof(old, new, self.leaves)

    async def store(self, agency: str, verifier: CosignatureVerifier, size: int, line: str) -> None:
        try:
            verifier.verify_cosignature(checkpoint(size, self.leaves).body(), line)
        except NoteError as exc:
            raise CosignatureInvalid(str(exc)) from None
        self.stored[(verifier.name, size)] = (agency, line)


Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def serve(witness: Witness, sent: list[bytes]) -> Handler:
    async def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/w/add-checkpoint" and request.method == "POST"
        sent.append(request.content)
        try:
            return httpx.Response(200, text=witness.add_checkpoint(request.content))
        except WitnessRefusal as exc:
            return httpx.Response(exc.status, content=exc.body.encode(),
                                  headers={"content-type": exc.content_type})
    return handle


PINNED = WITNESS.verifier()


def client(log: MemoryLog, handler: Handler, verifier: CosignatureVerifier = PINNED,
           timeout: float = 5.0) -> tuple[WitnessClient, StandardWitness]:
    pinned = StandardWitness("http://witness.test/w", verifier)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return WitnessClient([pinned], log, http, timeout=timeout), pinned


async def test_first_round_from_zero_then_with_a_proof_then_nothing_to_send(tmp_path: Path) -> None:
    log, sent = MemoryLog([5]), []
    witness = make_witness(tmp_path)
    submitter, _ = client(log, serve(witness, sent))
    (first,) = await submitter.round()
    assert (first.code, first.size, first.old_size) == ("cosigned", 5, 0)
    assert sent == [body(0, signed(5))]
    assert log.stored[(WITNESS.name, 5)][0] == ""
    log.sizes.append(13)
    (second,) = await submitter.round()
    assert (second.code, second.size, second.old_size) == ("cosigned", 13, 5)
    assert sent[-1] == body(5, signed(13), proof(5, 13))
    (third,) = await submitter.round()
    assert third.code == "up-to-date" and len(sent) == 2  # nothing newer: nothing sent


async def test_a_409_resynchronises_from_the_witness_size_once(tmp_path: Path) -> None:
    log, sent = MemoryLog([3, 5, 9]), []
    witness = make_witness(tmp_path)
    witness.add_checkpoint(body(0, signed(5)))  # cosigned 5, but this log did not store it
    submitter, _ = client(log, serve(witness, sent))
    (outcome,) = await submitter.round()
    assert (outcome.code, outcome.old_size) == ("cosigned", 5)
    assert sent == [body(0, signed(9)), body(5, signed(9), proof(5, 9))]


async def test_a_witness_behind_the_stored_cosignatures_is_caught_up(tmp_path: Path) -> None:
    log, sent = MemoryLog([3, 5]), []
    witness = make_witness(tmp_path)
    submitter, _ = client(log, serve(witness, sent))
    assert (await submitter.round())[0].code == "cosigned"
    witness.state.path(ORIGIN).write_text(signed(3))  # the witness's record restored to size 3
    log.sizes.append(11)
    (outcome,) = await submitter.round()
    assert (outcome.code, outcome.old_size) == ("cosigned", 3)
    assert sent[-2:] == [body(5, signed(11), proof(5, 11)), body(3, signed(11), proof(3, 11))]


async def test_a_witness_that_saw_a_bigger_log_stops_submissions(tmp_path: Path) -> None:
    witness = make_witness(tmp_path)
    witness.add_checkpoint(body(0, signed(20)))
    log, sent = MemoryLog([4, 8]), []  # this log (restored from a backup) only reaches 8
    submitter, pinned = client(log, serve(witness, sent))
    (outcome,) = await submitter.round()
    assert (outcome.code, outcome.size, outcome.old_size) == ("witness-ahead", 8, 20)
    assert pinned.stopped == "witness-ahead" and not log.stored
    log.sizes.append(30)
    assert (await submitter.round())[0].code == "stopped" and len(sent) == 1


async def test_a_witness_at_a_size_this_log_never_issued_stops_submissions(tmp_path: Path) -> None:
    witness = make_witness(tmp_path)
    witness.add_checkpoint(body(0, signed(6)))
    log, sent = MemoryLog([4, 8]), []
    submitter, pinned = client(log, serve(witness, sent))
    assert (await submitter.round())[0].code == "witness-unknown-size"
    assert pinned.stopped and not log.stored and len(sent) == 1


async def test_a_fork_is_refused_and_nothing_is_stored(tmp_path: Path) -> None:
    witness = make_witness(tmp_path)
    witness.add_checkpoint(body(0, signed(8)))
    log, sent = MemoryLog([8, 12], FORKED), []
    submitter, pinned = client(log, serve(witness, sent))
    (outcome,) = await submitter.round()  # 409 (8), then the proof 8 -> 12 of the fork: 422
    assert (outcome.code, outcome.status) == ("refused-inconsistent", 422)
    assert not log.stored and pinned.stopped is None and len(sent) == 2
    same = MemoryLog([8], FORKED)
    submitter, _ = client(same, serve(witness, sent))
    assert (await submitter.round())[0].code == "refused-inconsistent"  # same size, another root


async def test_only_a_line_by_the_pinned_key_is_kept(tmp_path: Path) -> None:
    log = MemoryLog([5])

    async def spec_example(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=SPEC_RESPONSE)

    submitter, _ = client(log, spec_example)
    assert (await submitter.round())[0].code == "no-pinned-cosignature"
    impostor = CosignatureSigner(WITNESS.name, Ed25519PrivateKey.generate())  # same name, other key

    async def mixed(request: httpx.Request) -> httpx.Response:
        text = checkpoint(5).body()
        return httpx.Response(200, text=SPEC_RESPONSE + impostor.cosign(text, 9) + "\n"
                              + WITNESS.cosign(text, 10) + "\n")

    submitter, _ = client(log, mixed)
    assert (await submitter.round())[0].code == "cosigned"
    assert log.stored[(WITNESS.name, 5)][1] == WITNESS.cosign(checkpoint(5).body(), 10)

    async def bad_signature(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text=WITNESS.cosign(checkpoint(4).body(), 10) + "\n")

    submitter, _ = client(MemoryLog([5]), bad_signature)
    assert (await submitter.round())[0].code == "cosignature-invalid"


@pytest.mark.parametrize(("status", "text", "headers", "code"), [
    (409, "7", {"content-type": "text/x.tlog.size"}, "conflict-unreadable"),
    (409, "7\n", {"content-type": "text/plain"}, "conflict-unreadable"),
    (200, "not a signature line\n", {}, "answer-malformed"),
    (200, "\u2014 a b", {}, "answer-malformed"),
    (200, "x" * 70_000, {}, "answer-too-large"),
    (403, "no\n", {}, "log-not-trusted"),
    (404, "no\n", {}, "log-unknown"),
    (500, "oops\n", {}, "refused"),
])
async def test_unexpected_answers_store_nothing(status: int, text: str, headers: dict[str, str],
                                                code: str) -> None:
    async def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, text=text, headers=headers)

    log = MemoryLog([5])
    submitter, pinned = client(log, answer)
    assert (await submitter.round())[0].code == code
    assert not log.stored and pinned.stopped is None


async def test_every_request_has_a_deadline() -> None:
    async def slow(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(5)
        return httpx.Response(200)

    submitter, _ = client(MemoryLog([5]), slow, timeout=0.05)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert (await submitter.round())[0].code == "unreachable"
    assert loop.time() - started < 1


async def test_a_second_409_gives_up_for_this_round(tmp_path: Path) -> None:
    async def always_conflict(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, text="3\n", headers={"content-type": "text/x.tlog.size"})

    log = MemoryLog([3, 5])
    submitter, pinned = client(log, always_conflict)
    assert (await submitter.round())[0].code == "conflict-again"
    assert pinned.stopped is None and not log.stored


# --- MASP_WITNESSES --------------------------------------------------------------------


def test_masp_witnesses_is_read_from_the_environment_and_survives_a_json_round_trip(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MASP_WITNESSES", f'[{{"url": "https://w.example/w1/", "vkey": "{WITNESS.vkey}"}}]')
    settings = Settings()
    (configured,) = settings.witnesses
    assert (configured.url, configured.name) == ("https://w.example/w1", WITNESS.name)
    assert configured.verifier == WITNESS.verifier()
    # worker processes get their settings as JSON
    assert Settings.model_validate_json(settings.model_dump_json()).witnesses == settings.witnesses


@pytest.mark.parametrize(("value", "why"), [
    ('[{"url": "ftp://w.example", "vkey": "%s"}]', "http(s)"),
    ('[{"url": "https://", "vkey": "%s"}]', "http(s)"),
    ('[{"url": "https://u:p@w.example", "vkey": "%s"}]', "credentials"),
    ('[{"url": "https://w.example?x=1", "vkey": "%s"}]', "query"),
    ('[{"url": "https://w.example", "vkey": "%s", "extra": 1}]', "Extra inputs"),
    ('[{"url": "https://w.example"}]', "vkey"),
    ('[{"url": "https://w.example", "vkey": "%s"}, {"url": "https://x.example", "vkey": "%s"}]', "share"),
    ('{"url": "https://w.example"}', "list"),
])
def test_masp_witnesses_is_checked_at_start_up(monkeypatch: pytest.MonkeyPatch, value: str, why: str) -> None:
    monkeypatch.setenv("MASP_WITNESSES", value.replace("%s", WITNESS.vkey))
    with pytest.raises(ValidationError, match=why):
        Settings()


def test_a_witness_vkey_must_be_a_cosignature_key(monkeypatch: pytest.MonkeyPatch) -> None:
    note_key = LOG.verifier().vkey  # an Ed25519 note key (type 0x01), not cosignature/v1
    monkeypatch.setenv("MASP_WITNESSES", f'[{{"url": "https://w.example", "vkey": "{note_key}"}}]')
    with pytest.raises(ValidationError, match="not a cosignature/v1 vkey"):
        Settings()
    log_named = CosignatureSigner("masp.audit/dev", Ed25519PrivateKey.generate()).vkey
    monkeypatch.setenv("MASP_WITNESSES", f'[{{"url": "https://w.example", "vkey": "{log_named}"}}]')
    with pytest.raises(ValidationError, match="origin"):
        Settings()
