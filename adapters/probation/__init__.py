"""The probation adapter: case-management CSV extracts in, contact-log entries out (``native``)."""

AGENCY = "probation"
