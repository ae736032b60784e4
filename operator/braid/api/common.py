"""Shared building blocks of the braid.dev/v1alpha1 models."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

GROUP = "braid.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Task and run names end up in git refs (braid/<run>/tasks/<task>) and in
# Kubernetes object names (<run>-<task>-<attempt>), so they follow the stricter
# of the two grammars: a DNS-1123 label.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
TASK_NAME_MAX = 40
RUN_NAME_MAX = 40

# Characters we accept in a branch name we did not make ourselves; anything
# outside the set is either rejected by git or a quoting hazard.
REF_CHARSET_PATTERN = r"^[A-Za-z0-9._/+-]+$"


class Model(BaseModel):
    """Base of every API model: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        extra="forbid",
        populate_by_name=True,
        alias_generator=to_camel,
        validate_default=False,
    )

    def wire(self) -> dict[str, Any]:
        """The object as it appears in YAML/JSON: camelCase, unset optionals left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def ref_name_problem(name: str) -> str | None:
    """Why git would reject `name` as a branch name (git check-ref-format rules), or None."""
    if not name:
        return "must not be empty"
    if name.startswith("-"):
        return "must not begin with '-'"
    if not re.match(REF_CHARSET_PATTERN, name):
        return "may only contain letters, digits and . _ / + -"
    if name.startswith("/") or name.endswith("/") or "//" in name:
        return "must not begin or end with '/' or contain '//'"
    if ".." in name:
        return "must not contain '..'"
    if name.endswith((".", ".lock")):
        return "must not end with '.' or '.lock'"
    if any(part.startswith(".") or part.endswith(".lock") for part in name.split("/")):
        return "no path component may begin with '.' or end with '.lock'"
    if name == "@" or "@{" in name:
        return "must not be '@' or contain '@{'"
    return None


# CEL mirror of ref_name_problem for the API server (RE2 has no look-ahead, so
# the rules are spelled out one by one).
REF_NAME_CEL = [
    {"rule": "!self.startsWith('-')", "message": "must not begin with '-'"},
    {"rule": f"self.matches('{REF_CHARSET_PATTERN}')", "message": "may only contain letters, digits and . _ / + -"},
    {
        "rule": "!self.startsWith('/') && !self.endsWith('/') && !self.contains('//')",
        "message": "must not begin or end with '/' or contain '//'",
    },
    {"rule": "!self.contains('..')", "message": "must not contain '..'"},
    {"rule": "!self.endsWith('.') && !self.endsWith('.lock')", "message": "must not end with '.' or '.lock'"},
    {
        "rule": "!self.startsWith('.') && !self.contains('/.') && !self.contains('.lock/')",
        "message": "no path component may begin with '.' or end with '.lock'",
    },
]


def task_branch(run: str, task: str) -> str:
    return f"braid/{run}/tasks/{task}"


def default_integration_branch(run: str) -> str:
    return f"braid/{run}/merged"


def refs_collide(a: str, b: str) -> bool:
    """Two refs cannot coexist when they are equal or one is a directory of the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")
