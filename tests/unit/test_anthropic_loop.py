"""The anthropic backend end to end against a local stand-in of the Messages API.

The real anthropic SDK talks HTTP (streamed, as in production) to the stand-in;
the agent edits a real git worktree.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from braid.agents import AgentContext, AgentError, get_agent
from braid.agents.anthropic import AnthropicAgent
from braid.agents.anthropic.prompt import SYSTEM_PROMPT
from braid.api import AgentSpec, Budget
from braid.gitops import Secrets
from braid.runner.run import RunnerPaths, model_access, model_upstream, read_api_key
from gitrepos import GitRepo, make_repo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes import conftest_plugin
from fakes.conftest_plugin import FAKE_API_KEY
from fakes.messages_api import (
    MessagesAPI,
    Recorded,
    error,
    reply,
    stream_error,
    text,
    thinking,
    tool_use,
)

messages_api = conftest_plugin.messages_api  # the shared fixture
EPHEMERAL = {"type": "ephemeral"}
MODEL = "claude-sonnet-4-6"


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return make_repo(tmp_path / "repo", {"README.md": "# app\n\nTBD\n", "app/__init__.py": ""})


@pytest.fixture
def api(messages_api: MessagesAPI, monkeypatch: pytest.MonkeyPatch) -> MessagesAPI:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_API_KEY)
    monkeypatch.setenv("BRAID_ANTHROPIC_MAX_RETRIES", "2")
    return messages_api


def context(repo: GitRepo, **agent: object) -> AgentContext:
    fields = {"backend": "anthropic", "model": MODEL, **agent}
    return AgentContext(run="feature", task="schema", prompt="Add a users table.", workdir=repo.path,
                        agent=AgentSpec.model_validate(fields), timeout_seconds=60)


def run(ctx: AgentContext):
    """Run the backend as the runner does: through braid's key-injecting proxy, when a key is set."""
    key = os.environ.get("ANTHROPIC_API_KEY")
    if ctx.model is not None or not key:
        return get_agent("anthropic").run(ctx)
    with model_access(key, model_upstream(ctx.agent.env), Secrets.of({"API key": key})) as access:
        ctx.model = access
        try:
            return get_agent("anthropic").run(ctx)
        finally:
            ctx.model = None


def tool_results(request: Recorded) -> list[dict]:
    last = request.body["messages"][-1]
    assert last["role"] == "user"
    return [b for b in last["content"] if b["type"] == "tool_result"]


# -- a working session ---------------------------------------------------------------------------


def test_a_multi_turn_session_edits_the_worktree(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(
        reply(text("I'll look first."), tool_use("list_files", {}), tool_use("read_file", {"path": "README.md"})),
        reply(tool_use("write_file", {"path": "db/schema.sql", "content": "CREATE TABLE users (id INT);\n"}),
              tool_use("replace_in_file", {"path": "README.md", "old_text": "TBD", "new_text": "Has users."})),
        reply(tool_use("run_command", {"argv": ["git", "status", "--short"]})),
        reply(text("Add a users table\n\nCreated db/schema.sql and described it in the README.")),
    )
    outcome = run(context(repo))

    assert outcome.ok, outcome
    assert outcome.reason is None
    assert outcome.summary == "Add a users table\n\nCreated db/schema.sql and described it in the README."
    assert (repo.path / "db/schema.sql").read_text() == "CREATE TABLE users (id INT);\n"
    assert (repo.path / "README.md").read_text() == "# app\n\nHas users.\n"

    requests = api.message_requests
    assert len(requests) == 4
    listing, readme = tool_results(requests[1])
    assert listing["content"] == "README.md\napp/__init__.py" and "is_error" not in listing
    assert readme["content"] == "     1\t# app\n     2\t\n     3\tTBD"
    status = tool_results(requests[3])[0]["content"]
    assert status.startswith("exit code: 0\n") and "README.md" in status and "db/" in status
    # each request carries the whole conversation, tool calls answered in order
    assert [m["role"] for m in requests[3].body["messages"]] == ["user", "assistant"] * 3 + ["user"]
    assert outcome.usage.input_tokens == 400 and outcome.usage.output_tokens == 200


def test_the_request_carries_model_limits_prompt_and_task_context(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(reply(text("done")))
    ctx = context(repo, maxTokens=1234, systemPrompt="Use tabs.")
    ctx.paths, ctx.depends_on = ["db/", "docs/"], ["base", "auth"]
    assert run(ctx).ok

    body = api.message_requests[0].body
    assert body["model"] == MODEL and body["max_tokens"] == 1234 and body["stream"] is True
    assert body["system"][0]["text"] == SYSTEM_PROMPT + "\n\nUse tabs."
    first = body["messages"][0]["content"][0]["text"]
    assert first.startswith("Add a users table.")
    assert "db/, docs/" in first and "base, auth" in first and "already merged" in first
    assert [t["name"] for t in body["tools"]] == [
        "run_command", "read_file", "write_file", "replace_in_file", "list_files", "grep"]


def test_defaults_come_from_the_agent_spec(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(reply(text("done")))
    ctx = context(repo)
    ctx.agent = AgentSpec(backend="anthropic")
    assert run(ctx).ok
    body = api.message_requests[0].body
    assert body["model"] == AgentSpec().effective_model and body["max_tokens"] == 8192


def test_sdk_warnings_reach_the_task_log_once(api: MessagesAPI, repo: GitRepo, caplog: pytest.LogCaptureFixture,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK warns (e.g. of a deprecated model) through `warnings`, which nobody sees in a pod.

    Which models the installed SDK calls deprecated changes from release to release, so
    the SDK's own `stream` is wrapped to warn on every request; the real request still goes out.
    """
    import warnings

    from anthropic.resources.messages import Messages

    real_stream = Messages.stream

    def warning_stream(self, *args, **kwargs):
        warnings.warn(f"The model '{kwargs['model']}' is deprecated\n and will reach end-of-life soon.",
                      DeprecationWarning, stacklevel=2)
        return real_stream(self, *args, **kwargs)

    monkeypatch.setattr(Messages, "stream", warning_stream)
    api.queue(reply(tool_use("list_files", {})), reply(text("done")))
    with caplog.at_level(logging.WARNING, logger="braid.agent"):
        assert run(context(repo)).ok
    assert len(api.message_requests) == 2
    warned = [r.getMessage() for r in caplog.records if "deprecated" in r.getMessage()]
    assert warned == [f"The model '{MODEL}' is deprecated and will reach end-of-life soon."]


# -- caching and usage ---------------------------------------------------------------------------


def test_system_and_tools_are_cached_and_cache_tokens_are_counted(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(
        reply(tool_use("read_file", {"path": "README.md"}), input_tokens=50, output_tokens=20, cache_write=3000),
        reply(tool_use("list_files", {}), input_tokens=30, output_tokens=10, cache_read=3000, cache_write=200),
        reply(text("done"), input_tokens=20, output_tokens=5, cache_read=3200),
    )
    outcome = run(context(repo))
    assert outcome.ok

    for request in api.message_requests:
        body = request.body
        assert body["system"][-1]["cache_control"] == EPHEMERAL
        assert body["tools"][-1]["cache_control"] == EPHEMERAL
        marks = [b for m in body["messages"] for b in m["content"] if "cache_control" in b]
        # one sliding breakpoint on the newest user content: at most 4 per request in all
        assert marks == [body["messages"][-1]["content"][-1]]
    usage = outcome.usage
    assert (usage.input_tokens, usage.output_tokens, usage.cache_write_tokens, usage.cache_read_tokens) == (
        100, 35, 3200, 6200)
    # claude-sonnet-4-6: $3 in, $15 out, $3.75 cache write, $0.30 cache read per million
    expected = (100 * 3 + 35 * 15 + 3200 * 3.75 + 6200 * 0.3) / 1e6
    assert usage.cost_usd == pytest.approx(expected, abs=1e-6)


def test_pricing_overrides_apply(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(reply(text("done"), input_tokens=1_000_000, output_tokens=0))
    outcome = run(context(repo, pricing={MODEL: {"input": 1, "output": 1}}))
    assert outcome.usage.cost_usd == pytest.approx(1.0)


def test_an_unknown_model_costs_nothing_with_a_warning(api: MessagesAPI, repo: GitRepo,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    api.queue(reply(text("done")))
    with caplog.at_level(logging.WARNING):
        outcome = run(context(repo, model="claude-internal-proxy"))
    assert outcome.ok and outcome.usage.cost_usd == 0 and outcome.usage.input_tokens == 100
    assert "no price known for model claude-internal-proxy" in caplog.text


def test_an_unknown_model_under_a_cost_budget_is_refused(api: MessagesAPI, repo: GitRepo) -> None:
    ctx = context(repo, model="claude-internal-proxy")
    ctx.budget = Budget(max_cost_usd=1.0)
    with pytest.raises(AgentError) as caught:
        run(ctx)
    assert caught.value.reason == "UnknownPricing" and "agent.pricing" in str(caught.value)
    assert api.message_requests == []


def test_each_turn_is_logged(api: MessagesAPI, repo: GitRepo, caplog: pytest.LogCaptureFixture) -> None:
    api.queue(reply(tool_use("list_files", {}), cache_read=70), reply(text("done")))
    with caplog.at_level(logging.INFO, logger="braid.agent"):
        assert run(context(repo)).ok
    lines = [r.getMessage() for r in caplog.records if r.name == "braid.agent"]
    assert lines[0].startswith("turn 1/50: tools list_files; tokens in 100, out 50, cache write 0, cache read 70")
    assert lines[1].startswith("turn 2/50: stop end_turn;")


# -- the worktree is the limit -------------------------------------------------------------------


def test_escapes_get_error_results_and_nothing_outside_changes(api: MessagesAPI, repo: GitRepo,
                                                                tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("untouched\n")
    (repo.path / "escape").symlink_to(outside, target_is_directory=True)
    api.queue(
        reply(
            tool_use("write_file", {"path": "../outside/keep.txt", "content": "pwned"}),
            tool_use("write_file", {"path": str(outside / "new.txt"), "content": "pwned"}),
            tool_use("write_file", {"path": "escape/keep.txt", "content": "pwned"}),
            tool_use("read_file", {"path": "escape/keep.txt"}),
            tool_use("write_file", {"path": "inside.txt", "content": "fine\n"}),
        ),
        reply(text("Tried.")),
    )
    outcome = run(context(repo))
    assert outcome.ok

    results = tool_results(api.message_requests[1])
    assert [r.get("is_error", False) for r in results] == [True, True, True, True, False]
    assert "leads outside the repository" in results[0]["content"]
    assert "absolute paths are not allowed" in results[1]["content"]
    assert "leads outside the repository" in results[2]["content"]
    assert "untouched" not in results[3]["content"]
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert (outside / "keep.txt").read_text() == "untouched\n"
    assert (repo.path / "inside.txt").read_text() == "fine\n"


# -- how a task ends -----------------------------------------------------------------------------


def test_the_budget_stops_the_task_and_keeps_its_files(api: MessagesAPI, repo: GitRepo) -> None:
    # each turn costs 100 x $3 + 50 x $15 per million = $0.00105
    api.queue(
        reply(tool_use("write_file", {"path": "one.txt", "content": "1\n"})),
        reply(text("Next the second file."), tool_use("write_file", {"path": "two.txt", "content": "2\n"})),
        reply(tool_use("write_file", {"path": "three.txt", "content": "3\n"})),
        reply(text("done")),
    )
    ctx = context(repo)
    ctx.budget = Budget(max_cost_usd=0.002)
    outcome = run(ctx)

    assert not outcome.ok and outcome.reason == "BudgetExceeded"
    assert "after turn 2" in outcome.message and "$0.0020" in outcome.message
    assert outcome.usage.cost_usd == pytest.approx(0.0021)
    assert outcome.summary == "Next the second file."
    # the paid-for calls of the last turn were carried out; nothing after it
    assert (repo.path / "one.txt").exists() and (repo.path / "two.txt").exists()
    assert not (repo.path / "three.txt").exists()
    assert len(api.message_requests) == 2


def test_the_token_budget_counts_input_and_output(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(*[reply(tool_use("list_files", {}), cache_read=10_000) for _ in range(5)])
    ctx = context(repo)
    ctx.budget = Budget(max_tokens=300)
    outcome = run(ctx)
    assert outcome.reason == "BudgetExceeded" and "used 300 tokens" in outcome.message
    assert len(api.message_requests) == 2


def test_finishing_in_the_turn_that_crosses_the_budget_is_a_success(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(reply(text("done")))
    ctx = context(repo)
    ctx.budget = Budget(max_cost_usd=0.000001)
    assert run(ctx).ok


def test_max_turns_stops_with_the_work_kept(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(*[reply(tool_use("write_file", {"path": f"f{i}.txt", "content": "x"})) for i in range(5)])
    outcome = run(context(repo, maxTurns=3))
    assert not outcome.ok and outcome.reason == "MaxTurns" and "maxTurns (3)" in outcome.message
    assert sorted(p.name for p in repo.path.glob("f*.txt")) == ["f0.txt", "f1.txt", "f2.txt"]
    assert len(api.message_requests) == 3


def test_a_refusal_ends_the_task(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(reply(text("I can't help with that."), stop_reason="refusal"))
    outcome = run(context(repo))
    assert not outcome.ok and outcome.reason == "Refused"
    assert outcome.summary == "I can't help with that."


def test_cut_off_tool_calls_are_answered_with_an_error(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(
        reply(tool_use("write_file", {"path": "half.txt", "content": "trunc"}), stop_reason="max_tokens"),
        reply(text("I was cut off"), stop_reason="max_tokens"),
        reply(text("done")),
    )
    assert run(context(repo)).ok
    assert not (repo.path / "half.txt").exists()
    (result,) = tool_results(api.message_requests[1])
    assert result["is_error"] and "max_tokens" in result["content"]
    continued = api.message_requests[2].body["messages"][-1]["content"][0]
    assert continued["type"] == "text" and "cut off" in continued["text"]


def test_thinking_blocks_go_back_unchanged(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(reply(thinking("let me see", "sig-123"), tool_use("list_files", {})), reply(text("done")))
    assert run(context(repo)).ok
    assistant = api.message_requests[1].body["messages"][1]
    assert assistant["content"][0] == {"type": "thinking", "thinking": "let me see", "signature": "sig-123"}


def test_cancellation_stops_between_turns(api: MessagesAPI, repo: GitRepo) -> None:
    ctx = context(repo)

    def responder(request: Recorded):
        ctx.cancel.set()  # the user hits Ctrl-C while the model is answering
        return reply(tool_use("write_file", {"path": "a.txt", "content": "a"}))

    api.responder = responder
    outcome = run(ctx)
    assert not outcome.ok and outcome.reason == "Cancelled"
    assert len(api.message_requests) == 1
    assert outcome.usage.input_tokens == 100


def test_cancellation_before_the_first_turn(api: MessagesAPI, repo: GitRepo) -> None:
    ctx = context(repo)
    ctx.cancel.set()
    outcome = run(ctx)
    assert outcome.reason == "Cancelled" and api.message_requests == []


def test_a_slow_response_runs_into_the_task_timeout(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(reply(text("a long answer " * 20), event_delay=0.3))
    ctx = context(repo)
    ctx.timeout_seconds = 1.0
    outcome = run(ctx)
    assert not outcome.ok and outcome.reason == "Timeout"
    # what the partial response had billed so far is counted
    assert outcome.usage.input_tokens == 100


def test_a_stalled_server_runs_into_the_task_timeout(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(reply(text("late"), delay=4))
    ctx = context(repo)
    ctx.timeout_seconds = 1.5
    outcome = run(ctx)
    assert outcome.reason == "Timeout"


# -- errors --------------------------------------------------------------------------------------


def test_rate_limits_are_retried_with_retry_after(api: MessagesAPI, repo: GitRepo,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    api.queue(error(429, "slow down", headers={"retry-after": "0.2"}), reply(text("done")))
    with caplog.at_level(logging.WARNING):
        outcome = run(context(repo))
    assert outcome.ok
    assert len(api.message_requests) == 2
    assert "Messages API error 429; retry 1 of 2 in 0.2s" in caplog.text


def test_server_errors_and_overload_are_retried(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(error(500, headers={"retry-after-ms": "10"}), error(529, headers={"retry-after-ms": "10"}),
              reply(text("done")))
    assert run(context(repo)).ok
    assert len(api.message_requests) == 3


def test_an_error_in_the_middle_of_a_stream_is_retried(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(stream_error("overloaded_error"), reply(text("done")))
    outcome = run(context(repo))
    assert outcome.ok and len(api.message_requests) == 2


def test_an_unretryable_error_in_a_stream_fails_the_attempt(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(stream_error("invalid_request_error", "prompt is too long"))
    outcome = run(context(repo))
    assert outcome.reason == "InvalidRequest" and "prompt is too long" in outcome.message
    assert len(api.message_requests) == 1


def test_retries_give_up_after_the_configured_number(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(*[error(503, "busy", headers={"retry-after-ms": "10"}) for _ in range(3)])
    outcome = run(context(repo))
    assert not outcome.ok and outcome.reason == "AgentFailed"
    assert "503" in outcome.message and "after 2 retries" in outcome.message
    assert len(api.message_requests) == 3


def test_an_invalid_key_is_reported(api: MessagesAPI, repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-wrong")
    outcome = run(context(repo))
    assert not outcome.ok and outcome.reason == "InvalidAPIKey"
    assert len(api.message_requests) == 1  # never retried


def test_an_unknown_model_is_reported(api: MessagesAPI, repo: GitRepo) -> None:
    api.queue(error(404, "model: claude-nope"))
    outcome = run(context(repo, model="claude-nope"))
    assert not outcome.ok and outcome.reason == "UnknownModel" and "claude-nope" in outcome.message


def test_an_unreachable_api_fails_the_attempt(repo: GitRepo, monkeypatch: pytest.MonkeyPatch) -> None:
    with MessagesAPI() as gone:
        url = gone.url
    monkeypatch.setenv("ANTHROPIC_BASE_URL", url)
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_API_KEY)
    monkeypatch.setenv("BRAID_ANTHROPIC_MAX_RETRIES", "0")
    outcome = run(context(repo))
    assert not outcome.ok and outcome.reason == "AgentFailed" and "cannot reach" in outcome.message


# -- the API key ---------------------------------------------------------------------------------


def test_a_missing_key_is_an_agent_error(messages_api: MessagesAPI, repo: GitRepo) -> None:
    with pytest.raises(AgentError) as caught:
        AnthropicAgent().run(context(repo))
    assert caught.value.reason == "MissingAPIKey"


def test_the_key_file_wins_over_the_stdin_key(tmp_path: Path) -> None:
    key_file = tmp_path / "api-key"
    key_file.write_text(FAKE_API_KEY + "\n")
    assert read_api_key(RunnerPaths(tmp_path, tmp_path, api_key_file=key_file, api_key="sk-ant-other")) == FAKE_API_KEY
    assert read_api_key(RunnerPaths(tmp_path, tmp_path, api_key="  sk-ant-given\n")) == "sk-ant-given"
    assert read_api_key(RunnerPaths(tmp_path, tmp_path)) is None
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(AgentError) as caught:
        read_api_key(RunnerPaths(tmp_path, tmp_path, api_key_file=empty))
    assert caught.value.reason == "MissingAPIKey" and FAKE_API_KEY not in str(caught.value)


def test_the_key_never_leaks(api: MessagesAPI, repo: GitRepo, caplog: pytest.LogCaptureFixture) -> None:
    (repo.path / "notes.txt").write_text(f"someone pasted {FAKE_API_KEY} here\n")
    api.queue(
        error(429, headers={"retry-after-ms": "10"}),
        reply(tool_use("run_command", {"command": "env"}), tool_use("read_file", {"path": "notes.txt"})),
        reply(text(f"Done; the key is {FAKE_API_KEY}")),
    )
    ctx = context(repo)
    ctx.redact = Secrets.of({"API key": FAKE_API_KEY}).redact
    with caplog.at_level(logging.DEBUG):
        outcome = run(ctx)
    assert outcome.ok

    env_result, notes = tool_results(api.message_requests[-1])
    assert "BRAID_TASK=schema" in env_result["content"]
    assert "ANTHROPIC" not in env_result["content"] and "braid-placeholder" not in env_result["content"]
    assert notes["content"] == "     1\tsomeone pasted [REDACTED] here"
    for request in api.message_requests:
        # only in the header that authenticates, which braid's proxy put there
        auth = {k: v for k, v in request.headers.items() if FAKE_API_KEY in v}
        assert auth == {"x-api-key": FAKE_API_KEY}
        assert FAKE_API_KEY.encode() not in request.raw
    assert FAKE_API_KEY not in caplog.text
    assert FAKE_API_KEY not in json.dumps([outcome.summary, outcome.message, outcome.usage.wire()])
    assert outcome.summary == "Done; the key is [REDACTED]"


def test_agent_env_sets_the_endpoint_and_retries(api: MessagesAPI, repo: GitRepo,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://127.0.0.1:9")  # nothing listens there
    api.queue(error(500, headers={"retry-after-ms": "10"}), error(500, headers={"retry-after-ms": "10"}))
    outcome = run(context(repo, env={"ANTHROPIC_BASE_URL": api.url, "BRAID_ANTHROPIC_MAX_RETRIES": "1"}))
    assert outcome.reason == "AgentFailed" and "after 1 retries" in outcome.message
    assert len(api.message_requests) == 2


def test_settings_from_the_environment_are_checked(api: MessagesAPI, repo: GitRepo,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRAID_ANTHROPIC_MAX_RETRIES", "lots")
    with pytest.raises(AgentError) as caught:
        run(context(repo))
    assert caught.value.reason == "InvalidAgent" and "BRAID_ANTHROPIC_MAX_RETRIES" in str(caught.value)


def test_the_backend_is_registered() -> None:
    assert isinstance(get_agent("anthropic"), AnthropicAgent)



def test_the_repositorys_notes_for_agents_follow_the_cached_system_prompt(api: MessagesAPI, repo: GitRepo) -> None:
    (repo.path / "CLAUDE.md").write_text("Indent with tabs.\n")
    (repo.path / "AGENTS.md").write_text("Run `make check` before you finish.\n" + "x" * 30_000)
    api.queue(reply(text("done")))
    assert run(context(repo)).ok
    (braids, notes) = api.message_requests[0].body["system"]
    assert braids["text"].startswith(SYSTEM_PROMPT) and braids["cache_control"] == EPHEMERAL
    assert "cache_control" not in notes
    assert '<file name="CLAUDE.md">\nIndent with tabs.\n</file>' in notes["text"]
    assert "Run `make check` before you finish." in notes["text"]
    assert "AGENTS.md is longer; the rest is not shown" in notes["text"] and len(notes["text"]) < 21_000


def test_notes_that_lead_out_of_the_working_copy_are_not_read(api: MessagesAPI, repo: GitRepo, tmp_path: Path) -> None:
    secret = tmp_path / "outside.md"
    secret.write_text("not the repository's\n")
    (repo.path / "CLAUDE.md").symlink_to(secret)
    api.queue(reply(text("done")))
    assert run(context(repo)).ok
    system = api.message_requests[0].body["system"]
    assert len(system) == 1 and "not the repository's" not in json.dumps(system)
