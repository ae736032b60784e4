"""Turning pydantic errors into one-line messages that name the field."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from .common import NAME_PATTERN


class InvalidSpec(ValueError):
    """A ParallelRun that can never run as written. The message names the field."""


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-after", "function-before")):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out or "(document)"


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown field"
    if kind == "missing":
        return "required field is missing"
    if kind == "string_pattern_mismatch" and err.get("ctx", {}).get("pattern") == NAME_PATTERN:
        return "must be lowercase letters, digits and '-', starting and ending with a letter or digit"
    msg = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        msg = msg.removeprefix(prefix)
    return msg


def format_validation_error(exc: ValidationError, prefix: str = "") -> str:
    """The first problem as 'field.path: what is wrong' (+ how many more)."""
    errors = exc.errors()
    first = errors[0]
    loc = _path(tuple(first.get("loc", ())))
    if prefix:
        loc = f"{prefix}.{loc}" if loc != "(document)" else prefix
    # whole-object checks already name their fields in the message
    text = _message(first) if loc == "(document)" else f"{loc}: {_message(first)}"
    if len(errors) > 1:
        text += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return text
