"""The seam between an agency's own records and canonical messages.

Each agency package implements ``NativeFormat``: ``read`` turns one native file (an RMS
export, a case-management CSV, a FHIR Bundle, an intake record) into the canonical
messages it means, and ``write`` turns one verified delivery into the files the agency's
system imports. ``prepare`` is the only way a file reaches the runtime: it checks every
record of the file, natively and against the canonical schema, before anything is sent, so
a file with one bad record sends nothing and the report names each record and field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from pydantic import ValidationError

from broker.errors import MaspError
from schemas import SCHEMA_VERSION, SchemaInvalid, Subject, validate_body


@dataclass(frozen=True)
class Outgoing:
    """One canonical message a native record becomes, with its envelope."""

    record: str  # names the native record in reports: "row 3 (CRN X482913)", "event 2"
    masp_type: str
    body: dict[str, Any]
    case_id: str
    purpose: str
    subjects: list[dict[str, str]]
    consent_ref: str | None = None
    override: dict[str, Any] | None = None
    #: canonical top-level field -> the native field it came from, for reports
    sources: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Problem:
    """Why one field of one native record was refused. Never quotes the value."""

    record: str
    field: str
    reason: str

    def line(self) -> str:
        return f"{self.record}: {self.field}: {self.reason}"


class NativeRecordInvalid(MaspError):
    """A native file with at least one record that cannot be sent; nothing of it was sent."""

    code = "native-record-invalid"
    status = 422
    title = "Native record refused"

    def __init__(self, source: str, problems: list[Problem]) -> None:
        self.source = source
        self.problems = problems
        first = problems[0].line() if problems else "no records"
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        super().__init__(f"{source}: nothing sent; {first}{more}", problems=[p.__dict__ for p in problems])

    def report(self) -> str:
        lines = [f"{self.source}: refused, nothing of this file was sent"]
        lines += [f"  {p.line()}" for p in self.problems]
        return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Rendered:
    """A file for the agency's system: a name (unique per delivery) and its bytes."""

    name: str
    data: bytes


class NativeFormat(Protocol):
    """An agency's own record format, both ways."""

    agency: str

    def read(self, source: str, data: bytes) -> list[Outgoing]:
        """Every message the file means, in order; ``NativeRecordInvalid`` naming each problem."""
        ...

    def write(self, received: dict[str, Any]) -> list[Rendered]:
        """The agency's files for one verified delivery (``AdapterRuntime`` view shape).

        Must be deterministic per delivery id: a redelivery rewrites the same files.
        """
        ...


def check_outgoing(outgoing: list[Outgoing]) -> list[Problem]:
    """Every canonical-schema problem of every message, mapped back to native field names."""
    problems: list[Problem] = []
    for out in outgoing:
        try:
            validate_body(out.masp_type, SCHEMA_VERSION, out.body)
        except SchemaInvalid as exc:
            for path, kind in exc.errors:
                top = path.split(".", 1)[0].split("[", 1)[0]
                native = out.sources.get(top)
                where = f"{native} ({path})" if native else path
                problems.append(Problem(out.record, where, kind))
        for i, subject in enumerate(out.subjects):
            try:
                Subject.model_validate(subject)
            except ValidationError as exc:
                kinds = sorted({str(e["type"]) for e in exc.errors(include_input=False)})
                problems.append(Problem(out.record, f"subjects[{i}]", ",".join(kinds)))
    return problems


def prepare(fmt: NativeFormat, source: str, data: bytes) -> list[Outgoing]:
    """Read and check the whole file; raise ``NativeRecordInvalid`` before anything is sent."""
    outgoing = fmt.read(source, data)
    problems = check_outgoing(outgoing)
    if problems:
        raise NativeRecordInvalid(source, problems)
    if not outgoing:
        raise NativeRecordInvalid(source, [Problem(source, "<file>", "no_records")])
    return outgoing
