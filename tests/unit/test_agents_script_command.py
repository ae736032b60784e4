"""The script and command agent backends, run for real in a temporary work tree."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import pytest

from braid.agents import AgentContext, AgentError, ModelAccess, get_agent
from braid.agents.command import CommandAgent
from braid.agents.paths import OutsideWorktree, resolve_inside
from braid.agents.script import ScriptAgent
from braid.api import AgentSpec, ScriptSpec, ScriptStep


@pytest.fixture
def workdir(tmp_path) -> Path:
    wd = tmp_path / "repo"
    (wd / ".git").mkdir(parents=True)
    (wd / ".git" / "config").write_text("[core]\n")
    (wd / "README.md").write_text("# app\nTBD\n")
    return wd


def script_ctx(workdir: Path, *steps: dict, timeout: float = 30, **kw) -> AgentContext:
    agent = AgentSpec(backend="script", script=ScriptSpec(steps=[ScriptStep(**s) for s in steps]))
    return AgentContext(run="r1", task="t1", prompt="do it", workdir=workdir, agent=agent, timeout_seconds=timeout,
                        **kw)


def command_ctx(workdir: Path, argv: list[str], timeout: float = 30, env: dict | None = None,
                prompt: str = "Add a users table.\nThanks.", **kw) -> AgentContext:
    agent = AgentSpec(backend="command", command=argv, env=env)
    return AgentContext(run="r1", task="t1", prompt=prompt, workdir=workdir, agent=agent, timeout_seconds=timeout,
                        **kw)


def test_get_agent_by_backend_name():
    assert isinstance(get_agent("script"), ScriptAgent)
    assert isinstance(get_agent("command"), CommandAgent)
    with pytest.raises(AgentError) as info:
        get_agent("telepathy")
    assert info.value.reason == "InvalidBackend"


# -- script backend -------------------------------------------------------------------------------------------


def test_script_write_append_replace_delete(workdir):
    (workdir / "gone.txt").write_text("bye\n")
    outcome = ScriptAgent().run(script_ctx(
        workdir,
        {"op": "write", "path": "src/deep/new.py", "content": "x = 1\n"},
        {"op": "append", "path": "src/deep/new.py", "content": "y = 2\n"},
        {"op": "append", "path": "fresh.txt", "content": "first\n"},
        {"op": "replace", "path": "README.md", "old": "TBD", "new": "A user service."},
        {"op": "delete", "path": "gone.txt"},
        {"op": "require", "path": "src/deep/new.py"},
    ))
    assert outcome.ok, outcome.message
    assert (workdir / "src/deep/new.py").read_text() == "x = 1\ny = 2\n"
    assert (workdir / "fresh.txt").read_text() == "first\n"
    assert (workdir / "README.md").read_text() == "# app\nA user service.\n"
    assert not (workdir / "gone.txt").exists()
    assert "write src/deep/new.py" in outcome.summary and "delete gone.txt" in outcome.summary
    assert "require" not in outcome.summary


def test_script_with_no_steps_succeeds(workdir):
    outcome = ScriptAgent().run(script_ctx(workdir))
    assert outcome.ok and outcome.summary == "No edits."


def test_script_require_missing_file_fails(workdir):
    outcome = ScriptAgent().run(script_ctx(workdir, {"op": "require", "path": "db/schema.sql"}))
    assert not outcome.ok and outcome.reason == "AgentFailed"
    assert "db/schema.sql" in outcome.message and "step 0" in outcome.message


def test_script_fail_stops_and_keeps_earlier_edits(workdir):
    outcome = ScriptAgent().run(script_ctx(
        workdir,
        {"op": "write", "path": "done.txt", "content": "d\n"},
        {"op": "fail", "message": "the tests do not pass"},
        {"op": "write", "path": "never.txt", "content": "n\n"},
    ))
    assert not outcome.ok and outcome.reason == "AgentFailed"
    assert "the tests do not pass" in outcome.message and "step 1" in outcome.message
    assert (workdir / "done.txt").exists() and not (workdir / "never.txt").exists()


@pytest.mark.parametrize("count, content", [(0, "nothing here\n"), (2, "TBD TBD\n")])
def test_script_replace_needs_exactly_one_occurrence(workdir, count, content):
    (workdir / "f.txt").write_text(content)
    outcome = ScriptAgent().run(script_ctx(workdir, {"op": "replace", "path": "f.txt", "old": "TBD", "new": "x"}))
    assert not outcome.ok and f"found {count}" in outcome.message
    assert (workdir / "f.txt").read_text() == content


def test_script_delete_missing_file_fails(workdir):
    outcome = ScriptAgent().run(script_ctx(workdir, {"op": "delete", "path": "nope.txt"}))
    assert not outcome.ok and outcome.reason == "AgentFailed" and "nope.txt" in outcome.message


def test_script_sleep(workdir):
    started = time.monotonic()
    assert ScriptAgent().run(script_ctx(workdir, {"op": "sleep", "seconds": 0.2})).ok
    assert time.monotonic() - started >= 0.2


def test_script_sleep_past_the_timeout(workdir):
    started = time.monotonic()
    outcome = ScriptAgent().run(script_ctx(workdir, {"op": "sleep", "seconds": 30}, timeout=0.3))
    assert not outcome.ok and outcome.reason == "Timeout"
    assert time.monotonic() - started < 5


def test_script_cancel_during_sleep(workdir):
    cancel = threading.Event()
    threading.Timer(0.2, cancel.set).start()
    started = time.monotonic()
    outcome = ScriptAgent().run(script_ctx(workdir, {"op": "sleep", "seconds": 30},
                                           {"op": "write", "path": "late.txt", "content": "x"}, cancel=cancel))
    assert not outcome.ok and outcome.reason == "Cancelled"
    assert time.monotonic() - started < 5
    assert not (workdir / "late.txt").exists()


@pytest.mark.parametrize("path", ["../x", "../../etc/x", "/etc/x", "sub/../../x", ".git/config",
                                  ".git/hooks/post-commit", "sub/../.git/config"])
@pytest.mark.parametrize("op", ["write", "append", "delete", "replace"])
def test_script_refuses_paths_outside_the_work_tree(workdir, path, op):
    step = {"op": op, "path": path, "content": "pwned\n", "old": "[core]", "new": "pwned"}
    outside_before = sorted(p.name for p in workdir.parent.iterdir())
    config_before = (workdir / ".git/config").read_text()
    outcome = ScriptAgent().run(script_ctx(workdir, step))
    assert not outcome.ok and outcome.reason == "AgentFailed"
    assert path in outcome.message
    assert sorted(p.name for p in workdir.parent.iterdir()) == outside_before
    assert (workdir / ".git/config").read_text() == config_before
    assert not (workdir / ".git/hooks/post-commit").exists()


def test_script_refuses_a_symlink_to_outside(workdir, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("keep\n")
    (workdir / "link").symlink_to(outside)
    (workdir / "filelink").symlink_to(outside / "secret.txt")
    (workdir / "dangling").symlink_to(outside / "not-yet.txt")
    for step in (
        {"op": "write", "path": "link/new.txt", "content": "x"},
        {"op": "write", "path": "filelink", "content": "x"},
        {"op": "append", "path": "filelink", "content": "x"},
        {"op": "write", "path": "dangling", "content": "x"},
        {"op": "delete", "path": "link/secret.txt"},
        {"op": "require", "path": "link/secret.txt"},
    ):
        outcome = ScriptAgent().run(script_ctx(workdir, step))
        assert not outcome.ok and "outside" in outcome.message, step
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "keep\n"


def test_resolve_inside_allows_inner_paths_and_symlinks_within(workdir):
    (workdir / "real").mkdir()
    (workdir / "alias").symlink_to(workdir / "real")
    assert resolve_inside(workdir, "alias/x.txt") == (workdir / "real/x.txt").resolve()
    assert resolve_inside(workdir, "a/../b.txt") == (workdir / "b.txt").resolve()
    assert resolve_inside(workdir, ".gitignore") == (workdir / ".gitignore").resolve()
    for bad in ("", "a\x00b", "/abs", "..", ".git"):
        with pytest.raises(OutsideWorktree):
            resolve_inside(workdir, bad)


# -- command backend ------------------------------------------------------------------------------------------


def test_command_runs_argv_in_the_workdir_with_braid_variables(workdir):
    argv = ["sh", "-c", 'echo "$BRAID_TASK $BRAID_RUN" > out.txt; pwd > pwd.txt; echo all done']
    outcome = CommandAgent().run(command_ctx(workdir, argv))
    assert outcome.ok, outcome.message
    assert (workdir / "out.txt").read_text() == "t1 r1\n"
    assert Path((workdir / "pwd.txt").read_text().strip()).resolve() == workdir.resolve()
    assert outcome.summary == "all done"


def test_command_receives_the_prompt_on_stdin(workdir):
    prompt = "Line one\nLine 'two' $HOME"
    outcome = CommandAgent().run(command_ctx(workdir, ["sh", "-c", "cat > prompt.txt"], prompt=prompt))
    assert outcome.ok
    assert (workdir / "prompt.txt").read_text() == "Line one\nLine 'two' $HOME"


def test_command_is_not_run_through_a_shell(workdir):
    with pytest.raises(AgentError) as info:
        CommandAgent().run(command_ctx(workdir, ["echo hi > x"]))
    assert info.value.reason == "AgentFailed"
    assert "echo hi > x" in str(info.value)
    assert not (workdir / "x").exists()


def test_command_arguments_are_not_expanded(workdir):
    outcome = CommandAgent().run(command_ctx(workdir, ["echo", "$HOME", "*", "; rm -rf /"]))
    assert outcome.ok and outcome.summary == "$HOME * ; rm -rf /"


def test_command_missing_program(workdir):
    with pytest.raises(AgentError, match="no-such-agent-cli"):
        CommandAgent().run(command_ctx(workdir, ["no-such-agent-cli", "-p"]))


def test_command_needs_a_command(workdir):
    ctx = command_ctx(workdir, [])
    with pytest.raises(AgentError) as info:
        CommandAgent().run(ctx)
    assert "agent.command" in str(info.value)


def test_command_gets_a_minimal_environment(workdir, monkeypatch, tmp_path):
    monkeypatch.setenv("SECRET_TOKEN", "tok-123-do-not-leak")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-do-not-leak")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-do-not-leak")
    ctx = command_ctx(workdir, ["sh", "-c", "env > env.txt"], env={"MY_SETTING": "on"})
    assert CommandAgent().run(ctx).ok
    text = (workdir / "env.txt").read_text()
    env = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
    assert "do-not-leak" not in text
    assert "SECRET_TOKEN" not in env and "ANTHROPIC_API_KEY" not in env
    assert env["BRAID_TASK"] == "t1" and env["BRAID_RUN"] == "r1"
    assert env["MY_SETTING"] == "on"
    assert env.get("PATH")


def test_a_command_agent_is_told_the_tasks_paths_and_dependencies(workdir):
    ctx = command_ctx(workdir, ["sh", "-c", 'printf "%s\\n%s\\n" "$BRAID_PATHS" "$BRAID_DEPENDS_ON" > told.txt'],
                      paths=["db/", "app/models.py"], depends_on=["schema"])
    assert CommandAgent().run(ctx).ok
    paths, deps = (workdir / "told.txt").read_text().splitlines()
    assert json.loads(paths) == ["db/", "app/models.py"] and json.loads(deps) == ["schema"]


def test_a_command_agent_gets_the_proxy_and_a_placeholder(workdir):
    access = ModelAccess("http://127.0.0.1:4242", "braid-placeholder-0123")
    ctx = command_ctx(workdir, ["sh", "-c", "env > env.txt"], env={"ANTHROPIC_BASE_URL": "https://elsewhere"},
                      model=access)
    assert CommandAgent().run(ctx).ok
    env = dict(line.split("=", 1) for line in (workdir / "env.txt").read_text().splitlines() if "=" in line)
    assert env["ANTHROPIC_BASE_URL"] == access.url and env["ANTHROPIC_API_KEY"] == access.key


def test_command_non_zero_exit_reports_the_last_line(workdir):
    argv = ["sh", "-c", "echo working; echo 'first problem' >&2; echo 'tests failed: 3 errors' >&2; exit 3"]
    outcome = CommandAgent().run(command_ctx(workdir, argv))
    assert not outcome.ok and outcome.reason == "AgentFailed"
    assert "exited with code 3" in outcome.message
    assert outcome.message.endswith("tests failed: 3 errors")
    assert "first problem" not in outcome.message
    assert outcome.summary == "working"


def test_command_failure_without_stderr_uses_stdout(workdir):
    outcome = CommandAgent().run(command_ctx(workdir, ["sh", "-c", "echo one; echo 'gave up'; exit 1"]))
    assert outcome.reason == "AgentFailed" and outcome.message.endswith("gave up")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_dead(pid: int, seconds: float = 5) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_command_timeout_kills_the_process_and_its_children(workdir):
    argv = ["sh", "-c", "sleep 60 & echo $! > child.pid; wait"]
    started = time.monotonic()
    outcome = CommandAgent().run(command_ctx(workdir, argv, timeout=0.5))
    assert not outcome.ok and outcome.reason == "Timeout"
    assert "timed out" in outcome.message
    assert time.monotonic() - started < 10
    assert wait_dead(int((workdir / "child.pid").read_text())), "the agent's child process survived"


def test_command_cancel_stops_it(workdir):
    cancel = threading.Event()
    argv = ["sh", "-c", "echo $$ > agent.pid; sleep 60 & wait"]
    threading.Timer(0.5, cancel.set).start()
    started = time.monotonic()
    outcome = CommandAgent().run(command_ctx(workdir, argv, cancel=cancel))
    assert not outcome.ok and outcome.reason == "Cancelled"
    assert time.monotonic() - started < 10
    assert wait_dead(int((workdir / "agent.pid").read_text()))

