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

# A full commit id (SHA-1 or SHA-256), as braid records what it pushed.
COMMIT_PATTERN = r"^[0-9a-f]{40}([0-9a-f]{24})?$"


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
    if name == "HEAD" or name.startswith("refs/"):
        return "must be a branch name, not HEAD or a full ref name (refs/...)"
    return None


URL_SCHEMES = ("https", "http", "ssh", "git", "file")
# git reads `<transport>::<address>` as "run the remote helper git-remote-<transport>"
TRANSPORT_PATTERN = r"^[A-Za-z][A-Za-z0-9+.-]*::"


def url_problem(url: str) -> str | None:
    """Why `url` is not a repository URL braid hands to git, or None.

    git must not be able to read it as an option, a remote helper to run, or a place
    to keep a secret: credentials go in repo.credentialsSecret, never in the URL.
    """
    if any(ord(c) < 32 or ord(c) == 127 for c in url):
        return "must not contain control characters"
    if url.startswith("-"):
        return "must not begin with '-'"
    if re.match(TRANSPORT_PATTERN, url):
        return "must not use git's <transport>::<address> form (it runs a remote helper); use https://, ssh://, git:// or file://"
    scheme, sep, rest = url.partition("://")
    if not sep:
        return None  # user@host:path (ssh) or, in local mode, a path
    if scheme.lower() not in URL_SCHEMES:
        return f"scheme {scheme!r} is not supported; use one of {', '.join(URL_SCHEMES)}"
    authority = rest.split("/", 1)[0]
    userinfo = authority.rpartition("@")[0] if "@" in authority else None
    if userinfo is not None and (":" in userinfo or scheme.lower() in ("http", "https", "file", "git")):
        return "must not contain credentials; put them in repo.credentialsSecret"
    return None


# CEL mirror of url_problem for the API server.
URL_CEL = [
    {"rule": r"!self.matches('[\\x00-\\x1f\\x7f]')", "message": "must not contain control characters"},
    {"rule": "!self.startsWith('-')", "message": "must not begin with '-'"},
    {"rule": f"!self.matches('{TRANSPORT_PATTERN}')",
     "message": "must not use git's <transport>::<address> form (it runs a remote helper)"},
    {"rule": "!self.contains('://') || self.matches('^(?i)(https?|ssh|git|file)://')",
     "message": f"the scheme must be one of {', '.join(URL_SCHEMES)}"},
    {"rule": "!self.matches('^[A-Za-z]+://[^/@]*:[^/@]*@') && !self.matches('^(?i)(https?|file|git)://[^/]*@')",
     "message": "must not contain credentials; put them in repo.credentialsSecret"},
]


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
    {"rule": "self != 'HEAD' && !self.startsWith('refs/')",
     "message": "must be a branch name, not HEAD or a full ref name (refs/...)"},
]


def task_branch(run: str, task: str) -> str:
    return f"braid/{run}/tasks/{task}"


RESOLVER_SUFFIX = ".resolve"
"""A resolver task is named <task>.resolve: a name no task of a spec can have (task names have no '.')."""

AGENT_TASK_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.resolve)?$"
"""What an AgentTask runs: a task of the spec, or the resolver of one task's conflicts."""


def resolver_name(task: str) -> str:
    return task + RESOLVER_SUFFIX


def resolution_branch(run: str, task: str) -> str:
    return f"braid/{run}/resolve/{task}"


def transcript_ref(run: str, task: str) -> str:
    """The full ref of a task's saved conversation (anthropic backend): outside refs/heads/ and
    refs/tags/, so no branch (task or integration) and no tag can ever collide with it."""
    return f"refs/braid/{run}/transcripts/{task}"


def default_integration_branch(run: str) -> str:
    return f"braid/{run}/merged"


def refs_collide(a: str, b: str) -> bool:
    """Two refs cannot coexist when they are equal or one is a directory of the other."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")
