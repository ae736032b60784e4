"""Integrate succeeded task branches into the integration branch and classify conflicts."""

from braid.api import MergeRequest, MergeTask

from .conflicts import FileConflict, kind_of, parse_merge_tree
from .integrate import IntegrationBranchTaken, integrate, merge_order, publish, run_merge
from .verify import HandoffVerifier, LocalVerifier, Outcome, checkout, execute, serve

__all__ = [
    "FileConflict", "IntegrationBranchTaken", "MergeRequest", "MergeTask", "integrate", "kind_of", "merge_order",
    "parse_merge_tree", "publish", "run_merge", "HandoffVerifier", "LocalVerifier", "Outcome", "checkout", "execute",
    "serve",
]
