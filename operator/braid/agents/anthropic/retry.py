"""Retrying Messages API calls within the task's time and cancellation.

braid retries here rather than through the SDK's own retries because a retry must
not outlive the task's deadline nor ignore a cancellation, and because an error
that arrives in the middle of a stream (overloaded, say) is not retried by the SDK.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from logging import Logger
from typing import TypeVar

import anthropic

T = TypeVar("T")

INITIAL_DELAY = 0.5
MAX_DELAY = 30.0
_RETRYABLE_TYPES = frozenset({"rate_limit_error", "overloaded_error", "api_error", "timeout_error"})


class Interrupted(Exception):
    """The task was cancelled while waiting to retry."""


def retryable(exc: anthropic.APIError) -> bool:
    if isinstance(exc, anthropic.APIConnectionError):  # includes timeouts
        return True
    if not isinstance(exc, anthropic.APIStatusError):
        return False
    should = exc.response.headers.get("x-should-retry")
    if should in ("true", "false"):
        return should == "true"
    if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
        return True
    # an error event in a stream arrives with the stream's 200 status
    body = exc.body if isinstance(exc.body, dict) else {}
    error = body.get("error") if isinstance(body.get("error"), dict) else {}
    return error.get("type") in _RETRYABLE_TYPES


def delay_for(exc: anthropic.APIError, attempt: int) -> float:
    """What the server asked for (retry-after-ms, retry-after), else exponential backoff with jitter."""
    if isinstance(exc, anthropic.APIStatusError):
        headers = exc.response.headers
        for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
            try:
                asked = float(headers.get(name, "")) * scale
            except ValueError:
                continue
            if asked >= 0:
                return asked
    return min(INITIAL_DELAY * 2**attempt, MAX_DELAY) * (1 - 0.25 * random.random())


class Retrier:
    def __init__(self, max_retries: int, cancel: threading.Event, time_left: Callable[[], float], log: Logger):
        self.max_retries = max_retries
        self.cancel = cancel
        self.time_left = time_left
        self.log = log
        self.retries = 0
        """Retries of the last call."""

    def call(self, fn: Callable[[], T]) -> T:
        """fn(), retried on rate limits, overload, 5xx and connection errors. Raises the last error."""
        self.retries = 0
        while True:
            try:
                return fn()
            except anthropic.APIError as exc:
                if not retryable(exc) or self.retries >= self.max_retries:
                    raise
                delay = delay_for(exc, self.retries)
                if delay >= self.time_left():
                    raise
                self.retries += 1
                status = getattr(exc, "status_code", None)
                self.log.warning(
                    "Messages API %s; retry %d of %d in %.1fs",
                    f"error {status}" if status and status != 200 else type(exc).__name__,
                    self.retries, self.max_retries, delay,
                )
                if self.cancel.wait(delay):
                    raise Interrupted() from exc
