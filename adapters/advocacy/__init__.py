"""The advocacy adapter: client updates in, readable notifications for the advocate out."""

AGENCY = "advocacy"
