"""Audit entries: what one leaf of the log says, and its canonical bytes.

A leaf is the RFC 8785 JSON of the entry, stored verbatim; its Merkle leaf hash is over
those bytes. Entries never hold personal data: subjects appear as keyed pseudonyms and
fields as names plus their SD-JWT digests (a digest of a salted disclosure reveals nothing
without the disclosure).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from enum import StrEnum
from typing import Any

import rfc8785
from pydantic import BaseModel, ConfigDict


class EntryKind(StrEnum):
    SUBMITTED = "submitted"
    DISCLOSED = "disclosed"
    REFUSED = "refused"
    OVERRIDE_USED = "override_used"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"
    REJECTED_BY_RECIPIENT = "rejected_by_recipient"
    EXPIRED = "expired"
    DEAD_LETTERED = "dead_lettered"
    REPLAYED = "replayed"
    CONSENT_CHANGED = "consent_changed"
    DSA_LOADED = "dsa_loaded"
    KEY_ROTATED = "key_rotated"
    KEY_REVOKED = "key_revoked"
    LOG_KEY_ROTATED = "log_key_rotated"
    AUDIT_VIEWED = "audit_viewed"
    AUDIT_EXPORTED = "audit_exported"
    CORRECTION_SENT = "correction_sent"
    OVERRIDE_REVIEWED = "override_reviewed"
    ESCALATED = "escalated"
    DEAD_LETTER_PURGED = "dead_letter_purged"
    ROUTE_PAUSED = "route_paused"
    ROUTE_RESUMED = "route_resumed"


# Fields of every model in a leaf are declared in sorted (RFC 8785) order: pydantic-core
# then writes a leaf's canonical JSON directly (``AuditEntry.leaf_bytes``), and a unit test
# keeps the declarations sorted.


class Actor(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    agency: str | None = None
    auth: str  # how the actor was authenticated: agency-jwt, amqp, role-token, system
    role: str | None = None
    user_id: str | None = None


class SubjectRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    category: str
    pseudonym: str


class FieldDigest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    digest: str
    name: str


class DsaRef(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    clause: str | None = None
    id: str
    version: int


class Repeated(BaseModel):
    """Refusals of one kind from one sender and channel, summarised in one entry (``broker/refusals.py``).

    Only counts, times and digests: ``digests`` are the first payload digests of the
    window, ``digests_sha256`` is ``sha-256:<hex>`` over every digest in order, each followed
    by a line feed, so a sender holding what it sent can show which submissions were counted.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    count: int
    digests: tuple[str, ...]
    digests_sha256: str
    first_at: datetime
    last_at: datetime


class AuditEntry(BaseModel):
    """One audit leaf (docs/domain.md §4). ``leaf_hash`` is stored beside it, not inside."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    actor: Actor
    at: datetime
    case_id: str | None = None
    classification: str | None = None
    consent: Mapping[str, str] | None = None
    decision: str | None = None
    delivery_id: str | None = None
    dsa: DsaRef | None = None
    fields_disclosed: tuple[FieldDigest, ...] = ()
    fields_withheld: tuple[str, ...] = ()
    kind: EntryKind
    lawful_basis: str | None = None
    #: kind ``log_key_rotated``: the signed statement handing the log to its next key
    #: (``broker/audit/key_rotation.py``)
    log_key_rotation: str | None = None
    masp_type: str | None = None
    message_id: str | None = None
    override: Mapping[str, str] | None = None  # codes only: keeps leaves float-free (see leaf_bytes)
    payload_digest: str | None = None
    policy_hash: str | None = None
    purpose: str | None = None
    reason: str | None = None
    recipient: str | None = None
    #: a summary of repeated ingress refusals (kind ``refused``) instead of one entry each
    repeated: Repeated | None = None
    retention_until: datetime | None = None
    rules: tuple[str, ...] = ()
    sender: str | None = None
    seq: int
    special_category_condition: str | None = None
    subjects: tuple[SubjectRef, ...] = ()

    def leaf_bytes(self) -> bytes:
        """RFC 8785 canonical JSON; ``None`` and empty members are dropped to keep leaves small.

        Written by pydantic-core in one call (~5x faster than dumping to a dict and sorting
        it in ``json``): fields are declared in sorted order, and pydantic-core escapes
        strings exactly as RFC 8785 does (quote, backslash, ``\\b\\f\\n\\r\\t``, other
        controls as lower-case ``\\u00xx``, everything else verbatim UTF-8). The free-form
        mappings (``consent``, ``override``) keep their insertion order there, so an entry
        whose mapping keys are not sorted ASCII takes the dict path instead. Both paths
        are pinned to the ``rfc8785`` reference by tests.
        """
        if not _sorted_ascii_keys(self.consent) or not _sorted_ascii_keys(self.override):
            return self._leaf_bytes_via_dict()
        empty = {name for name in _CONTAINERS if not getattr(self, name)}
        return self.__pydantic_serializer__.to_json(self, exclude_none=True, exclude=empty or None)

    def _leaf_bytes_via_dict(self) -> bytes:
        doc = self.model_dump(mode="json", exclude_none=True)
        doc = {k: v for k, v in doc.items() if v not in ((), [], {})}
        return leaf_json(doc)

    @classmethod
    def from_leaf(cls, leaf: bytes) -> AuditEntry:
        return cls.model_validate_json(leaf)


_CONTAINERS = ("consent", "fields_disclosed", "fields_withheld", "override", "rules", "subjects")


def _sorted_ascii_keys(mapping: Mapping[str, str] | None) -> bool:
    if not mapping:
        return True
    keys = list(mapping)
    return all(k.isascii() for k in keys) and keys == sorted(keys)


def leaf_json(doc: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of an entry document (``canonical_json``).

    The entry's own keys are ASCII, but the free-form mappings (``consent``, ``override``)
    may hold any key, and RFC 8785 orders keys by UTF-16 code unit, not by code point as
    ``sort_keys`` does: a key beyond U+FFFF sorts before one from U+E000 up.
    """
    return canonical_json(doc)


def canonical_json(doc: Any) -> bytes:
    """RFC 8785 bytes of ``doc``.

    For documents without floats and with ASCII keys (every audit entry), RFC 8785 output
    is exactly sorted, compact ``json.dumps`` with ``ensure_ascii=False``: the same string
    escapes (only quote, backslash and controls, lower-case ``\\u00xx``) and, for ASCII keys,
    the same key order. That path is ~30x faster than the pure-Python ``rfc8785`` package,
    which remains the reference for everything else (a property test pins the two together).
    """
    if _plain(doc):
        return json.dumps(doc, ensure_ascii=False, sort_keys=True, separators=(",", ":")).encode()
    return rfc8785.dumps(doc)


def _plain(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and k.isascii() and _plain(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return all(_plain(v) for v in value)
    return value is None or isinstance(value, str | int)  # bool is an int


def normalise_identifier(identifier: str) -> str:
    """Fold the ways one identifier gets written (case, width, spaces, dashes) into one."""
    folded = unicodedata.normalize("NFKC", identifier).casefold()
    return "".join(ch for ch in folded if ch.isalnum())


def pseudonym(secret: bytes, identifier: str) -> str:
    """Keyed pseudonym of a subject identifier: HMAC-SHA-256, hex, under a deployment secret."""
    return hmac.new(secret, normalise_identifier(identifier).encode(), hashlib.sha256).hexdigest()


def recipient_pseudonym(secret: bytes, recipient: str, identifier: str) -> str:
    """A subject's pseudonym as one recipient sees it: keyed for that recipient alone, so
    the same person has the same pseudonym across its deliveries and a different one at
    every other agency (and in the audit log)."""
    key = hmac.new(secret, b"masp-recipient-pseudonym/" + recipient.encode(), hashlib.sha256).digest()
    return pseudonym(key, identifier)


def payload_digest(raw: str | bytes) -> str:
    data = raw.encode() if isinstance(raw, str) else raw
    return "sha-256:" + hashlib.sha256(data).hexdigest()
