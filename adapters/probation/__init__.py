"""The probation adapter: the shared runtime (`adapters.runtime`) bound to the `probation` agency.

Translation to and from the agency's own record formats is added per agency; until then
deliveries are handed over as verified canonical JSON under `var/adapters/probation/received/`.
"""

AGENCY = "probation"
