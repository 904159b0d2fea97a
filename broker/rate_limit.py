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
        #: agency -> when the oldest submission in its full window leaves it (``time.time()``)
        self._full_until: dict[str, float] = {}

    def check(self, agency: str) -> None:
        now = time.time()
        # a full moving window stays full until its oldest entry expires, as refused hits add
        # nothing: a flood is refused from here, without a look at the window per message
        if (until := self._full_until.get(agency, 0.0)) > now:
            raise self._refusal(agency, until, now)
        if self._limiter.hit(self.item, agency):
            return
        until = self._limiter.get_window_stats(self.item, agency).reset_time
        self._full_until[agency] = until
        raise self._refusal(agency, until, now)

    def _refusal(self, agency: str, until: float, now: float) -> RateLimited:
        return RateLimited(f"agency {agency} exceeded {self.spec}", max(1, math.ceil(until - now)))
