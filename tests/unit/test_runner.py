"""run_task end to end on a real origin repository with the script backend."""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from braid.api import AgentSpec, AgentTaskSpec, RepoSpec, ScriptSpec, ScriptStep, Usage
from braid.runner import TERMINATION_MESSAGE_LIMIT, RunnerPaths, TaskResult, run_task
from gitrepos import GitRepo, make_repo

RUN = "r1"


def tb(task: str) -> str:
    return f"braid/{RUN}/tasks/{task}"


@pytest.fixture
def origin(tmp_path) -> GitRepo:
    return make_repo(tmp_path / "origin", {"README.md": "# app\nTBD\n", "app.py": "x = 1\n"})


def spec(origin: GitRepo, task: str, steps: list[dict], deps: list[str] | None = None, **kw) -> AgentTaskSpec:
    return AgentTaskSpec(
        run=RUN,
        task=task,
        prompt=f"do {task}",
        repo=RepoSpec(url=str(origin.path)),
        branch=tb(task),
        depends_on=deps or [],
        dependency_branches=[tb(d) for d in deps or []],
        agent=AgentSpec(backend="script", script=ScriptSpec(steps=[ScriptStep(**s) for s in steps])),
        timeout_seconds=kw.pop("timeout_seconds", 60),
        **kw,
    )


def paths(tmp_path: Path, name: str = "ws") -> RunnerPaths:
    return RunnerPaths(workdir=tmp_path / "work" / name, cache_dir=tmp_path / "cache")


def test_run_task_commits_and_pushes_the_task_branch(tmp_path, origin):
    s = spec(origin, "schema", [
        {"op": "write", "path": "db/schema.sql", "content": "CREATE TABLE users (id INT);\n"},
        {"op": "replace", "path": "README.md", "old": "TBD", "new": "Users."},
    ])
    result = run_task(s, paths(tmp_path))
    assert result.phase == "Succeeded", result.message
    assert result.run == RUN and result.task == "schema" and result.branch == tb("schema")
    assert result.reason is None
    assert result.commit == origin.rev(tb("schema"))
    assert sorted(result.changed_files) == ["README.md", "db/schema.sql"]
    message = origin.message(tb("schema"))
    assert message.splitlines()[0] == "schema"
    assert "Braid-Run: r1" in message and "Braid-Task: schema" in message
    assert origin.show(tb("schema"), "db/schema.sql") == "CREATE TABLE users (id INT);\n"
    assert origin.show(tb("schema"), "README.md") == "# app\nUsers.\n"
    assert origin.parents(tb("schema")) == [origin.rev("main")]
    assert origin.rev("main") == origin.parents(tb("schema"))[0], "main was not touched"
    assert result.duration_seconds >= 0


def test_dependent_task_starts_from_its_dependency(tmp_path, origin):
    first = run_task(spec(origin, "schema", [{"op": "write", "path": "db/schema.sql", "content": "t\n"}]),
                     paths(tmp_path, "schema"))
    assert first.phase == "Succeeded"
    s = spec(origin, "models", [
        {"op": "require", "path": "db/schema.sql"},
        {"op": "write", "path": "app/models.py", "content": "class User: ...\n"},
    ], deps=["schema"])
    result = run_task(s, paths(tmp_path, "models"))
    assert result.phase == "Succeeded", result.message
    assert origin.is_ancestor(first.commit, result.commit)
    assert origin.show(tb("models"), "db/schema.sql") == "t\n"
    # the dependency's files arrived by merge, so they are not the task's own changes
    assert result.changed_files == ["app/models.py"]


def test_failing_script_still_pushes_its_partial_work(tmp_path, origin):
    s = spec(origin, "api", [
        {"op": "write", "path": "api/half.py", "content": "def get(): ...\n"},
        {"op": "fail", "message": "ran out of ideas"},
    ])
    result = run_task(s, paths(tmp_path))
    assert result.phase == "Failed"
    assert result.reason == "AgentFailed" and "ran out of ideas" in result.message
    assert result.commit == origin.rev(tb("api"))
    assert origin.show(tb("api"), "api/half.py") == "def get(): ...\n"
    assert result.changed_files == ["api/half.py"]
    message = origin.message(tb("api"))
    assert message.splitlines()[0] == "api"
    assert "Partial work: AgentFailed" in message


def test_retry_resumes_from_the_pushed_work(tmp_path, origin):
    failing = spec(origin, "api", [
        {"op": "write", "path": "api/half.py", "content": "half\n"},
        {"op": "fail", "message": "flaky"},
    ])
    first = run_task(failing, paths(tmp_path, "attempt1"))
    assert first.phase == "Failed"
    retry = spec(origin, "api", [
        {"op": "require", "path": "api/half.py"},
        {"op": "write", "path": "api/rest.py", "content": "rest\n"},
    ], last_pushed=first.commit)
    second = run_task(retry, paths(tmp_path, "attempt2"))
    assert second.phase == "Succeeded", second.message
    assert origin.parents(second.commit) == [first.commit]
    assert second.changed_files == ["api/rest.py"]


def test_nothing_changed_still_succeeds_and_pushes_the_branch(tmp_path, origin):
    result = run_task(spec(origin, "noop", []), paths(tmp_path))
    assert result.phase == "Succeeded"
    assert result.commit == origin.rev(tb("noop")) == origin.rev("main")
    assert result.changed_files == []


def test_cancelled_task_keeps_its_work(tmp_path, origin):
    cancel = threading.Event()
    s = spec(origin, "slow", [
        {"op": "write", "path": "started.txt", "content": "s\n"},
        {"op": "sleep", "seconds": 30},
        {"op": "write", "path": "never.txt", "content": "n\n"},
    ])
    threading.Timer(0.5, cancel.set).start()
    result = run_task(s, paths(tmp_path), cancel=cancel)
    assert result.phase == "Cancelled" and result.reason == "Cancelled"
    assert origin.show(tb("slow"), "started.txt") == "s\n"
    assert origin.show(tb("slow"), "never.txt") is None


def test_dependency_conflict_fails_before_the_agent_runs(tmp_path, origin):
    origin.commit({"app.py": "x = 'a'\n"}, "a", branch=tb("a"))
    origin.commit({"app.py": "x = 'b'\n"}, "b", branch=tb("b"))
    s = spec(origin, "c", [{"op": "write", "path": "c.txt", "content": "c\n"}], deps=["a", "b"])
    result = run_task(s, paths(tmp_path))
    assert result.phase == "Failed" and result.reason == "DependencyConflict"
    assert "app.py" in result.message
    assert origin.rev(tb("c")) is None


def test_missing_base_ref(tmp_path, origin):
    s = spec(origin, "a", [])
    s.repo = RepoSpec(url=str(origin.path), base_ref="develop")
    result = run_task(s, paths(tmp_path))
    assert result.phase == "Failed" and result.reason == "MissingRef" and "develop" in result.message


def test_unreachable_repository(tmp_path, origin):
    s = spec(origin, "a", [])
    s.repo = RepoSpec(url=str(tmp_path / "no-such-repo"))
    result = run_task(s, paths(tmp_path))
    assert result.phase == "Failed" and result.reason == "RepositoryUnreachable"


def test_branch_moved_while_the_task_ran_is_not_overwritten(tmp_path, origin):
    s = spec(origin, "a", [{"op": "write", "path": "mine.txt", "content": "m\n"}, {"op": "sleep", "seconds": 0.5}])
    box: dict[str, object] = {}
    worker = threading.Thread(target=lambda: box.update(result=run_task(s, paths(tmp_path))))
    worker.start()
    # once the agent is at work (the workspace was fetched), another attempt pushes the same branch
    mine = paths(tmp_path).workdir / "mine.txt"
    for _ in range(500):
        if mine.exists():
            break
        time.sleep(0.01)
    assert mine.exists()
    theirs = origin.commit({"theirs.txt": "t\n"}, "other attempt", branch=tb("a"))
    worker.join(30)
    result = box["result"]
    assert result.phase == "Failed" and result.reason == "PushFailed"
    assert tb("a") in result.message
    assert origin.rev(tb("a")) == theirs


def test_a_task_branch_braid_did_not_push_fails_the_task_and_is_left_alone(tmp_path, origin):
    theirs = origin.commit({"theirs.txt": "someone's work\n"}, "their work", branch=tb("a"))
    s = spec(origin, "a", [{"op": "write", "path": "mine.txt", "content": "m\n"}])
    result = run_task(s, paths(tmp_path))
    assert (result.phase, result.reason) == ("Failed", "BranchExists")
    assert tb("a") in result.message and theirs[:12] in result.message
    assert result.commit is None
    assert origin.rev(tb("a")) == theirs  # nothing pushed
    # no agent ran: its working copy holds nothing to keep
    assert not (paths(tmp_path).workdir / "mine.txt").exists()

    # a record of another commit does not make it braid's either
    again = run_task(spec(origin, "a", [], last_pushed=origin.rev("main")), paths(tmp_path))
    assert again.reason == "BranchExists" and origin.rev(tb("a")) == theirs


def test_credentials_never_reach_the_result_logs_or_the_repository(tmp_path, origin, caplog):
    secret = "pw-9f8e7d6c5b4a"
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "username").write_text("bot")
    (creds / "password").write_text(secret)
    runner_paths = RunnerPaths(workdir=tmp_path / "work" / "ws", cache_dir=tmp_path / "cache", credentials_dir=creds)
    caplog.set_level("DEBUG")
    result = run_task(spec(origin, "a", [{"op": "write", "path": "a.txt", "content": "a\n"}]), runner_paths)
    assert result.phase == "Succeeded", result.message
    assert secret not in result.compact_json()
    assert secret not in caplog.text
    git_dir = runner_paths.workdir / ".git"
    assert secret not in (git_dir / "config").read_text()
    assert GitRepo(runner_paths.workdir).git("remote", "get-url", "origin") == str(origin.path)
    assert secret not in origin.message(tb("a"))


def test_result_json_roundtrip(tmp_path, origin):
    result = run_task(spec(origin, "a", [{"op": "write", "path": "a.txt", "content": "a\n"}]), paths(tmp_path))
    data = json.loads(result.compact_json())
    assert data["phase"] == "Succeeded" and data["commit"] == result.commit
    assert data["changedFiles"] == ["a.txt"] and data["changedFilesTotal"] == 1
    assert TaskResult.model_validate(data).commit == result.commit


def test_compact_json_fits_a_termination_message_with_10000_files():
    files = [f"src/module_{i:05d}/some/rather/long/path/name_{i}.py" for i in range(10_000)]
    result = TaskResult(
        run=RUN, task="huge", phase="Failed", branch=tb("huge"), commit="a" * 40, changed_files=files,
        usage=Usage(input_tokens=123456, output_tokens=7890, cost_usd=1.23),
        reason="AgentFailed", message="x" * 10_000,
    )
    text = result.compact_json()
    assert len(text.encode()) <= TERMINATION_MESSAGE_LIMIT < 4097
    data = json.loads(text)
    assert data["commit"] == "a" * 40
    assert data["changedFilesTotal"] == 10_000
    assert data["usage"]["inputTokens"] == 123456 and data["usage"]["costUSD"] == 1.23
    assert data["reason"] == "AgentFailed"
    assert data["changedFiles"] == files[: len(data["changedFiles"])]
    assert TaskResult.model_validate(data).task == "huge"


def test_compact_json_with_non_ascii_file_names_stays_under_the_byte_limit():
    files = [f"docs/übersicht-{i}-日本語.md" for i in range(10_000)]
    result = TaskResult(run=RUN, task="t", phase="Succeeded", branch=tb("t"), changed_files=files)
    assert len(result.compact_json().encode()) <= TERMINATION_MESSAGE_LIMIT


def test_compact_json_keeps_small_results_whole():
    result = TaskResult(run=RUN, task="t", phase="Succeeded", branch=tb("t"), changed_files=["a", "b"],
                        message="fine")
    data = json.loads(result.compact_json())
    assert data["changedFiles"] == ["a", "b"] and data["message"] == "fine"


def test_a_working_copy_with_unpushed_work_is_set_aside_not_deleted(tmp_path, origin):
    """An attempt killed before its push leaves work only in its working copy; the next keeps it."""
    ws = paths(tmp_path, "api")
    done = run_task(spec(origin, "api", [{"op": "write", "path": "api/a.py", "content": "a\n"}]), ws)
    assert done.phase == "Succeeded"
    # the next attempt in the same place: a pushed working copy is simply replaced
    again = run_task(spec(origin, "api", [{"op": "require", "path": "api/a.py"}], last_pushed=done.commit), ws)
    assert again.phase == "Succeeded"
    assert not list(ws.workdir.parent.glob("api.unpushed-*"))

    # an agent wrote, then its runner was killed (SIGKILL: no commit, no push, no marker)
    (ws.workdir.parent / ".api.pushed").unlink()
    (ws.workdir / "api" / "unsaved.py").write_text("only here\n")
    third = run_task(spec(origin, "api", [{"op": "write", "path": "api/b.py", "content": "b\n"}],
                          last_pushed=again.commit), ws)
    assert third.phase == "Succeeded"
    kept = list(ws.workdir.parent.glob("api.unpushed-*"))
    assert len(kept) == 1 and (kept[0] / "api" / "unsaved.py").read_text() == "only here\n"
    assert not (ws.workdir / "api" / "unsaved.py").exists()


def test_a_failed_fetch_does_not_mark_an_old_working_copy_as_pushed(tmp_path, origin):
    ws = paths(tmp_path, "api")
    ws.workdir.mkdir(parents=True)
    (ws.workdir / "unsaved.py").write_text("only here\n")
    gone = spec(origin, "api", [])
    gone.repo.url = str(tmp_path / "no-such-repo")
    assert run_task(gone, ws).reason == "RepositoryUnreachable"
    assert (ws.workdir / "unsaved.py").exists() and not (ws.workdir.parent / ".api.pushed").exists()
