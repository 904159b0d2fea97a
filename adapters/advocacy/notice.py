"""Deliveries to the advocacy service as a notification an advocate reads (Markdown).

The headline says what changed for the victim's safety: a release, bail set or changed, an
SPO granted or breached, a new referral. Then the detail the DSA let through, then what
to do next, and last the partnership footnote (sender, clause, fields withheld).
"""

from __future__ import annotations

from typing import Any

from adapters.native import Rendered
from adapters.render import address_text, file_name, meta, name_text


def render(received: dict[str, Any]) -> list[Rendered]:
    m, f = meta(received), received["fields"]
    title, actions = headline(m["message_type"], f)
    lines = [
        f"# {title}",
        "",
        f"Case {m['case_id']} - from {m['from_agency']} - received {m['received_at']}",
        "",
    ]
    lines += _body(m["message_type"], f)
    if actions:
        lines += ["", "## What to do", *[f"- {a}" for a in actions]]
    lines += [
        "",
        "---",
        f"Delivery {m['delivery_id']} ({m['message_type']}) under DSA {m['dsa']} clause "
        f"{m['dsa_clause']}; {m['withheld_fields']} field(s) withheld from this service.",
        "",
    ]
    return [Rendered(file_name(received, "md"), "\n".join(lines).encode())]


def headline(masp_type: str, f: dict[str, Any]) -> tuple[str, list[str]]:
    """The notification's title and the advocate's next steps."""
    orders = f.get("orders", [])
    statuses = {o.get("status") for o in orders}
    if "breached" in statuses:
        return "URGENT: protective order breached", [
            "Contact the victim at a safe time today; review her safety plan.",
            "Tell her what the police have done (status above) and record her views on bail.",
        ]
    if masp_type == "victim_advocacy_referral":
        return "New referral: victim consents to advocacy support", [
            "Make first contact by her preferred method, inside her safe contact times.",
            "Complete the intake risk review and a safety plan.",
        ]
    if f.get("cj_status") == "released":
        return "Release: the perpetrator has been released", [
            "Tell the victim before the release date if possible; review her safety plan."
        ]
    if statuses & {"full", "interim"}:
        return "Protective order granted", ["Tell the victim the conditions and how to report a breach."]
    if "bail_conditions" in f:
        return "Bail conditions set or changed", [
            "Tell the victim the conditions that protect her and how to report a breach.",
            f"Next hearing: {f['next_hearing']['on']} at {f['next_hearing']['court']}."
            if "next_hearing" in f
            else "Ask the officer in case for the next hearing date.",
        ]
    if masp_type == "cj_status_update":
        return f"Criminal-justice update: {f.get('cj_status', 'changed')}", [
            "Update the victim at a safe time."
        ]
    return f"Partnership update: {masp_type.replace('_', ' ')}", []


def _body(masp_type: str, f: dict[str, Any]) -> list[str]:
    out: list[str] = []
    if "victim_name" in f:
        out.append(f"**Client:** {name_text(f['victim_name'])}")
    if "perpetrator_name" in f:
        out.append(f"**Perpetrator:** {name_text(f['perpetrator_name'])}")
    if "cj_status" in f:
        out.append(
            f"**Criminal-justice status:** {f['cj_status']}"
            + (f" (from {f['effective_date']})" if "effective_date" in f else "")
        )
    if "bail_conditions" in f:
        bail = f["bail_conditions"]
        out += [
            "",
            f"## Bail conditions ({bail['kind'].replace('_', ' ')}, granted {bail['granted_on']})",
            *[f"- {c}" for c in bail["conditions"]],
        ]
    for order in f.get("orders", []):
        out += [
            "",
            f"## Order: {order['kind'].replace('_', ' ')} - {order['status']} ({order['status_date']})",
        ]
        if order.get("breach"):
            out.append(f"Breach on {order['breach']['occurred_on']}: {order['breach']['summary']}")
        out += [f"- {c}" for c in order.get("conditions", [])]
    contact = [
        (label, f[key]) for key, label in (("victim_phone", "Phone"), ("victim_email", "Email")) if key in f
    ]
    if "victim_address" in f or contact or "victim_safe_contact_times" in f:
        out += ["", "## Contact (keep confidential)"]
        if "victim_address" in f:
            out.append(f"- Address: {address_text(f['victim_address'])}")
        out += [f"- {label}: {value}" for label, value in contact]
        for w in f.get("victim_safe_contact_times", []):
            out.append(
                f"- Safe times: {', '.join(w['days'])} {w['start']}-{w['end']} by "
                f"{', '.join(w['methods'])}" + (f" ({w['note']})" if w.get("note") else "")
            )
    if "victim_views" in f:
        v = f["victim_views"]
        out += ["", f"## Her views (recorded {v['recorded_on']})", v["summary"]]
        out += [
            f"- {k.removeprefix('on_').replace('_', ' ')}: {v[k]}"
            for k in ("on_orders", "on_bail", "on_contact")
            if k in v
        ]
    risk = [
        f"S-DASH {f['sdash_yes_count']}/11" if "sdash_yes_count" in f else "",
        f"SASH {f['sash_concern_level']}" if "sash_concern_level" in f else "",
    ]
    if any(risk):
        out += ["", "**Risk screening:** " + ", ".join(r for r in risk if r)]
    for key in ("behaviour_summary", "event_summary"):
        if key in f:
            out += ["", f[key]]
    return out
