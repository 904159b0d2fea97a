"""Per-agency submission rate limit (``MASP_RATE_LIMIT``, e.g. ``600/minute``), for every edge.

A moving window per authenticated agency, in this process's memory (the ``limits`` library):
each broker process enforces it on its own, so N processes admit up to N times the figure.
One limiter per process is shared by ``POST /v1/messages`` and the AMQP ingress consumers,
so an agency cannot double its allowance by using both. The limit is checked after
authentication and before anything is decrypted: a refusal costs the broker next to
nothing. Refusals are audited like every other ingress refusal, and repeated ones are
summarised per window (``broker/refusals.py``), so a flood cannot turn the audit log into
its amplifier.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from broker.errors import RateLimited

__all__ = ["AgencyRateLimit", "RateLimited"]


class AgencyRateLimit:
    """``check(agency)`` counts one submission and raises ``RateLimited`` past the limit."""

    def __init__(self, spec: str) -> None:
        self.item: RateLimitItem = parse(spec)  # ValueError names a bad spec at start-up
        self.spec = spec
        self._limiter = MovingWindowRateLimiter(MemoryStorage())

    def check(self, agency: str) -> None:
        if self._limiter.hit(self.item, agency):
            return
        reset = self._limiter.get_window_stats(self.item, agency).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise RateLimited(f"agency {agency} exceeded {self.spec}", retry_after)
