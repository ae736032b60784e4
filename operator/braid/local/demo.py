"""`braid demo`: a throw-away repository and the example run, offline, with no API key."""

from __future__ import annotations

import sys
import tempfile
from importlib import resources
from pathlib import Path

import yaml

from braid.api import ParallelRun
from braid.gitops import Repo

from .engine import LocalOptions, LocalRun
from .summary import render_summary

_README = "# demo app\n\n## About\n\nTBD\n"


def make_demo_repo(path: Path) -> None:
    """A repository with one commit on main: the starting point of every demo task."""
    path.mkdir(parents=True)
    repo = Repo(path)
    repo.run("init", "--quiet", "--initial-branch=main")
    (path / "README.md").write_text(_README)
    (path / "app").mkdir()
    (path / "app" / "__init__.py").write_text("")
    repo.run("add", "--all")
    repo.run("commit", "--quiet", "-m", "initial commit")


def demo_manifest() -> dict:
    return yaml.safe_load(resources.files("braid").joinpath("examples/demo.yaml").read_text())


def run_demo(directory: Path | None, progress: bool | None = None) -> int:
    root = Path(directory) if directory else Path(tempfile.mkdtemp(prefix="braid-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    repo = root / "repo"
    if not repo.exists():
        make_demo_repo(repo)
    manifest = demo_manifest()
    manifest["spec"]["repo"]["url"] = str(repo)
    (root / "run.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False))
    run = ParallelRun.model_validate(manifest)

    print(f"braid demo: repository {repo}, run file {root / 'run.yaml'}", file=sys.stderr)
    local = LocalRun(run, LocalOptions(state_dir=root / "state", cache_dir=root / "cache", progress=progress))
    local.preflight()
    status = local.execute()
    print(render_summary(run, status))
    merge = status.merge
    print(
        "\nThe conflict between docs-intro and docs-usage is deliberate: both rewrote the same README line.\n"
        "A resolver task (docs-usage.resolve) merged both sentences, and the merged result passed verify.\n"
        f"Look at the result:  git -C {repo} log --oneline --graph {run.integration_branch}\n"
        f"What was resolved:   git -C {repo} log --oneline --graph braid/{run.name}/resolve/docs-usage\n"
        f"Status as JSON:      {root / 'state' / 'status.json'}\n"
        f"Run it again:        braid run {root / 'run.yaml'} --cache-dir {root / 'cache'}"
        f" --state-dir {root / 'state'}"
    )
    expected = (status.phase == "Succeeded" and merge is not None and [c.task for c in merge.resolved] == ["docs-usage"]
                and merge.verification is not None and merge.verification.phase == "Passed")
    return 0 if expected else 1
