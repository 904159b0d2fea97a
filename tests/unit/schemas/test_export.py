"""The JSON Schema files under schemas/json/: complete, classified, and not stale."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from schemas import DATA_CLASS_KEY, MESSAGE_TYPES, DataClass, data_classes
from schemas.export import (
    SCHEMA_DIR,
    all_schemas,
    json_schemas,
    main,
    received_schema,
    received_schemas,
    render,
    stale_files,
)

VALID_CLASSES = {c.value for c in DataClass}


def test_committed_schemas_match_the_models() -> None:
    stale = stale_files(SCHEMA_DIR)
    assert not stale, (
        f"schemas/json/ is stale ({', '.join(stale)}): run `python -m schemas.export` "
        "and commit the result"
    )


def test_one_schema_per_message_type() -> None:
    schemas = json_schemas()
    assert sorted(schemas) == sorted(f"{t}.v1.schema.json" for t in MESSAGE_TYPES)
    for name, schema in schemas.items():
        masp_type = name.split(".", 1)[0]
        assert schema["$id"] == f"https://masp.example/schemas/{name}"
        assert masp_type in schema["title"]
        assert schema["x-masp-type"] == masp_type
        assert schema["x-masp-schema"] == "1"
        assert schema["additionalProperties"] is False


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_every_property_carries_a_valid_data_class(name: str) -> None:
    schema = json_schemas()[name]
    masp_type = schema["x-masp-type"]
    props = schema["properties"]
    assert props
    for prop, spec in props.items():
        assert spec.get(DATA_CLASS_KEY) in VALID_CLASSES, f"{name}: {prop}"
        assert spec[DATA_CLASS_KEY] == data_classes(masp_type)[prop].value
        assert spec.get("description"), f"{name}: {prop} has no description"


@pytest.mark.parametrize("name", sorted(json_schemas()))
def test_committed_files_carry_data_classes(name: str) -> None:
    schema = json.loads((SCHEMA_DIR / name).read_text("utf-8"))
    assert all(spec.get(DATA_CLASS_KEY) in VALID_CLASSES for spec in schema["properties"].values())


def test_nested_values_carry_no_data_class() -> None:
    for schema in json_schemas().values():
        for definition in schema.get("$defs", {}).values():
            for spec in definition.get("properties", {}).values():
                assert DATA_CLASS_KEY not in spec


def test_export_writes_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--out", str(tmp_path)]) == 0
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(all_schemas()) and len(written) == 2 * len(json_schemas())
    text = (tmp_path / "case_referral.v1.schema.json").read_text("utf-8")
    assert text.endswith("}\n")
    assert text == render(json_schemas()["case_referral.v1.schema.json"])
    assert main(["--check", "--out", str(tmp_path)]) == 0

    (tmp_path / "case_closure.v1.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "old_type.v1.schema.json").write_text("{}\n", encoding="utf-8")
    capsys.readouterr()
    assert main(["--check", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "case_closure.v1.schema.json" in err
    assert "old_type.v1.schema.json" in err
    assert "python -m schemas.export" in err

    assert main(["--out", str(tmp_path)]) == 0
    assert not (tmp_path / "old_type.v1.schema.json").exists()
    assert stale_files(tmp_path) == []


def test_received_variants_require_nothing_and_admit_nothing_new() -> None:
    """What a recipient gets may lack any field, never has one outside the schema."""
    for masp_type in MESSAGE_TYPES:
        body = json_schemas()[f"{masp_type}.v1.schema.json"]
        got = received_schemas()[f"{masp_type}.v1.received.schema.json"]
        assert "required" not in got and got["additionalProperties"] is False
        assert got["properties"] == body["properties"] and got["$id"].endswith(".received.schema.json")
    narrowed = received_schema("case_referral", {"perpetrator_name", "offence_codes"}, recipient="nhs")
    assert set(narrowed["properties"]) == {"perpetrator_name", "offence_codes"}
    assert narrowed["x-masp-recipient"] == "nhs" and "/nhs/" in narrowed["$id"]
