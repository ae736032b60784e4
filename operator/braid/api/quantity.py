"""Kubernetes resource quantities (`500m`, `2`, `0.5`, `20Mi`, `1G`, `1e3`), as the API server reads them."""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

_SUFFIX = {
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}

# The API server's own grammar of a quantity, without a sign: a limit or a request is never negative.
QUANTITY_PATTERN = (r"^\+?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
                    r"(([KMGTPE]i)|[numkMGTPE]|([eE][+-]?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$")
_QUANTITY = re.compile(QUANTITY_PATTERN)


def parse_quantity(value: int | float | str) -> Decimal | None:
    """The quantity as a number of base units (bytes, cores), or None when it is not a quantity."""
    if isinstance(value, bool):
        return None
    text = str(value).strip()
    if isinstance(value, str) and not _QUANTITY.match(text):
        return None
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if suffix and text.endswith(suffix):
            number, factor = text[: -len(suffix)], _SUFFIX[suffix]
            break
    else:
        number, factor = text, Decimal(1)
    try:
        parsed = Decimal(number) * factor
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def quantity_problem(value: Any) -> str | None:
    """Why `value` is not a usable quantity, or None."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        return f"{value!r} is not a quantity (a number or a string like 500m, 0.5, 20Mi, 1Gi)"
    parsed = parse_quantity(value)
    if parsed is None:
        return (f"{value!r} is not a quantity: write a number with an optional suffix, "
                "e.g. 500m or 0.5 (CPU), 20Mi, 1Gi or 512M (memory)")
    if parsed <= 0:
        return f"{value!r} must be more than zero"
    return None


def _decimal_as_text(value: Any) -> Any:
    """A YAML decimal (`cpu: 0.5`) reads as the quantity "0.5"; what is no number or string is refused here."""
    if isinstance(value, float) and math.isfinite(value):
        return format(Decimal(repr(value)), "f")
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(quantity_problem(value))
    return value


def _checked(value: int | str) -> int | str:
    if problem := quantity_problem(value):
        raise ValueError(problem)
    return value


Quantity = Annotated[
    int | str,
    BeforeValidator(_decimal_as_text),
    AfterValidator(_checked),
    WithJsonSchema({"anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": QUANTITY_PATTERN}),
]
"""A resource quantity in a spec: int or string on the wire, checked to parse and be positive."""


def memory_bytes(value: int | str) -> int:
    """A memory quantity in whole bytes (rounded up, as the kernel needs an integer)."""
    parsed = parse_quantity(value)
    if parsed is None:
        raise ValueError(f"{value!r} is not a quantity")
    return int(parsed.to_integral_value(rounding="ROUND_CEILING"))


def cpu_cores(value: int | str) -> Decimal:
    """A CPU quantity in cores (`100m` is 0.1)."""
    parsed = parse_quantity(value)
    if parsed is None:
        raise ValueError(f"{value!r} is not a quantity")
    return parsed


def format_bytes(value: int) -> str:
    """Bytes the way a person reads them: 512, 18.4Ki, 20.0Mi, 1.50Gi."""
    size, unit = float(value), ""
    for bigger in ("Ki", "Mi", "Gi", "Ti"):
        if size < 1024:
            break
        size, unit = size / 1024, bigger
    if not unit:
        return str(int(size))
    return f"{size:.1f}{unit}" if size < 100 else f"{size:.0f}{unit}"
