"""spec.delivery: after the merge pushed the integration branch, one pull request from it on the forge."""

from .body import MAX_BODY, is_ours, marker, render_body
from .pullrequest import deliver

__all__ = ["MAX_BODY", "deliver", "is_ours", "marker", "render_body"]
