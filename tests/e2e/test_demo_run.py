"""`braid demo`, as a newcomer runs it: seven tasks, a conflict a resolver task settles, a verified merge."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


def demo(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "braid", "demo", "--dir", str(root), "--no-progress"],
                          capture_output=True, text=True, timeout=300, check=False)


def test_the_demo_resolves_its_conflict_verifies_the_result_and_a_rerun_reuses_the_resolution(tmp_path: Path) -> None:
    first = demo(tmp_path)
    assert first.returncode == 0, first.stderr + first.stdout
    assert "resolved: task docs-usage: README.md [content] by agent docs-usage.resolve at" in first.stdout
    assert "verify: Passed, exit code 0" in first.stdout and "phase: Succeeded" in first.stdout
    status = json.loads((tmp_path / "state" / "status.json").read_text())
    readme = subprocess.run(["git", "-C", str(tmp_path / "repo"), "show", f"{status['merge']['branch']}:README.md"],
                            capture_output=True, text=True, check=True).stdout
    assert "A tiny user service, built by parallel agents. Run `python -m app.cli` to say hello." in readme
    assert status["resolvers"]["docs-usage"]["phase"] == "Succeeded"

    again = demo(tmp_path)
    assert again.returncode == 0, again.stderr + again.stdout
    assert "(an earlier run's)" in again.stdout
    rerun = json.loads((tmp_path / "state" / "status.json").read_text())
    assert rerun["merge"]["commit"] == status["merge"]["commit"]
