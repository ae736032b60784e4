"""`braid run --local` with `backend: anthropic` against a local stand-in of the Messages API.

The whole path is real: the CLI, the local engine, `braid agent-run` subprocesses,
the anthropic SDK talking HTTP to the stand-in, git worktrees, pushes and the merge.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from braid.agents.anthropic.conversation import NOTE_MARK
from fakes.messages_api import MessagesAPI, Recorded, Reply, error, reply, text, tool_use
from localrun import Workspace, branches, git, make_origin, manifest, show

API_KEY = "sk-ant-e2e-standin-2c4e6a8b0d1f3e5a"
MODEL = "claude-sonnet-4-6"


def conversations(scripts: dict[str, list[Reply]]) -> Callable[[Recorded], Reply]:
    """A responder for tasks running in parallel: each request is answered from its task's script.

    The task is named in the first user message, and the step is the number of
    assistant turns the request already carries, so answers don't depend on the
    order in which the tasks' requests arrive. A retry continues the conversation:
    its steps count from braid's note that a new attempt begins.
    """

    def respond(request: Recorded) -> Reply:
        messages = request.body["messages"]
        first = messages[0]["content"][0]["text"]
        task = re.search(r"\(braid run [a-z0-9-]+, task ([a-z0-9-]+)\)", first).group(1)
        return scripts[task][attempt_step(messages)]

    return respond


def attempt_step(messages: list[dict]) -> int:
    """Assistant turns of this attempt so far: those after the last note of braid's that an attempt begins."""
    notes = [i for i, m in enumerate(messages) if m["role"] == "user"
             and any(b.get("type") == "text" and b["text"].startswith(NOTE_MARK) for b in m["content"])]
    since = notes[-1] + 1 if notes else 0
    return sum(1 for m in messages[since:] if m["role"] == "assistant")


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origin", {"README.md": "# app\n\nTBD\n", "app/__init__.py": ""})


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch):
    with MessagesAPI(api_key=API_KEY) as server:
        monkeypatch.setenv("ANTHROPIC_BASE_URL", server.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("BRAID_ANTHROPIC_MAX_RETRIES", "1")
        yield server


def anthropic_run(name: str, origin: Path, tasks: list[dict], **spec: object) -> dict:
    data = manifest(name, origin, tasks, **spec)
    data["spec"]["agent"] = {"backend": "anthropic", "model": MODEL}
    return data


def assert_key_nowhere(*roots: Path) -> None:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                assert API_KEY.encode() not in path.read_bytes(), f"the API key leaked into {path}"


def test_anthropic_tasks_run_locally_with_usage_and_cost(ws: Workspace, origin: Path, api: MessagesAPI) -> None:
    api.responder = conversations({
        "schema": [
            reply(tool_use("write_file", {"path": "db/schema.sql", "content": "CREATE TABLE users (id INT);\n"}),
                  input_tokens=1000, output_tokens=200, cache_write=4000),
            reply(text("Add the users table\n\nCreated db/schema.sql."),
                  input_tokens=300, output_tokens=100, cache_read=4000),
        ],
        "api": [
            # the dependency's file is in this task's starting point
            reply(tool_use("read_file", {"path": "db/schema.sql"}), input_tokens=800, output_tokens=50),
            reply(tool_use("write_file", {"path": "app/api.py", "content": "TABLE = 'users'\n"}),
                  input_tokens=200, output_tokens=80, cache_read=4000),
            reply(text("Add the users API"), input_tokens=100, output_tokens=20, cache_read=4200),
        ],
        "docs": [
            reply(tool_use("replace_in_file", {"path": "README.md", "old_text": "TBD", "new_text": "Users."})),
            reply(text("Describe users in the README")),
        ],
    })
    tasks = [
        {"name": "schema", "prompt": "Add a users table.", "paths": ["db/"]},
        {"name": "api", "prompt": "Expose users.", "dependsOn": ["schema"]},
        {"name": "docs", "prompt": "Document users."},
    ]
    result = ws.run(ws.write(anthropic_run("users", origin, tasks, maxParallel=2)), timeout=180)

    assert result.code == 0, result.stderr
    status = result.status
    assert status["phase"] == "Succeeded", status
    usage = {name: task["usage"] for name, task in status["tasks"].items()}

    def priced(inp: int, out: int, write: int, read: int) -> dict:
        # claude-sonnet-4-6: $3 input, $15 output, $3.75 cache write, $0.30 cache read per million tokens
        cost = (inp * 3 + out * 15 + write * 3.75 + read * 0.3) / 1e6
        return {"inputTokens": inp, "outputTokens": out, "cacheWriteTokens": write, "cacheReadTokens": read,
                "costUSD": pytest.approx(cost, abs=1e-6)}

    assert usage["schema"] == priced(1300, 300, 4000, 4000)
    assert usage["api"] == priced(1100, 150, 0, 8200)
    assert usage["docs"] == priced(200, 100, 0, 0)
    assert status["usage"] == priced(2600, 550, 4000, 12200)

    refs = branches(origin)
    for name, task in status["tasks"].items():
        assert refs[f"braid/users/tasks/{name}"] == task["commit"]
    assert show(origin, "braid/users/tasks/schema", "db/schema.sql") == "CREATE TABLE users (id INT);\n"
    assert show(origin, "braid/users/tasks/api", "app/api.py") == "TABLE = 'users'\n"
    assert git(origin, "log", "-1", "--format=%B", "braid/users/tasks/schema").startswith(
        "schema\n\nAdd the users table\n\nCreated db/schema.sql.")
    merged = "braid/users/merged"
    assert show(origin, merged, "README.md") == "# app\n\nUsers.\n"
    assert show(origin, merged, "app/api.py") is not None

    # the api task saw its dependency's file through the read_file tool
    api_reads = [r for r in api.message_requests if "task api)" in r.body["messages"][0]["content"][0]["text"]]
    assert "CREATE TABLE users" in api_reads[1].body["messages"][-1]["content"][0]["content"]
    assert_key_nowhere(ws.state, ws.root / "status.json")
    assert API_KEY not in git(origin, "log", "--all", "--format=%B") + result.stdout + result.stderr


def test_the_budget_stops_a_task_and_its_partial_work_is_pushed(ws: Workspace, origin: Path,
                                                                 api: MessagesAPI) -> None:
    # each turn costs 100 x $3 + 50 x $15 per million tokens = $0.00105
    api.responder = conversations({"big": [
        reply(tool_use("write_file", {"path": "part1.txt", "content": "1\n"})),
        reply(tool_use("write_file", {"path": "part2.txt", "content": "2\n"})),
        reply(tool_use("write_file", {"path": "part3.txt", "content": "3\n"})),
        reply(text("done")),
    ]})
    run_file = ws.write(anthropic_run("budget", origin, [{"name": "big", "prompt": "Do a lot."}],
                                      budget={"maxCostUSD": 0.002}))
    result = ws.run(run_file, timeout=180)

    assert result.code == 1
    task = result.status["tasks"]["big"]
    assert task["phase"] == "Failed" and task["reason"] == "BudgetExceeded", task
    assert task["usage"]["costUSD"] == pytest.approx(0.0021, abs=1e-6)
    branch = "braid/budget/tasks/big"
    assert branches(origin)[branch] == task["commit"]
    assert show(origin, branch, "part1.txt") == "1\n" and show(origin, branch, "part2.txt") == "2\n"
    assert show(origin, branch, "part3.txt") is None
    assert "Partial work: BudgetExceeded" in git(origin, "log", "-1", "--format=%B", branch)
    assert len(api.message_requests) == 2


def test_a_wrong_key_fails_the_task_with_a_clear_reason(ws: Workspace, origin: Path, api: MessagesAPI,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong-key")
    result = ws.run(ws.write(anthropic_run("badkey", origin, [{"name": "t", "prompt": "x"}])), timeout=180)
    assert result.code == 1
    task = result.status["tasks"]["t"]
    assert task["phase"] == "Failed" and task["reason"] == "InvalidAPIKey"
    assert task["attempts"] == 1  # not worth retrying


def test_agent_run_reads_the_key_from_a_file(tmp_path: Path, origin: Path, api: MessagesAPI,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    api.responder = conversations({"solo": [
        reply(tool_use("write_file", {"path": "solo.txt", "content": "ok\n"})), reply(text("Write solo.txt"))]})
    spec = {
        "run": "filekey", "task": "solo", "prompt": "Write solo.txt.", "branch": "braid/filekey/tasks/solo",
        "repo": {"url": str(origin)}, "agent": {"backend": "anthropic", "model": MODEL},
    }
    spec_file = tmp_path / "task.json"
    spec_file.write_text(json.dumps(spec))
    proc = subprocess.run(
        [sys.executable, "-m", "braid", "agent-run", "--task", str(spec_file), "--workdir", str(tmp_path / "work"),
         "--cache-dir", str(tmp_path / "cache"), "--api-key-file", str(key_file)],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert show(origin, "braid/filekey/tasks/solo", "solo.txt") == "ok\n"
    assert "turn 2/50: stop end_turn" in proc.stderr
    assert API_KEY not in proc.stdout + proc.stderr


def test_retries_never_spend_more_than_the_budget_plus_one_response(ws: Workspace, origin: Path,
                                                                     api: MessagesAPI) -> None:
    """Each attempt gets the task's share less what its earlier attempts spent.

    Every attempt makes one paid turn ($0.00105), continuing the conversation of the
    attempts before it, and then fails on a 500 (retryable). With the whole share again
    per attempt, four attempts would spend $0.0042.
    """
    turn = 0.00105
    api.responder = conversations({"flaky": [
        reply(tool_use("write_file", {"path": "part.txt", "content": "1\n"})),
        error(500, "scripted outage"),
        error(500, "scripted outage"),
    ]})
    run_file = ws.write(anthropic_run("spend", origin, [{"name": "flaky", "prompt": "Do it."}],
                                      budget={"maxCostUSD": 0.003}, retry={"limit": 3, "backoffSeconds": 0}))
    result = ws.run(run_file, timeout=180)

    assert result.code == 1
    task = result.status["tasks"]["flaky"]
    assert task["attempts"] == 3, task
    assert task["reason"] == "BudgetExceeded", task
    spent = result.status["usage"]["costUSD"]
    assert spent == pytest.approx(3 * turn, abs=1e-6)
    assert spent <= 0.003 + turn  # the budget, plus the one response in flight when it ran out
    # the third attempt was told what was left: 0.003 - 2 x 0.00105
    paid_turns = [r for r in api.message_requests if attempt_step(r.body["messages"]) == 0]
    assert len(paid_turns) == 3
    # each retry's first request carries the conversation so far: 1, then 2 earlier turns
    assert [sum(m["role"] == "assistant" for m in r.body["messages"]) for r in paid_turns] == [0, 1, 2]


def test_the_loops_commands_run_under_the_tasks_memory_limit_and_the_loop_does_not(
        ws: Workspace, origin: Path, api: MessagesAPI) -> None:
    hog = "b = bytearray(200 * 2**20)"
    api.responder = conversations({"hog": [
        reply(tool_use("run_command", {"argv": ["python3", "-c", hog]})),
        reply(tool_use("write_file", {"path": "notes.txt", "content": "too big\n"})),
        reply(text("Tried")),
    ]})
    tasks = [{"name": "hog", "prompt": "Allocate.", "resources": {"limits": {"memory": "20Mi"}}}]
    result = ws.run(ws.write(anthropic_run("hog", origin, tasks)), "--sandbox", "bwrap", "--limits", "cgroup",
                    timeout=180)

    # the kernel killed the command in the task's cgroup; braid's own loop, outside it, went on
    tool_result = api.message_requests[1].body["messages"][-1]["content"][0]["content"]
    assert re.match(r"exit code: (-9|137) \(killed by SIGKILL", tool_result), tool_result
    assert result.code == 0, result.stderr
    assert result.status["tasks"]["hog"]["phase"] == "Succeeded"
    assert show(origin, "braid/hog/tasks/hog", "notes.txt") == "too big\n"
    assert result.status["tasks"]["hog"]["resourceUsage"]["memoryPeakBytes"] >= 19 * 2**20
