"""Local stand-ins of the GitHub and GitLab REST APIs, for the tests of spec.delivery.pullRequest.

A threaded HTTP server on 127.0.0.1 that implements only what PyGithub and python-gitlab
call to find, open and edit a pull request (GitLab: merge request):

    GitHub  GET /repos/{o}/{n}, GET|POST /repos/{o}/{n}/pulls, GET|PATCH /repos/{o}/{n}/pulls/{number}
    GitLab  GET /api/v4/projects/{path or id}, GET|POST /api/v4/projects/{id}/merge_requests,
            GET|PUT /api/v4/projects/{id}/merge_requests/{iid}

Like the real forges it refuses a second open pull request from the same head into the same
base (GitHub 422, GitLab 409), checks the token, and records every request. `race_next_create`
plays another client that opens the pull request between braid's look-up and its create.

    with ForgeAPI("github", token="t", repository="acme/app") as api:
        ...  # Github(base_url=api.url, ...)
        assert len(api.pulls) == 1
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal, Self
from urllib.parse import parse_qs, unquote, urlsplit


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class ForgeAPI:
    def __init__(self, kind: Literal["github", "gitlab"], token: str, repository: str = "acme/app"):
        self.kind = kind
        self.token = token
        self.repository = repository
        self.project_id = 42
        self.pulls: list[dict[str, Any]] = []
        """Every pull request (merge request) ever opened, in the forge's own shape."""
        self.requests: list[Request] = []
        self.race_next_create = False
        self.fail_with: int | None = None
        """Answer every request with this status (a forge that is down or refuses the token)."""
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def open_pulls(self) -> list[dict[str, Any]]:
        state = "open" if self.kind == "github" else "opened"
        return [p for p in self.pulls if p["state"] == state]

    # -- the shapes ------------------------------------------------------------------------------

    def _github_pr(self, number: int, head: str, base: str, title: str, body: str, draft: bool) -> dict[str, Any]:
        owner, name = self.repository.split("/", 1)
        api = f"{self.url}/repos/{self.repository}/pulls/{number}"
        repo = {"id": 1, "name": name, "full_name": self.repository, "owner": {"login": owner},
                "url": f"{self.url}/repos/{self.repository}"}
        return {"id": 1000 + number, "number": number, "url": api, "state": "open", "draft": draft,
                "html_url": f"https://forge.example/{self.repository}/pull/{number}", "title": title, "body": body,
                "head": {"ref": head, "label": f"{owner}:{head}", "sha": "0" * 40, "repo": repo},
                "base": {"ref": base, "label": f"{owner}:{base}", "sha": "0" * 40, "repo": repo}}

    def _gitlab_mr(self, iid: int, head: str, base: str, title: str, body: str) -> dict[str, Any]:
        draft = title.startswith(("Draft:", "[Draft]", "(Draft)"))
        return {"id": 5000 + iid, "iid": iid, "project_id": self.project_id, "state": "opened", "title": title,
                "description": body, "source_branch": head, "target_branch": base, "draft": draft,
                "source_project_id": self.project_id, "target_project_id": self.project_id,
                "web_url": f"https://forge.example/{self.repository}/-/merge_requests/{iid}"}

    # -- the API ---------------------------------------------------------------------------------

    def _create(self, head: str, base: str, title: str, body: str, draft: bool) -> tuple[int, Any]:
        with self._lock:
            if self.race_next_create:
                # another client was quicker: it opened the same one a moment ago
                self.race_next_create = False
                self._insert(head, base, "opened by another merge", "", draft)
            duplicate = [p for p in self.open_pulls() if self._head(p) == head and self._base(p) == base]
            if duplicate:
                if self.kind == "github":
                    return 422, {"message": "Validation Failed", "errors": [
                        {"resource": "PullRequest", "code": "custom",
                         "message": f"A pull request already exists for {self.repository.split('/')[0]}:{head}."}]}
                return 409, {"message": ["Another open merge request already exists for this source branch: "
                                         f"!{duplicate[0]['iid']}"]}
            return 201, self._insert(head, base, title, body, draft)

    def _insert(self, head: str, base: str, title: str, body: str, draft: bool) -> dict[str, Any]:
        number = len(self.pulls) + 1
        pr = (self._github_pr(number, head, base, title, body, draft) if self.kind == "github"
              else self._gitlab_mr(number, head, base, title, body))
        self.pulls.append(pr)
        return pr

    def _head(self, pr: dict[str, Any]) -> str:
        return pr["head"]["ref"] if self.kind == "github" else pr["source_branch"]

    def _base(self, pr: dict[str, Any]) -> str:
        return pr["base"]["ref"] if self.kind == "github" else pr["target_branch"]

    def _github(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        prefix = f"/repos/{self.repository}"
        if path == prefix and method == "GET":
            owner, name = self.repository.split("/", 1)
            return 200, {"id": 1, "name": name, "full_name": self.repository, "owner": {"login": owner},
                         "url": f"{self.url}{prefix}", "default_branch": "main"}
        if path == f"{prefix}/pulls" and method == "GET":
            pulls = [p for p in self.pulls if p["state"] == query.get("state", ["open"])[0]]
            if "head" in query:
                pulls = [p for p in pulls if p["head"]["label"] == query["head"][0]]
            if "base" in query:
                pulls = [p for p in pulls if p["base"]["ref"] == query["base"][0]]
            return 200, pulls
        if path == f"{prefix}/pulls" and method == "POST":
            return self._create(body["head"], body["base"], body["title"], body.get("body") or "",
                                bool(body.get("draft")))
        if path.startswith(f"{prefix}/pulls/"):
            number = int(path.rsplit("/", 1)[1])
            pr = next((p for p in self.pulls if p["number"] == number), None)
            if pr is None:
                return 404, {"message": "Not Found"}
            if method == "PATCH":
                with self._lock:
                    for key in ("title", "body"):
                        if key in body:
                            pr[key] = body[key]
                    if "base" in body:
                        pr["base"]["ref"] = body["base"]
            return 200, pr
        return 404, {"message": "Not Found"}

    def _gitlab(self, method: str, path: str, query: dict[str, list[str]], body: Any) -> tuple[int, Any]:
        project = unquote(path.removeprefix("/api/v4/projects/").split("/", 1)[0])
        rest = path.removeprefix("/api/v4/projects/").partition("/")[2]
        if project not in (self.repository, str(self.project_id)):
            return 404, {"message": "404 Project Not Found"}
        if not rest and method == "GET":
            return 200, {"id": self.project_id, "path_with_namespace": self.repository,
                         "name": self.repository.rsplit("/", 1)[1], "default_branch": "main"}
        if rest == "merge_requests" and method == "GET":
            mrs = [m for m in self.pulls if m["state"] == query.get("state", ["opened"])[0]]
            if "source_branch" in query:
                mrs = [m for m in mrs if m["source_branch"] == query["source_branch"][0]]
            return 200, mrs
        if rest == "merge_requests" and method == "POST":
            return self._create(body["source_branch"], body["target_branch"], body["title"],
                                body.get("description") or "", False)
        if rest.startswith("merge_requests/"):
            iid = int(rest.rsplit("/", 1)[1])
            mr = next((m for m in self.pulls if m["iid"] == iid), None)
            if mr is None:
                return 404, {"message": "404 Not found"}
            if method == "PUT":
                with self._lock:
                    for key in ("title", "description", "target_branch"):
                        if key in body:
                            mr[key] = body[key]
                    mr["draft"] = mr["title"].startswith(("Draft:", "[Draft]", "(Draft)"))
            return 200, mr
        return 404, {"message": "404 Not found"}

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.kind == "github":
            return headers.get("authorization") in (f"token {self.token}", f"Bearer {self.token}")
        return headers.get("private-token") == self.token

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        forge = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                parts = urlsplit(self.path)
                headers = {k.lower(): v for k, v in self.headers.items()}
                forge.requests.append(Request(self.command, self.path, headers, body))
                if forge.fail_with is not None:
                    status, answer = forge.fail_with, {"message": "the forge is unavailable"}
                elif not forge._authorized(headers):
                    status, answer = 401, {"message": "Bad credentials" if forge.kind == "github" else "401 Unauthorized"}
                else:
                    serve = forge._github if forge.kind == "github" else forge._gitlab
                    status, answer = serve(self.command, parts.path, parse_qs(parts.query), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PATCH = do_PUT = _serve

        return Handler
