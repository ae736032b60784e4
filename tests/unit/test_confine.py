"""The trust boundary's parts on their own: the bubblewrap sandbox, the key-injecting proxy, the secret scan."""

from __future__ import annotations

import base64
import http.client
import json
import os
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braid.agents.anthropic import shell
from braid.confine import ModelProxy, Sandbox, find_sandbox
from braid.gitops import ObjectCache, Secrets, commit_all, open_workspace, prepare_branch, push_branch, scan_outgoing
from fakes.messages_api import MessagesAPI, reply, text
from gitrepos import make_repo

KEY = "sk-ant-unit-canary-0f1e2d3c4b5a6978"


# -- the sandbox ---------------------------------------------------------------------------------


@pytest.fixture
def box(tmp_path: Path) -> Sandbox:
    workdir = tmp_path / "state" / "work" / "t"
    (workdir / ".git").mkdir(parents=True)
    (workdir / ".git" / "config").write_text("[core]\n")
    (tmp_path / "state" / "work" / "other").mkdir()
    (tmp_path / "state" / "work" / "other" / "theirs.txt").write_text("another task's work\n")
    (tmp_path / "secret.key").write_text(KEY)
    (tmp_path / "shared").mkdir()
    return Sandbox(find_sandbox(), workdir, hidden=(tmp_path / "state", tmp_path / "secret.key"),
                   shared=(tmp_path / "shared",))


def inside(box: Sandbox, script: str, timeout: float = 30) -> shell.Completed:
    argv = box.wrap(["sh", "-c", script], {"PATH": "/usr/bin:/bin", "HOME": "/root"})
    return shell.run(argv, box.workdir, {"PATH": "/usr/bin:/bin"}, timeout, threading.Event())


def test_the_sandbox_writes_only_the_working_copy_and_what_is_shared(box: Sandbox, tmp_path: Path) -> None:
    done = inside(box, f"""
        echo work > mine.txt && echo wrote-workdir
        echo x > .git/hooks-planted 2>/dev/null || echo git-dir-read-only
        echo x >> .git/config 2>/dev/null || echo git-config-read-only
        echo x > {tmp_path}/outside.txt  # lands in the sandbox's own /tmp
        echo x > /usr/local/braid-planted 2>/dev/null || echo system-read-only
        echo x > {tmp_path}/shared/cache.txt && echo wrote-shared
        cat {tmp_path}/secret.key 2>/dev/null | grep -c sk-ant || echo key-hidden
        ls {box.workdir.parent} ; cat {tmp_path}/state/work/other/theirs.txt 2>/dev/null || echo others-hidden
        echo x > /tmp/{box.workdir.parent.parent.parent.name}-private && echo private-tmp
    """)
    assert done.exit_code == 0, done.output
    for word in ("wrote-workdir", "git-dir-read-only", "git-config-read-only", "system-read-only", "wrote-shared",
                 "key-hidden", "others-hidden", "private-tmp"):
        assert word in done.output, done.output
    assert (box.workdir / "mine.txt").read_text() == "work\n"
    assert (tmp_path / "shared" / "cache.txt").exists()
    assert not Path("/usr/local/braid-planted").exists()
    assert not (tmp_path / "outside.txt").exists() and not (box.workdir / ".git" / "hooks-planted").exists()
    assert not Path(f"/tmp/{tmp_path.name}-private").exists()


def test_nothing_started_in_the_sandbox_outlives_the_command(box: Sandbox) -> None:
    mark = f"sandbox-daemon-{os.getpid()}-{time.monotonic_ns()}"
    done = inside(box, f"""
        MARK={mark} setsid sh -c 'sleep 300' </dev/null >/dev/null 2>&1 &
        MARK={mark} nohup sleep 301 </dev/null >/dev/null 2>&1 &
        ls /proc | grep -c '^[0-9]' ; echo started
    """)
    assert "started" in done.output
    # a PID namespace of its own: a handful of processes, none of braid's
    assert int(done.output.split()[0]) < 10, done.output
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and marked(mark):
        time.sleep(0.1)
    assert marked(mark) == []


def marked(mark: str) -> list[str]:
    out = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and mark.encode() in (proc / "environ").read_bytes():
                out.append(proc.name)
        except OSError:
            continue
    return out


def test_the_sandbox_environment_is_exactly_what_braid_gives(box: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    done = inside(box, "env")
    assert KEY not in done.output and "ANTHROPIC" not in done.output


# -- the proxy -----------------------------------------------------------------------------------


def post(url: str, key: str, body: bytes) -> tuple[int, dict]:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    conn.request("POST", "/v1/messages", body=body, headers={"x-api-key": key, "content-type": "application/json",
                                                              "anthropic-version": "2023-06-01"})
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response.status, json.loads(data) if data else {}


def message(content: str) -> bytes:
    return json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 10,
                       "messages": [{"role": "user", "content": content}]}).encode()


def test_the_proxy_swaps_the_placeholder_for_the_key() -> None:
    with MessagesAPI(api_key=KEY) as api, ModelProxy(KEY, leaks=Secrets.of({"API key": KEY}).found_in) as proxy:
        api.queue(reply(text("hello")))
        token = proxy.route(api.url)
        assert KEY not in token
        status, body = post(proxy.url, token, message("hi"))
        assert status == 200, body
        assert api.message_requests[0].headers["x-api-key"] == KEY
        assert token not in json.dumps(api.message_requests[0].headers)


def test_the_proxy_refuses_unknown_placeholders_and_bodies_holding_the_key() -> None:
    with MessagesAPI(api_key=KEY) as api, ModelProxy(KEY, leaks=Secrets.of({"API key": KEY}).found_in) as proxy:
        token = proxy.route(api.url)
        status, body = post(proxy.url, "braid-placeholder-guess", message("hi"))
        assert status == 401 and body["error"]["type"] == "authentication_error"
        for disguised in (KEY, base64.b64encode(KEY.encode()).decode(), KEY[::-1]):
            status, body = post(proxy.url, token, message(f"exfiltrate {disguised} now"))
            assert status == 400 and "API key" in body["error"]["message"], body
            assert KEY not in json.dumps(body)
        assert api.requests == []  # none of it reached the model


def test_an_unreachable_upstream_is_a_502_naming_it() -> None:
    with MessagesAPI() as gone:
        url = gone.url
    with ModelProxy(KEY) as proxy:
        status, body = post(proxy.url, proxy.route(url), message("hi"))
    assert status == 502 and url in body["error"]["message"] and KEY not in json.dumps(body)


# -- the scan before a push ----------------------------------------------------------------------


@pytest.fixture
def workspace(tmp_path: Path):
    origin = make_repo(tmp_path / "origin", {"README.md": "# app\n"})
    url = str(origin.path)
    ws = open_workspace(tmp_path / "ws", ObjectCache(tmp_path / "cache").update(url), url)
    prepared = prepare_branch(ws, "braid/r/tasks/a", "main", [])
    return origin, ws, prepared


@pytest.mark.parametrize("content", [
    KEY, f"token = '{KEY}'", base64.b64encode(f"K={KEY}\n".encode()).decode(), KEY[::-1], KEY.encode().hex(),
])
def test_outgoing_commits_holding_a_secret_are_found(workspace, content: str) -> None:
    _, ws, _ = workspace
    (ws.path / "notes.txt").write_text(content + "\n")
    commit_all(ws, "a")
    leak = scan_outgoing(ws, ws.out("rev-parse", "HEAD"), Secrets.of({"API key": KEY}))
    assert leak is not None and leak.secret == "API key" and "notes.txt" in str(leak) and KEY not in str(leak)


def test_a_secret_in_a_commit_message_is_found_and_clean_work_passes(workspace) -> None:
    origin, ws, prepared = workspace
    (ws.path / "ok.txt").write_text("fine\n")
    commit_all(ws, "a")
    secrets = Secrets.of({"git password": "hunter2-hunter2"})
    assert scan_outgoing(ws, ws.out("rev-parse", "HEAD"), secrets) is None
    push_branch(ws, "braid/r/tasks/a", prepared.lease)
    (ws.path / "ok.txt").write_text("more\n")
    commit_all(ws, "a\n\nthe password is hunter2-hunter2")
    leak = scan_outgoing(ws, ws.out("rev-parse", "HEAD"), secrets)
    assert leak is not None and leak.where.startswith("commit")


def test_what_the_remote_already_has_is_not_scanned(tmp_path: Path) -> None:
    """A key someone committed to main long ago is not the agent's doing; it is not held against the task."""
    origin = make_repo(tmp_path / "origin", {"README.md": f"old key {KEY}\n"})
    url = str(origin.path)
    ws = open_workspace(tmp_path / "ws", ObjectCache(tmp_path / "cache").update(url), url)
    prepare_branch(ws, "braid/r/tasks/a", "main", [])
    (ws.path / "new.txt").write_text("new\n")
    commit_all(ws, "a")
    assert scan_outgoing(ws, ws.out("rev-parse", "HEAD"), Secrets.of({"API key": KEY})) is None


def test_short_values_are_not_looked_for() -> None:
    assert not Secrets.of({"git password": "x"})
    assert Secrets.of({"API key": KEY}).redact(f"a {KEY} b") == "a [REDACTED] b"
