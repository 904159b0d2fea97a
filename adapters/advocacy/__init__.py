"""The advocacy adapter: the shared runtime (`adapters.runtime`) bound to the `advocacy` agency.

Translation to and from the agency's own record formats is added per agency; until then
deliveries are handed over as verified canonical JSON under `var/adapters/advocacy/received/`.
"""

AGENCY = "advocacy"
