"""The CLI as a newcomer runs it: ``masp demo`` on the real RabbitMQ, then ``masp audit verify``."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import uuid
from pathlib import Path

import aio_pika
import pytest

from broker.transport.topology import Names
from tests.dsa_fixtures import overlapping_dsa_dir

REPO = Path(__file__).resolve().parents[2]
MASP = [sys.executable, "-m", "broker.cli"]


def masp(*args: str, env: dict[str, str] | None = None, timeout: float = 120,
         cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    """``masp`` in the repository (or ``cwd``: then with no DSA directory set at all)."""
    full_env = {**os.environ, **({"MASP_DSA_DIR": str(REPO / "deploy" / "dsa")} if cwd == REPO else {}),
                **(env or {})}
    if cwd != REPO:
        full_env.pop("MASP_DSA_DIR", None)
        full_env["PYTHONPATH"] = str(REPO)  # the installed package, run from elsewhere
    return subprocess.run([*MASP, *args], capture_output=True, text=True, timeout=timeout,
                          env=full_env, cwd=cwd, check=False)


@pytest.fixture(scope="module")
def demo_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    result = masp("demo", "--out", str(out), "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True
    return out


def test_demo_leaves_every_artifact(demo_out: Path) -> None:
    for agency in ("police", "probation", "nhs", "advocacy"):
        for use in ("sig", "enc"):
            private = demo_out / "keys" / agency / f"{use}.private.jwk"
            assert stat.S_IMODE(private.stat().st_mode) == 0o600
            assert json.loads((demo_out / "keys" / agency / f"{use}.public.jwk").read_text())["kid"]
    assert sorted(p.name for p in (demo_out / "keys" / "broker").glob("*.public.jwk")) == [
        "enc.public.jwk", "sig.public.jwk"]
    summary = json.loads((demo_out / "summary.json").read_text())
    assert summary["ok"] and all(c["ok"] for c in summary["checks"])
    assert {c["step"][:2] for c in summary["checks"]} >= {"1.", "2.", "3.", "4.", "5.", "6."}
    for agency in ("police", "probation", "nhs", "advocacy"):
        expected = sum(1 for step in summary["steps"] if agency in step["received"])
        assert expected > 0
        assert len(list((demo_out / "deliveries" / agency).glob("*.jwe"))) == expected, agency
    assert (demo_out / "audit" / "entries.jsonl").exists()


def test_audit_verify_export_trusts_only_pinned_keys(demo_out: Path) -> None:
    export = demo_out / "audit"
    assert not (export / "log.vkey").exists() and not (export / "witnesses.vkey").exists()
    unpinned = masp("audit", "verify", "--export", str(export))
    assert unpinned.returncode == 2 and "no pinned log key" in unpinned.stderr
    assert "intact" not in unpinned.stdout
    result = masp("audit", "verify", "--export", str(export), "--trust", str(demo_out / "audit-trust.txt"))
    assert result.returncode == 0, result.stderr
    assert "intact" in result.stdout
    entries = len((export / "entries.jsonl").read_text().splitlines())
    proven = result.stdout.split("proven: ", 1)[1]
    assert proven.startswith(f"entries 0..{entries - 1} under checkpoint {entries} signed by "
                             "masp.audit/demo+")
    assert proven.count("masp.witness/") >= 2  # the quorum of the trust file, named


def test_audit_commands_work_outside_the_repository(demo_out: Path, tmp_path: Path) -> None:
    """An auditor's machine: no checkout, no agreement, only the state (or export) and the pins."""
    env = {"MASP_STATE_DIR": str(demo_out), "MASP_DEPLOYMENT": "demo"}
    proof = masp("audit", "proof", "3", env=env, cwd=tmp_path)
    assert proof.returncode == 0, proof.stderr
    assert proof.stdout.startswith("c2sp.org/tlog-proof@v1\n")
    trust = str(demo_out / "audit-trust.txt")
    in_place = masp("audit", "verify", "--trust", trust, env=env, cwd=tmp_path)
    assert in_place.returncode == 0, in_place.stderr
    exported = masp("audit", "verify", "--export", str(demo_out / "audit"), "--trust", trust,
                    env={"MASP_STATE_DIR": str(tmp_path / "nothing")}, cwd=tmp_path)
    assert exported.returncode == 0, exported.stderr
    nowhere = masp("audit", "proof", "3", env={"MASP_STATE_DIR": str(tmp_path / "nothing")}, cwd=tmp_path)
    assert nowhere.returncode == 2 and "no audit log in the database" in nowhere.stderr
    assert not (tmp_path / "nothing").exists()  # a read creates nothing


def test_audit_proof_prints_a_verifiable_tlog_proof(demo_out: Path) -> None:
    from broker.audit.merkle import leaf_hash
    from broker.audit.proof import TlogProof
    from broker.audit.trust import Trust

    env = {"MASP_STATE_DIR": str(demo_out), "MASP_DEPLOYMENT": "demo"}
    result = masp("audit", "proof", "3", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("c2sp.org/tlog-proof@v1\nextra ")
    proof = TlogProof.parse(result.stdout)
    pins = Trust.load(demo_out / "audit-trust.txt")
    checkpoint, _ = proof.verify([k.verifier for k in pins.log])
    assert proof.index == 3 and checkpoint.origin == "masp.audit/demo"
    leaf = json.loads((demo_out / "audit" / "entries.jsonl").read_text().splitlines()[3])["leaf"]
    assert leaf_hash(leaf.encode()) == leaf_hash(proof.extra or b"")
    missing = masp("audit", "proof", "99999", env=env)
    assert missing.returncode == 2 and "no audit entry 99999" in missing.stderr


def test_audit_verify_detects_a_changed_byte(demo_out: Path, tmp_path: Path) -> None:
    db = tmp_path / "copy.db"
    db.write_bytes((demo_out / "masp.db").read_bytes())
    env = {"MASP_STATE_DIR": str(demo_out), "MASP_DATABASE_URL": f"sqlite+aiosqlite:///{db}",
           "MASP_DEPLOYMENT": "demo", "MASP_AUDIT_TRUST": str(demo_out / "audit-trust.txt")}
    intact = masp("audit", "verify", env=env)
    assert intact.returncode == 0, intact.stderr
    con = sqlite3.connect(db)
    # the append-only trigger refuses the change...
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        con.execute("UPDATE audit_entry SET leaf = leaf WHERE seq = 3")
    # ...so an attacker with file access drops it first; verification must still catch it
    con.execute("DROP TRIGGER audit_entry_no_update")
    leaf = con.execute("SELECT leaf FROM audit_entry WHERE seq = 3").fetchone()[0]
    changed = bytearray(leaf)
    changed[changed.index(b'"kind"') + 9] ^= 0x01
    con.execute("UPDATE audit_entry SET leaf = ? WHERE seq = 3", (bytes(changed),))
    con.commit()
    con.close()
    result = masp("audit", "verify", env=env)
    assert result.returncode == 1
    assert "first bad seq 3" in result.stderr


def test_make_run_fails_fast_without_rabbitmq(tmp_path: Path) -> None:
    env = {"MASP_STATE_DIR": str(tmp_path), "MASP_AMQP_URL": "amqp://guest:guest@127.0.0.1:5999/"}
    assert masp("init", env=env).returncode == 0
    result = masp("serve", env=env, timeout=10)
    assert result.returncode == 3
    assert "rabbitmq-server -detached" in result.stderr


def test_policy_lint_accepts_the_sample_and_rejects_victim_location_to_nhs(tmp_path: Path) -> None:
    good = masp("policy", "lint", str(REPO / "deploy" / "dsa"))
    assert good.returncode == 0, good.stdout + good.stderr
    assert "0 error(s)" in good.stdout
    sample = (REPO / "deploy" / "dsa" / "hiow-masp.yaml").read_text()
    clause = "data_classes: &nhs-case-view [perpetrator_identity, offence, orders, risk_screening, cj_status"
    bad = sample.replace(clause + "]", clause + ", victim_location]", 1)
    assert bad != sample, "the sample's police->nhs clause changed shape; update this test"
    (tmp_path / "bad.yaml").write_text(bad)
    result = masp("policy", "lint", str(tmp_path / "bad.yaml"))
    assert result.returncode == 1
    assert "victim_location" in result.stdout and "error" in result.stdout


def test_serve_refuses_dsa_files_policy_lint_rejects(tmp_path: Path) -> None:
    """``masp serve`` with an added clause that drops a consent gate: one line per finding,
    exit 2, nothing written, no queue declared. Lint and explain still read the files."""
    state = tmp_path / "state"
    with socket.socket() as s:  # should the gate fail, serve binds here rather than on :8000
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    namespace = f"gate{uuid.uuid4().hex[:10]}."
    env = {"MASP_STATE_DIR": str(state), "MASP_HTTP_PORT": str(port), "MASP_NAMESPACE": namespace}
    assert masp("keys", "init", env=env).returncode == 0
    before = sorted((str(p), p.stat().st_mtime_ns) for p in state.rglob("*"))
    dsa = overlapping_dsa_dir(tmp_path / "dsa")
    env["MASP_DSA_DIR"] = str(dsa)

    result = masp("serve", env=env, timeout=60)

    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("masp: ")]
    assert lines[0] == (f"masp: Data-sharing agreement refused by lint: 1 lint error(s) in {dsa}; "
                        f"nothing is enforced until `masp policy lint {dsa}` reports none"), result.stderr
    assert len(lines) == 2
    finding = lines[1].removeprefix("masp:   ")
    assert finding.startswith(f"{dsa / 'hiow-masp.yaml'}: error: hiow-masp clause cr-police-advocacy: "
                              "[clause.overlap] overlaps aa-addendum v1 clause aa-police-advocacy")
    assert finding.endswith("they disagree on requires_consent")
    assert "MASP Exchange is running" not in result.stdout
    assert sorted((str(p), p.stat().st_mtime_ns) for p in state.rglob("*")) == before  # no database

    async def declared() -> bool:
        connection = await aio_pika.connect("amqp://guest:guest@127.0.0.1:5672/")
        async with connection:
            channel = await connection.channel()
            try:
                await channel.declare_queue(Names(namespace).inbox("advocacy"), passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return False
            return True

    assert not asyncio.run(declared())

    lint = masp("policy", "lint", str(dsa))
    assert lint.returncode == 1
    assert finding in lint.stdout.splitlines()  # the same line the refusal printed
    explained = masp("policy", "explain", "--from", "police", "--to", "advocacy", "--type", "case_referral",
                     "--purpose", "victim_support", "--json", env={"MASP_DSA_DIR": str(dsa)})
    assert explained.returncode == 0, explained.stderr
    answer = json.loads(explained.stdout)
    assert (answer["outcome"], answer["rules"]) == ("deny", ["clause.overlap"])


def test_policy_explain_names_clause_and_hard_rule() -> None:
    result = masp("policy", "explain", "--from", "police", "--to", "nhs", "--type", "case_referral",
                  "--purpose", "risk_management", "--json")
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["outcome"] == "permit_with_redaction"
    assert "cr-police-nhs" in json.dumps(answer["clause"])
    assert answer["withheld"]["victim_location"] == "P4.hard_rule"


def test_audit_verify_catches_a_rolled_back_export_with_a_witnessed_checkpoint(
        demo_out: Path, tmp_path: Path) -> None:
    export = demo_out / "audit"
    witnessed = demo_out / "adapters" / "nhs" / "witness" / "checkpoint"
    trust = (demo_out / "audit-trust.txt").read_text().splitlines()
    pins = [arg for line in trust if line.startswith("log ")
            for arg in ("--vkey", line.split()[1])]
    for line in trust:
        if line.startswith("witness "):
            pins += ["--witness-vkey", line.split()[1]]
    intact = masp("audit", "verify", "--export", str(export), *pins, "--witnessed", str(witnessed))
    assert intact.returncode == 0, intact.stderr
    # an operator restores an older, internally consistent copy of the log
    old = tmp_path / "old"
    old.mkdir()
    # an internally consistent copy ends at a checkpoint
    keep = max(size for line in (export / "checkpoints.jsonl").read_text().splitlines()
               if (size := json.loads(line)["size"]) <= 10)
    entries = (export / "entries.jsonl").read_text().splitlines(keepends=True)[:keep]
    (old / "entries.jsonl").write_text("".join(entries))
    checkpoints = [line for line in (export / "checkpoints.jsonl").read_text().splitlines(keepends=True)
                   if json.loads(line)["size"] <= keep]
    (old / "checkpoints.jsonl").write_text("".join(checkpoints))
    proofs = [line for line in (export / "consistency.jsonl").read_text().splitlines(keepends=True)
              if json.loads(line)["to"] <= keep]
    (old / "consistency.jsonl").write_text("".join(proofs))
    (old / "manifest.json").write_text((export / "manifest.json").read_text())
    alone = masp("audit", "verify", "--export", str(old), *pins, "--quorum", "0")
    assert alone.returncode == 0, alone.stderr  # on its own the old copy looks fine...
    caught = masp("audit", "verify", "--export", str(old), *pins, "--quorum", "0",
                  "--witnessed", str(witnessed))
    assert caught.returncode == 1  # ...but not against what the nhs witness cosigned
    assert "NOT intact" in caught.stderr


def test_consent_record_keeps_to_the_registry_rules(tmp_path: Path) -> None:
    """``masp consent record`` under the rules a consent_change obeys: only a DSA consent
    recorder of the kind, never under a reference another agency holds for the person, and
    the reference a code. A refusal is one line, exit non-zero, and records nothing."""
    env = {"MASP_STATE_DIR": str(tmp_path)}
    assert masp("init", env=env).returncode == 0
    base = ("consent", "record", "--subject", "VIC-2026-0147-1", "--recipient", "advocacy",
            "--purpose", "victim_support")

    given = masp(*base, "--ref", "CONSENT-CLI-1", "--agency", "police", env=env)
    assert given.returncode == 0, given.stderr
    forged = masp(*base, "--ref", "CONSENT-CLI-1", "--agency", "nhs", "--status", "withdrawn", env=env)
    assert forged.returncode != 0 and "not a recorder of victim consent" in forged.stderr
    taken = masp(*base, "--ref", "CONSENT-CLI-1", "--agency", "advocacy", "--status", "withdrawn", env=env)
    assert taken.returncode != 0 and "held by another agency" in taken.stderr
    prose = masp(*base, "--ref", "given by Jane Smith", "--agency", "police", env=env)
    assert prose.returncode != 0 and "Jane" not in prose.stderr
    own = masp(*base, "--ref", "CONSENT-CLI-1", "--agency", "police", "--status", "withdrawn", env=env)
    assert own.returncode == 0, own.stderr

    listed = masp("consent", "list", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if "CONSENT-CLI-1" in line]
    assert [("given" in r, "withdrawn" in r, r.rstrip().endswith("by police")) for r in rows] == [
        (True, False, True), (False, True, True)]
    assert "VIC-2026-0147-1" not in listed.stdout  # pseudonyms only


def test_the_log_key_rotates_from_the_command_line_and_old_pins_still_verify(tmp_path: Path) -> None:
    """What an operator does (docs/operations.md): rotate the log's key, hand out the new trust
    file; a relying party that pinned the old one, or only the new one, verifies the same log.
    In process (``CliRunner``): the commands are the same, without a start-up each."""
    from typer.testing import CliRunner

    from broker.cli import app

    env = {"MASP_STATE_DIR": str(tmp_path / "state"), "MASP_DSA_DIR": str(REPO / "deploy" / "dsa")}

    def run(*args: str) -> tuple[int, str, str]:
        result = CliRunner().invoke(app, list(args), env=env)
        return result.exit_code, result.stdout, result.stderr

    assert run("init")[0] == 0
    assert run("audit", "trust", "--out", str(tmp_path / "before.txt"))[0] == 0
    code, out, err = run("keys", "rotate", "log", "--overlap", "0", "--by", "ops-3")
    assert code == 0, err
    assert "audit log key" in out and "masp audit trust" in err
    assert run("keys", "rotate", "log", "--overlap", "1")[0] == 0  # a second: a chain of three keys
    assert run("audit", "trust", "--out", str(tmp_path / "after.txt"))[0] == 0
    lines = (tmp_path / "after.txt").read_text().splitlines()
    assert sum(line.startswith("log ") for line in lines) == 3
    newest = next(line for line in reversed(lines) if line.startswith("log "))
    assert " since " in newest
    (tmp_path / "newest.txt").write_text(newest + "\n")
    for pins in ("before.txt", "after.txt", "newest.txt"):
        code, out, err = run("audit", "verify", "--trust", str(tmp_path / pins), "--quorum", "0")
        assert code == 0, (pins, err)
        assert out.count("log key rotated at entry") == 2
    assert run("audit", "export", "--out", str(tmp_path / "export"))[0] == 0
    # the log's key is never replaced by `keys init --force`: that would cut the chain
    code, _, err = run("keys", "init", "--force")
    assert code == 0 and "rotate it with `masp keys rotate log`" in err
    # an auditor elsewhere, with the export and the pins taken before any rotation
    offline = masp("audit", "verify", "--export", str(tmp_path / "export"), "--trust",
                   str(tmp_path / "before.txt"), "--quorum", "0", cwd=tmp_path)
    assert offline.returncode == 0, offline.stderr
