"""Conflicts found early (status.conflictRisk) and resolved by rule (spec.merge.resolve), with `braid run --local`
on real, throw-away git repositories."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from localrun import Workspace, make_origin, manifest, script_task, show

README = "# app\n\nTBD\n"
CHANGELOG = "# Changelog\n\n## Unreleased\n"


def read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def events_of(path: Path) -> list[dict]:
    try:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    except (OSError, ValueError):
        return []


def test_conflict_risk_shows_while_another_task_still_runs(ws: Workspace, tmp_path: Path) -> None:
    origin = make_origin(tmp_path / "origin", {"README.md": README})
    tasks = [
        script_task("docs-a", [{"op": "replace", "path": "README.md", "old": "TBD", "new": "Version A"}]),
        script_task("docs-b", [{"op": "replace", "path": "README.md", "old": "TBD", "new": "Version B"}]),
        script_task("slow", [{"op": "write", "path": "slow.txt", "content": "slow\n"}, {"op": "sleep", "seconds": 20}]),
    ]
    run_file = ws.write(manifest("risk", origin, tasks, maxParallel=3))
    events = tmp_path / "events.jsonl"
    status_file = ws.state / "status.json"
    proc = subprocess.Popen([*ws.argv(run_file), "--events", str(events)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        live = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            status = read_json(status_file)
            if status and status.get("conflictRisk"):
                live = status
                break
            time.sleep(0.2)
        assert live is not None, "conflictRisk never appeared in the state directory's status.json"
        # found at minute five, not at the end: the slow task still runs and nothing is merged yet
        assert live["tasks"]["slow"]["phase"] == "Running"
        assert live["phase"] == "Running" and not live.get("merge")
        assert live["conflictRisk"] == [{"tasks": ["docs-a", "docs-b"],
                                         "files": [{"path": "README.md", "kind": "content"}]}]
        warned = [e for e in events_of(events) if e["reason"] == "ConflictRisk"]
        assert [(e["type"], e["message"]) for e in warned] == [(
            "Warning",
            "tasks docs-a and docs-b would conflict when merged, in README.md (content); found before the merge")]
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, stderr  # the merge still finds the conflict: Conflicted
    final = json.loads((ws.root / "status.json").read_text())
    assert final["phase"] == "Conflicted"
    assert final["conflictRisk"] == live["conflictRisk"]
    assert [c["task"] for c in final["merge"]["conflicts"]] == ["docs-b"]
    # one warning per pair, however often the run's status was computed
    assert len([e for e in events_of(events) if e["reason"] == "ConflictRisk"]) == 1
    assert "conflict risk: docs-a and docs-b: README.md [content]" in stdout
    # the live display said so as it happened
    assert "braid: tasks docs-a and docs-b would conflict when merged, in README.md (content)" in stdout + stderr


def test_a_union_rule_merges_both_changelog_entries(ws: Workspace, tmp_path: Path) -> None:
    origin = make_origin(tmp_path / "origin", {"README.md": README, "CHANGELOG.md": CHANGELOG})
    tasks = [
        script_task("login", [{"op": "append", "path": "CHANGELOG.md", "content": "- added the login page\n"},
                              {"op": "write", "path": "login.py", "content": "login = True\n"}]),
        script_task("logout", [{"op": "append", "path": "CHANGELOG.md", "content": "- fixed the logout bug\n"},
                               {"op": "write", "path": "logout.py", "content": "logout = True\n"}]),
    ]
    spec = {"merge": {"resolve": [{"paths": ["CHANGELOG.md", "docs/*.md"], "strategy": "union"}]}}
    result = ws.run(ws.write(manifest("notes", origin, tasks, **spec)))
    assert result.code == 0, result.stderr + result.stdout
    status = result.status
    assert status["phase"] == "Succeeded"
    merge = status["merge"]
    assert merge["merged"] == ["login", "logout"] and merge["notMerged"] == [] and merge.get("conflicts") in (None, [])
    assert merge["resolved"] == [{
        "task": "logout", "collidesWith": ["login"],
        "files": [{"path": "CHANGELOG.md", "kind": "content", "collidesWith": ["login"],
                   "message": "CONFLICT (content): Merge conflict in CHANGELOG.md", "resolution": "rule union"}],
    }]
    # a rule-resolved conflict is no risk to warn about
    assert status.get("conflictRisk") in (None, [])
    merged = show(origin, "braid/notes/merged", "CHANGELOG.md")
    assert merged == CHANGELOG + "- added the login page\n- fixed the logout bug\n"
    assert show(origin, "braid/notes/merged", "login.py") == "login = True\n"
    assert show(origin, "braid/notes/merged", "logout.py") == "logout = True\n"
    assert "resolved: task logout: CHANGELOG.md [content] by rule union" in result.stdout
