"""Loading ParallelRun files: defaults, and one-line errors that name the offending field."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from braid.api import AgentSpec, InvalidSpec, ParallelRun, load_parallelrun, ref_name_problem
from braid.api.parallelrun import ResolveRule
from braid.cli import main

BASE = {
    "apiVersion": "braid.dev/v1alpha1",
    "kind": "ParallelRun",
    "metadata": {"name": "auth"},
    "spec": {
        "repo": {"url": "https://git.example.com/app.git"},
        "tasks": [
            {"name": "schema", "prompt": "Add a users table."},
            {"name": "api", "prompt": "Add an endpoint.", "dependsOn": ["schema"]},
        ],
    },
}


def manifest(**spec_changes) -> dict:
    doc = copy.deepcopy(BASE)
    doc["spec"].update(spec_changes)
    return doc


def write(tmp_path: Path, doc: dict | str, name: str = "run.yaml") -> Path:
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))
    return path


def load(tmp_path: Path, doc: dict | str) -> ParallelRun:
    return load_parallelrun(write(tmp_path, doc))


def error_of(tmp_path: Path, doc: dict | str) -> str:
    with pytest.raises(InvalidSpec) as info:
        load(tmp_path, doc)
    message = str(info.value)
    assert "\n" not in message, f"error is not one line: {message!r}"
    assert "Traceback" not in message and "pydantic" not in message.lower(), message
    return message


# -- valid manifests -------------------------------------------------------------------------------


def test_minimal_manifest_loads_with_defaults(tmp_path):
    run = load(tmp_path, BASE)
    assert run.name == "auth"
    assert run.api_version == "braid.dev/v1alpha1" and run.kind == "ParallelRun"
    spec = run.spec
    assert spec.repo.base_ref == "main"
    assert spec.repo.credentials_secret is None
    assert spec.max_parallel == 4
    assert spec.merge.on_conflict == "continue"
    assert spec.retry.limit == 2 and spec.retry.backoff_seconds == 30
    assert spec.task_timeout_seconds == 3600
    assert spec.suspend is False and spec.budget is None
    assert [t.name for t in spec.tasks] == ["schema", "api"]
    assert spec.tasks[0].depends_on == [] and spec.tasks[0].paths == []
    assert spec.tasks[1].depends_on == ["schema"]
    assert run.integration_branch == "braid/auth/merged"
    assert run.branch_of("api") == "braid/auth/tasks/api"
    assert spec.agent_for(spec.tasks[0]).effective_backend == "anthropic"


def test_full_manifest_from_the_design_loads(tmp_path):
    text = """
apiVersion: braid.dev/v1alpha1
kind: ParallelRun
metadata: {name: auth-feature}
spec:
  repo: {url: https://git.example.com/app.git, baseRef: main, credentialsSecret: git-creds}
  integrationBranch: feature/auth
  maxParallel: 3
  agent:
    backend: anthropic
    model: claude-sonnet-4-5
    apiKeySecret: anthropic-api-key
    image: ghcr.io/example/braid-agent:0.1
    command: ["claude", "-p"]
    maxTurns: 50
  resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {cpu: "2", memory: 4Gi}}
  budget: {maxCostUSD: 25, maxTokens: 5000000}
  retry: {limit: 2, backoffSeconds: 30}
  taskTimeoutSeconds: 3600
  merge: {onConflict: stop}
  tasks:
    - {name: schema, prompt: "Add a users table ...", paths: ["db/"]}
    - {name: api, prompt: "...", dependsOn: [schema], paths: ["api/"], agent: {backend: command, command: [aider]}}
    - {name: ui, prompt: "...", dependsOn: [api]}
"""
    run = load(tmp_path, text)
    spec = run.spec
    assert run.integration_branch == "feature/auth"
    assert spec.max_parallel == 3
    assert spec.budget.max_cost_usd == 25 and spec.budget.max_tokens == 5_000_000
    assert spec.merge.on_conflict == "stop"
    assert spec.resources.limits == {"cpu": "2", "memory": "4Gi"}
    assert spec.repo.credentials_secret == "git-creds"
    api = spec.agent_for(spec.task("api"))
    assert api.effective_backend == "command" and api.command == ["aider"]
    assert api.model == "claude-sonnet-4-5" and api.max_turns == 50  # run defaults kept under the override
    assert spec.agent_for(spec.task("ui")).effective_backend == "anthropic"
    # the wire form is camelCase again
    wire = run.wire()
    assert wire["spec"]["integrationBranch"] == "feature/auth"
    assert wire["spec"]["budget"]["maxCostUSD"] == 25


def test_other_documents_in_the_file_are_ignored(tmp_path):
    text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\n" + yaml.safe_dump(BASE)
    assert load(tmp_path, text).name == "auth"


def test_task_agent_overrides_only_what_it_sets():
    base = AgentSpec(backend="script", model="m1", max_turns=7)
    merged = base.overlaid(AgentSpec(model="m2"))
    assert (merged.backend, merged.model, merged.max_turns) == ("script", "m2", 7)
    assert base.model == "m1"


@pytest.mark.parametrize("branch", ["feature/auth", "braid/auth/merged", "braid/other-run/tasks/x", "release-1.2"])
def test_acceptable_integration_branches(tmp_path, branch):
    assert load(tmp_path, manifest(integrationBranch=branch)).integration_branch == branch


@pytest.mark.parametrize("url", ["ssh://git@github.com/org/app.git", "git@github.com:org/app.git",
                                 "file:///srv/app.git", "./repo", "https://github.com/org/app.git"])
def test_repo_urls_without_credentials_are_accepted(tmp_path, url):
    doc = manifest()
    doc["spec"]["repo"]["url"] = url
    assert load(tmp_path, doc).spec.repo.url == url


# -- one-line errors naming the field ----------------------------------------------------------------


def test_unknown_field_in_spec(tmp_path):
    assert error_of(tmp_path, manifest(maxParalel=3)) == "spec.maxParalel: unknown field"


def test_unknown_field_in_a_task(tmp_path):
    doc = manifest()
    doc["spec"]["tasks"][1]["depends"] = ["schema"]
    assert error_of(tmp_path, doc) == "spec.tasks[1].depends: unknown field"


def test_wrong_type(tmp_path):
    message = error_of(tmp_path, manifest(maxParallel="lots"))
    assert message.startswith("spec.maxParallel: ")
    assert "integer" in message


def test_wrong_type_for_a_list(tmp_path):
    doc = manifest()
    doc["spec"]["tasks"][1]["dependsOn"] = "schema"
    assert error_of(tmp_path, doc).startswith("spec.tasks[1].dependsOn: ")


def test_out_of_range_value(tmp_path):
    assert error_of(tmp_path, manifest(maxParallel=0)).startswith("spec.maxParallel: ")


def test_missing_required_field(tmp_path):
    doc = manifest()
    del doc["spec"]["tasks"][0]["prompt"]
    assert error_of(tmp_path, doc) == "spec.tasks[0].prompt: required field is missing"


def test_duplicate_task_names(tmp_path):
    doc = manifest()
    doc["spec"]["tasks"].append({"name": "schema", "prompt": "again"})
    message = error_of(tmp_path, doc)
    assert message.startswith("spec.tasks")
    assert "unique" in message and "'schema'" in message


def test_self_dependency(tmp_path):
    doc = manifest()
    doc["spec"]["tasks"][1]["dependsOn"] = ["schema", "api"]
    message = error_of(tmp_path, doc)
    assert message.startswith("spec.tasks[1]")
    assert "'api'" in message and "itself" in message


@pytest.mark.parametrize("name", ["Schema", "sCHEMA", "-schema", "schema-", "a..b", "a.b", "a/b", "a_b", "", "x" * 41])
def test_bad_task_names(tmp_path, name):
    doc = manifest()
    doc["spec"]["tasks"][0]["name"] = name
    doc["spec"]["tasks"][1]["dependsOn"] = []
    message = error_of(tmp_path, doc)
    assert message.startswith("spec.tasks[0].name: "), message


def test_bad_task_name_message_says_what_is_allowed(tmp_path):
    doc = manifest()
    doc["spec"]["tasks"][0]["name"] = "Schema"
    doc["spec"]["tasks"][1]["dependsOn"] = []
    assert "lowercase" in error_of(tmp_path, doc)


def test_bad_dependency_name(tmp_path):
    doc = manifest()
    doc["spec"]["tasks"][1]["dependsOn"] = ["Schema"]
    assert error_of(tmp_path, doc).startswith("spec.tasks[1].dependsOn[0]: ")


def test_bad_run_name(tmp_path):
    doc = manifest()
    doc["metadata"]["name"] = "Auth_Feature"
    assert error_of(tmp_path, doc).startswith("metadata.name: ")


@pytest.mark.parametrize(
    "branch, why",
    [
        ("a..b", "'..'"),
        ("-x", "'-'"),
        ("x.lock", ".lock"),
        ("a//b", "'//'"),
        ("a/", "'/'"),
        ("/a", "'/'"),
        ("a b", "letters, digits"),
        ("a~1", "letters, digits"),
        ("a^", "letters, digits"),
        ("a:b", "letters, digits"),
        ("a.", "'.'"),
        ("x/.hidden", "'.'"),
        ("dir.lock/x", ".lock"),
    ],
)
def test_integration_branch_git_would_reject(tmp_path, branch, why):
    message = error_of(tmp_path, manifest(integrationBranch=branch))
    assert message.startswith("spec.integrationBranch: "), message
    assert why in message


@pytest.mark.parametrize("branch", ["a..b", "-x", "x.lock", "a//b", "a/", "a b", "x/.hidden", "dir.lock/x", "a.",
                                    "a@{1}"])
def test_rejected_branch_names_are_really_rejected_by_git(tmp_path, branch):
    problem = ref_name_problem(branch)
    git_ok = subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True,
                            cwd=tmp_path).returncode == 0
    assert problem is not None and not git_ok


@pytest.mark.parametrize("branch", ["feature/auth", "braid/auth/merged", "v1.2.3", "a+b", "UPPER/lower_x"])
def test_accepted_branch_names_are_accepted_by_git(tmp_path, branch):
    assert ref_name_problem(branch) is None
    assert subprocess.run(["git", "check-ref-format", "--branch", branch], capture_output=True,
                          cwd=tmp_path).returncode == 0


@pytest.mark.parametrize("branch", ["braid/auth", "braid", "braid/auth/tasks", "braid/auth/tasks/x/y",
                                    "braid/auth/tasks/api"])
def test_integration_branch_colliding_with_task_branches(tmp_path, branch):
    message = error_of(tmp_path, manifest(integrationBranch=branch))
    assert "spec.integrationBranch" in message
    assert "collides" in message and "braid/auth/tasks" in message
    assert "braid/auth/merged" in message  # says what would work


@pytest.mark.parametrize("url", ["https://user:pw@git.example.com/x.git", "https://token@git.example.com/x.git",
                                 "http://user:pw@host/x.git", "ssh://git:pw@host/x.git", "git://token@host/x.git",
                                 "file://token@/srv/x.git"])
def test_repo_url_with_embedded_credentials(tmp_path, url):
    doc = manifest()
    doc["spec"]["repo"]["url"] = url
    message = error_of(tmp_path, doc)
    assert message.startswith("spec.repo.url: ")
    assert "credentials" in message and "credentialsSecret" in message
    assert "pw" not in message and "token" not in message  # the secret is not echoed back


@pytest.mark.parametrize("url, problem", [
    ("--upload-pack=touch PWNED;://", "must not begin with '-'"),
    ("-uhost:x", "must not begin with '-'"),
    ("ext::sh -c touch% PWNED", "<transport>::<address>"),
    ("fd::17", "<transport>::<address>"),
    ("https://host/x\x00.git", "control characters"),
    ("https://host/x\n.git", "control characters"),
    ("ftp://host/x.git", "scheme 'ftp' is not supported"),
])
def test_repo_urls_git_would_misread_are_rejected(tmp_path, url, problem):
    doc = manifest()
    doc["spec"]["repo"]["url"] = url
    message = error_of(tmp_path, doc)
    assert message.startswith("spec.repo.url: ") and problem in message, message


@pytest.mark.parametrize("branch", ["HEAD", "refs/heads/x"])
def test_integration_branch_must_be_a_branch_name(tmp_path, branch):
    message = error_of(tmp_path, manifest(integrationBranch=branch))
    assert message.startswith("spec.integrationBranch: ") and "not HEAD or a full ref name" in message, message


def test_backend_command_without_a_command(tmp_path):
    doc = manifest()
    doc["spec"]["tasks"][0]["agent"] = {"backend": "command"}
    message = error_of(tmp_path, doc)
    assert message.startswith("spec.tasks[0].agent.command: ") and "no command" in message, message
    doc["spec"]["agent"] = {"command": ["claude", "-p"]}
    assert load(tmp_path, doc).spec.agent_for(load(tmp_path, doc).spec.tasks[0]).command == ["claude", "-p"]


def test_base_ref_starting_with_dash(tmp_path):
    doc = manifest()
    doc["spec"]["repo"]["baseRef"] = "--upload-pack=evil"
    assert error_of(tmp_path, doc).startswith("spec.repo.baseRef: ")


@pytest.mark.parametrize(
    "step, missing",
    [
        ({"op": "write", "path": "a.txt"}, "content"),
        ({"op": "write", "content": "x"}, "path"),
        ({"op": "append", "path": "a.txt"}, "content"),
        ({"op": "replace", "path": "a.txt", "old": "x"}, "new"),
        ({"op": "replace", "path": "a.txt", "new": "x"}, "old"),
        ({"op": "delete"}, "path"),
        ({"op": "require"}, "path"),
        ({"op": "sleep"}, "seconds"),
    ],
)
def test_script_steps_missing_fields(tmp_path, step, missing):
    doc = manifest()
    doc["spec"]["tasks"][1]["agent"] = {"backend": "script", "script": {"steps": [{"op": "fail"}, step]}}
    message = error_of(tmp_path, doc)
    assert message.startswith("spec.tasks[1].agent.script.steps[1]"), message
    assert missing in message and repr(step["op"]) in message


def test_script_step_unknown_op(tmp_path):
    doc = manifest()
    doc["spec"]["tasks"][0]["agent"] = {"script": {"steps": [{"op": "explode"}]}}
    message = error_of(tmp_path, doc)
    assert message.startswith("spec.tasks[0].agent.script.steps[0].op: ")
    assert "write" in message


def test_env_var_names_are_checked(tmp_path):
    doc = manifest(agent={"env": {"NOT VALID": "x"}})
    assert error_of(tmp_path, doc).startswith("spec.agent.env: ")


def test_several_problems_say_how_many_more(tmp_path):
    doc = manifest(maxParallel="lots", bogus=1, suspend="perhaps")
    message = error_of(tmp_path, doc)
    assert "(and 2 more problems)" in message


def test_not_yaml(tmp_path):
    message = error_of(tmp_path, "spec: [unclosed\n")
    assert "not valid YAML" in message and "line" in message


def test_no_parallelrun_document(tmp_path):
    message = error_of(tmp_path, "apiVersion: v1\nkind: ConfigMap\n")
    assert "ParallelRun" in message and "found 0" in message


def test_two_parallelrun_documents(tmp_path):
    text = yaml.safe_dump(BASE) + "---\n" + yaml.safe_dump(BASE)
    assert "found 2" in error_of(tmp_path, text)


def test_missing_file(tmp_path):
    with pytest.raises(InvalidSpec, match="cannot read"):
        load_parallelrun(tmp_path / "nope.yaml")


# -- braid validate ------------------------------------------------------------------------------------


def braid(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """The installed `braid` command, as a user runs it."""
    exe = shutil.which("braid") or ""
    argv = [exe] if exe else [sys.executable, "-m", "braid"]
    return subprocess.run([*argv, *args], capture_output=True, text=True, cwd=cwd, timeout=60)


def test_braid_validate_accepts_a_valid_file(tmp_path, capsys):
    assert main(["validate", str(write(tmp_path, BASE))]) == 0
    out = capsys.readouterr().out
    assert "valid" in out and "2 tasks" in out


def test_braid_validate_reports_a_bad_field_on_stderr_with_exit_2(tmp_path):
    proc = braid("validate", str(write(tmp_path, manifest(integrationBranch="a..b"))))
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines == ["braid: error: spec.integrationBranch: must not contain '..'"]


def test_braid_validate_reports_unknown_dependency_and_cycle(tmp_path, capsys):
    doc = manifest()
    doc["spec"]["tasks"][0]["dependsOn"] = ["nowhere"]
    assert main(["validate", str(write(tmp_path, doc))]) == 2
    err = capsys.readouterr().err
    assert "spec.tasks[0].dependsOn[0]" in err and "'nowhere'" in err

    doc["spec"]["tasks"][0]["dependsOn"] = ["api"]
    assert main(["validate", str(write(tmp_path, doc))]) == 2
    err = capsys.readouterr().err
    assert err.strip() == "braid: error: spec.tasks: dependency cycle api -> schema -> api"


def test_prompt_and_agent_of_a_resolve_rule_are_for_strategy_agent_only() -> None:
    with pytest.raises(ValidationError, match="prompt and agent are for strategy agent, not union"):
        ResolveRule(paths=["*.md"], strategy="union", prompt="merge it")
    rule = ResolveRule(strategy="agent", prompt="Keep both.")
    assert rule.paths == ["**"]
