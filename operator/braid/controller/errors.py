"""braid's own errors for what the API server answered, so reconcilers never see HTTP details."""

from __future__ import annotations


class KubeError(Exception):
    """A request to the API server failed."""

    def __init__(self, message: str, status: int | None = None, reason: str | None = None):
        super().__init__(message)
        self.status = status
        self.reason = reason


class NotFound(KubeError):
    """404: the object is not there (any more)."""


class AlreadyExists(KubeError):
    """409 on create: an object of that name exists; with deterministic names, usually ours."""


class Conflict(KubeError):
    """409 on update: someone wrote the object since we read it. Read again and decide again."""


class Forbidden(KubeError):
    """403: RBAC does not allow it. Retrying will not help until the Role changes."""


class Invalid(KubeError):
    """422 or 400: the API server rejected the object."""


class Unavailable(KubeError):
    """The API server could not be reached or kept failing (429, 5xx, connection errors)."""


def error_for(status: int, reason: str | None, message: str) -> KubeError:
    if status == 404:
        return NotFound(message, status, reason)
    if status == 409:
        kind = AlreadyExists if reason == "AlreadyExists" else Conflict
        return kind(message, status, reason)
    if status in (401, 403):
        return Forbidden(message, status, reason)
    if status in (400, 422):
        return Invalid(message, status, reason)
    return Unavailable(message, status, reason)
