"""spec.merge.resolve strategy agent, as the merge sees it: prepare a resolution branch, then merge the result."""

from __future__ import annotations

from braid.api import ResolveRule
from braid.gitops import ObjectCache
from braid.merge import run_merge
from test_merge import RUN, origin, request, task  # noqa: F401 - origin is a fixture

RESOLVE = f"braid/{RUN}/resolve/b"


def conflicting(origin):  # noqa: F811
    return [task(origin, "a", {"app.py": "x = 'a'\n", "a.txt": "a\n"}),
            task(origin, "b", {"app.py": "x = 'b'\n", "b.txt": "b\n"})]


def rules():
    return [ResolveRule(paths=["CHANGELOG.md"], strategy="union"), ResolveRule(strategy="agent")]


def round_one(origin, tmp_path, tasks, **kw):  # noqa: F811
    status = run_merge(request(origin, tasks, resolve=rules(), **kw), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Resolving", status.message
    return status


def resolve_on_branch(origin, branch, content):  # noqa: F811
    """What a resolver does: check out the resolution branch, fix the file, commit, push."""
    origin.checkout(branch)
    assert "<<<<<<<" in origin.show("HEAD", "app.py")
    return origin.commit({"app.py": content}, "resolved")


def test_the_first_round_hands_the_conflict_to_a_resolver_and_pushes_nothing_else(origin, tmp_path):  # noqa: F811
    tasks = conflicting(origin)
    status = round_one(origin, tmp_path, tasks)
    assert status.merged == ["a"] and status.not_merged == ["b"]
    (r,) = status.resolutions
    assert (r.task, r.resolver, r.round, r.files, r.collides_with) == ("b", "b.resolve", 1, ["app.py"], ["a"])
    assert origin.rev(r.branch) == r.prepared
    # the prepared commit: the integration so far (with a) merged with b, markers committed
    text = origin.show(r.prepared, "app.py")
    assert "<<<<<<<" in text and "x = 'a'" in text and "x = 'b'" in text
    assert origin.show(r.prepared, "a.txt") == "a\n" and origin.show(r.prepared, "b.txt") == "b\n"
    assert origin.parents(r.prepared)[1] == origin.rev(tasks[1].branch)
    # the integration branch waits for the resolution
    assert origin.rev(f"braid/{RUN}/merged") is None
    assert status.conflicts[0].message == "handed to the resolver b.resolve"


def test_the_next_round_merges_the_resolution_and_reports_who_resolved_what(origin, tmp_path):  # noqa: F811
    tasks = conflicting(origin)
    first = round_one(origin, tmp_path, tasks)
    (r,) = first.resolutions
    fixed = resolve_on_branch(origin, r.branch, "x = 'a' + 'b'\n")
    done = r.model_copy(update={"commit": fixed})
    second = run_merge(request(origin, tasks, resolve=rules(), round=2, resolutions=[done]),
                       ObjectCache(tmp_path / "cache"))
    assert second.phase == "Succeeded", second.message
    assert second.merged == ["a", "b"] and second.conflicts == []
    assert origin.show(second.commit, "app.py") == "x = 'a' + 'b'\n"
    assert origin.show(second.commit, "b.txt") == "b\n"
    (resolved,) = second.resolved
    assert resolved.task == "b"
    assert [(f.path, f.resolution) for f in resolved.files] == [("app.py", f"agent b.resolve at {fixed[:12]}")]
    # the integration commits before b are those the first round built: its resolution applied to them
    assert origin.parents(second.commit)[0] == origin.parents(r.prepared)[0]
    assert origin.rev(second.branch) == second.commit


def test_a_resolution_with_markers_left_is_not_merged(origin, tmp_path):  # noqa: F811
    tasks = conflicting(origin)
    (r,) = round_one(origin, tmp_path, tasks).resolutions
    origin.checkout(r.branch)
    fixed = origin.commit({"b.txt": "b, and app.py untouched\n"}, "did not resolve")
    second = run_merge(request(origin, tasks, resolve=rules(), round=2,
                               resolutions=[r.model_copy(update={"commit": fixed})]), ObjectCache(tmp_path / "cache"))
    assert second.phase == "Conflicted"
    assert second.merged == ["a"] and second.not_merged == ["b"]
    assert second.conflicts[0].message == "b.resolve left conflict markers in app.py; not merged"
    assert all(f.resolution is None for f in second.conflicts[0].files)


def test_a_failed_resolver_leaves_the_task_out_and_says_why(origin, tmp_path):  # noqa: F811
    tasks = conflicting(origin)
    (r,) = round_one(origin, tmp_path, tasks).resolutions
    failed = r.model_copy(update={"message": "Failed: AgentFailed: gave up"})
    second = run_merge(request(origin, tasks, resolve=rules(), round=2, resolutions=[failed]),
                       ObjectCache(tmp_path / "cache"))
    assert second.phase == "Conflicted" and second.not_merged == ["b"]
    assert second.conflicts[0].message == "b.resolve did not resolve it: Failed: AgentFailed: gave up"
    assert second.resolutions == [failed]  # not handed out a second time


def test_a_resolution_branch_braid_did_not_write_is_left_alone(origin, tmp_path):  # noqa: F811
    tasks = conflicting(origin)
    theirs = origin.commit({"other.txt": "someone's\n"}, "someone else's work", branch=RESOLVE)
    origin.checkout("main")
    status = run_merge(request(origin, tasks, resolve=rules()), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Conflicted" and status.resolutions == []
    assert f"{RESOLVE} exists and holds commits braid did not write" in status.conflicts[0].message
    assert origin.rev(RESOLVE) == theirs
    # with braid's record of that tip (an earlier run's resolver), it is replaced
    again = run_merge(request(origin, tasks, resolve=rules(), resolution_records={"b": theirs}),
                      ObjectCache(tmp_path / "cache"))
    assert again.phase == "Resolving"
    assert origin.rev(RESOLVE) == again.resolutions[0].prepared


def test_the_same_inputs_prepare_the_same_commit(origin, tmp_path):  # noqa: F811
    tasks = conflicting(origin)
    one = round_one(origin, tmp_path, tasks)
    two = round_one(origin, tmp_path, tasks)
    assert one.resolutions[0].prepared == two.resolutions[0].prepared
    assert one.commit == two.commit


def test_a_rule_resolved_file_is_resolved_in_the_prepared_commit_and_reported_as_the_rule(origin, tmp_path):  # noqa: F811
    log = "# Changelog\n"
    origin.commit({"CHANGELOG.md": log}, "changelog")
    tasks = [task(origin, "a", {"CHANGELOG.md": log + "- a\n", "app.py": "x = 'a'\n"}),
             task(origin, "b", {"CHANGELOG.md": log + "- b\n", "app.py": "x = 'b'\n"})]
    (r,) = round_one(origin, tmp_path, tasks).resolutions
    assert origin.show(r.prepared, "CHANGELOG.md") == log + "- a\n- b\n"
    fixed = resolve_on_branch(origin, r.branch, "x = 'ab'\n")
    second = run_merge(request(origin, tasks, resolve=rules(), round=2,
                               resolutions=[r.model_copy(update={"commit": fixed})]), ObjectCache(tmp_path / "cache"))
    assert second.phase == "Succeeded", second.message
    how = {f.path: f.resolution for f in second.resolved[0].files}
    assert how == {"CHANGELOG.md": "rule union", "app.py": f"agent b.resolve at {fixed[:12]}"}


def test_without_an_agent_rule_nothing_is_prepared(origin, tmp_path):  # noqa: F811
    status = run_merge(request(origin, conflicting(origin)), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Conflicted" and status.resolutions == []
    assert origin.rev(RESOLVE) is None


def test_a_rerun_reuses_the_resolution_braid_recorded_for_the_same_conflict(origin, tmp_path):  # noqa: F811
    tasks = conflicting(origin)
    (r,) = round_one(origin, tmp_path, tasks).resolutions
    fixed = resolve_on_branch(origin, r.branch, "x = 'ab'\n")
    # a new run of the same tasks, knowing what its resolver pushed: merged at once, no resolver runs
    again = run_merge(request(origin, tasks, resolve=rules(), resolution_records={"b": fixed}),
                      ObjectCache(tmp_path / "cache"))
    assert again.phase == "Succeeded" and again.merged == ["a", "b"], again.message
    assert origin.show(again.commit, "app.py") == "x = 'ab'\n"
    assert [f.resolution for f in again.resolved[0].files] == [f"agent b.resolve at {fixed[:12]} (an earlier run's)"]
    assert [(x.task, x.commit) for x in again.resolutions] == [("b", fixed)]
    # once the task's work changes, the old resolution no longer applies: a resolver is asked again
    origin.checkout(tasks[1].branch)
    origin.commit({"b.txt": "b, more\n"}, "more work")
    changed = run_merge(request(origin, tasks, resolve=rules(), resolution_records={"b": fixed}),
                        ObjectCache(tmp_path / "cache"))
    assert changed.phase == "Resolving" and changed.resolutions[0].commit is None
    assert origin.rev(RESOLVE) == changed.resolutions[0].prepared
