"""The NHS team's FHIR R4 Bundles read as canonical messages (``fhir.resources`` R4B models).

A Bundle from the team's record system holds the Patient (NHS number, checked by its
modulus-11 rule; PNC id and probation CRN as further identifiers), the ServiceRequest the
referral became (its identifier in ``CASE_SYSTEM`` is the partnership case id), and:

- a Task for the intervention (status, ``businessStatus`` = stage, ``statusReason``,
  ``output`` ``engagement``) with the session Encounters (``finished`` = attended,
  ``cancelled`` = did not attend, ``planned`` = next session): ``intervention_status_update``;
- a Communication of category ``risk-disclosure`` (reasonCode = disclosure kinds, payload =
  what was said, ``sent``, priority, sender a Practitioner): ``risk_concern_alert``.

Nothing clinical is read from a Task or an Encounter (the status update has no field for
it). A Communication's ``clinical-note`` extension leaves only when the Communication also
carries a ``caldicott-override`` extension (the Caldicott Guardian's sign-off, P7);
otherwise it is dropped and the alert goes without it.
"""

from __future__ import annotations

from typing import Any

import structlog
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.communication import Communication
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.servicerequest import ServiceRequest
from fhir.resources.R4B.task import Task
from pydantic import ValidationError

from adapters.fields import drop_none, subject_ref
from adapters.native import NativeRecordInvalid, Outgoing, Problem, Rendered
from adapters.nhs import AGENCY
from adapters.nhs.bundle import render
from adapters.nhs.nhs_number import is_valid_nhs_number

log = structlog.get_logger("masp.adapter")

NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"
PNC_SYSTEM = "https://masp.example/Id/pnc"
CRN_SYSTEM = "https://masp.example/Id/probation-crn"
CASE_SYSTEM = "https://masp.example/Id/case"
EXT = "https://masp.example/fhir/StructureDefinition/"
DECISION = {
    "requested": "pending",
    "received": "pending",
    "accepted": "accepted",
    "ready": "accepted",
    "in-progress": "accepted",
    "on-hold": "accepted",
    "completed": "accepted",
    "rejected": "declined",
}
URGENCY = {"stat": "immediate", "asap": "same_day", "urgent": "same_day", "routine": "routine"}


class NhsFhir:
    """``NativeFormat`` of the NHS team's FHIR R4 Bundles."""

    agency = AGENCY

    def read(self, source: str, data: bytes) -> list[Outgoing]:
        try:
            bundle = Bundle.model_validate_json(data)
        except ValidationError as exc:
            raise NativeRecordInvalid(
                source,
                [
                    Problem("Bundle", ".".join(str(p) for p in e["loc"]), str(e["type"]))
                    for e in exc.errors(include_input=False, include_url=False, include_context=False)
                ],
            ) from None
        except (KeyError, ValueError, TypeError):  # an unknown resourceType, not JSON at all
            raise NativeRecordInvalid(source, [Problem("Bundle", "<file>", "not_a_fhir_r4_bundle")]) from None
        reader = _BundleReader(bundle)
        out = reader.messages()
        if reader.problems:
            raise NativeRecordInvalid(source, reader.problems)
        return out

    def write(self, received: dict[str, Any]) -> list[Rendered]:
        return render(received)


class _BundleReader:
    def __init__(self, bundle: Bundle) -> None:
        self.problems: list[Problem] = []
        self.by_ref: dict[str, Any] = {}
        self.resources: list[Any] = []
        for entry in bundle.entry or []:
            res = entry.resource
            if res is None:
                continue
            self.resources.append(res)
            if entry.fullUrl:
                self.by_ref[str(entry.fullUrl)] = res
            if res.id:
                self.by_ref[f"{res.get_resource_type()}/{res.id}"] = res

    def of(self, kind: type[Any]) -> list[Any]:
        return [r for r in self.resources if isinstance(r, kind)]

    def problem(self, res: Any, field: str, reason: str) -> None:
        self.problems.append(Problem(f"{res.get_resource_type()}/{res.id or '?'}", field, reason))

    def messages(self) -> list[Outgoing]:
        patients = self.of(Patient)
        if len(patients) != 1:
            self.problems.append(Problem("Bundle", "entry", "exactly_one_patient_needed"))
            return []
        patient = patients[0]
        self.identity = self.patient_identity(patient)
        self.case_id = self.find_case_id()
        out: list[Outgoing] = []
        for task in self.of(Task):
            out.append(
                self.outgoing(task, "intervention_status_update", self.status_update(task), "intervention")
            )
        for comm in self.of(Communication):
            codes = {c.code for cat in comm.category or [] for c in cat.coding or []}
            if "risk-disclosure" not in codes:
                self.problem(comm, "category", "not_a_risk_disclosure")
                continue
            body, override = self.risk_alert(comm)
            out.append(self.outgoing(comm, "risk_concern_alert", body, "risk_management", override))
        if not out:
            self.problems.append(Problem("Bundle", "entry", "no_task_or_communication"))
        return out

    def outgoing(
        self,
        res: Any,
        masp_type: str,
        body: dict[str, Any],
        purpose: str,
        override: dict[str, Any] | None = None,
    ) -> Outgoing:
        pnc = self.identity.get("perpetrator_police_id")
        subjects = [{"ref": subject_ref(pnc), "category": "suspect"}] if pnc else []
        if not subjects:
            self.problems.append(Problem("Patient", "identifier", "pnc_id_missing"))
        return Outgoing(
            f"{res.get_resource_type()}/{res.id or '?'}",
            masp_type,
            drop_none(body),
            self.case_id or "",
            purpose,
            subjects,
            override=override,
            sources=SOURCES,
        )

    # --- identity and case -----------------------------------------------------------------

    def patient_identity(self, patient: Patient) -> dict[str, Any]:
        ids = {str(i.system): str(i.value) for i in patient.identifier or [] if i.system and i.value}
        nhs = ids.get(NHS_NUMBER)
        if nhs is None:
            self.problem(patient, "identifier[nhs-number]", "missing")
        elif not is_valid_nhs_number(nhs):
            self.problem(patient, "identifier[nhs-number]", "fails_modulus_11_check")
        name = patient.name[0] if patient.name else None
        given = [str(g) for g in name.given or []] if name else []
        return drop_none(
            {
                "perpetrator_name": drop_none(
                    {
                        "given": given[0] if given else None,
                        "middle": " ".join(given[1:]) or None,
                        "family": name.family if name else None,
                    }
                )
                or None,
                "perpetrator_date_of_birth": str(patient.birthDate) if patient.birthDate else None,
                "perpetrator_police_id": ids.get(PNC_SYSTEM),
                "perpetrator_probation_id": ids.get(CRN_SYSTEM),
            }
        )

    def find_case_id(self) -> str | None:
        for sr in self.of(ServiceRequest):
            for ident in sr.identifier or []:
                if ident.system == CASE_SYSTEM and ident.value:
                    return str(ident.value)
        self.problems.append(Problem("ServiceRequest", f"identifier[{CASE_SYSTEM}]", "missing"))
        return None

    # --- intervention_status_update ----------------------------------------------------------

    def status_update(self, task: Task) -> dict[str, Any]:
        stage = _code(task.businessStatus)
        if stage is None:
            self.problem(task, "businessStatus", "missing")
        decision = DECISION.get(str(task.status))
        reason = _code(task.statusReason)
        encounters = self.of(Encounter)
        attended = sum(1 for e in encounters if e.status == "finished")
        missed = sum(1 for e in encounters if e.status == "cancelled")
        planned = sorted(
            str(e.period.start)[:10]
            for e in encounters
            if e.status == "planned" and e.period and e.period.start
        )
        engagement = next(
            (
                _code(o.valueCodeableConcept) or o.valueString
                for o in task.output or []
                if o.type and o.type.text == "engagement"
            ),
            None,
        )
        if task.lastModified is None:
            self.problem(task, "lastModified", "missing")
        return {
            "status_date": str(task.lastModified)[:10] if task.lastModified else None,
            "intervention_stage": stage,
            "referral_decision": decision,
            "decline_reason": reason if decision == "declined" else None,
            "discharge_reason": reason if stage == "discharged" else None,
            "sessions_offered": attended + missed if encounters else None,
            "sessions_attended": attended if encounters else None,
            "sessions_missed": missed if encounters else None,
            "engagement": engagement,
            "next_session_date": planned[0] if planned else None,
        }

    # --- risk_concern_alert --------------------------------------------------------------------

    def risk_alert(self, comm: Communication) -> tuple[dict[str, Any], dict[str, Any] | None]:
        ext = {str(e.url).removeprefix(EXT): e for e in comm.extension or []}
        override = _override(ext["caldicott-override"]) if "caldicott-override" in ext else None
        clinical = ext["clinical-note"].valueString if "clinical-note" in ext else None
        if clinical and override is None:
            log.warning("clinical_note_dropped_without_override", agency=AGENCY)
            clinical = None
        summary = next((p.contentString for p in comm.payload or [] if p.contentString), None)
        if summary is None:
            self.problem(comm, "payload.contentString", "missing")
        if comm.sent is None:
            self.problem(comm, "sent", "missing")
        kinds = [c.code for rc in comm.reasonCode or [] for c in rc.coding or [] if c.code]
        if not kinds:
            self.problem(comm, "reasonCode", "missing")
        body = {
            **self.identity,
            "disclosure_kinds": kinds,
            "disclosure_summary": summary,
            "disclosed_at": comm.sent.isoformat() if comm.sent else None,
            "disclosure_urgency": URGENCY.get(str(comm.priority or "urgent")),
            "persons_at_risk": ext["persons-at-risk"].valueString if "persons-at-risk" in ext else None,
            "recommended_action": ext["recommended-action"].valueString
            if "recommended-action" in ext
            else None,
            "clinical_note": clinical,
            "reported_by": self.practitioner(comm),
        }
        return body, override

    def practitioner(self, comm: Communication) -> dict[str, Any] | None:
        ref = comm.sender.reference if comm.sender else None
        found = self.by_ref.get(str(ref)) if ref else None
        if not isinstance(found, Practitioner):
            self.problem(comm, "sender", "practitioner_not_in_bundle")
            return None
        name = found.name[0] if found.name else None
        role = next((q.code.text for q in found.qualification or [] if q.code and q.code.text), None)
        telecom = {str(t.system): str(t.value) for t in found.telecom or [] if t.system and t.value}
        return drop_none(
            {
                "name": name.text if name else None,
                "role": role,
                "agency": AGENCY,
                "team": next(
                    (str(e.valueString) for e in found.extension or [] if str(e.url) == EXT + "team"), None
                ),
                "phone": telecom.get("phone"),
                "email": telecom.get("email"),
            }
        )


def _code(concept: Any) -> str | None:
    for coding in (concept.coding or []) if concept is not None else []:
        if coding.code:
            return str(coding.code)
    return None


def _override(ext: Extension) -> dict[str, Any]:
    """The ``caldicott-override`` complex extension as the envelope's ``override`` block."""
    parts: dict[str, list[Any]] = {}
    for sub in ext.extension or []:
        value = next(
            (
                getattr(sub, f)
                for f in ("valueString", "valueCode", "valueBoolean", "valueInteger")
                if getattr(sub, f, None) is not None
            ),
            None,
        )
        parts.setdefault(str(sub.url), []).append(value)

    def one(name: str) -> Any:
        return (parts.get(name) or [None])[0]

    return drop_none(
        {
            "justification": {
                "risk_to": one("risk-to"),
                "harm": one("harm"),
                "consent_not_sought_reason": one("consent-not-sought-reason"),
            },
            "legal_basis": one("legal-basis"),
            "authoriser": {"id": one("authoriser-id"), "role": one("authoriser-role")},
            "subject_informed": one("subject-informed"),
            "valid_hours": one("valid-hours"),
            "data_classes": parts.get("data-class", []),
            "recipients": parts.get("recipient", []),
        }
    )


SOURCES = {
    "perpetrator_name": "Patient.name",
    "perpetrator_date_of_birth": "Patient.birthDate",
    "perpetrator_police_id": "Patient.identifier[pnc]",
    "intervention_stage": "Task.businessStatus",
    "status_date": "Task.lastModified",
    "sessions_offered": "Encounter.status",
    "sessions_attended": "Encounter.status",
    "sessions_missed": "Encounter.status",
    "engagement": "Task.output[engagement]",
    "disclosure_kinds": "Communication.reasonCode",
    "disclosure_summary": "Communication.payload",
    "disclosed_at": "Communication.sent",
    "disclosure_urgency": "Communication.priority",
    "reported_by": "Communication.sender",
    "clinical_note": "Communication.extension[clinical-note]",
}
