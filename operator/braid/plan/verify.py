"""Verification of the integrated result: which prefix of the merge order to verify next, who broke it,
what to leave out. Pure: the merge step runs the commands and says how they went.

The merge order is topological, so every prefix of it is closed under dependencies and is a
valid integration on its own. The base (the empty prefix) is taken to pass. When the whole
order fails, bisection narrows the gap between the longest prefix known to pass and the
shortest known to fail until they differ by one task: that task is the culprit. With one
culprit that takes ceil(log2 N) runs after the first, as a merge queue would.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from braid.text import printable

from .dag import Node, dependents

EXCLUDE_ROUNDS = 3
"""onVerifyFailure exclude: at most this many culprits are looked for and left out, one per round."""


def _bounds(size: int, results: Mapping[int, bool]) -> tuple[int, int | None]:
    """(the longest prefix known to pass below the shortest known to fail, that shortest failing one or None)."""
    failed = [k for k, passed in results.items() if not passed and 0 < k <= size]
    first_failed = min(failed) if failed else None
    limit = first_failed if first_failed is not None else size + 1
    passed = [k for k, ok in results.items() if ok and 0 <= k < limit]
    return max(passed, default=0), first_failed


def next_prefix(size: int, results: Mapping[int, bool]) -> int | None:
    """How many tasks of the merge order to verify next, or None when verification is decided.

    `results`: prefix length -> passed, for every run made. The whole order is verified first;
    when it fails, the midpoint between the longest passing and the shortest failing prefix.
    """
    if size <= 0:
        return None
    if size not in results:
        return size
    if results[size]:
        return None
    passed, failed = _bounds(size, results)
    assert failed is not None
    if failed - passed <= 1:
        return None
    return (passed + failed) // 2


def culprit(size: int, results: Mapping[int, bool]) -> tuple[int, int] | None:
    """(longest passing prefix, shortest failing prefix) once bisection is done and they differ by one task:
    the culprit is the task at position `failing` (1-based) of the merge order. None while undecided or passing."""
    if next_prefix(size, results) is not None or results.get(size, True):
        return None
    passed, failed = _bounds(size, results)
    assert failed is not None
    return passed, failed


def max_runs(size: int) -> int:
    """The most verify runs one round makes for `size` merged tasks: the whole order, then the bisection."""
    if size <= 0:
        return 0
    return 1 + math.ceil(math.log2(size)) if size > 1 else 1


def max_verify_runs(size: int, policy: str) -> int:
    """The most verify runs a merge makes (the merge Job's deadline allows for them)."""
    rounds = 1 + (EXCLUDE_ROUNDS if policy == "exclude" else 0)
    return rounds * max_runs(size)


def exclusion(culprits: Sequence[str], nodes: Sequence[Node]) -> list[str]:
    """The culprits and every task depending on one of them, directly or not (sorted)."""
    down = dependents(nodes)
    out: set[str] = set()
    stack = [c for c in culprits if c in down]
    while stack:
        name = stack.pop()
        if name in out:
            continue
        out.add(name)
        stack.extend(down[name])
    return sorted(out)


def bounded_output(data: bytes, redact: Callable[[str], str] | None = None, limit: int = 4096) -> str:
    """The end of a verify run's output as status shows it: secrets redacted, control characters escaped,
    at most `limit` bytes of UTF-8 (a cut is marked with '...')."""
    # redact before cutting, with a margin, so a secret across the cut is still found
    text = data[-(4 * limit):].decode("utf-8", errors="replace")
    if redact is not None:
        text = redact(text)
    text = printable(text)
    encoded = text.encode()
    if len(encoded) <= limit and len(data) <= 4 * limit:
        return text
    tail = encoded[-(limit - 3):].decode("utf-8", errors="ignore")
    return "..." + tail
