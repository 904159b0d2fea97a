"""What each agency's registration chose about what it receives (docs/spec/mailbox.md, keys.md).

- ``delivery``: ``amqp`` (the default) publishes its deliveries to its inbox queue;
  ``mailbox`` never does, and the agency fetches and acknowledges them over HTTP only, so
  nothing accumulates in a queue nobody reads (as MESH offers mailbox-only members).
- ``jws_alg``: the ``alg`` name on what the broker signs for it (delivery tokens, receipts,
  notices): ``Ed25519`` (RFC 9864, the default) or ``EdDSA`` (RFC 8037) for libraries that
  know only the older name. The key and the signature bytes are the same; only the header differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

DeliveryMode = Literal["amqp", "mailbox"]
AlgName = Literal["Ed25519", "EdDSA"]


@dataclass(frozen=True)
class AgencyOptions:
    delivery: Mapping[str, DeliveryMode] = field(default_factory=dict)
    jws_alg: Mapping[str, AlgName] = field(default_factory=dict)

    def delivery_mode(self, agency: str) -> DeliveryMode:
        return self.delivery.get(agency, "amqp")

    def alg_for(self, agency: str) -> AlgName:
        return self.jws_alg.get(agency, "Ed25519")

    def mailbox_agencies(self) -> frozenset[str]:
        return frozenset(a for a, mode in self.delivery.items() if mode == "mailbox")
