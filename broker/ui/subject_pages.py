"""The subject-access report: every disclosure about a person, with the originating agency
of each item, on screen and exported as CSV or PDF.

The lookup is the API's (``disclosures_about``: recorded as ``audit_viewed`` under the
keyed pseudonym before anything is shown); an export is recorded as ``audit_exported`` too.
The identifier is POSTed, never put in a URL, and does not appear in the exported files:
the report names the person by pseudonym, the officer adds the name when sending it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response

from broker.api import audit_routes
from broker.api.auth import Principal, require_role
from broker.audit.entry import Actor, AuditEntry, EntryKind, SubjectRef
from broker.store.audit_queries import csv_cell, csv_text
from broker.ui.web import ConsoleRoute, FormInvalid, checked_form, exchange_of, finish, render, viewer

router = APIRouter(prefix="/ui/ig/subject", route_class=ConsoleRoute, include_in_schema=False)
Viewer = Annotated[Principal, Depends(viewer)]
COLUMNS = ("seq", "at", "originating_agency", "recipient", "masp_type", "case_id", "purpose", "dsa",
           "clause", "lawful_basis", "categories", "fields_disclosed", "fields_withheld",
           "retention_until", "leaf_hash")


def _cells(d: dict[str, Any]) -> list[str]:
    dsa = d.get("dsa") or {}
    values: list[object] = [
        d["seq"], d["at"], d["originating_agency"], d["recipient"], d["masp_type"], d["case_id"],
        d["purpose"], f"{dsa.get('id')} v{dsa.get('version')}" if dsa else None, dsa.get("clause"),
        d["lawful_basis"], ";".join(d["categories"]), ";".join(d["fields_disclosed"]),
        ";".join(d["fields_withheld"]), d["retention_until"], d["leaf_hash"]]
    return [csv_cell(v) for v in values]


def report_csv(found: dict[str, Any]) -> str:
    return csv_text([list(COLUMNS), *(_cells(d) for d in found["disclosures"])])


def _latin1(text: object) -> str:
    return str("" if text is None else text).encode("latin-1", "replace").decode("latin-1")


def report_pdf(found: dict[str, Any], generated: str) -> bytes:
    """A4 landscape: a heading, then one row per disclosure (the main columns)."""
    from fpdf import FPDF  # imported on first use: it is slow to import and rarely needed

    pdf = FPDF(orientation="L", format="A4")
    pdf.set_title("Subject access report")
    pdf.set_creator("MASP Exchange")
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 14)
    pdf.cell(0, 9, "Subject access report: disclosures about one person", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=9)
    for line in (f"Subject pseudonym: {found['pseudonym']}", f"Generated: {generated}",
                 f"Disclosures: {len(found['disclosures'])}; this lookup is audit entry "
                 f"{found['audit_seq']}"):
        pdf.cell(0, 5, _latin1(line), new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", size=7)
    head = ("Seq", "When", "Originating agency", "Recipient", "Type", "Purpose", "Clause",
            "Lawful basis", "Fields disclosed", "Fields withheld")
    with pdf.table(col_widths=(8, 24, 18, 16, 22, 20, 26, 34, 60, 40), text_align="LEFT") as table:
        table.row(head)
        for d in found["disclosures"]:
            dsa = d.get("dsa") or {}
            table.row([_latin1(v) for v in (
                d["seq"], d["at"][:19], d["originating_agency"], d["recipient"], d["masp_type"],
                d["purpose"], dsa.get("clause"), d["lawful_basis"], ", ".join(d["fields_disclosed"]),
                ", ".join(d["fields_withheld"]))])
    return bytes(pdf.output())


async def _record_export(request: Request, who: Principal, found: dict[str, Any], fmt: str) -> None:
    exchange = exchange_of(request)
    now = exchange.clock()
    async with exchange.audit.transaction() as batch:
        batch.add(lambda seq: AuditEntry(
            seq=seq, kind=EntryKind.AUDIT_EXPORTED, at=now,
            actor=Actor(user_id=who.id, role=who.role, auth="role-token"),
            subjects=(SubjectRef(pseudonym=found["pseudonym"], category="other"),),
            reason=f"subject access report {fmt}: {len(found['disclosures'])} disclosures"))


@router.get("")
async def subject_form(request: Request, who: Viewer) -> Response:
    require_role(who, "ig_officer")
    return render(request, "ig_subject.html", title="Subject access report", found=None, subject="")


@router.post("")
async def subject_report(request: Request, who: Viewer) -> Response:
    require_role(who, "ig_officer")
    form = await checked_form(request)
    subject = str(form.get("subject", "")).strip()
    if not subject or len(subject) > 200:
        raise FormInvalid("enter the person's identifier (up to 200 characters)")
    found = await audit_routes.disclosures_about(request, subject, who)  # audited lookup
    fmt = str(form.get("format", "html"))
    if fmt == "csv":
        await _record_export(request, who, found, "csv")
        return finish(request, Response(report_csv(found), media_type="text/csv; charset=utf-8", headers={
            "content-disposition": 'attachment; filename="subject-access-report.csv"'}))
    if fmt == "pdf":
        await _record_export(request, who, found, "pdf")
        pdf = report_pdf(found, exchange_of(request).clock().isoformat(timespec="seconds"))
        return finish(request, Response(pdf, media_type="application/pdf", headers={
            "content-disposition": 'attachment; filename="subject-access-report.pdf"'}))
    return render(request, "ig_subject.html", title="Subject access report", found=found, subject=subject)
