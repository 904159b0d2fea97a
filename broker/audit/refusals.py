"""Which ingress refusals get an audit entry of their own, and the summary of the rest.

Every refusal at ingress is on record, but not one entry per request: a partner (or an
unauthenticated channel) repeating the same refusal at its own rate would otherwise grow
the permanent log at that rate, with a signed checkpoint each. Refusals are grouped by
``RefusalKey`` (the authenticated agency or none, the channel, our error code) into windows:
the first refusal of a key opens a window and is audited at once, in full; later ones in
that window are only counted, with their payload digests, and audited as one summary entry
(kind ``refused`` with ``repeated``) once the window has closed. So the log grows with
distinct events, not with an attacker's rate, and a sender can still show which of its
submissions were counted (``Repeated.digests_sha256``).

Pure bookkeeping on the injected clock; writing the entries is ``broker/refusals.py``'s job.
Memory is bounded by the keys (agencies x channels x codes, all ours, none chosen by a
sender) and ``keep_digests`` per key.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from broker.audit.entry import Actor, AuditEntry, EntryKind, Repeated


@dataclass(frozen=True)
class RefusalKey:
    """What makes refusals "the same": who (authenticated, or ``None``), over what, refused why."""

    agency: str | None
    channel: str  # the actor's auth: agency-jwt (HTTP), amqp
    code: str  # the MaspError code: rule ``ingress.<code>``
    #: the policy rule that refused, if one did (``P6.consent_owner``): ours, never the sender's
    rule: str | None = None


@dataclass(frozen=True)
class RefusalSummary:
    """The refusals of one key in one window after its first (which was audited on its own)."""

    key: RefusalKey
    opened_at: datetime
    count: int
    digests: tuple[str, ...]
    digests_sha256: str
    first_at: datetime
    last_at: datetime
    policy_hash: str | None

    def entry(self, seq: int, at: datetime) -> AuditEntry:
        """The summary's audit entry: our codes, the authenticated agency, counts and digests."""
        return AuditEntry(
            seq=seq, kind=EntryKind.REFUSED, at=at,
            actor=Actor(agency=self.key.agency, auth=self.key.channel), decision="deny",
            rules=(f"ingress.{self.key.code}",) + ((self.key.rule,) if self.key.rule else ()),
            reason=f"repeated: {self.count} more refusals of this kind in the window opened at "
                   f"{self.opened_at.isoformat()}",
            repeated=Repeated(count=self.count, digests=self.digests,
                              digests_sha256=self.digests_sha256, first_at=self.first_at,
                              last_at=self.last_at),
            policy_hash=self.policy_hash)


@dataclass
class _Window:
    opened_at: datetime
    count: int = 0
    digests: list[str] = field(default_factory=list)
    chain: hashlib._Hash = field(default_factory=hashlib.sha256)
    first_at: datetime | None = None
    last_at: datetime | None = None
    policy_hash: str | None = None

    def summary(self, key: RefusalKey) -> RefusalSummary:
        assert self.first_at is not None
        assert self.last_at is not None
        return RefusalSummary(key, self.opened_at, self.count, tuple(self.digests),
                              "sha-256:" + self.chain.hexdigest(), self.first_at, self.last_at,
                              self.policy_hash)


class RefusalWindows:
    """``note`` says whether a refusal is audited at once; ``due`` hands over closed windows."""

    def __init__(self, window: timedelta = timedelta(seconds=60), keep_digests: int = 16) -> None:
        if window <= timedelta(0):
            raise ValueError("the refusal window must be positive")
        self.window = window
        self.keep_digests = keep_digests
        self._open: dict[RefusalKey, _Window] = {}
        self._closed: list[RefusalSummary] = []

    def note(self, key: RefusalKey, digest: str, at: datetime, policy_hash: str | None = None) -> bool:
        """Count one refusal; True if it opens a window (audit it now, in full)."""
        window = self._open.get(key)
        if window is not None and at >= window.opened_at + self.window:
            self._close(key, window)
            window = None
        if window is None:
            self._open[key] = _Window(opened_at=at)
            return True
        window.count += 1
        if len(window.digests) < self.keep_digests:
            window.digests.append(digest)
        window.chain.update(digest.encode() + b"\n")
        window.first_at = window.first_at or at
        window.last_at = at
        window.policy_hash = policy_hash
        return False

    def due(self, now: datetime) -> list[RefusalSummary]:
        """Summaries of every window closed by ``now`` that counted refusals; they are forgotten here."""
        for key, window in list(self._open.items()):
            if now >= window.opened_at + self.window:
                self._close(key, window)
        return self._take()

    def drain(self) -> list[RefusalSummary]:
        """Every summary, closed or not (shutting down: nothing counted may be lost)."""
        for key, window in list(self._open.items()):
            self._close(key, window)
        return self._take()

    def next_close(self) -> datetime | None:
        """When the earliest window that counted anything closes (None: nothing to flush)."""
        ends = [w.opened_at + self.window for w in self._open.values() if w.count]
        return min(ends, default=None)

    @property
    def pending(self) -> int:
        """Refusals counted and not yet handed over in a summary."""
        return sum(w.count for w in self._open.values()) + sum(s.count for s in self._closed)

    def reopen(self, key: RefusalKey) -> None:
        """Forget a window whose opening refusal could not be written, if it counted nothing yet."""
        window = self._open.get(key)
        if window is not None and not window.count:
            del self._open[key]

    def restore(self, summaries: list[RefusalSummary]) -> None:
        """Take back summaries that could not be written, to hand them over again."""
        self._closed[:0] = summaries

    def _close(self, key: RefusalKey, window: _Window) -> None:
        del self._open[key]
        if window.count:
            self._closed.append(window.summary(key))

    def _take(self) -> list[RefusalSummary]:
        taken, self._closed = self._closed, []
        return taken
