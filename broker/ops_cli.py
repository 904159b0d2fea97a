"""``masp dlq`` and ``masp route``: dead letters and paused routes from the command line.

Metadata only: no command prints a message body. Replay, purge, pause and resume are audited
with the operator's id (``--by``, default the login name) and role ``ops``.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer

from broker.audit.entry import Actor
from broker.service import BrokerService
from broker.settings import Settings
from broker.store import dead_letters as store
from broker.transport import connect as amqp

dlq_app = typer.Typer(no_args_is_help=True, help="Dead letters: list, show, replay, purge (metadata only).")
route_app = typer.Typer(no_args_is_help=True, help="Pause and resume delivery to one recipient.")

T = TypeVar("T")
By = Annotated[str | None, typer.Option(help="operator id recorded in the audit log")]
AsJson = Annotated[bool, typer.Option("--json", help="print JSON")]
Ids = Annotated[list[str] | None, typer.Argument(help="dead letter ids")]
All = Annotated[bool, typer.Option("--all", help="every pending dead letter")]


def _actor(by: str | None) -> Actor:
    return Actor(user_id=by or getpass.getuser(), role="ops", auth="cli")


def _with_service(work: Callable[[BrokerService], Awaitable[T]]) -> T:
    from broker.cli import _run

    async def go() -> T:
        service = await BrokerService.open(Settings())
        try:
            return await work(service)
        finally:
            await service.close()

    return _run(go())


def _line(d: dict[str, Any]) -> str:
    route = f"{d['sender'] or '?'}->{d['recipient'] or '?'}"
    return (f"{d['id']}  {d['state']:<8} {d['queue']}  {d['reason']} x{d['death_count']}  "
            f"{route} {d['masp_type'] or '-'} delivery {d['delivery_id'] or '-'}  {d['size']} B  "
            f"{d['recorded_at']}")


@dlq_app.command("collect")
def collect() -> None:
    """Move dead letters waiting in RabbitMQ into the database (a running broker does this itself)."""
    from broker.transport.dead_letters import DeadMessage, record

    async def work(service: BrokerService) -> int:
        connection = await amqp.connect(service.settings)
        moved = 0
        async with connection, connection.channel() as channel:
            queue = await channel.get_queue(service.names.dead_letters, ensure=False)
            while (message := await queue.get(fail=False)) is not None:
                if await record(service.exchange, DeadMessage.from_amqp(message)) is not None:
                    moved += 1
                await message.ack()
        return moved

    typer.echo(f"collected {_with_service(work)} dead letter(s)")


@dlq_app.command("list")
def list_(state: Annotated[str, typer.Option(help="pending, replayed, purged or all")] = "pending",
          queue: Annotated[str | None, typer.Option(help="only those that died in this queue")] = None,
          as_json: AsJson = False) -> None:
    """Dead letters, oldest first: where and why each died, what it belongs to, its size."""
    from broker.cli import fail

    if state not in (*store.STATES, "all"):
        fail("--state must be pending, replayed, purged or all")

    async def work(service: BrokerService) -> list[dict[str, Any]]:
        async with service.exchange.sessions() as session:
            rows = await store.find(session, state=None if state == "all" else state, queue=queue,
                                    limit=10_000)
        return [store.dead_letter_json(r) for r in rows]

    found = _with_service(work)
    if as_json:
        typer.echo(json.dumps(found, indent=2))
        return
    for d in found:
        typer.echo(_line(d))
    typer.echo(f"{len(found)} dead letter(s)")


@dlq_app.command("show")
def show(dead_letter_id: Annotated[str, typer.Argument(help="dead letter id")]) -> None:
    """Every metadata field of one dead letter (never its body), as JSON."""
    from broker.cli import fail

    async def work(service: BrokerService) -> dict[str, Any] | None:
        async with service.exchange.sessions() as session:
            row = await store.get(session, dead_letter_id)
        return None if row is None else store.dead_letter_json(row)

    found = _with_service(work)
    if found is None:
        fail(f"no dead letter {dead_letter_id}", 1)
    typer.echo(json.dumps(found, indent=2))


async def _pending_ids(service: BrokerService, ids: list[str] | None, every: bool) -> list[str]:
    if not every:
        return list(ids or [])
    async with service.exchange.sessions() as session:
        return [r.dead_letter_id for r in await store.find(session, state="pending", limit=10_000)]


@dlq_app.command("replay")
def replay(ids: Ids = None, every: All = False, by: By = None) -> None:
    """Republish dead letters to the queue each died in (with confirms); audited as ``replayed``."""
    from broker.cli import fail
    from broker.transport.dead_letters import replay as replay_one

    if not ids and not every:
        fail("name dead letter ids or pass --all")

    async def work(service: BrokerService) -> list[str]:
        connection = await amqp.connect(service.settings)
        async with connection:
            done = []
            for dead_letter_id in await _pending_ids(service, ids, every):
                row = await replay_one(service.exchange, connection, service.names, dead_letter_id,
                                       _actor(by))
                done.append(f"replayed {row.dead_letter_id} to {row.queue}")
            return done

    for line in _with_service(work):
        typer.echo(line)


@dlq_app.command("purge")
def purge(ids: Ids = None, every: All = False, by: By = None,
          yes: Annotated[bool, typer.Option("--yes", help="do not ask")] = False) -> None:
    """Drop dead letters' bodies for good (they stay listed as purged); audited."""
    from broker.cli import fail
    from broker.transport.dead_letters import purge as purge_one

    if not ids and not every:
        fail("name dead letter ids or pass --all")
    if not yes:
        typer.confirm("Purged dead letters cannot be replayed. Purge?", abort=True)

    async def work(service: BrokerService) -> list[str]:
        return [f"purged {(await purge_one(service.exchange, i, _actor(by))).dead_letter_id}"
                for i in await _pending_ids(service, ids, every)]

    for line in _with_service(work):
        typer.echo(line)


Recipient = Annotated[str, typer.Argument(help="police, probation, nhs or advocacy")]
Reason = Annotated[str | None, typer.Option(help="a reason code for the audit log, e.g. maintenance")]


@route_app.command("pause")
def pause(recipient: Recipient, reason: Reason = None, by: By = None) -> None:
    """Stop publishing to RECIPIENT: new deliveries wait in the outbox (timers keep running)."""
    from broker.route_pause import pause as pause_route

    _with_service(lambda s: pause_route(s.exchange, recipient, _actor(by), reason))
    typer.echo(f"route to {recipient} paused")


@route_app.command("resume")
def resume(recipient: Recipient, reason: Reason = None, by: By = None) -> None:
    """Publish to RECIPIENT again, starting with the backlog."""
    from broker.route_pause import resume as resume_route

    _with_service(lambda s: resume_route(s.exchange, recipient, _actor(by), reason))
    typer.echo(f"route to {recipient} resumed")


@route_app.command("list")
def list_routes() -> None:
    """Paused routes."""
    from broker.route_pause import paused

    rows = _with_service(lambda s: paused(s.exchange))
    for r in rows:
        typer.echo(f"{r['recipient']:<10} paused {r['paused_at']} by {r['paused_by']} ({r['reason'] or '-'})")
    typer.echo(f"{len(rows)} paused route(s)")
