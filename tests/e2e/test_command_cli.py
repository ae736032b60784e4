"""The `command` backend with a real agent CLI: Claude Code from the npm registry.

`braid run --local` runs `claude -p` in each task's worktree, pointed at the local
stand-in of the Messages API. The CLI streams its requests (server-sent events),
runs the Bash tool the stand-in asks for, and braid commits and pushes the result.

The CLI runs the way braid runs any agent CLI: in the sandbox, talking to braid's
key-injecting proxy (ANTHROPIC_BASE_URL) with a placeholder in ANTHROPIC_API_KEY. The key
itself is never in the CLI's environment, argv or reach; the proxy puts it on the way out.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.messages_api import MessagesAPI, Recorded, Reply, reply, text, tool_use
from localrun import Workspace, branches, git, make_origin, manifest, show

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "sk-ant-cli-standin-9d8c7b6a5f4e3d2c"
NEW_GREETING = "hello from claude code\n"


@pytest.fixture(scope="module")
def claude_bin() -> str:
    assert shutil.which("npm"), "npm is needed to install Claude Code from the npm registry (apt-get install npm)"
    proc = subprocess.run([str(ROOT / "hack/install-agent-cli.sh")], capture_output=True, text=True, timeout=900,
                          check=False)
    assert proc.returncode == 0, f"installing Claude Code failed:\n{proc.stderr}"
    return proc.stdout.strip().splitlines()[-1]


def claude_code_turns(request: Recorded) -> Reply:
    """Edit the file with Bash, then finish; side requests (titles, summaries) get a plain answer."""
    body = request.body
    tools = {t.get("name") for t in body.get("tools", [])}
    last = body["messages"][-1]
    content = last["content"] if isinstance(last.get("content"), list) else []
    if any(isinstance(b, dict) and b.get("type") == "tool_result" for b in content):
        return reply(text("Changed the greeting."))
    if "Bash" in tools:
        command = f"printf '{NEW_GREETING.strip()}\\n' > greeting.txt"
        return reply(tool_use("Bash", {"command": command, "description": "Write the new greeting"}))
    return reply(text("ok"))


def test_claude_code_edits_a_worktree_through_the_command_backend(claude_bin: str, tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    origin = make_origin(tmp_path / "origin", {"greeting.txt": "hello\n"})
    ws = Workspace(tmp_path)
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    cli_home = tmp_path / "cli-home"
    cli_home.mkdir()
    # nothing of the test process's own credentials may play a part
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)

    with MessagesAPI(responder=claude_code_turns, api_key=API_KEY) as api:
        data = manifest("cli", origin, [{"name": "greet", "prompt": "Change the greeting."}])
        data["spec"]["agent"] = {
            "backend": "command",
            "command": [
                claude_bin, "-p", "--bare", "--allowedTools", "Bash",
            ],
            "env": {
                "ANTHROPIC_BASE_URL": api.url,
                "HOME": str(cli_home),
                "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            },
        }
        argv = ws.argv(ws.write(data)) + ["--api-key-file", str(key_file)]
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
        status = json.loads((ws.root / "status.json").read_text())

    task = status["tasks"]["greet"]
    assert proc.returncode == 0 and task["phase"] == "Succeeded", (proc.stderr, task)
    branch = "braid/cli/tasks/greet"
    assert branches(origin)[branch] == task["commit"]
    assert show(origin, branch, "greeting.txt") == NEW_GREETING
    assert task["changedFiles"] == ["greeting.txt"]
    # the CLI's final words are the commit body
    assert git(origin, "log", "-1", "--format=%B", branch).startswith("greet\n\nChanged the greeting.")

    requests = api.message_requests
    assert requests, "Claude Code never called the Messages API"
    # the key arrived from braid's proxy, never from the CLI: the CLI had only the placeholder
    assert all(r.headers.get("x-api-key") == API_KEY for r in requests)
    assert not [r for r in requests if API_KEY.encode() in r.raw]
    assert all(r.headers.get("user-agent", "").startswith("claude-cli/") for r in requests)
    assert any(r.body.get("stream") for r in requests)
    results = [b for r in requests for m in r.body["messages"] if isinstance(m.get("content"), list)
               for b in m["content"] if isinstance(b, dict) and b.get("type") == "tool_result"]
    assert results and not results[-1].get("is_error")
    for path in [ws.root / "status.json", *ws.state.rglob("*")]:
        if path.is_file():
            assert API_KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"
