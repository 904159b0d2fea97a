"""``masp``: the command line (README.md, docs/operations.md).

Every failure is one line on stderr and a non-zero exit: 1 for "checked and found wrong"
(a failed demo expectation, a broken audit log), 2 for refused input or configuration,
3 for an unreachable dependency (RabbitMQ, the database). A refusal with several reasons
(DSA files refused by lint) adds one indented line per reason under its line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Coroutine, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import structlog
import typer

from broker import keys_cli
from broker.adapter_cli import app as adapter_app
from broker.audit_cli import app as audit_app
from broker.consent_cli import app as consent_app
from broker.crypto.keys import AGENCIES, BROKER, AgencyKeys, KeyRegistry, init_keys
from broker.db_cli import app as db_app
from broker.errors import MaspError
from broker.logs import configure
from broker.ops_cli import dlq_app, route_app
from broker.policy import DsaRejected
from broker.settings import Settings

app = typer.Typer(no_args_is_help=True, add_completion=False,
                  help="MASP Exchange: secure inter-agency referral broker.")
keys_app = typer.Typer(no_args_is_help=True, help="Agency and broker keys (JWK files, 0600).")
policy_app = typer.Typer(no_args_is_help=True, help="Check DSA files and explain decisions.")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")
app.add_typer(policy_app, name="policy")
app.add_typer(adapter_app, name="adapter")
app.add_typer(consent_app, name="consent")
app.add_typer(dlq_app, name="dlq")
app.add_typer(route_app, name="route")
app.add_typer(db_app, name="db")
keys_app.command("rotate")(keys_cli.rotate)
keys_app.command("revoke")(keys_cli.revoke)

T = TypeVar("T")
log = structlog.get_logger("masp.cli")


def fail(message: str, code: int = 2, *, reasons: Iterable[str] = ()) -> NoReturn:
    typer.echo(f"masp: {message}", err=True)
    for reason in reasons:
        typer.echo(f"masp:   {reason}", err=True)
    raise typer.Exit(code)


#: How long a finished command waits for tasks it leaves behind to end once cancelled.
STRAY_TASK_GRACE_S = 5.0


def _run_bounded(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, except that tasks left behind are given a bounded time to end.

    ``asyncio.run`` waits without limit for every task still pending when the command's
    coroutine returns. A database driver's connection close orphaned by a cancellation can
    stay pending for ever (seen with aiosqlite at ``masp serve`` shutdown), and a SIGTERM
    must end the process: such tasks are named in the log and abandoned.
    """
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            stray = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in stray:
                task.cancel()
            if stray:
                _, stuck = loop.run_until_complete(asyncio.wait(stray, timeout=STRAY_TASK_GRACE_S))
                if stuck:
                    log.warning("stray_tasks_abandoned", count=len(stuck))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _run(coro: Coroutine[Any, Any, T]) -> T:
    try:
        return _run_bounded(coro)
    except DsaRejected as exc:
        fail(f"{exc.title}: {exc.detail}", reasons=map(str, exc.findings))
    except MaspError as exc:
        fail(f"{exc.title}: {exc.detail}")
    except (ConnectionError, OSError) as exc:
        if "5672" in str(exc) or "amqp" in str(exc).lower() or isinstance(exc, ConnectionRefusedError):
            fail(f"RabbitMQ is not reachable at {_safe_url(Settings().amqp_url)} ({type(exc).__name__}); "
                 "start it with `rabbitmq-server -detached`", 3)
        fail(f"{type(exc).__name__}: {exc}", 3)


def _safe_url(url: str) -> str:
    """The AMQP URL without its password."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.split('@', 1)[1]}"


@app.command()
def init() -> None:
    """Create the state directory: keys for every agency and the broker, pseudonym secret, database."""
    from broker.service import BrokerService, init_state

    settings = Settings()
    created = init_state(settings, datetime.now(UTC).date())

    async def schema() -> None:
        service = await BrokerService.open(settings)
        await service.close()

    _run(schema())
    typer.echo(f"state in {settings.state_dir}; keys created for: {', '.join(created) or 'none (kept)'}")


DemoFlag = Annotated[bool, typer.Option("--demo", help="also run the four adapters and seed the demo case")]
OutDir = Annotated[Path | None, typer.Option(help="leave keys, deliveries, audit export and summary here")]


@app.command()
def serve(demo: DemoFlag = False,
          workers: Annotated[int, typer.Option(min=1, help="broker processes consuming the queues "
                                                          "(more than one needs PostgreSQL)")] = 1,
          ) -> None:
    """Run the API, broker workers and outbox relay on MASP_HTTP_HOST:MASP_HTTP_PORT."""
    from broker.server import serve as run_server

    _run(run_server(Settings(), demo=demo, workers=workers))


@app.command()
def demo(out: OutDir = None,
         as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False) -> None:
    """Play the demonstration case on RabbitMQ; exit 0 only if every expected outcome happened."""
    import tempfile

    from broker.demo.run import run_demo

    target = out or Path(tempfile.mkdtemp(prefix="masp-demo-"))
    result = _run(run_demo(target, Settings()))
    if as_json:
        typer.echo((target / "summary.json").read_text())
    else:
        for step in result.steps:
            typer.echo(step["step"])
            received = step.get("received", {})
            for d in step.get("decisions") or []:
                fields = received.get(d["recipient"])
                shown = f": {', '.join(fields)}" if fields else ""
                typer.echo(f"  {d['recipient']:<10} {d['decision']:<22} clause {d['clause']}{shown}")
        typer.echo("checks")
        for check in result.checks:
            typer.echo(check.line())
        typer.echo(f"artifacts in {target}")
    if not result.ok:
        fail("demo: some expected outcomes did not happen", 1)


@keys_app.command("init")
def keys_init(force: Annotated[bool, typer.Option(help="replace existing keys")] = False,
              agency: Annotated[list[str] | None, typer.Option(help="only these agencies")] = None) -> None:
    """Create signing (Ed25519) and encryption (X25519) keys for each agency and the broker."""
    from broker.crypto.log_keys import LOG
    from broker.service import log_keys

    settings = Settings()
    wanted = [a for a in agency or [*AGENCIES, BROKER, LOG] if a != LOG]
    created = init_keys(settings.keys_dir, datetime.now(UTC).date(), wanted, force=force)
    if agency is None or LOG in agency:
        try:
            if log_keys(settings).create(datetime.now(UTC)) is not None:
                created.append(LOG)
            elif force:
                typer.echo("the audit log's key is kept (replacing it would cut the log's chain of "
                           "keys): rotate it with `masp keys rotate log`", err=True)
        except MaspError as exc:
            fail(f"{exc.title}: {exc.detail}")
    typer.echo(f"keys in {settings.keys_dir}; created for: {', '.join(created) or 'none (kept)'}")


@keys_app.command("list")
def keys_list() -> None:
    """List registered public keys (kid, curve, status)."""
    reg = KeyRegistry.from_public_dir(Settings().keys_dir)
    for jwk in reg.jwks()["keys"]:
        typer.echo(f"{jwk['kid']}\t{jwk['crv']}\t{jwk['status']}")


@app.command()
def token(role: Annotated[str, typer.Option(help="ig_officer, ops or admin")],
          sub: Annotated[str, typer.Option(help="user id")] = "dev-user") -> None:
    """Issue a development role token for people (production uses OIDC)."""
    from broker.api.auth import issue_user_token

    try:
        typer.echo(issue_user_token(AgencyKeys.load(Settings().keys_dir, BROKER), sub, role,
                                    datetime.now(UTC)))
    except (ValueError, MaspError) as exc:
        fail(str(exc))


@policy_app.command("lint")
def policy_lint(files: Annotated[list[Path], typer.Argument(help="DSA YAML files or directories")]) -> None:
    """Check DSA files; exit 1 if any finding is an error."""
    from broker.policy import DsaInvalid, lint, load_bundle

    try:
        bundle = load_bundle(files)
    except DsaInvalid as exc:
        fail(exc.detail)
    findings = lint(bundle, today=datetime.now(UTC).date())
    for finding in findings:
        typer.echo(str(finding))
    errors = sum(1 for f in findings if f.severity == "error")
    typer.echo(f"{len(bundle.agreements)} agreement(s), {errors} error(s), "
               f"{len(findings) - errors} warning(s); policy_hash {bundle.policy_hash}")
    if errors:
        raise typer.Exit(1)


@policy_app.command("explain")
def policy_explain(
    sender: Annotated[str, typer.Option("--from", help="sending agency")],
    recipient: Annotated[str, typer.Option("--to", help="receiving agency")],
    masp_type: Annotated[str, typer.Option("--type", help="message type")],
    purpose: Annotated[str | None, typer.Option(help="purpose of the message")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """May A send T to B for purpose P: which data classes, under which clause, and why not."""
    from broker.policy import DsaInvalid, explain, load_bundle

    try:
        bundle = load_bundle(Settings().dsa_dir)
    except DsaInvalid as exc:
        fail(exc.detail)
    answer = explain(bundle, sender, recipient, masp_type, purpose, datetime.now(UTC))
    if as_json:
        typer.echo(json.dumps(answer.as_dict(), indent=2, default=str))
        return
    typer.echo(f"{sender} -> {recipient}: {masp_type} ({purpose or 'any purpose'}): {answer.outcome}")
    if answer.clause:
        typer.echo(f"  clause    {answer.clause}  [{answer.regime}] {answer.lawful_basis}")
    typer.echo(f"  allowed   {', '.join(answer.allowed) or '-'}")
    for cls, why in answer.withheld.items():
        typer.echo(f"  withheld  {cls}: {why}")
    for cond in answer.conditions:
        typer.echo(f"  provided  {cond}")
    typer.echo(f"  reason    {answer.reason}")


@app.command()
def bench(
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    suite: Annotated[str, typer.Option(help="e2e (the pipeline beside raw aio-pika) or audit")] = "e2e",
    count: Annotated[int, typer.Option(min=10, help="e2e suite: messages at saturation")] = 1000,
    workers: Annotated[int, typer.Option(min=1, help="e2e suite: broker worker processes "
                                                   "(more than one needs PostgreSQL)")] = 1,
    database_url: Annotated[str | None, typer.Option(
        help="e2e suite: a PostgreSQL server URL; a fresh database is created there and dropped "
             "(default: a temporary SQLite file)")] = None,
    profile: Annotated[Path | None, typer.Option(
        help="e2e suite: write a pyinstrument profile of each broker process to this directory")] = None,
    entries: Annotated[int, typer.Option(help="audit suite: log size to build")] = 1_000_000,
    backend: Annotated[list[str] | None, typer.Option(help="audit suite: sqlite and/or postgres")] = None,
) -> None:
    """Measure; figures go to docs/performance.md. Runs against fresh, throw-away databases."""
    import tempfile

    if suite == "e2e":
        _bench_e2e(as_json, count, workers, database_url, profile)
        return
    if suite != "audit":
        fail(f"unknown suite {suite!r} (e2e or audit)")
    from bench.audit import as_dict, run_audit_bench

    results = []
    for name in backend or ["sqlite", "postgres"]:
        if name not in ("sqlite", "postgres"):
            fail(f"unknown backend {name!r}")
        with tempfile.TemporaryDirectory(prefix="masp-bench-") as tmp:
            result = _run(run_audit_bench(name, entries, Path(tmp)))
        results.append(as_dict(result))
        if not as_json:
            typer.echo(result.summary())
    if as_json:
        typer.echo(json.dumps({"suite": "audit", "results": results}, indent=2))


def _bench_e2e(as_json: bool, count: int, workers: int, database_url: str | None,
               profile: Path | None) -> None:
    import tempfile

    from bench.e2e import Options, format_report, run_e2e_bench

    if database_url is not None and not database_url.startswith(("postgresql", "sqlite")):
        fail("--database-url must be a postgresql:// (or sqlite) URL")
    if workers > 1 and (database_url is None or database_url.startswith("sqlite")):
        fail("several broker workers need PostgreSQL: pass --database-url postgresql://...")
    opts = Options(amqp_url=Settings().amqp_url, database_url=database_url, count=count,
                   workers=workers, low_load=min(100, count), warmup=min(30, max(5, count // 4)),
                   profile=profile)
    with tempfile.TemporaryDirectory(prefix="masp-bench-") as tmp:
        result = _run(run_e2e_bench(opts, Path(tmp)))
    typer.echo(json.dumps(result, indent=2) if as_json else format_report(result))
    if not result["audit_verified"]:
        fail("the audit log written by the benchmark does not verify", 1)


def main() -> None:
    settings = Settings()
    configure(json=settings.log_json, level=settings.log_level, library_level=settings.log_library_level)
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


__all__ = ["app", "main"]


if __name__ == "__main__":
    main()
