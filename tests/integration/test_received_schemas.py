"""What a recipient may validate its deliveries against: the minimised body, not the full one.

nhs legitimately receives a case referral without its referrer (which the full schema
requires) and without a single victim field: both the published ``received`` variant and
the schema the broker serves to nhs accept what it got, and the latter names no victim field.
"""

from __future__ import annotations

import jsonschema
import pytest

from adapters.runtime import wait_for
from schemas import data_classes
from schemas._base import NEVER_TO_NHS
from schemas.export import SCHEMA_DIR, json_schemas, received_schemas
from tests.integration.conftest import Env
from tests.integration.delivery_support import agency, refer


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_nhs_validates_what_it_received_against_its_own_schema(env: Env) -> None:
    mid = await refer(env)
    assert await wait_for(lambda: bool(env.adapters["nhs"].received()), timeout=30)
    [got] = [r for r in env.adapters["nhs"].received() if r["delivery"]["message_id"] == mid]
    fields = got["fields"]

    full = json_schemas()["case_referral.v1.schema.json"]
    with pytest.raises(jsonschema.ValidationError):  # the full schema requires the referrer
        jsonschema.validate(fields, full)
    jsonschema.validate(fields, received_schemas()["case_referral.v1.received.schema.json"])
    assert (SCHEMA_DIR / "case_referral.v1.received.schema.json").is_file()

    served = await env.http.get("/v1/schemas/case_referral", headers=agency(env, "nhs"))
    assert served.status_code == 200
    schema = served.json()
    jsonschema.validate(fields, schema)
    classes = data_classes("case_referral")
    assert not any(classes[name] in NEVER_TO_NHS for name in schema["properties"])
    assert "required" not in schema and schema["x-masp-recipient"] == "nhs"
    with pytest.raises(jsonschema.ValidationError):  # a victim's address would not pass
        jsonschema.validate({**fields, "victim_address": {"lines": ["1 Any Street"], "postcode": "ZZ1 1ZZ"}},
                            schema)

    probation = (await env.http.get("/v1/schemas/case_referral", headers=agency(env, "probation"))).json()
    assert "victim_address" in probation["properties"]  # probation may be shown it
    missing = await env.http.get("/v1/schemas/no_such_type", headers=agency(env, "nhs"))
    assert missing.status_code == 404 and missing.json()["code"] == "not-found"
