"""spec.merge.resolve end to end on `braid run --local`: a CHANGELOG conflict resolved by a union rule and a
content conflict resolved by a resolver task (script backend, and the anthropic SDK against the stand-in)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes.messages_api import MessagesAPI, Recorded, Reply, reply, text, tool_use
from localrun import Workspace, branches, git, make_origin, manifest, script_task, show, write

CHANGELOG = "# Changelog\n\n## Unreleased\n"
RESOLVED = "GREETING = 'hello'\nFAREWELL = 'goodbye'\n"
API_KEY = "sk-ant-resolver-standin-5d7f9b1c3e"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origin", {"CHANGELOG.md": CHANGELOG, "app.py": "VALUE = None\n"})


def two_tasks() -> list[dict]:
    """Both rewrite app.py's one line and add a CHANGELOG line: one content conflict, one additive one."""
    return [
        script_task("greet", [write("app.py", "GREETING = 'hello'\n"),
                              write("CHANGELOG.md", CHANGELOG + "- greet: say hello\n")]),
        script_task("farewell", [write("app.py", "FAREWELL = 'goodbye'\n"),
                                 write("CHANGELOG.md", CHANGELOG + "- farewell: say goodbye\n"),
                                 write("farewell.txt", "bye\n")]),
    ]


def resolve_rules(agent: dict) -> dict:
    return {"resolve": [{"paths": ["CHANGELOG.md"], "strategy": "union"}, {"strategy": "agent", "agent": agent}]}


def events(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a_union_rule_and_a_resolver_task_merge_both_tasks_and_the_report_says_how(
        ws: Workspace, origin: Path) -> None:
    agent = {"script": {"steps": [{"op": "require", "path": "app.py"}, write("app.py", RESOLVED)]}}
    run = manifest("resolve", origin, two_tasks(), merge=resolve_rules(agent))
    result = ws.run(ws.write(run), "--events", str(ws.root / "events.jsonl"))

    assert result.code == 0, result.stderr
    status = result.status
    assert status["phase"] == "Succeeded", status["message"]
    merge = status["merge"]
    assert merge["merged"] == ["farewell", "greet"] and merge["conflicts"] == [] and merge["round"] == 2
    integration = merge["branch"]
    assert show(origin, integration, "app.py") == RESOLVED
    changelog = show(origin, integration, "CHANGELOG.md")
    assert "- greet: say hello\n" in changelog and "- farewell: say goodbye\n" in changelog
    assert "<<<<<<<" not in changelog and show(origin, integration, "farewell.txt") == "bye\n"

    # the report keeps both conflicts and says how each was resolved: by the rule, by the agent
    resolver = status["resolvers"]["greet"]
    assert resolver["phase"] == "Succeeded" and resolver["branch"] == "braid/resolve/resolve/greet"
    (resolved,) = merge["resolved"]
    how = {f["path"]: f["resolution"] for f in resolved["files"]}
    assert how == {"CHANGELOG.md": "rule union", "app.py": f"agent greet.resolve at {resolver['commit'][:12]}"}
    (handed,) = merge["resolutions"]
    assert handed["task"] == "greet" and handed["commit"] == resolver["commit"] and handed["files"] == ["app.py"]

    # what the agent decided is on its branch, on top of the commit braid prepared with the markers
    assert branches(origin)["braid/resolve/resolve/greet"] == resolver["commit"]
    assert "<<<<<<<" in show(origin, handed["prepared"], "app.py")
    assert git(origin, "merge-base", "--is-ancestor", handed["prepared"], resolver["commit"], check=False) == ""
    said = [(e["reason"], e["message"]) for e in events(ws.root / "events.jsonl")]
    assert ("ResolverStarted", "task greet conflicts in app.py; greet.resolve resolves them on "
            "braid/resolve/resolve/greet") in said
    assert any(reason == "ConflictResolved" and "greet.resolve" in message for reason, message in said)


def test_a_resolver_that_leaves_markers_leaves_its_task_out_and_the_report_says_so(
        ws: Workspace, origin: Path) -> None:
    agent = {"script": {"steps": [write("notes.txt", "I looked at it\n")]}}
    result = ws.run(ws.write(manifest("markers", origin, two_tasks(), merge=resolve_rules(agent))))

    assert result.code == 1, result.stderr
    status = result.status
    assert status["phase"] == "Conflicted"
    merge = status["merge"]
    assert merge["merged"] == ["farewell"] and merge["notMerged"] == ["greet"]
    (conflict,) = merge["conflicts"]
    assert conflict["message"] == "greet.resolve left conflict markers in app.py; not merged"
    assert all(f.get("resolution") is None for f in conflict["files"])
    assert show(origin, merge["branch"], "app.py") == "FAREWELL = 'goodbye'\n"
    assert status["resolvers"]["greet"]["phase"] == "Succeeded"


def test_a_resolver_on_the_anthropic_backend_gets_the_conflict_and_both_prompts_and_is_paid_for(
        ws: Workspace, origin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[dict] = []

    def respond(request: Recorded) -> Reply:
        seen.append(request.body)
        turns = sum(1 for m in request.body["messages"] if m["role"] == "assistant")
        if turns == 0:
            return reply(tool_use("read_file", {"path": "app.py"}), input_tokens=1000, output_tokens=100)
        if turns == 1:
            return reply(tool_use("write_file", {"path": "app.py", "content": RESOLVED}),
                         input_tokens=1200, output_tokens=150)
        return reply(text("Keep both constants"), input_tokens=1300, output_tokens=20)

    with MessagesAPI(api_key=API_KEY) as api:
        api.responder = respond
        monkeypatch.setenv("ANTHROPIC_BASE_URL", api.url)
        monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
        monkeypatch.setenv("BRAID_ANTHROPIC_MAX_RETRIES", "1")
        run = manifest("llm", origin, two_tasks(),
                       merge=resolve_rules({"backend": "anthropic", "model": "claude-sonnet-4-6"}))
        run["spec"]["tasks"][0]["prompt"] = "Greet the user with hello."
        run["spec"]["tasks"][1]["prompt"] = "Say goodbye to the user."
        result = ws.run(ws.write(run), timeout=180)

    assert result.code == 0, result.stderr
    status = result.status
    assert status["phase"] == "Succeeded", status["message"]
    assert show(origin, status["merge"]["branch"], "app.py") == RESOLVED
    # the model saw the conflict: the file list, both tasks' prompts, and the markers it read
    prompt = seen[0]["messages"][0]["content"][0]["text"]
    assert "- app.py" in prompt and "Greet the user with hello." in prompt and "Say goodbye to the user." in prompt
    tool_result = json.dumps(seen[1]["messages"])
    assert "<<<<<<<" in tool_result and API_KEY not in tool_result
    # and what it spent is the resolver's, counted in the run's usage
    usage = status["resolvers"]["greet"]["usage"]
    assert (usage["inputTokens"], usage["outputTokens"]) == (3500, 270)
    assert status["usage"]["inputTokens"] == 3500 and status["usage"]["costUSD"] > 0
