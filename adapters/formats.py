"""Each agency's native format, by agency id (imported lazily: the FHIR models are large)."""

from __future__ import annotations

from adapters.native import NativeFormat


def native_format(agency: str) -> NativeFormat:
    if agency == "police":
        from adapters.police.native import PoliceExport

        return PoliceExport()
    if agency == "probation":
        from adapters.probation.native import ProbationExtract

        return ProbationExtract()
    if agency == "nhs":
        from adapters.nhs.native import NhsFhir

        return NhsFhir()
    if agency == "advocacy":
        from adapters.advocacy.native import AdvocacyIntake

        return AdvocacyIntake()
    raise ValueError(f"unknown agency {agency!r}")
