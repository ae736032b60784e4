"""Just enough of Kubernetes resource quantities to compare a request with a limit."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}


def parse_quantity(value: int | float | str) -> Decimal | None:
    """The quantity as a number of base units, or None when it is not one we understand."""
    text = str(value).strip()
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, factor = text[: -len(suffix)], _SUFFIX[suffix]
            break
    else:
        number, factor = text, Decimal(1)
    try:
        return Decimal(number) * factor
    except InvalidOperation:
        return None


def at_least(limit: int | str, request: int | str) -> int | str:
    """`limit`, raised to `request` when the request is larger (the API rejects request > limit)."""
    lim, req = parse_quantity(limit), parse_quantity(request)
    if lim is not None and req is not None and req > lim:
        return request
    return limit
