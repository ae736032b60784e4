"""Usage and cost of CLI agents: what their output and BRAID_USAGE_FILE say, read as untrusted input.

The parsing on its own, then the command backend running real processes that print or write it.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from braid.agents import AgentContext
from braid.agents.command import CommandAgent
from braid.agents.usage import MAX_LINE, MAX_MESSAGES, MAX_USAGE_FILE, Lines, OutputUsage, read_usage_file
from braid.api import AgentSpec, Budget, Pricing, Usage

# the shapes Claude Code 2.1 prints (checked against the real CLI by tests/e2e/test_command_cli.py)
RESULT = {
    "type": "result", "subtype": "success", "is_error": False, "num_turns": 2, "result": "Changed the greeting.",
    "total_cost_usd": 0.0454,
    "usage": {"input_tokens": 2400, "output_tokens": 690, "cache_creation_input_tokens": 4000,
              "cache_read_input_tokens": 10000, "server_tool_use": {"web_search_requests": 0}},
    "modelUsage": {"claude-opus-5-5": {"inputTokens": 2400, "outputTokens": 690, "cacheReadInputTokens": 10000,
                                       "cacheCreationInputTokens": 4000, "costUSD": 0.0454, "contextWindow": 1000000}},
}


def assistant(message_id: str, input_tokens: int, output_tokens: int = 1, model: str = "claude-sonnet-4-6",
              text: str | None = None) -> dict:
    content = [{"type": "text", "text": text}] if text else [{"type": "tool_use", "id": "t", "name": "Bash",
                                                              "input": {}}]
    return {"type": "assistant", "message": {
        "id": message_id, "model": model, "role": "assistant", "content": content,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens, "cache_creation_input_tokens": 0,
                  "cache_read_input_tokens": 0}}}


def fed(*lines: object) -> OutputUsage:
    out = OutputUsage()
    for line in lines:
        out.feed(line if isinstance(line, bytes) else json.dumps(line).encode())
    return out


# -- stdout ------------------------------------------------------------------------------------------------------


def test_the_result_object_gives_tokens_cost_and_the_final_words():
    out = fed(RESULT)
    assert out.usage(None, None) == Usage(input_tokens=2400, output_tokens=690, cache_write_tokens=4000,
                                          cache_read_tokens=10000, cost_usd=0.0454)
    assert out.summary() == "Changed the greeting."
    assert out.failure() is None


def test_every_model_of_the_result_counts_and_the_total_cost_is_the_clis():
    result = {**RESULT, "total_cost_usd": 0.05, "modelUsage": {
        "claude-opus-5-5": {"inputTokens": 2000, "outputTokens": 600, "costUSD": 0.044},
        "claude-haiku-4-5": {"inputTokens": 400, "outputTokens": 90, "costUSD": 0.006}}}
    usage = fed(result).usage(None, None)
    assert (usage.input_tokens, usage.output_tokens, usage.cost_usd) == (2400, 690, 0.05)


def test_a_result_without_a_cost_is_priced_with_braids_table_or_marked_unpriced():
    result = {"type": "result", "usage": {"input_tokens": 1_000_000, "output_tokens": 100_000}}
    # claude-sonnet-4-6: $3 in, $15 out per million
    assert fed(result).usage("claude-sonnet-4-6", None).cost_usd == pytest.approx(4.5)
    own = {"gateway-x": Pricing(input=1, output=2)}
    assert fed(result).usage("gateway-x", own).cost_usd == pytest.approx(1.2)
    unknown = fed(result).usage("gateway-y", None)
    assert unknown.cost_usd == 0 and unknown.unpriced_tokens == 1_100_000
    assert fed(result).usage(None, None).unpriced_tokens == 1_100_000


def test_an_error_result_says_what_went_wrong():
    out = fed({**RESULT, "is_error": True, "result": "Prompt is too long\nmore detail", "total_cost_usd": 0,
               "modelUsage": {}, "usage": {"input_tokens": 0, "output_tokens": 0}})
    assert out.failure() == "Prompt is too long"
    assert out.usage(None, None) == Usage()


def test_stream_json_counts_each_response_once_at_its_largest_counts():
    out = fed(
        {"type": "system", "subtype": "init", "model": "claude-sonnet-4-6"},
        assistant("m1", 1000, 1),
        assistant("m1", 1000, 1, text="thinking aloud"),  # one line per content block, same response
        {"type": "user", "message": {"role": "user", "content": []}},
        assistant("m2", 1500, 1),
    )
    usage = out.usage(None, None)
    assert (usage.input_tokens, usage.output_tokens) == (2500, 2)
    assert usage.cost_usd == pytest.approx((2500 * 3 + 2 * 15) / 1e6)  # priced by the model each response names
    assert out.summary() == "thinking aloud"


def test_partial_messages_bring_the_output_tokens_of_each_response():
    start = {"type": "stream_event", "event": {"type": "message_start", "message": {
        "id": "m1", "model": "claude-sonnet-4-6", "usage": {"input_tokens": 100, "output_tokens": 1}}}}
    delta = {"type": "stream_event", "api_message_id": "m1",
             "event": {"type": "message_delta", "delta": {}, "usage": {"output_tokens": 50}}}
    usage = fed(start, assistant("m1", 100, 1), delta).usage(None, None)
    assert (usage.input_tokens, usage.output_tokens) == (100, 50)


def test_the_result_replaces_what_the_stream_added_up():
    usage = fed(assistant("m1", 1000), assistant("m2", 1000), RESULT).usage(None, None)
    assert usage.input_tokens == 2400 and usage.cost_usd == 0.0454


@pytest.mark.parametrize("line", [
    b"", b"hello world", b"{", b'{"type": "result", "usage": {"input_tokens": 12', b"[1, 2, 3]", b"null",
    b'"a string"', b"\xff\xfe\x00garbage", b"{}", b'{"type": "result"} trailing', b"[" * 100_000,
    b'{"type": 5}', b'{"type": "assistant", "message": "nope"}', b'{"type": "assistant"}',
    b'{"type": "stream_event", "event": {"type": "message_delta", "usage": {"output_tokens": 5}}}',
])
def test_anything_else_is_no_usage_and_no_error(line):
    out = fed(line)
    assert out.usage(None, None) is None and out.summary() is None and not out.recognised


@pytest.mark.parametrize("bad", [
    {"input_tokens": -1}, {"output_tokens": -5}, {"input_tokens": 1.5}, {"input_tokens": "100"},
    {"input_tokens": True}, {"input_tokens": 10**13}, {"cache_read_input_tokens": [1]},
])
def test_a_result_with_impossible_counts_is_ignored(bad):
    result = {"type": "result", "usage": {"input_tokens": 10, "output_tokens": 10, **bad}, "total_cost_usd": 0.1}
    assert fed(result).usage(None, None) is None


@pytest.mark.parametrize("cost", [-0.01, "0.5", True, 10**7, float("nan"), float("inf")])
def test_a_result_with_an_impossible_cost_is_ignored(cost):
    line = json.dumps({**RESULT, "total_cost_usd": cost}, allow_nan=True).encode()
    assert fed(line).usage(None, None) is None


def test_a_negative_count_in_one_response_drops_only_that_response():
    bad = assistant("m2", 100)
    bad["message"]["usage"]["output_tokens"] = -100
    usage = fed(assistant("m1", 1000), bad).usage(None, None)
    assert usage.input_tokens == 1000


def test_a_flood_of_responses_is_counted_up_to_a_bound():
    out = OutputUsage()
    for n in range(MAX_MESSAGES + 50):
        out.feed_object(assistant(f"m{n}", 1))
    assert out.usage(None, None).input_tokens == MAX_MESSAGES


# -- reading stdout in bounded steps -----------------------------------------------------------------------------


def test_lines_come_whole_and_over_long_ones_are_skipped(tmp_path):
    path = tmp_path / "out"
    with open(path, "wb") as w:
        lines = Lines(os.open(path, os.O_RDONLY), max_line=100)
        w.write(b"first\nsec")
        w.flush()
        assert lines.read() == [b"first"]
        w.write(b"ond\n" + b"x" * 250 + b"\nthird\n" + b"y" * 150)
        w.flush()
        assert lines.read(step=10) == [b"second"]  # that step ends inside the long line
        assert lines.read() == [b"third"]  # the long line is skipped, the unfinished one kept for later
        w.write(b"\nlast")
        w.flush()
        assert list(lines.rest()) == [b"last"]


def test_reading_never_moves_the_writers_offset(tmp_path):
    """The CLI writes stdout through a file description it shares with braid: braid only preads."""
    with tempfile.TemporaryFile() as shared:
        lines = Lines(shared.fileno())
        shared.write(b'{"a": 1}\n')
        shared.flush()
        assert lines.read() == [b'{"a": 1}']
        shared.write(b"more\n")
        shared.seek(0)
        assert shared.read() == b'{"a": 1}\nmore\n'


def test_at_the_end_only_the_tail_of_a_huge_output_is_looked_at(tmp_path):
    path = tmp_path / "out"
    path.write_bytes(b"noise line\n" * 200_000 + json.dumps(RESULT).encode())
    lines = Lines(os.open(path, os.O_RDONLY))
    seen = list(lines.rest(scan=64 * 1024))
    assert len(seen) < 7000 and seen[-1] == json.dumps(RESULT).encode()
    assert fed(*seen).usage(None, None).cost_usd == 0.0454


# -- BRAID_USAGE_FILE --------------------------------------------------------------------------------------------


def test_a_usage_file_with_every_field(tmp_path):
    path = tmp_path / "usage.json"
    path.write_text(json.dumps({"inputTokens": 10, "outputTokens": 5, "cacheReadTokens": 3, "cacheWriteTokens": 2,
                                "costUSD": 0.25, "model": "x"}))
    report, problem = read_usage_file(path)
    assert problem is None
    assert (report.input_tokens, report.output_tokens, report.cache_read_tokens, report.cache_write_tokens,
            report.cost_usd, report.model) == (10, 5, 3, 2, 0.25, "x")


def test_no_usage_file_is_no_problem(tmp_path):
    assert read_usage_file(tmp_path / "absent.json") == (None, None)


@pytest.mark.parametrize("content, why", [
    (b"", "empty"),
    (b"not json", "invalid"),
    (b'{"inputTokens": 10', "EOF"),
    (b'{"inputTokens": -1}', "greater than or equal to 0"),
    (b'{"outputTokens": 1.5}', "integer"),
    (b'{"inputTokens": "10"}', "integer"),
    (b'{"inputTokens": true}', "integer"),
    (b'{"costUSD": -0.5}', "greater than or equal to 0"),
    (b'{"costUSD": 5000000}', "less than or equal to"),
    (b'{"costUSD": NaN}', "finite"),
    (b'{"costUSD": 1e999}', "finite"),
    (b'{"input_tokens": 10}', "Extra inputs"),
    (b'[1, 2]', "object"),
    (b"[" * 10_000, "recursion"),
])
def test_a_bad_usage_file_is_refused_with_a_reason_that_never_quotes_it(tmp_path, content, why):
    path = tmp_path / "usage.json"
    path.write_bytes(content)
    report, problem = read_usage_file(path)
    assert report is None and problem
    assert why.lower() in problem.lower(), problem
    assert "NaN" not in problem and "5000000" not in problem


def test_an_oversized_usage_file_is_refused_unread(tmp_path):
    path = tmp_path / "usage.json"
    path.write_bytes(b'{"inputTokens": 1, "pad": "' + b"x" * MAX_USAGE_FILE + b'"}')
    assert read_usage_file(path) == (None, "is larger than 64 KiB")


def test_a_symlink_or_fifo_as_usage_file_is_refused_without_following_or_blocking(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text('{"inputTokens": 1}')
    link = tmp_path / "link.json"
    link.symlink_to(secret)
    assert read_usage_file(link)[0] is None and "cannot be opened" in read_usage_file(link)[1]
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    started = time.monotonic()
    assert read_usage_file(fifo) == (None, "is not a regular file")
    assert time.monotonic() - started < 2
    assert read_usage_file(tmp_path)[0] is None  # a directory


# -- the command backend ------------------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path) -> Path:
    wd = tmp_path / "repo"
    wd.mkdir()
    return wd


def python_agent(workdir: Path, code: str, timeout: float = 30, budget: Budget | None = None,
                 model: str | None = None, cancel: threading.Event | None = None) -> AgentContext:
    agent = AgentSpec(backend="command", command=[sys.executable, "-c", code], model=model)
    return AgentContext(run="r1", task="t1", prompt="go", workdir=workdir, agent=agent, timeout_seconds=timeout,
                        budget=budget, cancel=cancel or threading.Event())


WRITE_USAGE = "import json, os; json.dump({}, open(os.environ['BRAID_USAGE_FILE'], 'w'))\n"


def test_claude_code_json_output_is_the_outcomes_usage_and_summary(workdir):
    code = f"print({json.dumps(json.dumps(RESULT))})"
    outcome = CommandAgent().run(python_agent(workdir, code))
    assert outcome.ok and outcome.usage.cost_usd == 0.0454 and outcome.usage.input_tokens == 2400
    assert outcome.summary == "Changed the greeting."


def test_a_pretty_printed_result_is_read_too(workdir):
    code = f"import json; print(json.dumps({RESULT!r}, indent=2))"
    outcome = CommandAgent().run(python_agent(workdir, code))
    assert outcome.usage.cost_usd == 0.0454


def test_plain_output_is_no_usage(workdir):
    outcome = CommandAgent().run(python_agent(workdir, "print('all done, 300 tokens, $1.00')"))
    assert outcome.ok and outcome.usage == Usage() and outcome.summary == "all done, 300 tokens, $1.00"


def test_an_error_result_is_the_failure_message(workdir):
    result = {**RESULT, "is_error": True, "result": "API Error: 529 overloaded"}
    code = f"import sys; print({json.dumps(json.dumps(result))}); sys.exit(1)"
    outcome = CommandAgent().run(python_agent(workdir, code))
    assert not outcome.ok and outcome.reason == "AgentFailed"
    assert outcome.message.endswith("exited with code 1: API Error: 529 overloaded")
    assert outcome.usage.cost_usd == 0.0454


def test_the_usage_file_wins_over_the_output_and_stays_out_of_the_working_copy(workdir):
    code = (WRITE_USAGE.format('{"inputTokens": 7, "outputTokens": 3, "costUSD": 0.01}')
            + f"print({json.dumps(json.dumps(RESULT))})")
    outcome = CommandAgent().run(python_agent(workdir, code))
    assert outcome.usage == Usage(input_tokens=7, output_tokens=3, cost_usd=0.01)
    assert outcome.summary == "Changed the greeting."
    assert list(workdir.iterdir()) == []


def test_the_usage_file_is_removed_afterwards(workdir):
    outcome = CommandAgent().run(python_agent(workdir, "import os; print(os.environ['BRAID_USAGE_FILE'])"))
    path = Path(outcome.summary)
    assert path.name == "usage.json" and workdir not in path.parents and not path.parent.exists()


def test_tokens_without_a_cost_are_priced_by_agent_model_or_left_unpriced(workdir):
    code = WRITE_USAGE.format('{"inputTokens": 1000000, "outputTokens": 100000}')
    assert CommandAgent().run(python_agent(workdir, code, model="claude-sonnet-4-6")).usage.cost_usd == 4.5
    named = WRITE_USAGE.format('{"inputTokens": 1000000, "model": "claude-haiku-4-5"}')
    assert CommandAgent().run(python_agent(workdir, named)).usage.cost_usd == 1.0
    unknown = CommandAgent().run(python_agent(workdir, code)).usage
    assert unknown.cost_usd == 0 and unknown.unpriced_tokens == 1_100_000
    assert unknown.wire()["unpricedTokens"] == 1_100_000


def test_a_bad_usage_file_is_ignored_with_a_warning(workdir, caplog):
    code = WRITE_USAGE.format('{"inputTokens": -50, "costUSD": 1e9}') + "print('done')"
    outcome = CommandAgent().run(python_agent(workdir, code))
    assert outcome.ok and outcome.usage == Usage() and outcome.summary == "done"
    assert "BRAID_USAGE_FILE 'inputTokens': Input should be greater than or equal to 0: ignored" in caplog.text


STREAM_FOREVER = """
import json, sys, time
for n in range(10000):
    line = {{"type": "assistant", "message": {{"id": f"m{{n}}", "model": "claude-sonnet-4-6",
            "content": [{{"type": "text", "text": f"step {{n}}"}}],
            "usage": {{"input_tokens": {tokens}, "output_tokens": 1}}}}}}
    print(json.dumps(line), flush=True)
    open("steps.txt", "a").write(f"{{n}}\\n")
    time.sleep(0.05)
"""


def test_stream_json_is_followed_live_and_the_cli_stopped_at_its_share(workdir):
    started = time.monotonic()
    outcome = CommandAgent().run(python_agent(workdir, STREAM_FOREVER.format(tokens=1000),
                                              budget=Budget(max_tokens=5000)))
    assert not outcome.ok and outcome.reason == "BudgetExceeded"
    assert "stopped: used" in outcome.message and "budget share of 5000" in outcome.message
    assert time.monotonic() - started < 10
    assert 5000 <= outcome.usage.input_tokens + outcome.usage.output_tokens < 9000
    assert outcome.summary.startswith("step ")
    steps = len((workdir / "steps.txt").read_text().splitlines())
    time.sleep(0.3)
    assert len((workdir / "steps.txt").read_text().splitlines()) == steps, "the CLI kept running"


def test_a_cost_share_stops_it_too(workdir):
    # each response: 100000 input tokens of claude-sonnet-4-6 = $0.30
    outcome = CommandAgent().run(python_agent(workdir, STREAM_FOREVER.format(tokens=100_000),
                                              budget=Budget(max_cost_usd=1.0)))
    assert outcome.reason == "BudgetExceeded" and "budget share of $1.0000" in outcome.message
    assert outcome.usage.cost_usd >= 1.0


def test_a_usage_file_rewritten_as_it_goes_is_followed_live(workdir):
    code = """
import json, os, time
path = os.environ["BRAID_USAGE_FILE"]
for n in range(1, 1000):
    with open(path + ".tmp", "w") as f:
        json.dump({"inputTokens": 400 * n, "outputTokens": 100 * n}, f)
    os.replace(path + ".tmp", path)
    time.sleep(0.1)
"""
    started = time.monotonic()
    outcome = CommandAgent().run(python_agent(workdir, code, budget=Budget(max_tokens=2000)))
    assert outcome.reason == "BudgetExceeded" and time.monotonic() - started < 10
    assert outcome.usage.input_tokens + outcome.usage.output_tokens >= 2000


def test_a_finished_result_is_not_stopped_for_its_budget(workdir):
    """One-shot output arrives when the work is done: the task ends as the CLI says, the run's budget counts it."""
    code = f"import time; print({json.dumps(json.dumps(RESULT))}, flush=True); time.sleep(1)"
    outcome = CommandAgent().run(python_agent(workdir, code, budget=Budget(max_cost_usd=0.001)))
    assert outcome.ok and outcome.usage.cost_usd == 0.0454


def test_huge_output_neither_hangs_nor_exhausts_braid(workdir):
    code = ("import sys\nw = sys.stdout.buffer.write\n"
            f"w(b'x' * {3 * MAX_LINE})\nw(b'\\n')\n"           # one line far over the limit
            "for _ in range(400): w(b'y' * 100000 + b'\\n')\n"  # 40 MB of lines
            f"w({json.dumps(json.dumps(RESULT))}.encode())")     # and the result, without a newline
    started = time.monotonic()
    outcome = CommandAgent().run(python_agent(workdir, code, timeout=60))
    assert outcome.ok and time.monotonic() - started < 30
    assert outcome.usage.cost_usd == 0.0454


def test_a_budget_share_without_any_reported_usage_never_stops_the_cli(workdir):
    outcome = CommandAgent().run(python_agent(workdir, "print('no numbers here')", budget=Budget(max_tokens=1)))
    assert outcome.ok
