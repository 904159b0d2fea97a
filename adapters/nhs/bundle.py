"""Deliveries to the NHS team as FHIR R4 transaction Bundles its record system can post.

An ``intervention_referral`` becomes a Patient (PNC id and CRN as identifiers, name, date
of birth, address, telecom) and a ServiceRequest for the psychologist-led stalking
intervention, identified by the partnership case id so later Tasks and Communications can
refer back to it. Every other delivery (a minimised case referral, a CJ status update, an
offender-management update, a consent change) becomes a Communication about the case with
one payload line per field received. Built with the ``fhir.resources`` models, so what is
written is valid FHIR.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fhir.resources.R4B.bundle import Bundle

from adapters.native import Rendered
from adapters.render import address_text, file_name, meta, name_text

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
PNC_SYSTEM = "https://masp.example/Id/pnc"
CRN_SYSTEM = "https://masp.example/Id/probation-crn"
CASE_SYSTEM = "https://masp.example/Id/case"
MESSAGE_SYSTEM = "https://masp.example/Id/message"
PLSI = "Psychologist-led stalking intervention (PLSI)"


def render(received: dict[str, Any]) -> list[Rendered]:
    m, fields = meta(received), received["fields"]
    ns = uuid.UUID(int=int(uuid.UUID(str(m["delivery_id"]))))
    patient_url = f"urn:uuid:{uuid.uuid5(ns, 'patient')}"
    entries = []
    patient = _patient(fields)
    if patient is not None:
        entries.append(_entry(patient_url, patient))
    if m["message_type"] == "intervention_referral":
        entries.append(
            _entry(f"urn:uuid:{uuid.uuid5(ns, 'request')}", _service_request(m, fields, patient_url))
        )
    else:
        entries.append(
            _entry(
                f"urn:uuid:{uuid.uuid5(ns, 'communication')}",
                _communication(m, fields, patient_url if patient else None),
            )
        )
    bundle = Bundle.model_validate(
        {
            "resourceType": "Bundle",
            "type": "transaction",
            "timestamp": m["received_at"],
            "identifier": {"system": MESSAGE_SYSTEM, "value": m["delivery_id"]},
            "entry": entries,
        }
    )
    data = json.dumps(json.loads(bundle.model_dump_json(exclude_none=True)), indent=2) + "\n"
    return [Rendered(file_name(received, "fhir.json"), data.encode())]


def _entry(url: str, resource: dict[str, Any]) -> dict[str, Any]:
    return {
        "fullUrl": url,
        "resource": resource,
        "request": {"method": "POST", "url": resource["resourceType"]},
    }


def _patient(f: dict[str, Any]) -> dict[str, Any] | None:
    if "perpetrator_name" not in f:
        return None
    name = f["perpetrator_name"]
    identifiers = [
        {"system": system, "value": f[key]}
        for key, system in (("perpetrator_police_id", PNC_SYSTEM), ("perpetrator_probation_id", CRN_SYSTEM))
        if key in f
    ]
    patient: dict[str, Any] = {
        "resourceType": "Patient",
        "identifier": identifiers,
        "name": [
            {
                "use": "official",
                "family": name["family"],
                "given": [name["given"], *([name["middle"]] if name.get("middle") else [])],
            }
        ],
    }
    if "perpetrator_date_of_birth" in f:
        patient["birthDate"] = f["perpetrator_date_of_birth"]
    if "perpetrator_address" in f:
        a = f["perpetrator_address"]
        patient["address"] = [
            {"use": "home", "line": a["lines"], "city": a["town"], "postalCode": a["postcode"]}
        ]
    contact = f.get("perpetrator_contact") or {}
    telecom = [{"system": s, "value": contact[s]} for s in ("phone", "email") if s in contact]
    if telecom:
        patient["telecom"] = telecom
    return patient


def _service_request(m: dict[str, Any], f: dict[str, Any], patient_url: str) -> dict[str, Any]:
    referrer = f.get("referrer", {})
    holder = referrer.get("case_holder") or {}
    yes = {True: "yes", False: "no", None: "no"}
    notes = [
        f"Criminal-justice status: {f.get('cj_status')}",
        _risk_line(f),
        f"Perpetrator consents to referral: {yes[f.get('perpetrator_consents_to_referral')]}; "
        f"confidentiality limits explained: {yes[f.get('confidentiality_limits_acknowledged')]}",
    ]
    if "bail_conditions" in f:
        notes.append("Bail conditions: " + "; ".join(f["bail_conditions"]["conditions"]))
    for order in f.get("orders", []):
        notes.append(
            f"Order: {order['kind']} {order['status']} since {order['status_date']}"
            + (": " + "; ".join(order["conditions"]) if order.get("conditions") else "")
        )
    if holder:
        notes.append(
            f"Case holder: {holder.get('name')}, {holder.get('role')} ({holder.get('agency')}), "
            f"{holder.get('phone') or holder.get('email')}"
        )
    return {
        "resourceType": "ServiceRequest",
        "status": "active",
        "intent": "order",
        "identifier": [
            {"system": CASE_SYSTEM, "value": m["case_id"]},
            {"system": MESSAGE_SYSTEM, "value": m["message_id"]},
        ],
        "code": {"text": PLSI},
        "subject": {"reference": patient_url},
        "authoredOn": m["received_at"],
        "requester": {
            "display": f"{referrer.get('name')}, {referrer.get('role')} ({referrer.get('agency')})"
        },
        "note": [{"text": n} for n in notes if n],
    }


def _risk_line(f: dict[str, Any]) -> str | None:
    parts = [
        f"RoSH {f['rosh_level']}" if "rosh_level" in f else None,
        f"SASH {f['sash_concern_level']}" if "sash_concern_level" in f else None,
        f"S-DASH {f['sdash_yes_count']}/11" if "sdash_yes_count" in f else None,
    ]
    shown = [p for p in parts if p]
    return "Risk: " + ", ".join(shown) if shown else None


def _communication(m: dict[str, Any], f: dict[str, Any], patient_url: str | None) -> dict[str, Any]:
    lines = [f"{name}: {_value(value)}" for name, value in f.items()]
    comm: dict[str, Any] = {
        "resourceType": "Communication",
        "status": "completed",
        "identifier": [
            {"system": CASE_SYSTEM, "value": m["case_id"]},
            {"system": MESSAGE_SYSTEM, "value": m["message_id"]},
        ],
        "category": [
            {
                "coding": [
                    {"system": "https://masp.example/CodeSystem/message-type", "code": m["message_type"]}
                ],
                "text": "MASP partner update",
            }
        ],
        "received": m["received_at"],
        "sender": {"display": m["from_agency"]},
        "payload": [{"contentString": line} for line in lines]
        or [{"contentString": "(no fields disclosed)"}],
    }
    if patient_url:
        comm["subject"] = {"reference": patient_url}
    return comm


def _value(value: Any) -> str:
    if isinstance(value, dict) and "family" in value:
        return name_text(value) or ""
    if isinstance(value, dict) and "postcode" in value:
        return address_text(value) or ""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)
