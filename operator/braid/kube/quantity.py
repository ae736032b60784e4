"""Comparing a request with a limit, in the quantities of braid.api.quantity."""

from __future__ import annotations

from braid.api.quantity import parse_quantity

__all__ = ["at_least", "parse_quantity"]


def at_least(limit: int | str, request: int | str) -> int | str:
    """`limit`, raised to `request` when the request is larger (the API rejects request > limit)."""
    lim, req = parse_quantity(limit), parse_quantity(request)
    if lim is not None and req is not None and req > lim:
        return request
    return limit
