"""BRAID_USAGE_FILE: a wrapper around any agent says what it spent, from inside the sandbox.

Plain Python agents run by `braid run --local --sandbox bwrap` (the sandbox is required,
not optional: the file must be writable there and readable by braid afterwards) write the
file; the numbers reach the run's status, priced as the file or braid's table says.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from localrun import Workspace, branches, make_origin, manifest, show

AGENT = """
import json, os, pathlib, sys
pathlib.Path("notes.txt").write_text("done\\n")
path = os.environ["BRAID_USAGE_FILE"]
# where the file is: not in the working copy, and the rest of /tmp is the sandbox's own
assert not path.startswith(os.getcwd()), path
with open(path, "w") as f:
    f.write(sys.argv[1])
print("wrote", len(sys.argv[1]), "bytes of usage")
"""


def usage_task(name: str, report: object, **agent: object) -> dict:
    text = report if isinstance(report, str) else json.dumps(report)
    return {"name": name, "prompt": f"do {name}",
            "agent": {"backend": "command", "command": [sys.executable, "-c", AGENT, text], **agent}}


def test_a_sandboxed_agent_reports_its_usage_through_the_usage_file(ws: Workspace, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tmpdir = tmp_path / "tmpdir"
    tmpdir.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmpdir))  # where agent-run makes the file's directory
    origin = make_origin(tmp_path / "origin", {"README.md": "# app\n"})
    tasks = [
        usage_task("priced", {"inputTokens": 1000, "outputTokens": 200, "cacheReadTokens": 50,
                              "cacheWriteTokens": 10, "costUSD": 0.5}),
        # no cost: braid prices the tokens for agent.model (claude-sonnet-4-6: $3 in, $15 out, $0.30 cache read)
        usage_task("by-model", {"inputTokens": 1_000_000, "outputTokens": 100_000, "cacheReadTokens": 1_000_000},
                   model="claude-sonnet-4-6"),
        usage_task("unknown-model", {"inputTokens": 300, "outputTokens": 30, "model": "gateway-model-x"}),
        # untrusted content: refused, the task itself is not failed for it
        usage_task("negative", {"inputTokens": -5, "costUSD": 1e9}),
        usage_task("garbage", '{"inputTokens": 12'),
    ]
    result = ws.run(ws.write(manifest("usagefile", origin, tasks)), "--sandbox", "bwrap", timeout=180)

    assert result.code == 0, result.stderr
    assert "WITHOUT a sandbox" not in result.stderr
    status = result.status["tasks"]
    assert all(t["phase"] == "Succeeded" for t in status.values()), status
    assert status["priced"]["usage"] == {"inputTokens": 1000, "outputTokens": 200, "cacheReadTokens": 50,
                                         "cacheWriteTokens": 10, "costUSD": 0.5}
    assert status["by-model"]["usage"]["costUSD"] == pytest.approx(4.8)
    unknown = status["unknown-model"]["usage"]
    assert unknown["costUSD"] == 0 and unknown["unpricedTokens"] == 330
    # refused content is no usage at all, not zeros
    assert "usage" not in status["negative"] and "usage" not in status["garbage"]
    assert result.status["usage"]["costUSD"] == pytest.approx(5.3)
    assert result.status["usage"]["unpricedTokens"] == 330
    # the summary at the end says the cost is not the whole story
    assert "(not counting 330 tokens braid has no price for)" in result.stdout + result.stderr

    # the file was never part of the work: only the agent's own change is committed
    for name, task in status.items():
        assert task["changedFiles"] == ["notes.txt"], (name, task)
        assert branches(origin)[f"braid/usagefile/tasks/{name}"] == task["commit"]
    assert show(origin, "braid/usagefile/tasks/priced", "usage.json") is None
    # and its directory is gone once the agent ended
    assert list(tmpdir.glob("braid-usage-*")) == []

    log = (ws.state / "tasks" / "negative" / "attempt-1.log").read_text()
    assert "BRAID_USAGE_FILE 'inputTokens': Input should be greater than or equal to 0: ignored" in log
    assert "1000000000" not in log
