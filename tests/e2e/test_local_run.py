"""`braid run --local` end to end on real, throw-away git repositories."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from localrun import Workspace, branches, git, make_origin, manifest, script_task, show, write

README = "# app\n\nTBD\n"


@pytest.fixture
def origin(tmp_path: Path) -> Path:
    return make_origin(tmp_path / "origin", {"README.md": README, "app/__init__.py": ""})


def test_dag_run_merges_dependency_code_and_reports_the_conflict(ws: Workspace, origin: Path) -> None:
    tasks = [
        script_task("schema", [write("db/schema.sql", "CREATE TABLE users (id INT);\n")]),
        # fails unless the schema task's file is in its starting point
        script_task("models", [{"op": "require", "path": "db/schema.sql"}, write("app/models.py", "class User: ...\n")],
                    ["schema"]),
        script_task("api", [{"op": "require", "path": "app/models.py"}, write("app/api.py", "from app.models import User\n")],
                    ["models"]),
        script_task("cli", [write("app/cli.py", "print('hi')\n")]),
        script_task("docs-a", [{"op": "replace", "path": "README.md", "old": "TBD", "new": "Version A"}]),
        script_task("docs-b", [{"op": "replace", "path": "README.md", "old": "TBD", "new": "Version B"}]),
    ]
    result = ws.run(ws.write(manifest("feature", origin, tasks, maxParallel=2)))

    assert result.code == 1, result.stderr  # Conflicted is not Succeeded
    status = result.status
    assert status["phase"] == "Conflicted"
    assert {n: t["phase"] for n, t in status["tasks"].items()} == dict.fromkeys(
        ["schema", "models", "api", "cli", "docs-a", "docs-b"], "Succeeded")
    refs = branches(origin)
    for name, task in status["tasks"].items():
        assert task["branch"] == f"braid/feature/tasks/{name}"
        assert refs[task["branch"]] == task["commit"]
    # the dependent task's branch holds its dependencies' code too
    assert show(origin, "braid/feature/tasks/api", "db/schema.sql") is not None
    assert git(origin, "log", "-1", "--format=%s", "braid/feature/tasks/api") == "api"

    merge = status["merge"]
    assert merge["phase"] == "Conflicted"
    assert merge["branch"] == "braid/feature/merged"
    assert merge["merged"] == ["cli", "docs-a", "schema", "models", "api"]
    assert merge["conflicts"] == [{
        "task": "docs-b",
        "collidesWith": ["docs-a"],
        "files": [{"path": "README.md", "kind": "content", "collidesWith": ["docs-a"],
                   "message": "CONFLICT (content): Merge conflict in README.md"}],
    }]
    assert refs["braid/feature/merged"] == merge["commit"]
    for path in ("db/schema.sql", "app/models.py", "app/api.py", "app/cli.py"):
        assert show(origin, "braid/feature/merged", path) is not None, path
    assert "Version A" in show(origin, "braid/feature/merged", "README.md")
    assert "docs-b: README.md [content] (collides with docs-a)" in result.stdout
    assert status["counts"] == {"total": 6, "pending": 0, "running": 0, "succeeded": 6, "failed": 0, "skipped": 0,
                                "cancelled": 0}
    assert status["progress"] == "6/6"


def test_clean_run_exits_zero_and_status_has_the_cluster_schema(ws: Workspace, origin: Path) -> None:
    tasks = [script_task("one", [write("one.txt", "1\n")]), script_task("two", [write("two.txt", "2\n")], ["one"])]
    result = ws.run(ws.write(manifest("clean", origin, tasks, integrationBranch="feature/clean")))
    assert result.code == 0, result.stderr + result.stdout
    status = result.status
    assert status["phase"] == "Succeeded"
    assert status["merge"]["merged"] == ["one", "two"]
    assert status["merge"]["conflicts"] == []
    assert status["merge"]["branch"] == "feature/clean"
    assert branches(origin)["feature/clean"] == status["merge"]["commit"]
    assert set(status["usage"]) == {"inputTokens", "outputTokens", "cacheWriteTokens", "cacheReadTokens", "costUSD"}
    # the file is the ParallelRun .status the CRD defines
    from braid.api import ParallelRunStatus

    assert ParallelRunStatus.model_validate(status).wire() == status


def test_failed_task_skips_its_dependents_and_the_rest_still_merges(ws: Workspace, origin: Path) -> None:
    tasks = [
        script_task("base", [write("base.txt", "b\n"), {"op": "fail", "message": "tests do not pass"}]),
        script_task("child", [write("child.txt", "c\n")], ["base"]),
        script_task("grandchild", [write("gc.txt", "g\n")], ["child"]),
        script_task("other", [write("other.txt", "o\n")]),
    ]
    result = ws.run(ws.write(manifest("partial", origin, tasks)))
    assert result.code == 1
    tasks_status = result.status["tasks"]
    assert tasks_status["base"]["phase"] == "Failed"
    assert tasks_status["base"]["reason"] == "AgentFailed"
    assert "tests do not pass" in tasks_status["base"]["message"]
    assert tasks_status["child"]["phase"] == "Skipped"
    assert tasks_status["child"]["reason"] == "DependencyFailed"
    assert tasks_status["grandchild"]["phase"] == "Skipped"
    assert result.status["phase"] == "Failed"
    assert result.status["merge"]["merged"] == ["other"]
    # the failed task's partial work is kept on its branch
    assert show(origin, "braid/partial/tasks/base", "base.txt") == "b\n"


def test_never_more_than_max_parallel_and_no_batches(ws: Workspace, origin: Path, tmp_path: Path) -> None:
    log = tmp_path / "events.log"
    cmd = ["sh", "-c", 'echo "start $BRAID_TASK" >> "$LOG"; sleep "$NAP"; echo "end $BRAID_TASK" >> "$LOG"']

    def task(name: str, nap: str, deps: list[str] | None = None) -> dict:
        t = {"name": name, "prompt": name, "agent": {"backend": "command", "command": cmd,
                                                     "env": {"LOG": str(log), "NAP": nap}}}
        if deps:
            t["dependsOn"] = deps
        return t

    # a -> c is short; b is long. c must start while b still runs (no batch barrier).
    tasks = [task("a", "0.2"), task("b", "3"), task("c", "0.2", ["a"]), task("d", "0.2"), task("e", "0.2")]
    result = ws.run(ws.write(manifest("par", origin, tasks, maxParallel=2)), "--share", str(tmp_path))
    assert result.code == 0, result.stderr + result.stdout
    running, peak, order = set(), 0, []
    for line in log.read_text().splitlines():
        what, name = line.split()
        order.append(line)
        if what == "start":
            running.add(name)
            peak = max(peak, len(running))
        else:
            running.discard(name)
    assert peak == 2
    assert order.index("start c") < order.index("end b")


def test_bad_input_exits_2_and_creates_nothing(ws: Workspace, origin: Path, tmp_path: Path) -> None:
    before = branches(origin)
    cases = {
        "cycle": (manifest("bad", origin, [script_task("a", [], ["c"]), script_task("b", [], ["a"]),
                                           script_task("c", [], ["b"])]), "a -> c -> b -> a"),
        "unknown-dep": (manifest("bad", origin, [script_task("a", [], ["nope"])]),
                        "spec.tasks[0].dependsOn[0]: task 'a' depends on unknown task 'nope'"),
        "duplicate": (manifest("bad", origin, [script_task("a", []), script_task("a", [])]),
                      "spec.tasks: task names must be unique"),
        "bad-branch": (manifest("bad", origin, [script_task("-a", [])]), "spec.tasks[0].name"),
        "unknown-field": (manifest("bad", origin, [script_task("a", [])], maxParalel=2), "spec.maxParalel: unknown field"),
        "wrong-type": (manifest("bad", origin, [script_task("a", [])], maxParallel="many"), "spec.maxParallel"),
        "no-repo": (manifest("bad", tmp_path / "missing", [script_task("a", [])]),
                    f"repo.url: '{tmp_path / 'missing'}': {tmp_path / 'missing'} does not exist"),
        "not-a-repo": (manifest("bad", tmp_path / "cache-not", [script_task("a", [])]),
                       f"{tmp_path / 'cache-not'} is not a git repository"),
        "option-url": (manifest("bad", "--upload-pack=touch PWNED;://", [script_task("a", [])]),
                       "spec.repo.url: must not begin with '-'"),
        "integration": (manifest("bad", origin, [script_task("a", [])], integrationBranch="braid/bad"),
                        "spec.integrationBranch"),
        "base-ref": ({**manifest("bad", origin, [script_task("a", [])])} | {
            "spec": {**manifest("bad", origin, [script_task("a", [])])["spec"],
                     "repo": {"url": str(origin), "baseRef": "nope"}}}, "repo.baseRef: 'nope'"),
    }
    (tmp_path / "cache-not").mkdir()
    for name, (data, expected) in cases.items():
        result = ws.run(ws.write(data, f"{name}.yaml"))
        assert result.code == 2, (name, result.stderr)
        lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and expected in lines[0], (name, result.stderr)
    assert branches(origin) == before
    assert not (Path.cwd() / "PWNED").exists() and not (tmp_path / "PWNED").exists()
    assert not ws.state.exists()
    assert not ws.cache.exists()


def test_ctrl_c_cancels_running_tasks_and_keeps_pushed_branches(ws: Workspace, origin: Path) -> None:
    tasks = [
        script_task("quick", [write("quick.txt", "q\n")]),
        script_task("slow", [{"op": "sleep", "seconds": 60}, write("slow.txt", "s\n")]),
        script_task("after", [write("after.txt", "a\n")], ["quick", "slow"]),
    ]
    run_file = ws.write(manifest("cancel", origin, tasks))
    proc = subprocess.Popen(ws.argv(run_file), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while "braid/cancel/tasks/quick" not in branches(origin):
        assert time.monotonic() < deadline, "the quick task never pushed"
        assert proc.poll() is None
        time.sleep(0.1)
    quick_commit = branches(origin)["braid/cancel/tasks/quick"]
    started = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert time.monotonic() - started < 30, "cancelling took too long"
    assert proc.returncode == 1, err
    status = json.loads((ws.root / "status.json").read_text())
    assert status["phase"] == "Cancelled"
    assert status["tasks"]["quick"]["phase"] == "Succeeded"
    assert status["tasks"]["slow"]["phase"] == "Cancelled"
    assert status["tasks"]["after"]["phase"] == "Cancelled"
    assert branches(origin)["braid/cancel/tasks/quick"] == quick_commit
    assert "braid/cancel/merged" not in branches(origin)
    # no agent process is left behind
    leftover = subprocess.run(["pgrep", "-f", f"agent-run --task {ws.state}"], capture_output=True, text=True)
    assert leftover.stdout == ""


def test_running_the_same_file_again_resumes_safely(ws: Workspace, origin: Path) -> None:
    tasks = [
        script_task("one", [{"op": "append", "path": "log.txt", "content": "one\n"}]),
        script_task("two", [{"op": "append", "path": "two.txt", "content": "two\n"}], ["one"]),
    ]
    run_file = ws.write(manifest("again", origin, tasks))
    first = ws.run(run_file)
    assert first.code == 0, first.stderr
    refs = branches(origin)

    second = ws.run(run_file)
    assert second.code == 0, second.stderr
    assert branches(origin) == refs  # nothing re-done, nothing rewritten
    assert second.status["tasks"]["one"]["commit"] == first.status["tasks"]["one"]["commit"]
    assert second.status["tasks"]["one"]["message"] == "unchanged since the previous run"
    assert second.status["merge"]["commit"] == first.status["merge"]["commit"]
    assert show(origin, "braid/again/merged", "log.txt") == "one\n"


def test_rerun_after_a_failure_retries_from_the_pushed_branch(ws: Workspace, origin: Path, tmp_path: Path) -> None:
    # fails the first time only: a resumed attempt finds the first line already pushed
    cmd = ["sh", "-c", 'echo work >> work.txt; if [ "$(wc -l < work.txt)" -eq 1 ]; then exit 3; fi']
    tasks = [{"name": "flaky", "prompt": "p", "agent": {"backend": "command", "command": cmd}}]
    run_file = ws.write(manifest("flaky", origin, tasks))
    first = ws.run(run_file)
    assert first.code == 1
    assert first.status["tasks"]["flaky"]["phase"] == "Failed"
    assert show(origin, "braid/flaky/tasks/flaky", "work.txt") == "work\n"  # partial work pushed

    second = ws.run(run_file)
    assert second.code == 0, second.stderr
    # the second attempt started from the first one's pushed work
    assert show(origin, "braid/flaky/merged", "work.txt") == "work\nwork\n"


def test_retry_limit_retries_within_one_run(ws: Workspace, origin: Path, tmp_path: Path) -> None:
    # the failed attempt's partial work (.tried) is pushed, and the retry resumes from it
    cmd = ["sh", "-c", 'if [ ! -e .tried ]; then touch .tried; exit 3; fi; echo ok > ok.txt']
    tasks = [{"name": "flaky", "prompt": "p", "agent": {"backend": "command", "command": cmd}}]
    data = manifest("retry", origin, tasks)
    data["spec"]["retry"] = {"limit": 1, "backoffSeconds": 0}
    result = ws.run(ws.write(data))
    assert result.code == 0, result.stderr
    assert result.status["tasks"]["flaky"]["attempts"] == 2


def test_events_are_json_lines_of_the_documented_schema(ws: Workspace, origin: Path) -> None:
    from braid.api.events import RunEvent

    tasks = [script_task("a", [write("a.txt", "a\n")]), script_task("b", [{"op": "fail", "message": "no \x1b[2J"}]),
             script_task("c", [write("c.txt", "c\n")], ["b"])]
    events = ws.root / "events.jsonl"
    result = ws.run(ws.write(manifest("ev", origin, tasks)), "--events", str(events))
    assert result.code == 1, result.stderr
    lines = [RunEvent.model_validate_json(line) for line in events.read_text().splitlines()]
    seen = [(e.reason, e.task) for e in lines]
    assert ("TaskStarted", "a") in seen and ("TaskStarted", "b") in seen
    assert ("Succeeded", "a") in seen and ("TaskSucceeded", "a") in seen
    assert ("TaskFailed", "b") in seen and ("TaskSkipped", "c") in seen
    done = next(e for e in lines if e.reason == "Succeeded" and e.task == "a")
    assert (done.attempt, done.phase) == (1, "Succeeded")
    assert lines[-1].reason == "RunEnded" and lines[-1].phase == result.status["phase"] == "Failed"
    assert all("\x1b" not in e.message for e in lines)
    assert seen.index(("TaskStarted", "a")) < seen.index(("Succeeded", "a")) < len(seen) - 1


# lib -> app is the longest chain; hotfix has the highest priority
PRIORITIZED = (("chore", -5, []), ("docs", 0, []), ("hotfix", 10, []), ("lib", 0, []), ("app", 0, ["lib"]))


@pytest.mark.parametrize(("strategy", "order"), [
    ("criticalPath", ["lib", "hotfix", "app", "docs", "chore"]),
    ("priority", ["hotfix", "lib", "app", "docs", "chore"]),
    ("fifo", ["chore", "docs", "hotfix", "lib", "app"]),
])
def test_the_scheduling_strategy_decides_the_start_order(ws: Workspace, origin: Path, strategy: str,
                                                         order: list[str]) -> None:
    tasks = [{**script_task(name, [write(f"{name}.txt", "x\n")], deps), "priority": prio}
             for name, prio, deps in PRIORITIZED]
    events = ws.root / f"{strategy}.jsonl"
    data = manifest(f"order-{strategy.lower()}", origin, tasks, maxParallel=1, scheduling={"strategy": strategy})
    result = ws.run(ws.write(data), "--events", str(events))
    assert result.code == 0, result.stderr
    lines = [json.loads(line) for line in events.read_text().splitlines()]
    assert [e["task"] for e in lines if e["reason"] == "TaskStarted"] == order
