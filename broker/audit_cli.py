"""``masp audit``: verify, export, prove and pin the audit log, with only the database (or an
export) and the keys the caller pinned: no agreement, no queues, from any directory.

Exit codes as for every ``masp`` command: 0 intact, 1 checked and found wrong, 2 refused
input (no pinned key, a malformed trust file), 3 the database unreachable.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from sqlalchemy.exc import SQLAlchemyError

from broker.audit.note import Checkpoint, NoteError
from broker.audit.trust import Trust, TrustInvalid
from broker.audit.verify import VerifyReport
from broker.errors import MaspError
from broker.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Verify, export and prove the audit log; pin its keys.")
T = TypeVar("T")

ExportDir = Annotated[Path | None, typer.Option(help="verify an export directory instead of the database")]
TrustFile = Annotated[Path | None, typer.Option(
    envvar="MASP_AUDIT_TRUST", help="the trust file you keep (log keys, witness keys, quorum); "
    "`masp audit trust` writes the operator's")]
VKeys = Annotated[list[str] | None, typer.Option("--vkey", help="a pinned log verifier key (repeatable)")]
WitnessKeys = Annotated[list[str] | None, typer.Option(help="a pinned witness vkey (repeatable)")]
Quorum = Annotated[int | None, typer.Option(
    help="cosignatures by pinned witnesses the newest checkpoint must carry "
    "(default: the trust file's, else min(2, witnesses))")]
WitnessedNote = Annotated[list[Path] | None, typer.Option(help="a checkpoint note an agency witnessed")]
AllowTail = Annotated[bool, typer.Option(
    "--allow-unsigned-tail", help="accept entries past the newest checkpoint that passed (reported)")]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"masp: {message}", err=True)
    raise typer.Exit(code)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coro)
    except MaspError as exc:
        _fail(f"{exc.title}: {exc.detail}")
    except (ConnectionError, OSError, SQLAlchemyError) as exc:
        _fail(f"the database is not reachable ({type(exc).__name__}); set MASP_DATABASE_URL or "
              "MASP_STATE_DIR", 3)


def pinned(trust_file: Path | None, vkeys: list[str] | None, witness_vkeys: list[str] | None,
           quorum: int | None) -> Trust:
    """The keys the caller pinned: a trust file, or keys given on the command line; never any
    key carried by what is being verified."""
    try:
        if trust_file is not None:
            if vkeys or witness_vkeys:
                _fail("pin keys with --trust or with --vkey/--witness-vkey, not both")
            trust = Trust.load(trust_file)
            return trust if quorum is None else Trust(trust.log, trust.witnesses, quorum)
        if not vkeys:
            _fail("no pinned log key: pass --trust FILE (the trust file you keep; `masp audit trust` "
                  "writes the operator's) or --vkey VKEY. Keys carried by the log or an export are "
                  "never trusted")
        return Trust.of(vkeys, witness_vkeys or [], quorum)
    except TrustInvalid as exc:
        _fail(str(exc))


def _witnessed(paths: list[Path] | None, origin: str) -> list[Checkpoint]:
    seen: list[Checkpoint] = []
    for path in paths or []:
        try:
            seen.append(Checkpoint.parse(path.read_text(encoding="utf-8").split("\n\n", 1)[0] + "\n"))
        except (OSError, ValueError) as exc:
            _fail(f"{path}: not a checkpoint ({type(exc).__name__})")
        if seen[-1].origin != origin:  # else this log would be called rolled back or rewritten
            _fail(f"{path}: a checkpoint of another log, not of {origin} whose keys are pinned")
    return seen


@app.command("verify")
def verify(export: ExportDir = None, trust: TrustFile = None, vkey: VKeys = None,
           witness_vkey: WitnessKeys = None, quorum: Quorum = None, witnessed: WitnessedNote = None,
           allow_unsigned_tail: AllowTail = False) -> None:
    """Recompute every leaf, the tree, every checkpoint and key rotation against the keys you
    pinned; exit 0 only if the log is intact and its newest checkpoint covers every entry.

    --witnessed adds a checkpoint an agency cosigned earlier, which the log must still contain
    (a rolled-back copy fails).
    """
    pins = pinned(trust, vkey, witness_vkey, quorum)
    seen = _witnessed(witnessed, pins.origin)
    from broker.store.audit_export import verify_export, verify_store

    if export is not None:
        if not export.is_dir():
            _fail(f"{export} is not a directory")
        report = verify_export(export, pins, witnessed=seen, allow_unsigned_tail=allow_unsigned_tail)
    else:
        async def from_db() -> VerifyReport:
            from broker.service import AuditStore

            store = await AuditStore.open(Settings())
            try:
                return await verify_store(store.sessions, pins, witnessed=seen,
                                          allow_unsigned_tail=allow_unsigned_tail)
            finally:
                await store.close()

        report = _run(from_db())
    if not report.ok:
        where = f"first bad seq {report.first_bad_seq}: " if report.first_bad_seq is not None else ""
        _fail(f"audit log NOT intact: {where}{report.problem}", 1)
    typer.echo(f"audit log intact: {report.entries} entries, {report.checkpoints} checkpoints, "
               f"root {report.root_hex}")
    typer.echo(f"proven: {report.summary()}")


@app.command("proof")
def proof(seq: Annotated[int, typer.Argument(help="the entry's seq")],
          size: Annotated[int | None, typer.Option(help="checkpoint size to prove against")] = None,
          ) -> None:
    """Print the entry's C2SP tlog-proof against the newest published (witnessed) checkpoint."""
    from broker.service import AuditStore
    from broker.store.audit_proofs import entry_proof

    async def go() -> str:
        settings = Settings()
        store = await AuditStore.open(settings)
        try:
            async with store.sessions() as session:
                found = await entry_proof(session, seq, quorum=settings.witness_quorum, size=size)
            return found.proof.text()
        finally:
            await store.close()

    typer.echo(_run(go()), nl=False)


@app.command("export")
def export(out: Annotated[Path, typer.Option(help="directory to write")],
           size: Annotated[int | None, typer.Option(help="export the log as of this checkpoint size "
                                                         "(default: the newest)")] = None) -> None:
    """Export entries, checkpoints and consistency proofs for offline verification (no keys:
    the verifier pins its own)."""
    from broker.service import AuditStore
    from broker.store.audit_export import export_log

    async def go() -> int:
        settings = Settings()
        store = await AuditStore.open(settings)
        try:
            return await export_log(store.sessions, out, settings.audit_origin, size=size)
        finally:
            await store.close()

    typer.echo(f"exported {_run(go())} entries to {out}")


@app.command("trust")
def trust_file(out: Annotated[Path | None, typer.Option(help="write here instead of stdout")] = None
               ) -> None:
    """Write the trust file a relying party pins: the log's keys (each later one `since` the
    entry that introduced it), the witnesses' keys and the quorum. Hand it over through a
    channel of your own, never inside an export."""
    from datetime import UTC, datetime

    from broker.crypto.keys import KeyRegistry
    from broker.service import AuditStore, log_keys
    from broker.store.audit_export import deployment_witnesses, operator_trust

    async def go() -> Trust:
        settings = Settings()
        store = await AuditStore.open(settings)
        try:
            witnesses = deployment_witnesses(KeyRegistry.from_public_dir(settings.keys_dir),
                                             [w.verifier for w in settings.witnesses])
            return await operator_trust(store.sessions, log_keys(settings), witnesses,
                                        settings.witness_quorum)
        finally:
            await store.close()

    try:
        pins = _run(go())
    except (NoteError, TrustInvalid) as exc:
        _fail(str(exc))
    text = pins.render(f"audit log {pins.origin}: keys to pin, written {datetime.now(UTC):%Y-%m-%d}\n"
                       "verify with: masp audit verify --trust THIS_FILE [--export DIR]")
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"trust file for {pins.origin} written to {out}")
