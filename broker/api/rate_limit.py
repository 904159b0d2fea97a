"""Per-agency rate limit on ``POST /v1/messages`` (``MASP_RATE_LIMIT``, e.g. ``600/minute``).

A moving window per authenticated agency, in this process's memory (the ``limits`` library):
each broker process enforces it on its own, so N processes behind a balancer admit up to N
times the figure. A refusal is a 429 problem with ``Retry-After``, and is audited as
``refused`` with rule ``ingress.rate-limited`` — once per agency per window, not per
request, so a flood cannot turn the audit log into its amplifier.
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, parse
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from broker.errors import MaspError


class RateLimited(MaspError):
    code = "rate-limited"
    status = 429
    title = "Too many submissions"

    def __init__(self, detail: str, retry_after: int) -> None:
        super().__init__(detail, retry_after=retry_after)
        self.retry_after = retry_after


class AgencyRateLimit:
    """``check(agency)`` counts one submission and raises ``RateLimited`` past the limit."""

    def __init__(self, spec: str) -> None:
        self.item: RateLimitItem = parse(spec)  # ValueError names a bad spec at start-up
        self.spec = spec
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._audited_until: dict[str, float] = {}

    def check(self, agency: str) -> None:
        if self._limiter.hit(self.item, agency):
            return
        reset = self._limiter.get_window_stats(self.item, agency).reset_time
        retry_after = max(1, math.ceil(reset - time.time()))
        raise RateLimited(f"agency {agency} exceeded {self.spec}", retry_after)

    def first_refusal(self, agency: str, retry_after: int) -> bool:
        """True for the first refusal of an agency in a window: the one to audit."""
        now = time.time()
        if self._audited_until.get(agency, 0.0) > now:
            return False
        self._audited_until[agency] = now + retry_after
        return True
