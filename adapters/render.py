"""What every agency's rendering of a delivery starts from: who sent what, under which clause.

The ``received`` view is the one ``AdapterRuntime`` hands over: ``delivery`` (the broker's
signed token), ``message`` (the sender's clear envelope) and ``fields`` (the disclosed body).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any


def meta(received: dict[str, Any]) -> dict[str, Any]:
    """The partnership metadata of a delivery, in the words an agency's system files it under."""
    token, message = received["delivery"], received["message"]
    dsa = token.get("dsa") or {}
    return {
        "delivery_id": token["jti"],
        "message_id": token["message_id"],
        "from_agency": token["sender"],
        "message_type": token["masp_type"],
        "case_id": message.get("case_id"),
        "purpose": token.get("purpose"),
        "dsa_clause": dsa.get("clause"),
        "dsa": f"{dsa.get('id')} v{dsa.get('version')}",
        "lawful_basis": token.get("lawful_basis"),
        "withheld_fields": token.get("withheld", 0),
        "retention_until": token.get("retention_until"),
        "received_at": datetime.fromtimestamp(int(token["iat"]), UTC).isoformat(),
        "subjects": message.get("subjects", []),
        "override": bool(token.get("override")),
    }


def file_name(received: dict[str, Any], suffix: str) -> str:
    """``<masp_type>_<delivery id>.<suffix>``: unique per delivery, so a redelivery overwrites."""
    token = received["delivery"]
    return f"{token['masp_type']}_{token['jti']}.{suffix}"


def as_json(doc: dict[str, Any]) -> bytes:
    return (json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=False) + "\n").encode()


def name_text(name: object) -> str | None:
    if not isinstance(name, dict):
        return None
    return " ".join(str(name[k]) for k in ("given", "middle", "family") if name.get(k))


def address_text(addr: object) -> str | None:
    if not isinstance(addr, dict):
        return None
    parts = [*addr.get("lines", []), addr.get("town"), addr.get("county"), addr.get("postcode")]
    return ", ".join(str(p) for p in parts if p)
