"""Bounds on integer parameters. Database integers are 64-bit (and a ``timedelta`` has its own
limit), so an out-of-range value must be a 422 problem at the edge, not an overflow inside."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

MAX_INT64 = 2**63 - 1
#: An audit sequence number in a path.
Seq = Annotated[int, Path(ge=0, le=MAX_INT64)]
#: A tree size in a query (checkpoint sizes start at 1).
TreeSize = Annotated[int | None, Query(ge=1, le=MAX_INT64)]
#: Ten years: longer than anything is kept.
MAX_AGE_S = 10 * 366 * 24 * 3600
