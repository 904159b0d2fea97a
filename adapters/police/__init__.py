"""The police adapter: occurrence exports in, partner updates out (``native.PoliceExport``)."""

AGENCY = "police"
