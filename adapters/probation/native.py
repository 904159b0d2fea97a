"""The probation case-management extract (CSV) read as canonical messages, and written back.

One row is one record; ``record_type`` says what it is: ``REFERRAL`` (a referral to the NHS
stalking intervention: ``intervention_referral``) or ``OMU`` (an offender-management change:
release, recall, licence conditions, address, RoSH: ``offender_management_update``).
Lists inside a cell (licence conditions, bail conditions, exclusion zones) are separated by
``|``. Dates are ``DD/MM/YYYY`` or ISO. docs/adapters.md lists every column.

Deliveries become a contact-log entry for the case: ``<type>_<delivery>.json`` with every
field received, and ``<type>_<delivery>.csv`` with one row the case system imports.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from adapters.fields import POSTCODE, Fields, drop_none, subject_ref
from adapters.native import NativeRecordInvalid, Outgoing, Problem, Rendered
from adapters.probation import AGENCY
from adapters.render import as_json, file_name, meta, name_text

CJ_STATUS = {
    "UNDER_INVESTIGATION": "under_investigation",
    "ARRESTED": "arrested",
    "BAILED": "bailed",
    "CHARGED": "charged",
    "CONVICTED": "convicted",
    "SENTENCED": "sentenced",
    "RELEASED_ON_LICENCE": "released",
    "RELEASED": "released",
    "RECALLED": "recalled",
}
ROSH = {"L": "low", "M": "medium", "H": "high", "VH": "very_high"}
SASH = {"L": "low", "M": "medium", "H": "high"}
BAIL = {
    "PRE_CHARGE": "pre_charge_police_bail",
    "POST_CHARGE": "post_charge_police_bail",
    "COURT": "court_bail",
}
SPO = {
    "APPLIED": "applied",
    "INTERIM": "interim",
    "FULL": "full",
    "VARIED": "varied",
    "DISCHARGED": "discharged",
}
ACCOMMODATION = {
    "SETTLED": "settled",
    "AP": "approved_premises",
    "TEMPORARY": "temporary",
    "HOSTEL": "hostel",
    "NFA": "no_fixed_abode",
    "CUSTODY": "custody",
}
RECALL = {
    "LICENCE_BREACH": "licence_breach",
    "VICTIM_CONTACT": "contact_with_victim",
    "FURTHER_OFFENCE": "further_offence",
    "RISK_ESCALATION": "risk_escalation",
    "FAILURE_TO_RESIDE": "failure_to_reside",
    "NON_COMPLIANCE": "non_compliance",
    "OTHER": "other",
}
CRN = r"[A-Za-z][0-9]{6}"
PNC = r"[0-9]{2}(?:[0-9]{2})?/[0-9]{1,7}[A-Za-z]"

COLUMNS = (
    "record_type",
    "masp_case_id",
    "crn",
    "pnc",
    "victim_ref",
    "forenames",
    "surname",
    "dob",
    "addr_line1",
    "addr_line2",
    "town",
    "postcode",
    "accommodation",
    "phone",
    "email",
    "effective_date",
    "cj_status",
    "release_date",
    "recall_reason",
    "licence_conditions",
    "licence_start",
    "licence_end",
    "exclusion_zones",
    "bail_type",
    "bail_granted",
    "bail_return",
    "bail_conditions",
    "spo_status",
    "spo_date",
    "spo_court",
    "rosh_level",
    "rosh_date",
    "sash",
    "sdash_yes",
    "consent_to_referral",
    "confidentiality_explained",
    "officer_name",
    "officer_role",
    "officer_team",
    "officer_phone",
    "officer_email",
    "case_holder_name",
    "case_holder_role",
    "case_holder_team",
    "case_holder_phone",
    "case_holder_email",
)


class ProbationExtract:
    """``NativeFormat`` of the probation case-management CSV extract."""

    agency = AGENCY

    def read(self, source: str, data: bytes) -> list[Outgoing]:
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError:
            raise NativeRecordInvalid(source, [Problem(source, "<file>", "not_utf8")]) from None
        reader = csv.DictReader(io.StringIO(text))
        missing = [
            c for c in ("record_type", "masp_case_id", "crn", "pnc") if c not in (reader.fieldnames or [])
        ]
        if missing:
            raise NativeRecordInvalid(source, [Problem(source, c, "column_missing") for c in missing])
        problems: list[Problem] = []
        out: list[Outgoing] = []
        for n, row in enumerate(reader, start=2):  # row 1 is the header
            crn = (row.get("crn") or "").strip()
            f = Fields(f"row {n}" + (f" (CRN {crn})" if crn else ""), row, problems)
            out += _row(f)
        if problems:
            raise NativeRecordInvalid(source, problems)
        return out

    def write(self, received: dict[str, Any]) -> list[Rendered]:
        m, fields = meta(received), received["fields"]
        entry = {
            "contact_type": "MASP_PARTNER_" + m["message_type"].upper(),
            "partnership": m,
            "headline": headline(m["message_type"], fields),
            "fields": fields,
        }
        row = {
            "delivery_id": m["delivery_id"],
            "received_at": m["received_at"],
            "from_agency": m["from_agency"],
            "message_type": m["message_type"],
            "case_id": m["case_id"],
            "crn": fields.get("perpetrator_probation_id", ""),
            "headline": entry["headline"],
            "detail_file": file_name(received, "json"),
        }
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(row), lineterminator="\n")
        writer.writeheader()
        writer.writerow(row)
        return [
            Rendered(file_name(received, "json"), as_json(entry)),
            Rendered(file_name(received, "csv"), buf.getvalue().encode()),
        ]


def _row(f: Fields) -> list[Outgoing]:
    kind = f.code(
        "record_type",
        {"REFERRAL": "intervention_referral", "OMU": "offender_management_update"},
        required=True,
    )
    case_id = f.text("masp_case_id", required=True) or ""
    pnc = f.text("pnc", required=True, pattern=PNC)
    crn = f.text("crn", required=True, pattern=CRN)
    subjects = [{"ref": subject_ref(pnc or ""), "category": "suspect"}]
    if f.has("victim_ref"):
        subjects.append({"ref": subject_ref(f.text("victim_ref") or ""), "category": "victim"})
    if kind == "intervention_referral":
        return [
            Outgoing(
                f.record,
                kind,
                drop_none(_referral(f, pnc, crn)),
                case_id,
                "intervention",
                subjects,
                sources=SOURCES,
            )
        ]
    if kind == "offender_management_update":
        return [
            Outgoing(
                f.record, kind, drop_none(_omu(f)), case_id, "risk_management", subjects, sources=SOURCES
            )
        ]
    return []


def _referral(f: Fields, pnc: str | None, crn: str | None) -> dict[str, Any]:
    forenames, surname = f.text("forenames", required=True), f.text("surname", required=True)
    given, _, middle = (forenames or "").partition(" ")
    bail = None
    if f.has("bail_type"):
        bail = drop_none(
            {
                "kind": f.code("bail_type", BAIL),
                "granted_on": f.date("bail_granted", required=True),
                "return_date": f.date("bail_return"),
                "conditions": _list(f, "bail_conditions", True),
            }
        )
    consent = f.flag("consent_to_referral", required=True)
    explained = f.flag("confidentiality_explained", required=True)
    if consent is False:
        f.problem("consent_to_referral", "perpetrator_has_not_consented")
    if explained is False:
        f.problem("confidentiality_explained", "limits_of_confidentiality_not_explained")
    return {
        "perpetrator_name": drop_none({"given": given, "middle": middle.strip() or None, "family": surname})
        if forenames and surname
        else None,
        "perpetrator_date_of_birth": f.date("dob", required=True),
        "perpetrator_police_id": pnc,
        "perpetrator_probation_id": crn,
        "perpetrator_address": _address(f),
        "perpetrator_contact": drop_none({"phone": f.text("phone"), "email": f.text("email")}) or None,
        "perpetrator_accommodation": _accommodation(f),
        "cj_status": f.code("cj_status", CJ_STATUS, required=True),
        "bail_conditions": bail,
        "orders": _orders(f) or None,
        "sdash_yes_count": f.integer("sdash_yes", high=11),
        "sash_concern_level": f.code("sash", SASH),
        "rosh_level": f.code("rosh_level", ROSH),
        "risk_assessed_on": f.date("rosh_date"),
        "perpetrator_consents_to_referral": consent,
        "confidentiality_limits_acknowledged": explained,
        "referrer": _officer(f, "officer", required=True)
        | ({"case_holder": _officer(f, "case_holder", required=True)} if f.has("case_holder_name") else {}),
    }


def _omu(f: Fields) -> dict[str, Any]:
    zones = [{"description": z, "imposed_by": "licence"} for z in _list(f, "exclusion_zones")]
    return {
        "effective_date": f.date("effective_date", required=True),
        "cj_status": f.code("cj_status", CJ_STATUS),
        "release_date": f.date("release_date"),
        "recall_reason": f.code("recall_reason", RECALL),
        "orders": _orders(f) or None,
        "exclusion_zones": zones or None,
        "perpetrator_address": _address(f),
        "perpetrator_accommodation": _accommodation(f),
        "rosh_level": f.code("rosh_level", ROSH),
        "risk_assessed_on": f.date("rosh_date"),
    }


def _list(f: Fields, column: str, required: bool = False) -> list[str]:
    return [v.strip() for v in (f.text(column, required=required) or "").split("|") if v.strip()]


def _address(f: Fields) -> dict[str, Any] | None:
    if not f.has("addr_line1"):
        return None
    lines = [v for v in (f.text("addr_line1"), f.text("addr_line2")) if v]
    return {
        "lines": lines,
        "town": f.text("town", required=True),
        "postcode": f.text("postcode", required=True, pattern=POSTCODE),
    }


def _accommodation(f: Fields) -> dict[str, Any] | None:
    kind = f.code("accommodation", ACCOMMODATION)
    return {"kind": kind} if kind else None


def _orders(f: Fields) -> list[dict[str, Any]]:
    orders = []
    conditions = _list(f, "licence_conditions")
    if conditions:
        orders.append(
            drop_none(
                {
                    "kind": "licence_conditions",
                    "status": "full",
                    "status_date": f.date("licence_start", required=True),
                    "made_on": f.date("licence_start"),
                    "expires_on": f.date("licence_end"),
                    "conditions": conditions,
                }
            )
        )
    if f.has("spo_status"):
        orders.append(
            drop_none(
                {
                    "kind": "spo" if f.text("spo_status") == "FULL" else "interim_spo",
                    "status": f.code("spo_status", SPO),
                    "status_date": f.date("spo_date", required=True),
                    "court": f.text("spo_court"),
                }
            )
        )
    return orders


def _officer(f: Fields, prefix: str, required: bool = False) -> dict[str, Any]:
    return drop_none(
        {
            "name": f.text(f"{prefix}_name", required=required),
            "role": f.text(f"{prefix}_role", required=required),
            "agency": AGENCY,
            "team": f.text(f"{prefix}_team"),
            "phone": f.text(f"{prefix}_phone"),
            "email": f.text(f"{prefix}_email"),
        }
    )


def headline(masp_type: str, f: dict[str, Any]) -> str:
    """One line for the contact log: what happened, never who the victim is or where."""
    if masp_type == "intervention_status_update":
        return (
            f"Intervention {f.get('intervention_stage')}: attended {f.get('sessions_attended', '?')} "
            f"of {f.get('sessions_offered', '?')}, engagement {f.get('engagement', 'not rated')}"
        )
    if masp_type == "risk_concern_alert":
        return f"RISK ALERT ({f.get('disclosure_urgency')}): {', '.join(f.get('disclosure_kinds', []))}"
    if masp_type == "cj_status_update":
        orders = ", ".join(f"{o['kind']} {o['status']}" for o in f.get("orders", []))
        return f"CJ status {f.get('cj_status')} from {f.get('effective_date')}" + (
            f"; {orders}" if orders else ""
        )
    if masp_type == "case_referral":
        return f"Partnership referral: {name_text(f.get('perpetrator_name'))}, CJ status {f.get('cj_status')}"
    return masp_type.replace("_", " ")


#: canonical field -> the extract column it comes from, for reports
SOURCES = {
    "perpetrator_name": "forenames/surname",
    "perpetrator_date_of_birth": "dob",
    "perpetrator_police_id": "pnc",
    "perpetrator_probation_id": "crn",
    "perpetrator_address": "addr_line1/town/postcode",
    "perpetrator_contact": "phone/email",
    "perpetrator_accommodation": "accommodation",
    "cj_status": "cj_status",
    "bail_conditions": "bail_*",
    "orders": "licence_*/spo_*",
    "sdash_yes_count": "sdash_yes",
    "sash_concern_level": "sash",
    "rosh_level": "rosh_level",
    "risk_assessed_on": "rosh_date",
    "perpetrator_consents_to_referral": "consent_to_referral",
    "confidentiality_limits_acknowledged": "confidentiality_explained",
    "referrer": "officer_*/case_holder_*",
    "effective_date": "effective_date",
    "release_date": "release_date",
    "recall_reason": "recall_reason",
    "exclusion_zones": "exclusion_zones",
}
