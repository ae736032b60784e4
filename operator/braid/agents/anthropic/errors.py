"""Messages API errors as braid reasons.

By the time an error gets here, what is worth retrying (429, 408, 409, 5xx,
overload and connection errors) has been retried (retry.py). What is left either
needs a person (key, model, billing) or is passed to the runner as AgentFailed,
which braid may retry later as a new attempt.
"""

from __future__ import annotations

import anthropic

# not in every SDK version braid accepts
_PAYMENT_REQUIRED = getattr(anthropic, "PaymentRequiredError", ())


def classify(exc: anthropic.APIError, model: str, retries: int) -> tuple[str, str]:
    """(reason, message) for an error of the Messages API. The message never holds the key."""
    detail = _detail(exc)
    if isinstance(exc, anthropic.AuthenticationError):
        return "InvalidAPIKey", f"the Messages API rejected the API key (401): {detail}"
    if isinstance(exc, anthropic.PermissionDeniedError):
        return "PermissionDenied", f"the API key may not use this (403): {detail}"
    if isinstance(exc, anthropic.NotFoundError):
        return "UnknownModel", f"model {model!r} was not found (404): {detail}"
    if isinstance(exc, _PAYMENT_REQUIRED):
        return "BillingError", f"billing problem (402): {detail}"
    if isinstance(exc, anthropic.RateLimitError):
        return "AgentFailed", f"rate limited by the Messages API (429) after {retries} retries: {detail}"
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code >= 500:
            return "AgentFailed", f"the Messages API failed ({exc.status_code}) after {retries} retries: {detail}"
        if _error_type(exc) == "billing_error":
            return "BillingError", f"billing problem ({exc.status_code}): {detail}"
        return "InvalidRequest", f"the Messages API refused the request ({exc.status_code}): {detail}"
    if isinstance(exc, anthropic.APIConnectionError):
        return "AgentFailed", f"cannot reach the Messages API after {retries} retries: {detail}"
    return "AgentFailed", f"Messages API error: {detail}"


def _error_type(exc: anthropic.APIStatusError) -> str | None:
    body = exc.body
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and isinstance(error.get("type"), str):
            return error["type"]
    return None


def _detail(exc: anthropic.APIError) -> str:
    message = getattr(exc, "api_message", None) or exc.message or type(exc).__name__
    if isinstance(exc, anthropic.APIConnectionError) and exc.__cause__ is not None:
        message = f"{message} ({exc.__cause__})"
    return str(message)[:500]
