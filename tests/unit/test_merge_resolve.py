"""spec.merge.resolve rules and conflicts between left-out branches, on real repositories."""

from __future__ import annotations

from braid.api import ResolveRule
from braid.gitops import ObjectCache
from braid.local.summary import render_summary
from braid.merge import run_merge
from test_merge import integrate_in, origin, request, task  # noqa: F401 - origin is a fixture

CHANGELOG = "# Changelog\n\n## Unreleased\n"


def changelog_tasks(origin):  # noqa: F811
    origin.commit({"CHANGELOG.md": CHANGELOG}, "changelog")
    return [
        task(origin, "a", {"CHANGELOG.md": CHANGELOG + "- a: added the login page\n"}),
        task(origin, "b", {"CHANGELOG.md": CHANGELOG + "- b: fixed the logout bug\n", "b.txt": "b\n"}),
    ]


def test_without_a_rule_the_changelog_conflicts(origin):  # noqa: F811
    status = integrate_in(origin, changelog_tasks(origin))
    assert status.merged == ["a"] and status.not_merged == ["b"]
    assert [(f.path, f.kind, f.resolution) for f in status.conflicts[0].files] == [("CHANGELOG.md", "content", None)]
    assert status.resolved == []


def test_a_union_rule_merges_both_tasks_lines_and_the_report_keeps_the_conflict(origin):  # noqa: F811
    rules = [ResolveRule(paths=["CHANGELOG.md"], strategy="union")]
    status = integrate_in(origin, changelog_tasks(origin), resolve=rules)
    assert status.phase == "Succeeded"
    assert status.merged == ["a", "b"] and status.not_merged == [] and status.conflicts == []
    text = origin.show(status.commit, "CHANGELOG.md")
    assert "- a: added the login page\n" in text and "- b: fixed the logout bug\n" in text
    assert "<<<<<<<" not in text and "=======" not in text
    assert origin.show(status.commit, "b.txt") == "b\n"
    (resolved,) = status.resolved
    assert resolved.task == "b" and resolved.collides_with == ["a"]
    assert [(f.path, f.kind, f.resolution) for f in resolved.files] == [("CHANGELOG.md", "content", "rule union")]
    assert status.wire()["resolved"][0]["files"][0]["resolution"] == "rule union"


def test_ours_keeps_the_integration_side_and_theirs_the_task_side(origin):  # noqa: F811
    tasks = changelog_tasks(origin)
    ours = integrate_in(origin, tasks, resolve=[ResolveRule(paths=["*.md"], strategy="ours")])
    assert origin.show(ours.commit, "CHANGELOG.md") == CHANGELOG + "- a: added the login page\n"
    theirs = integrate_in(origin, tasks, resolve=[ResolveRule(paths=["*.md"], strategy="theirs")])
    assert origin.show(theirs.commit, "CHANGELOG.md") == CHANGELOG + "- b: fixed the logout bug\n"
    assert [f.resolution for f in theirs.resolved[0].files] == ["rule theirs"]


def test_a_rule_for_other_paths_leaves_the_conflict_alone(origin):  # noqa: F811
    status = integrate_in(origin, changelog_tasks(origin), resolve=[ResolveRule(paths=["docs/*.md"], strategy="union")])
    assert status.not_merged == ["b"] and status.resolved == []


def test_one_unresolved_file_keeps_the_task_out(origin):  # noqa: F811
    origin.commit({"CHANGELOG.md": CHANGELOG}, "changelog")
    tasks = [
        task(origin, "a", {"CHANGELOG.md": CHANGELOG + "- a\n", "app.py": "x = 'a'\n"}),
        task(origin, "b", {"CHANGELOG.md": CHANGELOG + "- b\n", "app.py": "x = 'b'\n"}),
    ]
    status = integrate_in(origin, tasks, resolve=[ResolveRule(paths=["CHANGELOG.md"], strategy="union")])
    assert status.merged == ["a"] and status.not_merged == ["b"]
    assert sorted(f.path for f in status.conflicts[0].files) == ["CHANGELOG.md", "app.py"]
    assert all(f.resolution is None for f in status.conflicts[0].files)
    assert origin.show(status.commit, "CHANGELOG.md") == CHANGELOG + "- a\n"


def test_a_repositorys_own_gitattributes_driver_is_not_run(origin, tmp_path):  # noqa: F811
    marker = tmp_path / "ran"
    origin.commit({".gitattributes": "CHANGELOG.md merge=evil\n", "CHANGELOG.md": CHANGELOG}, "attrs")
    origin.git("config", "merge.evil.driver", f"touch {marker}; cp %B %A")
    tasks = [task(origin, "a", {"CHANGELOG.md": CHANGELOG + "- a\n"}),
             task(origin, "b", {"CHANGELOG.md": CHANGELOG + "- b\n"})]
    rules = [ResolveRule(paths=["CHANGELOG.md"], strategy="union")]
    # the merge runs in braid's object cache, whose config is braid's: the driver named in .gitattributes is unknown
    status = run_merge(request(origin, tasks, resolve=rules), ObjectCache(tmp_path / "cache"))
    assert status.phase == "Succeeded", status.message
    assert not marker.exists()
    assert status.merged == ["a", "b"]
    assert origin.show(status.commit, "CHANGELOG.md") == CHANGELOG + "- a\n- b\n"


def test_add_add_is_resolved_by_union_from_an_empty_base(origin):  # noqa: F811
    tasks = [task(origin, "a", {"NOTES.md": "from a\n"}), task(origin, "b", {"NOTES.md": "from b\n"})]
    status = integrate_in(origin, tasks, resolve=[ResolveRule(paths=["NOTES.md"], strategy="union")])
    assert status.merged == ["a", "b"]
    assert origin.show(status.commit, "NOTES.md") == "from a\nfrom b\n"
    assert [(f.kind, f.resolution) for f in status.resolved[0].files] == [("add/add", "rule union")]


def test_two_left_out_branches_that_conflict_with_each_other_are_reported(origin):  # noqa: F811
    tasks = [
        task(origin, "a", {"app.py": "x = 'a'\n"}),
        task(origin, "b", {"app.py": "x = 'b'\n", "README.md": "# b\n"}),
        task(origin, "c", {"app.py": "x = 'c'\n", "README.md": "# c\n"}),
    ]
    status = integrate_in(origin, tasks)
    assert status.merged == ["a"] and sorted(status.not_merged) == ["b", "c"]
    (pair,) = status.left_out_conflicts
    assert pair.tasks == ["b", "c"]
    assert sorted(f.path for f in pair.files) == ["README.md", "app.py"]


def test_on_conflict_stop_reports_the_stopped_branches_against_each_other(origin):  # noqa: F811
    tasks = [
        task(origin, "a", {"app.py": "x = 'a'\n"}),
        task(origin, "b", {"app.py": "x = 'b'\n"}),
        task(origin, "c", {"README.md": "# c\n"}),
        task(origin, "d", {"README.md": "# d\n"}),
    ]
    status = integrate_in(origin, tasks, on_conflict="stop")
    assert status.merged == ["a"] and status.not_merged == ["b", "c", "d"]
    assert [(p.tasks, [f.path for f in p.files]) for p in status.left_out_conflicts] == [
        (["c", "d"], ["README.md"])]


def test_left_out_branches_that_do_not_conflict_are_not_reported(origin):  # noqa: F811
    tasks = [
        task(origin, "a", {"app.py": "x = 'a'\n"}),
        task(origin, "b", {"app.py": "x = 'b'\n"}),
        task(origin, "c", {"c.txt": "c\n"}),
    ]
    status = integrate_in(origin, tasks, on_conflict="stop")
    assert status.not_merged == ["b", "c"]
    assert status.left_out_conflicts == []


def test_the_summary_shows_resolutions_and_left_out_pairs(origin):  # noqa: F811
    from braid.api import ParallelRun, ParallelRunStatus

    rules = [ResolveRule(paths=["CHANGELOG.md"], strategy="union")]
    merge = integrate_in(origin, changelog_tasks(origin), resolve=rules)
    run = ParallelRun.model_validate({
        "apiVersion": "braid.dev/v1alpha1", "kind": "ParallelRun", "metadata": {"name": "r1"},
        "spec": {"repo": {"url": str(origin.path)}, "tasks": [{"name": "a", "prompt": "a"}, {"name": "b", "prompt": "b"}]},
    })
    text = render_summary(run, ParallelRunStatus(merge=merge, phase="Succeeded"))
    assert "resolved: task b: CHANGELOG.md [content] by rule union" in text


def test_a_directory_pattern_resolves_files_there_only(origin):  # noqa: F811
    origin.commit({"docs/usage.md": "# Usage\n", "top.md": "# Top\n"}, "docs")
    tasks = [task(origin, "a", {"docs/usage.md": "# Usage\n- a\n"}),
             task(origin, "b", {"docs/usage.md": "# Usage\n- b\n"}),
             task(origin, "c", {"top.md": "# Top\n- c\n"}),
             task(origin, "d", {"top.md": "# Top\n- d\n"})]
    status = integrate_in(origin, tasks, resolve=[ResolveRule(paths=["docs/*.md"], strategy="union")])
    assert status.merged == ["a", "b", "c"] and status.not_merged == ["d"]
    assert origin.show(status.commit, "docs/usage.md") == "# Usage\n- a\n- b\n"
    assert [(c.task, [f.resolution for f in c.files]) for c in status.resolved] == [("b", ["rule union"])]
    assert [(c.task, [f.path for f in c.files]) for c in status.conflicts] == [("d", ["top.md"])]
