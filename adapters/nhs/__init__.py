"""The nhs adapter: FHIR R4 Bundles both ways (``native.NhsFhir``), NHS numbers checked."""

AGENCY = "nhs"
