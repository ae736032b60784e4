"""One small interface over each forge's client library: list, create and edit open pull requests.

GitHub through PyGithub, GitLab through python-gitlab (merge requests), Gitea through
gitea-api-client (generated from Gitea's OpenAPI description).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from braid.api import PullRequestSpec

TIMEOUT_SECONDS = 30
MAX_PAGES = 20
"""Open pull requests are listed at most this many pages deep (100 a page) when looking for braid's own."""
BRANCH_SEEN_SECONDS = 15
"""How long a forge that records pushed branches asynchronously (Gitea) is given to see the head branch."""
T = TypeVar("T")


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str | None
    title: str
    body: str
    head: str
    base: str


class Duplicate(Exception):
    """The forge refused to create it: one from the same head into the same base is open already."""


class Forge(Protocol):
    def open_from(self, head: str) -> list[PullRequest]:
        """The open pull requests whose head is branch `head` of this repository."""
        ...

    def create(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequest: ...

    def edit(self, pr: PullRequest, title: str, body: str, base: str) -> PullRequest: ...


def draft_prefixes(provider: str) -> tuple[str, ...]:
    """The title prefixes that make a pull request a draft, where the forge has no draft flag."""
    return {"gitlab": ("Draft: ", "Draft:", "[Draft]", "(Draft)"),
            "gitea": ("WIP: ", "WIP:", "[WIP]")}.get(provider, ())


class GitHub:
    def __init__(self, spec: PullRequestSpec, token: str):
        from github import Auth, Github

        self._gh = Github(base_url=spec.api_url, auth=Auth.Token(token), timeout=TIMEOUT_SECONDS, retry=None)
        self._repo = self._gh.get_repo(spec.repository)
        self._owner = spec.repository.split("/", 1)[0]

    @staticmethod
    def _pr(pr: Any) -> PullRequest:
        return PullRequest(number=pr.number, url=pr.html_url, title=pr.title or "", body=pr.body or "",
                           head=pr.head.ref, base=pr.base.ref)

    def open_from(self, head: str) -> list[PullRequest]:
        pulls = self._repo.get_pulls(state="open", head=f"{self._owner}:{head}")
        out = []
        for i, pr in enumerate(pulls):
            if i >= MAX_PAGES * 100:
                break
            if pr.head.ref == head:
                out.append(self._pr(pr))
        return out

    def create(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequest:
        from github import GithubException

        try:
            return self._pr(self._repo.create_pull(base=base, head=head, title=title, body=body, draft=draft))
        except GithubException as exc:
            if exc.status == 422:
                raise Duplicate(str(exc)) from exc
            raise

    def edit(self, pr: PullRequest, title: str, body: str, base: str) -> PullRequest:
        pull = self._repo.get_pull(pr.number)
        pull.edit(title=title, body=body, base=base)
        return self._pr(pull)


class GitLab:
    def __init__(self, spec: PullRequestSpec, token: str):
        import gitlab

        self._gl = gitlab.Gitlab(spec.api_url, private_token=token, timeout=TIMEOUT_SECONDS, retry_transient_errors=False)
        self._project = self._gl.projects.get(spec.repository)

    @staticmethod
    def _pr(mr: Any) -> PullRequest:
        return PullRequest(number=mr.iid, url=getattr(mr, "web_url", None), title=mr.title or "",
                           body=mr.description or "", head=mr.source_branch, base=mr.target_branch)

    def open_from(self, head: str) -> list[PullRequest]:
        mrs = self._project.mergerequests.list(state="opened", source_branch=head, iterator=True, per_page=100)
        out = []
        for i, mr in enumerate(mrs):
            if i >= MAX_PAGES * 100:
                break
            if mr.source_branch == head and getattr(mr, "source_project_id", self._project.id) == self._project.id:
                out.append(self._pr(mr))
        return out

    def create(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequest:
        from gitlab.exceptions import GitlabCreateError

        if draft and not title.startswith(draft_prefixes("gitlab")):
            title = "Draft: " + title
        try:
            mr = self._project.mergerequests.create(
                {"source_branch": head, "target_branch": base, "title": title, "description": body})
        except GitlabCreateError as exc:
            if exc.response_code == 409:
                raise Duplicate(str(exc)) from exc
            raise
        return self._pr(mr)

    def edit(self, pr: PullRequest, title: str, body: str, base: str) -> PullRequest:
        mr = self._project.mergerequests.get(pr.number, lazy=True)
        mr.title, mr.description, mr.target_branch = title, body, base
        mr.save()
        return PullRequest(number=pr.number, url=pr.url, title=title, body=body, head=pr.head, base=base)


class Gitea:
    def __init__(self, spec: PullRequestSpec, token: str):
        url = spec.api_url
        self._host = url if url.endswith("/api/v1") else url + "/api/v1"
        self._token = token
        self._owner, self._name = spec.repository.split("/", 1)

    def _call(self, use: Callable[[Any], Awaitable[T]]) -> T:
        import gitea_api_client as g

        async def go() -> T:
            config = g.Configuration(host=self._host, api_key={"AuthorizationHeaderToken": self._token},
                                     api_key_prefix={"AuthorizationHeaderToken": "token"})
            async with g.ApiClient(config) as client:
                return await use(g.RepositoryApi(client))

        # Gitea takes in a push asynchronously: just after the first push into a repository, or of a
        # new branch, it may answer 404 for a moment
        deadline = time.monotonic() + BRANCH_SEEN_SECONDS
        while True:
            try:
                return asyncio.run(go())
            except g.ApiException as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            time.sleep(0.5)

    @staticmethod
    def _pr(pr: Any) -> PullRequest:
        return PullRequest(number=pr.number, url=pr.html_url, title=pr.title or "", body=pr.body or "",
                           head=pr.head.ref if pr.head else "", base=pr.base.ref if pr.base else "")

    def open_from(self, head: str) -> list[PullRequest]:
        async def use(api: Any) -> list[PullRequest]:
            out = []
            for page in range(1, MAX_PAGES + 1):
                pulls = await api.repo_list_pull_requests(self._owner, self._name, state="open", page=page, limit=50,
                                                          _request_timeout=TIMEOUT_SECONDS)
                for pr in pulls:
                    same_repo = pr.head is None or pr.head.repo_id is None or pr.base is None \
                        or pr.head.repo_id == pr.base.repo_id
                    if pr.head is not None and pr.head.ref == head and same_repo:
                        out.append(self._pr(pr))
                if len(pulls) < 50:
                    break
            return out

        return self._call(use)

    def create(self, head: str, base: str, title: str, body: str, draft: bool) -> PullRequest:
        import gitea_api_client as g

        if draft and not title.startswith(draft_prefixes("gitea")):
            title = "WIP: " + title

        async def use(api: Any) -> PullRequest:
            option = g.CreatePullRequestOption(head=head, base=base, title=title, body=body)
            return self._pr(await api.repo_create_pull_request(self._owner, self._name, body=option,
                                                               _request_timeout=TIMEOUT_SECONDS))

        try:
            return self._call(use)
        except g.ApiException as exc:
            if exc.status in (409, 422):
                raise Duplicate(str(exc)) from exc
            raise

    def edit(self, pr: PullRequest, title: str, body: str, base: str) -> PullRequest:
        import gitea_api_client as g

        async def use(api: Any) -> PullRequest:
            option = g.EditPullRequestOption(title=title, body=body, base=base)
            return self._pr(await api.repo_edit_pull_request(self._owner, self._name, pr.number, body=option,
                                                             _request_timeout=TIMEOUT_SECONDS))

        return self._call(use)


def describe(exc: Exception) -> str:
    """One line of what went wrong: the HTTP status and the forge's own message where there is one."""
    status = getattr(exc, "status", None) or getattr(exc, "response_code", None)
    data = getattr(exc, "data", None) or getattr(exc, "body", None) or getattr(exc, "error_message", None)
    message = ""
    if isinstance(data, dict):
        message = str(data.get("message") or data)
    elif isinstance(data, str | bytes):
        text = data.decode(errors="replace") if isinstance(data, bytes) else data
        try:
            loaded = json.loads(text)
            message = str(loaded.get("message", text)) if isinstance(loaded, dict) else text
        except ValueError:
            message = text
    if isinstance(status, int):
        return f"{type(exc).__name__}: HTTP {status}" + (f": {message}" if message else "")
    return f"{type(exc).__name__}: {exc}"


def open_forge(spec: PullRequestSpec, token: str) -> Forge:
    kinds: dict[str, type[GitHub] | type[GitLab] | type[Gitea]] = {"github": GitHub, "gitlab": GitLab, "gitea": Gitea}
    return kinds[spec.provider](spec, token)
