"""Integrating task branches on real repositories: order, every conflict kind, publishing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from braid.api import RepoSpec
from braid.gitops import ObjectCache, Repo
from braid.merge import (
    MergeRequest,
    MergeTask,
    integrate,
    kind_of,
    merge_order,
    parse_merge_tree,
    run_merge,
)
from gitrepos import GIT_ENV, GitRepo, make_repo

RUN = "r1"
LINES = "".join(f"line {i}\n" for i in range(30))  # long enough for rename detection


def tb(task: str) -> str:
    return f"braid/{RUN}/tasks/{task}"


@pytest.fixture
def origin(tmp_path) -> GitRepo:
    return make_repo(tmp_path / "origin", {"README.md": "# app\n", "app.py": "x = 1\n", "old.txt": LINES})


def task(origin: GitRepo, name: str, files: dict[str, str | None] | None = None, deps: tuple[str, ...] = (),
         renames: dict[str, str] | None = None) -> MergeTask:
    """A task branch from main with every dependency's branch merged in (as the runner does), then its work."""
    branch = tb(name)
    origin.checkout(branch, "main")
    for dep in deps:
        origin.git("merge", "--quiet", "--no-ff", "--no-edit", tb(dep))
    for old, new in (renames or {}).items():
        origin.mv(old, new)
    origin.commit(files or {}, name)
    origin.checkout("main")
    return MergeTask(name=name, branch=branch, depends_on=list(deps))


def request(origin: GitRepo, tasks: list[MergeTask], **kw) -> MergeRequest:
    branch = kw.pop("branch", f"braid/{RUN}/merged")
    return MergeRequest(run=RUN, repo=RepoSpec(url=str(origin.path)), integration_branch=branch, tasks=tasks, **kw)


def integrate_in(origin: GitRepo, tasks: list[MergeTask], **kw):
    return integrate(Repo(origin.path), request(origin, tasks, **kw), origin.rev("main"))


def first_parent_tasks(repo: GitRepo, commit: str, base: str) -> list[str]:
    """Task names of the merge commits on the first-parent chain, oldest first."""
    out = repo.git("log", "--first-parent", "--format=%s", f"{base}..{commit}")
    return [line.removeprefix("braid: merge task ") for line in reversed(out.splitlines())]


def merge_tree_output(repo: GitRepo, a: str, b: str) -> tuple[int, str]:
    proc = subprocess.run(["git", "-C", str(repo.path), "merge-tree", "--write-tree", "-z", a, b],
                          capture_output=True, text=True, env={**os.environ, **GIT_ENV})
    return proc.returncode, proc.stdout


# -- parse_merge_tree on real output ------------------------------------------------------------------------


def test_parse_clean_merge(origin):
    origin.commit({"a.txt": "a\n"}, "a", branch="a")
    origin.commit({"b.txt": "b\n"}, "b", branch="b")
    code, out = merge_tree_output(origin, "a", "b")
    assert code == 0
    tree, conflicts = parse_merge_tree(out)
    assert conflicts == []
    assert tree == origin.git("merge-tree", "--write-tree", "a", "b")
    assert sorted(origin.git("ls-tree", "--name-only", tree).split()) == ["README.md", "a.txt", "app.py", "b.txt",
                                                                         "old.txt"]


def test_parse_content_conflict(origin):
    origin.commit({"app.py": "x = 2\n"}, "a", branch="a")
    origin.commit({"app.py": "x = 3\n"}, "b", branch="b")
    code, out = merge_tree_output(origin, "a", "b")
    assert code == 1
    tree, conflicts = parse_merge_tree(out)
    assert len(tree) == 40 and origin.git("cat-file", "-t", tree) == "tree"
    assert [(c.path, c.kind) for c in conflicts] == [("app.py", "content")]
    assert conflicts[0].message.startswith("CONFLICT (content)")


def test_parse_add_add_reads_the_label_from_the_message(origin):
    # git's type field says "contents" for add/add too; the message has the precise label
    origin.commit({"new.py": "a\n"}, "a", branch="a")
    origin.commit({"new.py": "b\n"}, "b", branch="b")
    _, out = merge_tree_output(origin, "a", "b")
    assert "CONFLICT (contents)" in out
    _, conflicts = parse_merge_tree(out)
    assert [(c.path, c.kind) for c in conflicts] == [("new.py", "add/add")]


@pytest.mark.parametrize("order", [("mod", "del"), ("del", "mod")])
def test_parse_modify_delete_either_way(origin, order):
    origin.commit({"app.py": "x = 2\n"}, "mod", branch="mod")
    origin.commit({"app.py": None}, "del", branch="del")
    _, out = merge_tree_output(origin, *order)
    _, conflicts = parse_merge_tree(out)
    assert [(c.path, c.kind) for c in conflicts] == [("app.py", "modify/delete")]


def test_parse_rename_rename(origin):
    origin.checkout("a", "main")
    origin.mv("old.txt", "new1.txt")
    origin.commit(message="a")
    origin.checkout("b", "main")
    origin.mv("old.txt", "new2.txt")
    origin.commit(message="b")
    _, out = merge_tree_output(origin, "a", "b")
    _, conflicts = parse_merge_tree(out)
    assert [(c.path, c.kind) for c in conflicts] == [("old.txt", "rename")]
    assert "rename/rename" in conflicts[0].message


def test_parse_rename_delete(origin):
    origin.checkout("a", "main")
    origin.mv("old.txt", "new1.txt")
    origin.commit(message="a")
    origin.checkout("main")
    origin.commit({"old.txt": None}, "b", branch="b")
    _, out = merge_tree_output(origin, "a", "b")
    _, conflicts = parse_merge_tree(out)
    assert [c.kind for c in conflicts] == ["rename"]
    assert conflicts[0].path in ("old.txt", "new1.txt")
    assert "rename/delete" in conflicts[0].message


def test_parse_paths_with_spaces_and_unicode(origin):
    name = "docs/read me ü.md"
    origin.commit({name: "base\n"}, "add")
    origin.commit({name: "one\n"}, "a", branch="a")
    origin.commit({name: "two\n"}, "b", branch="b")
    _, out = merge_tree_output(origin, "a", "b")
    _, conflicts = parse_merge_tree(out)
    assert [(c.path, c.kind) for c in conflicts] == [(name, "content")]


def test_parse_several_files(origin):
    origin.commit({"app.py": "x = 2\n", "README.md": "A\n", "same.txt": "s\n"}, "a", branch="a")
    origin.commit({"app.py": "x = 3\n", "README.md": "B\n", "same.txt": "s\n"}, "b", branch="b")
    _, out = merge_tree_output(origin, "a", "b")
    _, conflicts = parse_merge_tree(out)
    assert sorted((c.path, c.kind) for c in conflicts) == [("README.md", "content"), ("app.py", "content")]


def test_parse_file_directory(origin):
    origin.commit({"app.py": None, "app.py/main.py": "m\n"}, "a", branch="a")
    origin.commit({"app.py": "x = 3\n"}, "b", branch="b")
    _, out = merge_tree_output(origin, "a", "b")
    _, conflicts = parse_merge_tree(out)
    assert "file/directory" in [c.kind for c in conflicts]


@pytest.mark.parametrize(
    "label, kind",
    [
        ("content", "content"), ("contents", "content"), ("add/add", "add/add"),
        ("modify/delete", "modify/delete"), ("delete/modify", "modify/delete"),
        ("rename/rename", "rename"), ("rename/delete", "rename"), ("rename/add", "rename"),
        ("file/directory", "file/directory"), ("directory/file", "file/directory"),
        ("binary", "binary"), ("Content", "content"), ("submodule", "other"),
    ],
)
def test_kind_of(label, kind):
    assert kind_of(label) == kind


# -- integrate -------------------------------------------------------------------------------------------------


def test_merge_order_is_topological_with_ties_by_name(origin):
    tasks = [
        MergeTask(name="zeta", branch=tb("zeta")),
        MergeTask(name="api", branch=tb("api"), depends_on=["models"]),
        MergeTask(name="models", branch=tb("models"), depends_on=["schema"]),
        MergeTask(name="schema", branch=tb("schema")),
        MergeTask(name="alpha", branch=tb("alpha"), depends_on=["failed-task"]),  # dependency not being merged
    ]
    assert merge_order(request(origin, tasks)) == ["alpha", "schema", "models", "api", "zeta"]


def test_integrate_merges_in_topological_order(origin):
    tasks = [
        task(origin, "zeta", {"z.txt": "z\n"}),
        task(origin, "schema", {"db.sql": "t\n"}),
        task(origin, "alpha", {"alpha.txt": "a\n"}),
    ]
    tasks.insert(0, task(origin, "models", {"models.py": "m\n"}, deps=("schema",)))
    status = integrate_in(origin, tasks)
    assert status.phase == "Succeeded"
    assert status.merged == ["alpha", "schema", "models", "zeta"]
    assert status.conflicts == [] and status.conflict_count == 0 and status.not_merged == []
    assert first_parent_tasks(origin, status.commit, origin.rev("main")) == status.merged
    assert sorted(origin.files(status.commit)) == sorted(
        ["README.md", "app.py", "old.txt", "z.txt", "db.sql", "alpha.txt", "models.py"]
    )
    # merges are real merge commits of the task branches, with the run trailer
    assert origin.parents(status.commit)[1] == origin.rev(tb("zeta"))
    assert "Braid-Run: r1" in origin.message(status.commit)
    # nothing was pushed or moved
    assert origin.rev(f"braid/{RUN}/merged") is None


def test_integrate_with_no_tasks_is_the_base(origin):
    status = integrate_in(origin, [], not_merged=["a", "b"])
    assert status.phase == "Succeeded" and status.commit == origin.rev("main")
    assert status.not_merged == ["a", "b"]


def conflicting_setup(origin: GitRepo) -> list[MergeTask]:
    return [
        task(origin, "a", {"app.py": "x = 'a'\n"}),
        task(origin, "b", {"app.py": "x = 'b'\n", "b-only.txt": "b\n"}),
        task(origin, "c", {"c.txt": "c\n"}),
    ]


def test_on_conflict_continue_skips_the_conflicting_task_and_goes_on(origin):
    status = integrate_in(origin, conflicting_setup(origin), on_conflict="continue")
    assert status.phase == "Conflicted"
    assert status.merged == ["a", "c"]
    assert status.not_merged == ["b"]
    assert status.conflict_count == 1
    (conflict,) = status.conflicts
    assert conflict.task == "b" and conflict.collides_with == ["a"]
    assert [(f.path, f.kind, f.collides_with) for f in conflict.files] == [("app.py", "content", ["a"])]
    # the result has a's version and c's file, nothing of b
    assert origin.show(status.commit, "app.py") == "x = 'a'\n"
    assert origin.show(status.commit, "c.txt") == "c\n"
    assert origin.show(status.commit, "b-only.txt") is None


def test_on_conflict_stop_stops_there(origin):
    status = integrate_in(origin, conflicting_setup(origin), on_conflict="stop")
    assert status.phase == "Conflicted"
    assert status.merged == ["a"]
    assert status.not_merged == ["b", "c"]
    assert [c.task for c in status.conflicts] == ["b"]
    assert origin.show(status.commit, "c.txt") is None


def test_collides_with_names_only_the_tasks_that_changed_the_file(origin):
    tasks = [
        task(origin, "a", {"README.md": "# A\n"}),
        task(origin, "b", {"other.txt": "b\n"}),
        task(origin, "c", {"app.py": "x = 'c'\n"}),
        task(origin, "d", {"README.md": "# D\n", "app.py": "x = 'd'\n"}),
    ]
    status = integrate_in(origin, tasks)
    assert status.merged == ["a", "b", "c"]
    (conflict,) = status.conflicts
    assert conflict.task == "d"
    by_path = {f.path: f for f in conflict.files}
    assert set(by_path) == {"README.md", "app.py"}
    assert by_path["README.md"].collides_with == ["a"]
    assert by_path["app.py"].collides_with == ["c"]
    assert conflict.collides_with == ["a", "c"]
    assert status.conflict_count == 2


def test_dependent_of_a_conflicting_task_is_not_merged(origin):
    tasks = [
        task(origin, "a", {"app.py": "x = 'a'\n"}),
        task(origin, "b", {"app.py": "x = 'b'\n"}),
    ]
    tasks.append(task(origin, "child", {"child.txt": "c\n"}, deps=("b",)))
    tasks.append(task(origin, "grandchild", {"gc.txt": "g\n"}, deps=("child",)))
    tasks.append(task(origin, "free", {"free.txt": "f\n"}))
    status = integrate_in(origin, tasks)
    assert status.merged == ["a", "free"]
    assert sorted(status.not_merged) == ["b", "child", "grandchild"]
    # only b really conflicts; its dependents are held back without a conflict of their own
    assert [c.task for c in status.conflicts] == ["b"]
    assert origin.show(status.commit, "child.txt") is None
    assert origin.show(status.commit, "app.py") == "x = 'a'\n"


def orphan_task(origin: GitRepo, name: str, files: dict[str, str]) -> MergeTask:
    """A task branch whose history has nothing in common with main."""
    origin.git("checkout", "--quiet", "--orphan", tb(name))
    origin.git("rm", "-r", "-f", "--quiet", ".")
    origin.commit(files, f"{name} from scratch")
    origin.checkout("main")
    return MergeTask(name=name, branch=tb(name))


def test_a_task_branch_with_unrelated_history_is_not_merged_and_the_others_are(origin):
    tasks = [task(origin, "a", {"a.txt": "a\n"}), orphan_task(origin, "lost", {"lost.txt": "l\n"}),
             task(origin, "z", {"z.txt": "z\n"})]
    status = integrate_in(origin, tasks)
    assert status.phase == "Conflicted"
    assert status.merged == ["a", "z"] and status.not_merged == ["lost"]
    (conflict,) = status.conflicts
    assert (conflict.task, conflict.reason, conflict.files, conflict.collides_with) == (
        "lost", "UnrelatedHistory", [], [])
    assert tb("lost") in conflict.message and "no history in common" in conflict.message
    assert status.conflict_count == 0
    assert origin.show(status.commit, "z.txt") == "z\n" and origin.show(status.commit, "lost.txt") is None


def test_unrelated_history_holds_back_dependents_and_stops_with_on_conflict_stop(origin):
    lost = orphan_task(origin, "lost", {"lost.txt": "l\n"})
    tasks = [lost, task(origin, "z", {"z.txt": "z\n"})]
    child = task(origin, "child", {"child.txt": "c\n"}).model_copy(update={"depends_on": ["lost"]})
    status = integrate_in(origin, [*tasks, child])
    assert status.merged == ["z"] and sorted(status.not_merged) == ["child", "lost"]
    assert [c.task for c in status.conflicts] == ["lost"]
    stopped = integrate_in(origin, tasks, on_conflict="stop")
    assert stopped.merged == [] and stopped.not_merged == ["lost", "z"]


def test_run_merge_with_an_unrelated_task_branch_pushes_the_rest(tmp_path, origin):
    tasks = [task(origin, "a", {"a.txt": "a\n"}), orphan_task(origin, "lost", {"lost.txt": "l\n"})]
    status = run_merge(request(origin, tasks), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Conflicted", status.message
    assert status.merged == ["a"] and [c.reason for c in status.conflicts] == ["UnrelatedHistory"]
    assert origin.rev("braid/r1/merged") == status.commit
    assert origin.show("braid/r1/merged", "a.txt") == "a\n"


def test_missing_task_branch_is_not_merged(origin):
    tasks = [task(origin, "a", {"a.txt": "a\n"}), MergeTask(name="ghost", branch=tb("ghost"))]
    status = integrate_in(origin, tasks)
    assert status.merged == ["a"] and status.not_merged == ["ghost"]


@pytest.mark.parametrize(
    "first, second, kind",
    [
        ({"app.py": "x = 'a'\n"}, {"app.py": "x = 'b'\n"}, "content"),
        ({"new.py": "a\n"}, {"new.py": "b\n"}, "add/add"),
        ({"app.py": "x = 'a'\n"}, {"app.py": None}, "modify/delete"),
        ({"app.py": None}, {"app.py": "x = 'b'\n"}, "modify/delete"),
    ],
)
def test_conflict_kinds(origin, first, second, kind):
    status = integrate_in(origin, [task(origin, "a", first), task(origin, "b", second)])
    (conflict,) = status.conflicts
    (file,) = conflict.files
    assert (conflict.task, file.kind, file.collides_with) == ("b", kind, ["a"])
    assert file.path == next(iter(second))
    assert file.message


def test_rename_rename_conflict(origin):
    tasks = [task(origin, "a", renames={"old.txt": "new-a.txt"}), task(origin, "b", renames={"old.txt": "new-b.txt"})]
    status = integrate_in(origin, tasks)
    assert status.merged == ["a"]
    (conflict,) = status.conflicts
    (file,) = conflict.files
    assert (conflict.task, file.path, file.kind) == ("b", "old.txt", "rename")
    assert file.collides_with == ["a"]
    assert "rename/rename" in file.message


def test_rename_delete_conflict(origin):
    tasks = [task(origin, "a", renames={"old.txt": "moved.txt"}), task(origin, "b", {"old.txt": None})]
    status = integrate_in(origin, tasks)
    (conflict,) = status.conflicts
    (file,) = conflict.files
    assert file.kind == "rename" and "rename/delete" in file.message
    assert file.path in ("old.txt", "moved.txt")
    assert file.collides_with == ["a"]


def test_rename_and_edit_merge_cleanly(origin):
    edited = LINES.replace("line 3\n", "line three\n")
    tasks = [task(origin, "a", renames={"old.txt": "new.txt"}), task(origin, "b", {"old.txt": edited})]
    status = integrate_in(origin, tasks)
    assert status.phase == "Succeeded" and status.merged == ["a", "b"]
    assert origin.show(status.commit, "new.txt") == edited
    assert origin.show(status.commit, "old.txt") is None


# -- run_merge: fetch, integrate, publish ----------------------------------------------------------------------


def test_run_merge_pushes_the_integration_branch(tmp_path, origin):
    tasks = [task(origin, "a", {"a.txt": "a\n"}), task(origin, "b", {"b.txt": "b\n"})]
    status = run_merge(request(origin, tasks, not_merged=["failed-one"]), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Succeeded", status.message
    assert status.merged == ["a", "b"] and status.not_merged == ["failed-one"]
    assert status.branch == "braid/r1/merged"
    assert origin.rev("braid/r1/merged") == status.commit
    assert origin.show("braid/r1/merged", "a.txt") == "a\n"
    assert origin.show("braid/r1/merged", "b.txt") == "b\n"
    assert origin.is_ancestor("main", "braid/r1/merged")
    # task branches are never deleted
    assert origin.rev(tb("a")) and origin.rev(tb("b"))


def test_run_merge_with_conflicts_still_pushes_what_merged(tmp_path, origin):
    status = run_merge(request(origin, conflicting_setup(origin)), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Conflicted"
    assert origin.rev("braid/r1/merged") == status.commit
    assert origin.show("braid/r1/merged", "c.txt") == "c\n"
    assert origin.show("braid/r1/merged", "app.py") == "x = 'a'\n"


def test_rerunning_the_merge_keeps_the_same_commit(tmp_path, origin):
    tasks = [task(origin, "a", {"a.txt": "a\n"}), task(origin, "b", {"b.txt": "b\n"})]
    # a merge commit is dated at its newest parent, not when the merge ran: the same inputs, the same commit
    long_ago = {"GIT_AUTHOR_DATE": "2001-02-03T04:05:06Z", "GIT_COMMITTER_DATE": "2001-02-03T04:05:06Z"}
    first = run_merge(request(origin, tasks), ObjectCache(tmp_path / "cache"), env=long_ago)
    dates = origin.git("log", "-1", "--format=%ct", "braid/r1/merged^1", "braid/r1/merged^2").split()
    assert origin.git("log", "-1", "--format=%ct %at", "braid/r1/merged").split() == [max(dates)] * 2
    second = run_merge(request(origin, tasks), ObjectCache(tmp_path / "cache2"))
    third = run_merge(request(origin, tasks), ObjectCache(tmp_path / "cache"))
    assert first.phase == second.phase == third.phase == "Succeeded"
    assert first.commit == second.commit == third.commit == origin.rev("braid/r1/merged")


def test_rerun_with_more_work_updates_the_branch_braid_wrote(tmp_path, origin):
    cache = ObjectCache(tmp_path / "cache")
    b = task(origin, "b", {"b.txt": "b\n"})
    first = run_merge(request(origin, [b]), cache)
    assert first.last_pushed == first.commit == origin.rev("braid/r1/merged")
    # a merges before b now: the new result does not build on the old one
    a = task(origin, "a", {"a.txt": "a\n"})
    second = run_merge(request(origin, [a, b], last_pushed=first.last_pushed), cache)
    assert second.phase == "Succeeded", second.message
    assert not origin.is_ancestor(first.commit, second.commit)
    assert origin.rev("braid/r1/merged") == second.commit == second.last_pushed
    assert origin.show("braid/r1/merged", "a.txt") == "a\n"


def test_braids_own_result_is_replaced_only_with_its_record(tmp_path, origin):
    cache = ObjectCache(tmp_path / "cache")
    b = task(origin, "b", {"b.txt": "b\n"})
    first = run_merge(request(origin, [b]), cache)
    a = task(origin, "a", {"a.txt": "a\n"})
    # the commit carries braid's trailer, but without braid's record of pushing it that proves nothing
    lost = run_merge(request(origin, [a, b]), cache)
    assert lost.phase == "Failed" and "holds commits braid did not write" in lost.message
    assert lost.last_pushed is None
    assert origin.rev("braid/r1/merged") == first.commit


def test_the_record_survives_a_merge_that_pushed_nothing(tmp_path, origin):
    cache = ObjectCache(tmp_path / "cache")
    a = task(origin, "a", {"a.txt": "a\n"})
    first = run_merge(request(origin, [a]), cache)
    kept = run_merge(request(origin, [a], last_pushed=first.last_pushed), ObjectCache(tmp_path / "cache2"))
    assert kept.commit == first.commit and kept.last_pushed == first.last_pushed
    failed = run_merge(request(origin, [a], last_pushed=first.last_pushed).model_copy(
        update={"repo": RepoSpec(url=str(origin.path), base_ref="nope")}), cache)
    assert failed.phase == "Failed" and failed.last_pushed == first.last_pushed


def test_a_human_commit_with_a_forged_trailer_on_top_of_braids_result_is_kept(tmp_path, origin):
    cache = ObjectCache(tmp_path / "cache")
    a = task(origin, "a", {"a.txt": "a\n"})
    first = run_merge(request(origin, [a]), cache)
    human = GitRepo(tmp_path / "human")
    origin.git("clone", "--quiet", str(origin.path), str(human.path))
    human.checkout("braid/r1/merged", "origin/braid/r1/merged")
    one = human.commit({"fix.txt": "a fix\n"}, "fix it\n\nBraid-Run: r1")
    two = human.commit({"fix.txt": "a better fix\n"}, "fix it again\n\nBraid-Run: r1\nBraid-Task: a")
    human.git("push", "--quiet", "origin", "braid/r1/merged")

    b = task(origin, "b", {"b.txt": "b\n"})
    status = run_merge(request(origin, [a, b], last_pushed=first.last_pushed), cache)
    assert status.phase == "Failed"
    assert status.message == (f"spec.integrationBranch: braid/r1/merged already exists and holds commits braid did "
                              f"not write (tip {two[:12]}); delete it or choose another name")
    assert origin.rev("braid/r1/merged") == two
    assert origin.is_ancestor(one, two) and origin.is_ancestor(first.commit, one)
    assert status.last_pushed == first.last_pushed


def test_a_cherry_picked_braid_commit_as_tip_is_refused(tmp_path, origin):
    cache = ObjectCache(tmp_path / "cache")
    a = task(origin, "a", {"a.txt": "a\n"})
    first = run_merge(request(origin, [a], branch="release"), cache)
    # someone rebuilt release by hand: their own commit, then braid's merge cherry-picked, trailer and all
    origin.checkout("rebuilt", "main")
    origin.commit({"hotfix.txt": "h\n"}, "hotfix")
    origin.git("cherry-pick", "-m", "1", first.commit)
    picked = origin.rev("HEAD")
    origin.checkout("main")
    origin.branch("release", picked)
    assert "Braid-Run: r1" in origin.message("release") and picked != first.commit

    b = task(origin, "b", {"b.txt": "b\n"})
    status = run_merge(request(origin, [a, b], branch="release", last_pushed=first.last_pushed), cache)
    assert status.phase == "Failed" and f"holds commits braid did not write (tip {picked[:12]})" in status.message
    assert origin.rev("release") == picked
    assert origin.show("release", "hotfix.txt") == "h\n"


def test_foreign_integration_branch_is_refused_and_left_untouched(tmp_path, origin):
    theirs = origin.commit({"theirs.txt": "someone's work\n"}, "not braid", branch="feature/auth")
    tasks = [task(origin, "a", {"a.txt": "a\n"})]
    status = run_merge(request(origin, tasks, branch="feature/auth"), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Failed"
    assert "feature/auth" in status.message
    assert status.message == ("spec.integrationBranch: feature/auth already exists and holds commits braid did not "
                              f"write (tip {theirs[:12]}); delete it or choose another name")
    assert "\n" not in status.message
    assert origin.rev("feature/auth") == theirs
    assert status.merged == [] and "a" in status.not_merged


def test_branch_of_another_run_is_refused(tmp_path, origin):
    other = MergeRequest(run="other", repo=RepoSpec(url=str(origin.path)), integration_branch="shared",
                         tasks=[task(origin, "x", {"x.txt": "x\n"})])
    cache = ObjectCache(tmp_path / "cache")
    assert run_merge(other, cache).phase == "Succeeded"
    before = origin.rev("shared")
    status = run_merge(request(origin, [task(origin, "a", {"a.txt": "a\n"})], branch="shared"), cache)
    assert status.phase == "Failed" and "holds commits braid did not write" in status.message
    assert origin.rev("shared") == before


def test_branch_of_a_run_whose_name_extends_this_one_is_refused(tmp_path, origin):
    # run "r1" must not mistake the trailer "Braid-Run: r10" for its own
    other = MergeRequest(run="r10", repo=RepoSpec(url=str(origin.path)), integration_branch="feature/auth",
                         tasks=[task(origin, "x", {"x.txt": "x\n"})])
    cache = ObjectCache(tmp_path / "cache")
    assert run_merge(other, cache).phase == "Succeeded"
    before = origin.rev("feature/auth")
    status = run_merge(request(origin, [task(origin, "a", {"a.txt": "a\n"})], branch="feature/auth"), cache)
    assert status.phase == "Failed", "run r1 overwrote the integration branch of run r10"
    assert "holds commits braid did not write" in status.message
    assert origin.rev("feature/auth") == before


def test_existing_branch_that_is_an_ancestor_is_fast_forwarded(tmp_path, origin):
    origin.branch("feature/auth", "main")  # created by a human, pointing at the base
    tasks = [task(origin, "a", {"a.txt": "a\n"})]
    status = run_merge(request(origin, tasks, branch="feature/auth"), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Succeeded", status.message
    assert origin.rev("feature/auth") == status.commit
    assert origin.show("feature/auth", "a.txt") == "a\n"


def test_run_merge_missing_base_ref_fails_with_a_message(tmp_path, origin):
    req = MergeRequest(run=RUN, repo=RepoSpec(url=str(origin.path), base_ref="nope"),
                       integration_branch="braid/r1/merged", tasks=[task(origin, "a", {"a.txt": "a\n"})])
    status = run_merge(req, ObjectCache(tmp_path / "cache"))
    assert status.phase == "Failed" and "baseRef" in status.message
    assert origin.rev("braid/r1/merged") is None


def test_run_merge_unreachable_repository(tmp_path):
    req = MergeRequest(run=RUN, repo=RepoSpec(url=str(tmp_path / "gone")), integration_branch="braid/r1/merged",
                       tasks=[MergeTask(name="a", branch=tb("a"))])
    status = run_merge(req, ObjectCache(tmp_path / "cache"))
    assert status.phase == "Failed" and "cannot fetch" in status.message
