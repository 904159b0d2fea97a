"""``masp adapter``: run an agency adapter, or certify an agency's side of the wire.

``run AGENCY`` consumes the agency's inbox queue and writes native files to its outbox
folder, sends native files dropped in its inbox folder or posted to its local endpoint,
and witnesses checkpoints. ``check AGENCY`` runs the docs/spec/ conformance
exchanges against a running broker: one PASS/FAIL line per contract point, exit 1 on any
FAIL (docs/adapters.md).
"""

from __future__ import annotations

import asyncio
from importlib import resources
from pathlib import Path
from typing import Annotated, NoReturn

import httpx
import typer

from broker.crypto.keys import AGENCIES
from broker.errors import MaspError
from broker.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Agency adapters: run one, or check one against a broker.")

Agency = Annotated[str, typer.Argument(help="police, probation, nhs or advocacy")]


def _fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"masp: {message}", err=True)
    raise typer.Exit(code)


def _agency(agency: str) -> str:
    if agency not in AGENCIES:
        _fail(f"unknown agency {agency!r}; one of {', '.join(AGENCIES)}")
    return agency


@app.command("run")
def run(
    agency: Agency,
    inbox: Annotated[Path | None, typer.Option(help="folder watched for native files to send")] = None,
    outbox: Annotated[
        Path | None, typer.Option(help="folder the agency's native files are written to")
    ] = None,
    port: Annotated[
        int | None,
        typer.Option(help="local endpoint port (police 8101, probation 8102, nhs 8103, advocacy 8104)"),
    ] = None,
    host: Annotated[str, typer.Option(help="local endpoint address")] = "127.0.0.1",
    poll: Annotated[float, typer.Option(help="inbox folder poll interval, seconds")] = 2.0,
) -> None:
    """Run one agency's adapter: native files in (folder, POST /records), native files out."""
    from adapters.service import AdapterOptions, run_adapter

    opts = AdapterOptions(inbox=inbox, outbox=outbox, host=host, port=port, poll_s=poll)
    try:
        asyncio.run(run_adapter(Settings(), _agency(agency), opts))
    except MaspError as exc:
        _fail(f"{exc.title}: {exc.detail}")
    except OSError as exc:
        _fail(f"{type(exc).__name__}: {exc}", 3)


@app.command("check")
def check(
    agency: Agency,
    url: Annotated[str | None, typer.Option(help="broker base URL (default MASP_HTTP_HOST:PORT)")] = None,
    samples: Annotated[
        Path | None, typer.Option(help="folder of native samples <agency>/<file> (default: the demo case)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for a delivery")] = 20.0,
) -> None:
    """Certify an agency's side of docs/spec/ against a running broker; exit 1 on any FAIL."""
    from adapters.conformance import ConformanceRun

    settings = Settings()
    base = url or f"http://{settings.http_host}:{settings.http_port}"
    folder = samples or Path(str(resources.files("broker.demo").joinpath("native")))

    async def go() -> list[str]:
        async with httpx.AsyncClient(base_url=base, timeout=10) as client:
            run = ConformanceRun(_agency(agency), settings.keys_dir, client, folder, timeout=timeout)
            points = await run.run()
        return [p.line() for p in points] + [
            f"{sum(p.ok for p in points)}/{len(points)} points passed"
            + ("" if all(p.ok for p in points) else "; FAILED")
        ]

    try:
        lines = asyncio.run(go())
    except MaspError as exc:
        _fail(f"{exc.title}: {exc.detail}")
    except (httpx.HTTPError, OSError) as exc:
        _fail(f"broker not reachable at {base} ({type(exc).__name__})", 3)
    for line in lines:
        typer.echo(line)
    if lines[-1].endswith("FAILED"):
        raise typer.Exit(1)
