"""Saved conversations of the anthropic backend: checked when read back, mended at the end, bounded,
and continued by the loop (the real SDK against the stand-in of the Messages API)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from braid.agents import AgentContext, get_agent
from braid.agents.anthropic import conversation
from braid.agents.anthropic.conversation import NOT_RUN, NOTE_MARK, carried, fit, repair
from braid.api import MAX_TRANSCRIPT_BYTES, AgentSpec, Budget, Ended, InvalidTranscript, Transcript, Usage, parse_transcript
from braid.gitops import Secrets
from braid.runner.run import model_access, model_upstream
from gitrepos import GitRepo, make_repo

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fakes import conftest_plugin
from fakes.conftest_plugin import FAKE_API_KEY
from fakes.messages_api import MessagesAPI, reply, text, tool_use

messages_api = conftest_plugin.messages_api
MODEL = "claude-sonnet-4-6"
FIRST = {"role": "user", "content": [{"type": "text", "text": "Add a users table.\n\n(braid run r, task t)"}]}


def user(*blocks: dict) -> dict:
    return {"role": "user", "content": list(blocks)}


def assistant(*blocks: dict) -> dict:
    return {"role": "assistant", "content": list(blocks)}


def call(call_id: str, name: str = "read_file") -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": {"path": "README.md"}}


def result(call_id: str, content: str = "ok") -> dict:
    return {"type": "tool_result", "tool_use_id": call_id, "content": content}


def says(value: str) -> dict:
    return {"type": "text", "text": value}


def document(messages: list[dict], **fields: object) -> bytes:
    return json.dumps({"version": 1, "fingerprint": "a" * 64, "messages": messages, **fields}).encode()


# -- mending the end, refusing the rest ------------------------------------------------------------


def test_a_trailing_tool_call_without_results_gets_not_run_results() -> None:
    saved = [FIRST, assistant(call("t1")), user(result("t1")), assistant(says("Now both."), call("t2"), call("t3"))]
    mended = repair(saved, FIRST)
    assert mended[:4] == saved
    assert mended[4] == user({"type": "tool_result", "tool_use_id": "t2", "content": NOT_RUN, "is_error": True},
                             {"type": "tool_result", "tool_use_id": "t3", "content": NOT_RUN, "is_error": True})


def test_missing_results_of_the_last_round_are_added_before_its_text() -> None:
    saved = [FIRST, assistant(call("t1"), call("t2")), user(says("a note"), result("t2"))]
    mended = repair(saved, FIRST)
    assert mended[2]["content"] == [result("t2"), {"type": "tool_result", "tool_use_id": "t1", "content": NOT_RUN,
                                                   "is_error": True}, says("a note")]


def test_a_trailing_message_of_nothing_but_thinking_is_dropped() -> None:
    saved = [FIRST, assistant(call("t1")), user(result("t1")),
             assistant({"type": "thinking", "thinking": "hmm", "signature": "s"})]
    assert repair(saved, FIRST) == saved[:3]


def test_a_finished_conversation_is_kept_as_it_is() -> None:
    saved = [FIRST, assistant(call("t1")), user(result("t1")), assistant(says("Done."))]
    assert repair(saved, FIRST) == saved


@pytest.mark.parametrize(("messages", "why"), [
    ([user(says("Something else entirely."))], "first message"),
    ([FIRST, user(says("again"))], "message 1 is from the user"),
    ([FIRST, assistant(call("t1")), user(result("t9")), assistant(says("x"))], "does not answer"),
    ([FIRST, assistant(call("t1")), user(says("no result")), assistant(says("x"))], "does not answer"),
    ([FIRST, assistant(call("t1"), call("t1")), user(result("t1"))], "repeats"),
    ([FIRST, assistant(result("t1"))], "holds tool_result"),
    ([user(*FIRST["content"], call("t1"))], "holds tool_use"),
])
def test_a_broken_conversation_is_refused(messages: list[dict], why: str) -> None:
    with pytest.raises(InvalidTranscript, match=why):
        repair(messages, FIRST)


@pytest.mark.parametrize(("data", "why"), [
    (b"not json", "not JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not JSON|nested"),
    (document([FIRST], extra="field"), "extra"),
    (document([user({"type": "exec", "command": "rm -rf /"})]), "does not match any of the expected tags"),
    (document([user({"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}})]), "Extra inputs"),
    (document([assistant({"type": "tool_use", "id": "../../etc", "name": "x", "input": {}})]), "pattern"),
    (document([FIRST], fingerprint="not-a-hash"), "fingerprint"),
    (document([]), "at least 1"),
    (document([FIRST], version=2), "version"),
    (document([FIRST], usage={"costUSD": "lots"}), "usage"),
    (document([user(says("x" * MAX_TRANSCRIPT_BYTES))]), "larger than"),
])
def test_a_malformed_transcript_is_refused_saying_why(data: bytes, why: str) -> None:
    with pytest.raises(InvalidTranscript, match=why):
        parse_transcript(data)


def test_a_valid_transcript_reads_back_as_it_was_written() -> None:
    messages = [FIRST, assistant(call("t1")), user({**result("t1"), "is_error": True})]
    saved = parse_transcript(document(messages, usage={"costUSD": 0.5, "inputTokens": 10}))
    assert saved.api_messages() == messages
    assert saved.usage.cost_usd == 0.5 and saved.omitted_turns == 0 and saved.ended is None
    assert parse_transcript(saved.dumps()) == saved


# -- bounds ------------------------------------------------------------------------------------------


def test_the_oldest_turns_are_left_out_to_fit() -> None:
    turns = [FIRST]
    for i in range(10):
        turns += [assistant(call(f"t{i}")), user(result(f"t{i}", "x" * 1000))]
    size = len(json.dumps(turns, separators=(",", ":")))
    kept, dropped = fit(turns, size - 2500)
    assert dropped == 3
    assert kept == [FIRST, *turns[7:]]
    assert repair(kept, FIRST) == kept  # still a valid conversation
    assert fit(turns, size) == (turns, 0)
    assert fit(turns, 100) is None  # even the first message and the last turn are too large


def test_saving_leaves_out_old_turns_to_stay_under_the_size_limit(tmp_path: Path) -> None:
    turns = [FIRST]
    for i in range(12):
        turns += [assistant(call(f"t{i}")), user(result(f"t{i}", "y" * 200_000))]
    big = Transcript.model_validate({"fingerprint": "a" * 64, "messages": turns, "omittedTurns": 2})
    path = tmp_path / "transcript.json"
    assert conversation.save(path, big)
    data = path.read_bytes()
    assert len(data) <= MAX_TRANSCRIPT_BYTES - conversation.SAVE_MARGIN
    back = parse_transcript(data)
    assert back.omitted_turns > 2 and back.api_messages()[-1] == turns[-1]
    assert back.api_messages()[0] == FIRST


def test_what_a_conversation_spent_beyond_braids_own_count() -> None:
    prior = Usage(input_tokens=300, output_tokens=150, cost_usd=0.003)
    assert carried(prior, None) == Usage(input_tokens=300, output_tokens=150, cost_usd=0.003)
    # a retry in the same run: braid counted it all already
    assert carried(prior, Usage(input_tokens=300, output_tokens=150, cost_usd=0.003)) == Usage()
    assert carried(prior, Usage(input_tokens=100, output_tokens=50, cost_usd=0.001)) == Usage(
        input_tokens=200, output_tokens=100, cost_usd=0.002)


def test_the_note_says_how_the_earlier_attempt_ended() -> None:
    failed = conversation.resume_note(Ended(ok=False, reason="Timeout", message="timed out after 60s"), 0, False)
    assert failed.startswith(NOTE_MARK) and "Timeout: timed out after 60s" in failed
    assert "Continue the task" in failed and "left out" not in failed
    done = conversation.resume_note(Ended(ok=True), 3, True)
    assert "finished here" in done and "3 earlier turns" in done and "depends on merged in" in done
    assert "Check that the task is still done" in done


# -- the loop continues a saved conversation ---------------------------------------------------------


@pytest.fixture
def repo(tmp_path: Path) -> GitRepo:
    return make_repo(tmp_path / "repo", {"README.md": "# app\n"})


@pytest.fixture
def api(messages_api: MessagesAPI, monkeypatch: pytest.MonkeyPatch) -> MessagesAPI:
    monkeypatch.setenv("ANTHROPIC_API_KEY", FAKE_API_KEY)
    monkeypatch.setenv("BRAID_ANTHROPIC_MAX_RETRIES", "0")
    return messages_api


def context(repo: GitRepo, transcript: Path, prompt: str = "Add a users table.", **fields: object) -> AgentContext:
    return AgentContext(run="r", task="t", prompt=prompt, workdir=repo.path, timeout_seconds=60,
                        agent=AgentSpec.model_validate({"backend": "anthropic", "model": MODEL}),
                        transcript=transcript, **fields)


def run(ctx: AgentContext):
    key = os.environ["ANTHROPIC_API_KEY"]
    with model_access(key, model_upstream(None), Secrets.of({"API key": key})) as access:
        ctx.model = access
        return get_agent("anthropic").run(ctx)


def first_attempt(api: MessagesAPI, repo: GitRepo, path: Path, **fields: object):
    api.queue(reply(tool_use("write_file", {"path": "a.txt", "content": "a\n"}, id="toolu_a")),
              reply(tool_use("read_file", {"path": "a.txt"}, id="toolu_b"), stop_reason="tool_use"))
    outcome = run(context(repo, path, **fields))  # the third request finds no scripted reply: a 500
    assert not outcome.ok
    return outcome


def test_the_loop_saves_its_conversation_after_every_step(api: MessagesAPI, repo: GitRepo, tmp_path: Path) -> None:
    path = tmp_path / "transcript.json"
    first_attempt(api, repo, path)
    saved = parse_transcript(path.read_bytes())
    roles = [m.role for m in saved.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    assert (saved.usage.input_tokens, saved.usage.output_tokens) == (200, 100)
    assert saved.usage.cost_usd == pytest.approx(0.0021)
    last = api.message_requests[-1].body["messages"]
    assert last[-1]["content"][0]["tool_use_id"] == "toolu_b"
    assert saved.api_messages()[-1]["content"][0]["content"].endswith("a")


def test_the_loop_continues_a_saved_conversation(api: MessagesAPI, repo: GitRepo, tmp_path: Path) -> None:
    path = tmp_path / "transcript.json"
    first_attempt(api, repo, path)
    earlier = parse_transcript(path.read_bytes()).api_messages()
    seen = len(api.message_requests)
    api.queue(reply(text("Add a.txt")))

    outcome = run(context(repo, path))

    assert outcome.ok
    sent = api.message_requests[seen].body["messages"]
    assert sent[:-1] == earlier[:-1]
    assert sent[-1]["content"][:-1] == earlier[-1]["content"]
    assert sent[-1]["content"][-1]["text"].startswith(NOTE_MARK)
    saved = parse_transcript(path.read_bytes())
    assert saved.api_messages()[-1] == assistant(says("Add a.txt"))
    assert saved.usage.cost_usd == pytest.approx(3 * 0.00105)


def test_a_changed_prompt_or_model_starts_afresh(api: MessagesAPI, repo: GitRepo, tmp_path: Path) -> None:
    path = tmp_path / "transcript.json"
    first_attempt(api, repo, path)
    seen = len(api.message_requests)
    api.queue(reply(text("Done")))
    assert run(context(repo, path, prompt="Add a groups table.")).ok
    (request,) = api.message_requests[seen:]
    assert len(request.body["messages"]) == 1
    assert request.body["messages"][0]["content"][0]["text"].startswith("Add a groups table.")


def test_a_malformed_saved_conversation_is_not_continued(api: MessagesAPI, repo: GitRepo, tmp_path: Path,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "transcript.json"
    path.write_text('{"version": 1, "messages": [{"role": "system"}]}')
    api.queue(reply(text("Done")))
    with caplog.at_level("WARNING"):
        assert run(context(repo, path)).ok
    assert len(api.message_requests[0].body["messages"]) == 1
    assert "not continued" in caplog.text and "starting afresh" in caplog.text


def test_a_conversation_too_large_to_send_again_loses_its_oldest_turns(api: MessagesAPI, repo: GitRepo,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "transcript.json"
    first_attempt(api, repo, path)
    saved = parse_transcript(path.read_bytes())
    first = saved.api_messages()[0]
    turns = [first]
    for i in range(8):  # about 8 x 60,000 characters: more than RESUME_TOKENS allows
        turns += [assistant(call(f"big{i}")), user(result(f"big{i}", "z" * 60_000))]
    path.write_bytes(saved.model_validate({**saved.wire(), "messages": turns}).dumps())
    api.queue(reply(text("Done")))

    assert run(context(repo, path)).ok

    sent = api.message_requests[-1].body["messages"]
    assert sent[0]["content"][0] == first["content"][0]
    assert len(json.dumps(sent)) <= conversation.RESUME_TOKENS * conversation.CHARS_PER_TOKEN
    assert sent[1]["content"][0]["id"] != "big0" and sent[-2]["content"][0]["id"] == "big7"
    assert "earlier turns of this conversation are left out" in sent[-1]["content"][-1]["text"]


def test_what_the_conversation_spent_counts_against_the_budget(api: MessagesAPI, repo: GitRepo,
                                                              tmp_path: Path) -> None:
    path = tmp_path / "transcript.json"
    first_attempt(api, repo, path)  # spent $0.0021
    seen = len(api.message_requests)
    # a re-run: braid's count of this task's attempts is empty, the conversation's own record is not
    outcome = run(context(repo, path, budget=Budget(max_cost_usd=0.002)))
    assert (outcome.ok, outcome.reason) == (False, "BudgetExceeded")
    assert "not continued" in outcome.message and len(api.message_requests) == seen
    # a retry in the same run: the launcher already counted it, and gave the attempt what is left
    api.queue(reply(text("Done")))
    outcome = run(context(repo, path, budget=Budget(max_cost_usd=0.002),
                          spent=Usage(input_tokens=200, output_tokens=100, cost_usd=0.0021)))
    assert outcome.ok


@pytest.mark.parametrize("ending", ["Cancelled", "Timeout"])
def test_a_cancelled_or_timed_out_attempt_leaves_its_conversation_so_far(api: MessagesAPI, repo: GitRepo,
                                                                       tmp_path: Path, ending: str) -> None:
    path = tmp_path / "transcript.json"
    ctx = context(repo, path)
    ctx.timeout_seconds = 1.5
    api.queue(reply(tool_use("write_file", {"path": "a.txt", "content": "a\n"}, id="toolu_a")))
    if ending == "Cancelled":
        def responder(_request):
            ctx.cancel.set()  # Ctrl-C (or the pod's SIGTERM) while the model answers
            return reply(text("never seen"), event_delay=0.2)
        api.responder = responder
    else:
        api.queue(reply(text("a long answer " * 40), event_delay=0.3))

    outcome = run(ctx)

    assert outcome.reason == ending
    saved = parse_transcript(path.read_bytes()).api_messages()
    assert [m["role"] for m in saved] == ["user", "assistant", "user"]
    assert saved[2]["content"][0]["tool_use_id"] == "toolu_a"
