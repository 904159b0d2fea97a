"""One agency adapter: its native format on the shared runtime, with an inbox and an outbox.

Native files come in through ``ingest`` (from the watched inbox folder or the local HTTP
endpoint); each is read and checked whole by ``prepare`` before its first message is
signed, so a refused file sends nothing. Verified deliveries go out through the native
format's ``write`` into the outbox folder, keyed by delivery id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog

from adapters.files import atomic_write
from adapters.native import NativeFormat, NativeRecordInvalid, Outgoing, prepare
from adapters.runtime import AdapterRuntime, received_view
from broker import wire
from broker.crypto.sdjwt import SdJwt
from broker.errors import MaspError

log = structlog.get_logger("masp.adapter")

#: Lifetime of a message sealed from a native file: long enough to resubmit after an outage.
SPOOL_TTL = timedelta(hours=24)

#: Submits one sealed message (compact JWE) and returns the broker's receipt as JSON.
Submit = Callable[[str], Awaitable[dict[str, Any]]]


class SubmissionRefused(MaspError):
    """The broker refused a message of an ingested file (it returned a problem document)."""

    code = "submission-refused"
    title = "Broker refused a message"


@dataclass(frozen=True)
class Sent:
    record: str
    masp_type: str
    message_id: str
    decisions: list[dict[str, Any]]
    fields: tuple[str, ...] = ()  # the body fields sent (names only)

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def http_submitter(runtime: AdapterRuntime, client: httpx.AsyncClient) -> Submit:
    async def submit(jwe: str) -> dict[str, Any]:
        resp = await runtime.submit_http(client, jwe)
        body: dict[str, Any] = resp.json()
        if resp.status_code != 202:
            raise SubmissionRefused(f"{body.get('code', resp.status_code)}: {body.get('detail', '')}")
        return body

    return submit


def finalise_override(override: dict[str, Any] | None, runtime: AdapterRuntime) -> dict[str, Any] | None:
    """A native override valid for ``valid_hours`` gets its ``expires_at`` at the time of sending."""
    if override is None or "valid_hours" not in override:
        return override
    hours = override["valid_hours"]
    rest = {k: v for k, v in override.items() if k != "valid_hours"}
    if not isinstance(hours, int | float) or isinstance(hours, bool) or not 0 < hours <= 72:
        return rest  # no expiry: the broker refuses it with its own reason
    return {**rest, "expires_at": (runtime.clock() + timedelta(hours=hours)).isoformat()}


def compose_outgoing(runtime: AdapterRuntime, out: Outgoing, *, ttl: timedelta = timedelta(hours=1),
                     jti: str | None = None) -> tuple[SdJwt, str]:
    """Sign and seal one native record's canonical message as ``runtime``'s agency: (SD-JWT, JWE).

    An override's expiry is set at the time of sending (``finalise_override``).
    """
    return runtime.compose(out.masp_type, out.body, case_id=out.case_id, purpose=out.purpose,
                           subjects=out.subjects, consent_ref=out.consent_ref, ttl=ttl, jti=jti,
                           override=finalise_override(out.override, runtime))


@dataclass
class AgencyAdapter:
    runtime: AdapterRuntime
    native: NativeFormat
    submit: Submit
    inbox: Path
    outbox: Path

    def __post_init__(self) -> None:
        self.runtime.on_delivery = self.deliver

    @property
    def agency(self) -> str:
        return self.runtime.agency

    # --- native records in ---------------------------------------------------------------

    async def ingest(self, source: str, data: bytes) -> list[Sent]:
        """Send every message of one native file, in order; nothing if any record is invalid.

        The file's messages are sealed once and spooled (keyed by the file's digest) before
        the first is submitted: if the broker goes away mid-file, sending the same file again
        resubmits the same messages, which the broker answers with their original receipts,
        so no record is ever delivered twice.
        """
        outgoing = prepare(self.native, source, data)
        sealed = self._sealed(hashlib.sha256(data).hexdigest()[:32], outgoing)
        sent: list[Sent] = []
        for out, jwe in zip(outgoing, sealed, strict=True):
            try:
                receipt = await self.submit(jwe)
                if "receipt" not in receipt:  # over AMQP a refusal comes back as a problem document
                    raise SubmissionRefused(f"{receipt.get('code')}: {receipt.get('detail', '')}")
            except SubmissionRefused as exc:
                raise SubmissionRefused(f"{out.record} ({out.masp_type}, message {len(sent) + 1} of "
                                        f"{len(outgoing)}; those before it were accepted): {exc.detail}",
                                        sent=[s.as_dict() for s in sent]) from None
            sent.append(Sent(out.record, out.masp_type, str(receipt["message_id"]),
                             list(receipt["decisions"]), tuple(sorted(out.body))))
        log.info("native_file_sent", agency=self.agency, messages=len(sent))
        return sent

    def _sealed(self, digest: str, outgoing: list[Outgoing]) -> list[str]:
        """The file's messages as sealed JWEs: the spooled ones if still fresh, else new ones."""
        spool = self.runtime.home / "spool" / f"{digest}.json"
        now = self.runtime.clock()
        if spool.exists():
            kept = json.loads(spool.read_text())
            if len(kept["sealed"]) == len(outgoing) and now.timestamp() < kept["reuse_until"]:
                return [str(j) for j in kept["sealed"]]
        sealed = [compose_outgoing(self.runtime, out, ttl=SPOOL_TTL)[1] for out in outgoing]
        reuse_until = (now + SPOOL_TTL - timedelta(hours=1)).timestamp()
        atomic_write(spool, json.dumps({"sealed": sealed, "reuse_until": reuse_until}).encode())
        return sealed

    def prune_spool(self) -> None:
        """Forget spooled files whose messages can no longer be resubmitted (expired)."""
        folder = self.runtime.home / "spool"
        now = self.runtime.clock().timestamp()
        for path in folder.glob("*.json") if folder.exists() else []:
            with contextlib.suppress(OSError, ValueError, KeyError):
                if json.loads(path.read_text())["reuse_until"] < now:
                    path.unlink()

    async def poll_inbox(self) -> list[Path]:
        """Ingest every file waiting in the inbox; move each to ``sent/`` or ``refused/``.

        A refused file gets a ``.report.txt`` beside it naming each bad record and field.
        """
        self.inbox.mkdir(parents=True, exist_ok=True, mode=0o700)
        done: list[Path] = []
        for path in sorted(
            p
            for p in self.inbox.iterdir()
            if p.is_file() and not p.name.startswith(".") and not p.name.endswith((".tmp", ".part"))
        ):
            try:
                sent = await self.ingest(path.name, path.read_bytes())
            except NativeRecordInvalid as exc:
                target = _move(path, self.inbox / "refused")
                atomic_write(target.with_name(target.name + ".report.txt"), exc.report().encode())
                log.warning("native_file_refused", agency=self.agency, problems=len(exc.problems))
            except SubmissionRefused as exc:
                target = _move(path, self.inbox / "refused")
                atomic_write(
                    target.with_name(target.name + ".report.txt"),
                    f"{path.name}: the broker refused {exc.detail}\n".encode(),
                )
            else:
                target = _move(path, self.inbox / "sent")
                atomic_write(
                    target.with_name(target.name + ".receipts.json"),
                    json.dumps([s.as_dict() for s in sent], indent=2).encode(),
                )
            done.append(target)
        return done

    async def watch_inbox(self, every: float) -> None:
        while True:
            try:
                self.prune_spool()
                await self.poll_inbox()
            except (httpx.HTTPError, MaspError) as exc:  # the broker away: the file stays, retried
                log.warning("inbox_poll_failed", agency=self.agency, code=type(exc).__name__)
            await asyncio.sleep(every)

    # --- deliveries out ------------------------------------------------------------------

    async def deliver(self, delivery: wire.Delivery) -> None:
        """Write the agency's native files for one verified delivery into the outbox."""
        for rendered in self.native.write(received_view(delivery)):
            atomic_write(self.outbox / rendered.name, rendered.data)

    def outbox_files(self, suffix: str = "") -> list[Path]:
        if not self.outbox.exists():
            return []
        return sorted(p for p in self.outbox.iterdir() if p.is_file() and p.name.endswith(suffix))


def _move(path: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    target = folder / path.name
    path.replace(target)
    return target
