"""Typed errors of the broker.

Each carries a stable ``code`` (the last segment of its RFC 9457 problem type), the HTTP
status the edge maps it to, and a ``detail`` that names the rule, field or key that failed.
Details never carry personal data: name fields, never quote their values.
"""

from __future__ import annotations

from typing import Any, ClassVar

PROBLEM_BASE = "https://masp.example/problems/"


class MaspError(Exception):
    """Base of every refusal the broker or an adapter can give."""

    code: ClassVar[str] = "error"
    status: ClassVar[int] = 400
    title: ClassVar[str] = "Request refused"

    def __init__(self, detail: str, **extensions: Any) -> None:
        super().__init__(detail)
        self.detail = detail
        self.extensions = extensions

    @property
    def type_uri(self) -> str:
        return PROBLEM_BASE + self.code

    def problem(self, instance: str | None = None) -> dict[str, Any]:
        """RFC 9457 problem document."""
        doc: dict[str, Any] = {
            "type": self.type_uri,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "code": self.code,
        }
        if instance:
            doc["instance"] = instance
        doc.update(self.extensions)
        return doc


class MalformedMessage(MaspError):
    code = "malformed"
    title = "Message is not well-formed"


class PayloadTooLarge(MaspError):
    code = "too-large"
    status = 413
    title = "Message too large"


class DecryptionFailed(MaspError):
    code = "decryption-failed"
    title = "Message could not be decrypted"


class UnknownKey(MaspError):
    code = "unknown-key"
    status = 401
    title = "Key not registered"


class KeyRevoked(UnknownKey):
    """A key that was revoked, or retired after its rotation overlap ended: refused like an unknown one."""

    code = "key-revoked"
    title = "Key revoked or retired"


class UnknownSender(MaspError):
    code = "unknown-sender"
    status = 401
    title = "Sender not registered"


class SignatureInvalid(MaspError):
    code = "signature-invalid"
    status = 401
    title = "Signature does not verify"


class DisclosureMismatch(MaspError):
    code = "disclosure-mismatch"
    status = 400
    title = "A disclosure does not match the signed digests"


class ReplayDetected(MaspError):
    code = "replay"
    status = 409
    title = "Message id already used"


class MessageExpired(MaspError):
    code = "expired"
    status = 400
    title = "Message expired or not yet valid"


class SchemaInvalid(MaspError):
    code = "schema-invalid"
    status = 422
    title = "Message does not match its schema"


class PurposeNotAgreed(MaspError):
    """A declared purpose that no clause names for this sender and message type: refused before
    policy (every recipient denied would look like a silent non-delivery), listing those that do."""

    code = "purpose-not-agreed"
    status = 422
    title = "No agreement covers this purpose for this message"


class PolicyRefused(MaspError):
    code = "policy-refused"
    status = 403
    title = "Refused by the data-sharing agreement"


class Unauthorized(MaspError):
    code = "unauthorized"
    status = 401
    title = "Authentication required"


class Forbidden(MaspError):
    code = "forbidden"
    status = 403
    title = "Not allowed"


class MisroutedSubmission(Forbidden):
    """An agency's AMQP submission on another agency's ingress queue (its routing key named another)."""

    def __init__(self, agency: str) -> None:
        super().__init__("published with another agency's routing key: the routing key must be "
                         "the sending agency")
        self.agency = agency


class NotFound(MaspError):
    code = "not-found"
    status = 404
    title = "Not found"


class ConfigurationError(MaspError):
    code = "configuration"
    status = 500
    title = "Configuration error"


class InvalidRange(MaspError):
    code = "invalid-range"
    status = 400
    title = "Index or tree size out of range"


class CheckpointMismatch(MaspError):
    """A checkpoint presented to the broker is not one it issued (another root or origin)."""

    code = "checkpoint-mismatch"
    status = 409
    title = "Not a checkpoint this log issued"


class CosignatureInvalid(MaspError):
    code = "cosignature-invalid"
    status = 400
    title = "Cosignature does not verify"


class LogInconsistent(MaspError):
    """The log presented a tree that does not extend one already witnessed (a fork)."""

    code = "log-inconsistent"
    status = 409
    title = "Audit log is inconsistent with a witnessed checkpoint"


class LogRollback(LogInconsistent):
    """The log presented a smaller tree than one already witnessed (e.g. a restored backup)."""

    code = "log-rollback"
    title = "Audit log was rolled back"


class DeliveryMismatch(MaspError):
    """A signed acknowledgement names another delivery than the one the request is about
    (``POST /v1/mailbox/{id}/ack``): well-formed, but it cannot be acted on as asked."""

    code = "delivery-mismatch"
    status = 422
    title = "Acknowledgement is for another delivery"


class Conflict(MaspError):
    """The request is valid but the thing it acts on is not in a state that allows it."""

    code = "conflict"
    status = 409
    title = "Not possible in the current state"


class RateLimited(MaspError):
    """An agency sent more submissions than ``MASP_RATE_LIMIT`` allows (HTTP or AMQP alike)."""

    code = "rate-limited"
    status = 429
    title = "Too many submissions"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after
