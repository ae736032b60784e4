"""The `command` backend with a real agent CLI: Claude Code from the npm registry.

`braid run --local` runs `claude -p` in each task's worktree, pointed at the local
stand-in of the Messages API. The CLI streams its requests (server-sent events),
runs the Bash tool the stand-in asks for, and braid commits and pushes the result.

The CLI runs the way braid runs any agent CLI: in the sandbox, talking to braid's
key-injecting proxy (ANTHROPIC_BASE_URL) with a placeholder in ANTHROPIC_API_KEY. The key
itself is never in the CLI's environment, argv or reach; the proxy puts it on the way out.

With `--output-format json` or `stream-json` braid reads the CLI's own usage and cost from
its output: they reach the run's status and count against its budget, and with
stream-json braid stops the CLI live when the task's share is spent.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from braid.agents.pricing import price_for

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.messages_api import MessagesAPI, Recorded, Reply, reply, text, tool_use
from localrun import Outcome, Workspace, branches, git, make_origin, manifest, show

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


# -- usage, cost and budgets ---------------------------------------------------------------------

# what the stand-in reports for every response of the usage tests
TURN = {"input_tokens": 1200, "output_tokens": 345, "cache_write": 2000, "cache_read": 5000}


def claude_code_run(ws: Workspace, tmp_path: Path, claude_bin: str, api: MessagesAPI, name: str, tasks: list[dict],
                    output: list[str], **spec: object) -> Outcome:
    """`braid run --local` of Claude Code tasks against the stand-in, with `output` added to the command."""
    origin = tmp_path / "origin"
    if not origin.exists():
        make_origin(origin, {"greeting.txt": "hello\n"})
    key_file = tmp_path / "api-key"
    key_file.write_text(API_KEY + "\n")
    cli_home = tmp_path / "cli-home"
    cli_home.mkdir(exist_ok=True)
    data = manifest(name, origin, tasks, **spec)
    data["spec"]["agent"] = {
        "backend": "command",
        "command": [claude_bin, "-p", "--bare", "--allowedTools", "Bash", *output],
        "env": {"ANTHROPIC_BASE_URL": api.url, "HOME": str(cli_home), "DISABLE_AUTOUPDATER": "1",
                "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1"},
    }
    return ws.run(ws.write(data), "--api-key-file", str(key_file), timeout=300)


def counted_turns(request: Recorded) -> Reply:
    turn = claude_code_turns(request)
    turn.usage = {"input_tokens": TURN["input_tokens"], "output_tokens": TURN["output_tokens"],
                  "cache_creation_input_tokens": TURN["cache_write"], "cache_read_input_tokens": TURN["cache_read"]}
    return turn


@pytest.mark.parametrize("output", [["--output-format", "json"], ["--output-format", "stream-json", "--verbose"]],
                         ids=["json", "stream-json"])
def test_claude_code_reports_its_tokens_and_cost_to_the_status(claude_bin: str, tmp_path: Path, output: list[str],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    ws = Workspace(tmp_path)
    with MessagesAPI(responder=counted_turns, api_key=API_KEY) as api:
        result = claude_code_run(ws, tmp_path, claude_bin, api, "usage", [{"name": "greet", "prompt": "Greet."}],
                                 output)
        responses = len(api.message_requests)
        models = {r.body["model"] for r in api.message_requests}

    task = result.status["tasks"]["greet"]
    assert result.code == 0 and task["phase"] == "Succeeded", (result.stderr, task)
    assert responses >= 2
    usage = task["usage"]
    # every response the API sent, counted once
    assert usage["inputTokens"] == responses * TURN["input_tokens"]
    assert usage["outputTokens"] == responses * TURN["output_tokens"]
    assert usage["cacheWriteTokens"] == responses * TURN["cache_write"]
    assert usage["cacheReadTokens"] == responses * TURN["cache_read"]
    # the cost is Claude Code's own, at the list price of the model it used: the one braid's table has too
    (model,) = models
    price = price_for(model)
    assert price is not None, model
    per_turn = (TURN["input_tokens"] * price.input + TURN["output_tokens"] * price.output
                + TURN["cache_write"] * price.cache_write + TURN["cache_read"] * price.cache_read) / 1e6
    assert usage["costUSD"] == pytest.approx(responses * per_turn, abs=1e-6)
    assert "unpricedTokens" not in usage
    assert result.status["usage"] == usage
    # the commit body is the CLI's final answer, not its JSON
    origin = tmp_path / "origin"
    assert git(origin, "log", "-1", "--format=%B", "braid/usage/tasks/greet").startswith(
        "greet\n\nChanged the greeting.\n")
    assert show(origin, "braid/usage/tasks/greet", "greeting.txt") == NEW_GREETING


def endless_work(request: Recorded) -> Reply:
    """A task that never finishes: one more Bash call after every tool result, 1000 input tokens each."""
    tools = {t.get("name") for t in request.body.get("tools", [])}
    if "Bash" not in tools:
        return reply(text("ok"))
    step = sum(1 for m in request.body["messages"] if m["role"] == "assistant") + 1
    command = f"echo step {step} >> work.log"
    return reply(tool_use("Bash", {"command": command, "description": f"Step {step}"}), input_tokens=1000,
                 output_tokens=40)


def test_a_budget_stops_claude_code_and_the_tasks_after_it_are_skipped(claude_bin: str, tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """stream-json: braid follows the usage live and stops the CLI at the task's share of the budget."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    ws = Workspace(tmp_path)
    tasks = [{"name": "big", "prompt": "Work forever."},
             {"name": "after", "prompt": "Finish up.", "dependsOn": ["big"]}]
    # two tasks not started: big gets half of 6000 tokens, i.e. three responses of 1000 input tokens
    with MessagesAPI(responder=endless_work, api_key=API_KEY) as api:
        result = claude_code_run(ws, tmp_path, claude_bin, api, "budget", tasks,
                                 ["--output-format", "stream-json", "--verbose"], budget={"maxTokens": 6000},
                                 taskTimeoutSeconds=240)
        responses = len(api.message_requests)

    assert result.code == 1, result.stderr
    big, after = result.status["tasks"]["big"], result.status["tasks"]["after"]
    assert big["phase"] == "Failed" and big["reason"] == "BudgetExceeded", big
    assert "budget share of 3000" in big["message"]
    assert big["usage"]["inputTokens"] >= 3000
    # stopped at its share, not at its timeout: at most a few responses were in flight at the kill
    assert 3 <= responses < 10, responses
    assert after["phase"] == "Skipped" and after["reason"] == "DependencyFailed", after
    # the work done before the stop is pushed
    branch = "braid/budget/tasks/big"
    assert branches(tmp_path / "origin")[branch] == big["commit"]
    assert show(tmp_path / "origin", branch, "work.log").startswith("step 1\n")
    assert "Partial work: BudgetExceeded" in git(tmp_path / "origin", "log", "-1", "--format=%B", branch)


def test_a_one_shot_result_counts_against_the_runs_budget(claude_bin: str, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """--output-format json says what was spent only at the end: the task finishes, the budget is then spent
    and the tasks not started yet are skipped."""
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)
    ws = Workspace(tmp_path)
    tasks = [{"name": "first", "prompt": "Greet."},
             {"name": "second", "prompt": "Greet again.", "dependsOn": ["first"]}]
    with MessagesAPI(responder=counted_turns, api_key=API_KEY) as api:
        result = claude_code_run(ws, tmp_path, claude_bin, api, "oneshot", tasks, ["--output-format", "json"],
                                 budget={"maxCostUSD": 0.001})

    assert result.code == 1, result.stderr
    first, second = result.status["tasks"]["first"], result.status["tasks"]["second"]
    assert first["phase"] == "Succeeded", first
    assert first["usage"]["costUSD"] > 0.001
    assert second["phase"] == "Skipped" and second["reason"] == "BudgetExceeded", second
    assert result.status["usage"]["costUSD"] == first["usage"]["costUSD"]
