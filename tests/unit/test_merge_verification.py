"""The process side of merge verification on real repositories and real processes: the checkout,
the handoff to the merge Job's verify container, bisection and exclusion through run_merge."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from braid.api import RepoSpec, VerifySpec
from braid.gitops import ObjectCache, Repo
from braid.merge import HandoffVerifier, LocalVerifier, MergeRequest, MergeTask, checkout, run_merge, serve
from gitrepos import GitRepo, make_repo

RUN = "r1"
FAILS_ON_BROKEN = ["python3", "-c", "import os, sys; print('checking'); sys.exit(3 if os.path.exists('broken') else 0)"]


@pytest.fixture
def origin(tmp_path) -> GitRepo:
    return make_repo(tmp_path / "origin", {"README.md": "# app\n"})


def task(origin: GitRepo, name: str, files: dict[str, str | None], deps: tuple[str, ...] = ()) -> MergeTask:
    branch = f"braid/{RUN}/tasks/{name}"
    origin.checkout(branch, "main")
    for dep in deps:
        origin.git("merge", "--quiet", "--no-ff", "--no-edit", f"braid/{RUN}/tasks/{dep}")
    origin.commit(files, name)
    origin.checkout("main")
    return MergeTask(name=name, branch=branch, depends_on=list(deps))


def request(origin: GitRepo, tasks: list[MergeTask], command: list[str], **kw) -> MergeRequest:
    return MergeRequest(run=RUN, repo=RepoSpec(url=str(origin.path)), integration_branch=f"braid/{RUN}/merged",
                        tasks=tasks, verify=VerifySpec(command=command, timeout_seconds=20), **kw)


def test_the_checkout_holds_the_files_of_the_commit_and_no_repository(origin: GitRepo, tmp_path: Path) -> None:
    t = task(origin, "one", {"src/a.py": "a = 1\n"})
    work = tmp_path / "run" / "work"
    (tmp_path / "run").mkdir()
    checkout(Repo(origin.path), origin.rev(t.branch), work)
    assert (work / "src" / "a.py").read_text() == "a = 1\n"
    assert (work / "README.md").exists()
    assert not (work / ".git").exists()
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["work"]


def test_handoff_to_the_verify_server_runs_each_request_and_stops_when_done(origin: GitRepo, tmp_path: Path) -> None:
    tasks = [task(origin, "a", {"a.txt": "a\n"}), task(origin, "b", {"broken": "x\n"}),
             task(origin, "c", {"c.txt": "c\n"}, ("b",))]
    root = tmp_path / "verify"
    server = threading.Thread(target=serve, args=(root, 0.05), daemon=True)
    server.start()
    verifier = HandoffVerifier(root, poll_seconds=0.05)
    try:
        status = run_merge(request(origin, tasks, FAILS_ON_BROKEN), ObjectCache(tmp_path / "cache"), None,
                           verifier)
    finally:
        verifier.finish()
    server.join(timeout=10)
    assert not server.is_alive()
    verification = status.verification
    assert verification is not None
    assert verification.phase == "Failed" and verification.exit_code == 3
    assert "checking" in (verification.output or "")
    assert [c.task for c in verification.culprits] == ["b"]
    assert verification.culprits[0].last_passed.tasks == ["a"]
    # report: pushed as built
    assert origin.rev(f"braid/{RUN}/merged") == status.commit


def test_exclude_leaves_out_each_culprit_in_turn_and_pushes_a_passing_result(origin: GitRepo, tmp_path: Path) -> None:
    fails = ["python3", "-c", "import os, sys; sys.exit(1 if os.path.exists('b1') or os.path.exists('b2') else 0)"]
    tasks = [task(origin, "a", {"a.txt": "a\n"}), task(origin, "b", {"b1": "x\n"}),
             task(origin, "c", {"c.txt": "c\n"}), task(origin, "d", {"b2": "y\n"}), task(origin, "e", {"e.txt": "e"})]
    verifier = LocalVerifier(tmp_path / "verify")
    status = run_merge(request(origin, tasks, fails, on_verify_failure="exclude"), ObjectCache(tmp_path / "cache"),
                       None, verifier)
    verification = status.verification
    assert verification is not None
    assert verification.phase == "Passed"
    assert [c.task for c in verification.culprits] == ["b", "d"]
    assert verification.excluded == ["b", "d"]
    assert status.merged == ["a", "c", "e"]
    assert set(status.not_merged) == {"b", "d"}
    assert origin.rev(f"braid/{RUN}/merged") == status.commit == verification.commit
    # the second culprit was found on the rebuilt order, its evidence commits are of that order
    second = verification.culprits[1]
    assert second.last_passed.tasks == ["a", "c"]
    assert second.first_failed.tasks == ["a", "c", "d"]


def test_exclude_pushes_nothing_when_the_base_itself_fails(origin: GitRepo, tmp_path: Path) -> None:
    tasks = [task(origin, "a", {"a.txt": "a\n"})]
    status = run_merge(request(origin, tasks, ["false"], on_verify_failure="exclude"),
                       ObjectCache(tmp_path / "cache"), None, LocalVerifier(tmp_path / "verify"))
    assert status.phase == "Failed"
    assert status.merged == []
    assert "nothing pushed" in (status.message or "")
    assert origin.rev(f"braid/{RUN}/merged") is None
    assert status.verification is not None and status.verification.excluded == ["a"]


def test_a_command_that_cannot_start_fails_verification_with_its_reason(origin: GitRepo, tmp_path: Path) -> None:
    tasks = [task(origin, "a", {"a.txt": "a\n"})]
    status = run_merge(request(origin, tasks, ["/nonexistent/verify-tool"]), ObjectCache(tmp_path / "cache"), None,
                       LocalVerifier(tmp_path / "verify"))
    assert status.verification is not None
    assert status.verification.phase == "Failed"
    assert status.verification.exit_code == 127
    assert "cannot start" in (status.verification.output or "")


def test_braid_merge_and_braid_verify_serve_as_the_merge_job_runs_them(origin: GitRepo, tmp_path: Path) -> None:
    """The two containers of the merge Job as two processes sharing only the handoff directory."""
    import json
    import os
    import signal
    import subprocess

    tasks = [task(origin, "a", {"a.txt": "a\n"}), task(origin, "b", {"broken": "x\n"})]
    req = request(origin, tasks, FAILS_ON_BROKEN, on_verify_failure="exclude")
    handoff = tmp_path / "verify"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRAID_")}
    server = subprocess.Popen([sys.executable, "-m", "braid", "verify-serve", "--handoff", str(handoff)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        merge = subprocess.run(
            [sys.executable, "-m", "braid", "merge", "--cache-dir", str(tmp_path / "cache"),
             "--verify-handoff", str(handoff), "--report", str(tmp_path / "report.json")],
            env={**env, "BRAID_MERGE_REQUEST": json.dumps(req.wire())}, capture_output=True, text=True,
            timeout=120, check=False)
        assert merge.returncode == 0, merge.stderr
        report = json.loads((tmp_path / "report.json").read_text())
        assert report["merged"] == ["a"]
        assert report["verification"]["phase"] == "Passed"
        assert report["verification"]["excluded"] == ["b"]
        assert (handoff / "done").exists()
        # as a sidecar it stays until the kubelet stops it (exiting would have it restarted)
        assert server.poll() is None
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


def test_unconfined_the_command_still_gets_only_a_minimal_environment(origin: GitRepo, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-not-for-verify-000000")
    monkeypatch.setenv("GIT_ASKPASS", "/somewhere/askpass")
    monkeypatch.setenv("BRAID_GIT_CREDENTIALS_DIR", "/somewhere/creds")
    tasks = [task(origin, "a", {"a.txt": "a\n"})]
    # the interpreter itself: a pyenv shim for python3 would add variables of its own
    show = [sys.executable, "-c", "import json, os; print(json.dumps(sorted(os.environ)))"]
    status = run_merge(request(origin, tasks, show), ObjectCache(tmp_path / "cache"), None,
                       LocalVerifier(tmp_path / "verify"))
    assert status.verification is not None and status.verification.phase == "Passed"
    import json

    names = set(json.loads(status.verification.output or "[]"))
    assert names <= {"PATH", "HOME", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR", "TERM", "BRAID_RUN",
                     "BRAID_VERIFY_COMMIT", "BRAID_VERIFY_TASKS", "LC_CTYPE"}
    assert {"BRAID_RUN", "BRAID_VERIFY_COMMIT", "BRAID_VERIFY_TASKS"} <= names
