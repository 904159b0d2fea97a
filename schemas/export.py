"""JSON Schema files for agencies that work in other languages.

    python -m schemas.export           # (re)write schemas/json/
    python -m schemas.export --check   # exit 1 if the committed files are stale

Each body schema carries its data classes as ``x-masp-data-class`` on every top-level
property, so a non-Python adapter can tell what it is sending.

A recipient validates what it receives against the ``received`` variant of its type: the
broker discloses only what the data-sharing agreement lets each recipient see, so any field
may be withheld and none is required (``<type>.v1.received.schema.json``). The broker also
serves a narrower one per recipient, listing only the fields the loaded agreements could
ever disclose to it (``GET /v1/schemas/{masp_type}``, built by ``received_schema``).
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

from . import MESSAGE_TYPES, SCHEMA_VERSION
from ._base import DATA_CLASS_KEY

SCHEMA_DIR = Path(__file__).parent / "json"
ID_BASE = "https://masp.example/schemas/"
DIALECT = "https://json-schema.org/draft/2020-12/schema"


def schema_filename(masp_type: str) -> str:
    return f"{masp_type}.v{SCHEMA_VERSION}.schema.json"


def json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema of each body type (a copy: callers may change it)."""
    return copy.deepcopy(_json_schemas())


@cache
def _json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema of each body type, with ``$id`` and ``title`` set."""
    out: dict[str, dict[str, Any]] = {}
    for masp_type, model in MESSAGE_TYPES.items():
        name = schema_filename(masp_type)
        schema = model.model_json_schema()
        for prop, spec in schema["properties"].items():
            if DATA_CLASS_KEY not in spec:
                raise TypeError(f"{masp_type}.{prop} has no data class")
        schema.update(
            {
                "$schema": DIALECT,
                "$id": ID_BASE + name,
                "title": f"MASP {masp_type} body, schema v{SCHEMA_VERSION}",
                "x-masp-type": masp_type,
                "x-masp-schema": SCHEMA_VERSION,
            }
        )
        out[name] = schema
    return out


def received_filename(masp_type: str) -> str:
    return f"{masp_type}.v{SCHEMA_VERSION}.received.schema.json"


def received_schema(masp_type: str, fields: Iterable[str] | None = None,
                    recipient: str | None = None) -> dict[str, Any]:
    """The body schema of ``masp_type`` as a recipient gets it: nothing required, nothing
    outside the schema, and, given ``fields``, only those properties (what a recipient may
    be shown under the agreements); every property keeps its own schema and data class."""
    schema = copy.deepcopy(_json_schemas()[schema_filename(masp_type)])
    schema.pop("required", None)
    schema["additionalProperties"] = False
    if fields is not None:
        keep = set(fields)
        schema["properties"] = {k: v for k, v in schema["properties"].items() if k in keep}
        # and only the definitions those properties use: the shapes of fields withheld from
        # this recipient (a victim's exclusion zones, for nhs) are not its business either
        used = _referenced_defs(schema["properties"], schema.get("$defs", {}))
        if "$defs" in schema:
            schema["$defs"] = {k: v for k, v in schema["$defs"].items() if k in used}
            if not schema["$defs"]:
                del schema["$defs"]
    name = received_filename(masp_type)
    schema.update({"$id": ID_BASE + name,
                   "title": f"MASP {masp_type} body as received (any field may be withheld), "
                            f"schema v{SCHEMA_VERSION}"})
    if recipient is not None:
        schema["$id"] = f"{ID_BASE}{recipient}/{name}"
        schema["title"] = f"MASP {masp_type} body as {recipient} may receive it, schema v{SCHEMA_VERSION}"
        schema["x-masp-recipient"] = recipient
    return schema


def _referenced_defs(value: Any, defs: dict[str, Any]) -> set[str]:
    """Names of the ``$defs`` reachable through ``#/$defs/…`` references from ``value``."""
    found: set[str] = set()
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, dict):
            ref = item.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                name = ref.removeprefix("#/$defs/")
                if name not in found and name in defs:
                    found.add(name)
                    pending.append(defs[name])
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return found


def received_schemas() -> dict[str, dict[str, Any]]:
    """File name -> the ``received`` variant of each body type (every property, none required)."""
    return {received_filename(t): received_schema(t) for t in MESSAGE_TYPES}


def all_schemas() -> dict[str, dict[str, Any]]:
    return {**json_schemas(), **received_schemas()}


def render(schema: dict[str, Any]) -> str:
    """The committed text of a schema: sorted keys, indent 2, trailing newline."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def stale_files(directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of files that are missing, differ from the models, or are left over."""
    expected = {name: render(schema) for name, schema in all_schemas().items()}
    stale = [
        name
        for name, text in expected.items()
        if not (directory / name).is_file() or (directory / name).read_text("utf-8") != text
    ]
    present = {p.name for p in directory.glob("*.schema.json")} if directory.is_dir() else set()
    stale.extend(sorted(present - expected.keys()))
    return stale


def write(directory: Path = SCHEMA_DIR) -> list[str]:
    """Write every schema, remove leftovers; return the names written."""
    directory.mkdir(parents=True, exist_ok=True)
    schemas = all_schemas()
    for name, schema in schemas.items():
        (directory / name).write_text(render(schema), encoding="utf-8")
    for leftover in directory.glob("*.schema.json"):
        if leftover.name not in schemas:
            leftover.unlink()
    return sorted(schemas)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m schemas.export", description=__doc__)
    parser.add_argument("--check", action="store_true", help="exit 1 if files are stale")
    parser.add_argument("--out", type=Path, default=SCHEMA_DIR, help="target directory")
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_files(args.out)
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        if stale:
            print("run: python -m schemas.export", file=sys.stderr)
            return 1
        return 0
    for name in write(args.out):
        print(args.out / name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
