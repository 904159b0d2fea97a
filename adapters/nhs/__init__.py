"""The nhs adapter: the shared runtime (`adapters.runtime`) bound to the `nhs` agency.

Translation to and from the agency's own record formats is added per agency; until then
deliveries are handed over as verified canonical JSON under `var/adapters/nhs/received/`.
"""

AGENCY = "nhs"
