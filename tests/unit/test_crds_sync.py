"""crds/*.yaml is generated from the API models and must stay in sync and structural."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from braid.api.crd import agenttask_crd, parallelrun_crd, render_all
from braid.cli import main

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "crds"


def schema_of(crd: dict) -> dict:
    return crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]


def walk(node, path="$"):
    """Every (path, dict) in a schema tree."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from walk(value, f"{path}[{i}]")


def schema_nodes(schema: dict, path: str = "$"):
    """Every schema node (not every dict: CEL rule objects and enums are values, not schemas)."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from schema_nodes(sub, f"{path}.{name}")
    if isinstance(schema.get("items"), dict):
        yield from schema_nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from schema_nodes(schema["additionalProperties"], f"{path}{{}}")


CRD_BUILDERS = {"parallelruns": parallelrun_crd, "agenttasks": agenttask_crd}


def test_braid_crds_check_passes_on_the_committed_files():
    braid = shutil.which("braid")
    argv = [braid] if braid else [sys.executable, "-m", "braid"]
    proc = subprocess.run([*argv, "crds", "--check", "--out", "crds"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, f"crds/ is out of date; run `braid crds --out crds`\n{proc.stderr}"


def test_generated_text_equals_the_committed_files():
    rendered = render_all()
    assert sorted(rendered) == ["agenttasks.braid.dev.yaml", "parallelruns.braid.dev.yaml"]
    for name, text in rendered.items():
        assert (CRDS / name).read_text() == text, f"crds/{name} differs from the models; run `braid crds --out crds`"


def test_braid_crds_check_fails_on_a_stale_file(tmp_path, capsys):
    out = tmp_path / "crds"
    assert main(["crds", "--out", str(out)]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(render_all())
    assert main(["crds", "--check", "--out", str(out)]) == 0
    capsys.readouterr()
    stale = out / "parallelruns.braid.dev.yaml"
    stale.write_text(stale.read_text().replace("maxParallel", "maxParalel"))
    assert main(["crds", "--check", "--out", str(out)]) != 0
    err = capsys.readouterr().err
    assert "parallelruns.braid.dev.yaml" in err and "agenttasks" not in err


@pytest.mark.parametrize("name", ["parallelruns.braid.dev.yaml", "agenttasks.braid.dev.yaml"])
def test_committed_file_parses_as_a_crd(name):
    crd = yaml.safe_load((CRDS / name).read_text())
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == name.removesuffix(".yaml")


@pytest.mark.parametrize("plural", sorted(CRD_BUILDERS))
def test_schema_is_structural(plural):
    crd = CRD_BUILDERS[plural]()
    schema = schema_of(crd)
    for path, node in walk(schema):
        assert "$ref" not in node, path
        assert "$defs" not in node and "definitions" not in node, path
        assert "oneOf" not in node and "allOf" not in node and "not" not in node, path
        assert "anyOf" not in node, f"{path}: anyOf is only allowed as x-kubernetes-int-or-string"
        # a "title" of a properties map is a field's name (spec.delivery.pullRequest.title), not a keyword
        assert "title" not in node or path.endswith(".properties"), path
    for path, node in schema_nodes(schema):
        typed = (
            "type" in node
            or node.get("x-kubernetes-int-or-string") is True
            or node.get("x-kubernetes-preserve-unknown-fields") is True
        )
        assert typed, f"{path} has no type"
        if node.get("type") == "object" and "properties" in node:
            assert node.get("additionalProperties") is not False, f"{path}: additionalProperties false is not allowed"
            assert "additionalProperties" not in node, f"{path}: properties and additionalProperties together"
        if node.get("type") == "array":
            assert isinstance(node.get("items"), dict), f"{path}: array without items"
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node, path


def test_quantities_are_int_or_string_with_the_api_servers_pattern():
    from braid.api.quantity import QUANTITY_PATTERN

    spec = schema_of(parallelrun_crd())["properties"]["spec"]["properties"]
    task = spec["tasks"]["items"]["properties"]
    for resources in (spec["resources"], task["resources"]):
        for kind in ("requests", "limits"):
            node = resources["properties"][kind]
            assert node["type"] == "object"
            assert node["additionalProperties"] == {"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}
    pattern = re.compile(QUANTITY_PATTERN)
    assert all(pattern.match(q) for q in ("500m", "2", "0.5", "20Mi", "1Gi", "512M", "1e3", ".5"))
    assert not any(pattern.match(q) for q in ("-1", "20MB", "1.5 Gi", "lots", ""))


@pytest.mark.parametrize("plural, kind, short", [("parallelruns", "ParallelRun", "prun"),
                                                 ("agenttasks", "AgentTask", "atask")])
def test_names_scope_and_status_subresource(plural, kind, short):
    crd = CRD_BUILDERS[plural]()
    spec = crd["spec"]
    assert crd["metadata"]["name"] == f"{plural}.braid.dev"
    assert spec["group"] == "braid.dev"
    assert spec["scope"] == "Namespaced"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == kind.lower()
    assert spec["names"]["shortNames"] == [short]
    (version,) = spec["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    schema = schema_of(crd)
    assert schema["type"] == "object"
    assert "spec" in schema["required"]
    assert set(schema["properties"]) >= {"apiVersion", "kind", "metadata", "spec", "status"}


def test_parallelrun_printer_columns_show_progress_cost_and_conflicts():
    columns = {c["name"]: c for c in parallelrun_crd()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Progress"]["jsonPath"] == ".status.progress"
    assert columns["Cost"]["jsonPath"] == ".status.usage.costUSD" and columns["Cost"]["type"] == "number"
    assert columns["Conflicts"]["jsonPath"] == ".status.merge.conflictCount"
    assert columns["Conflicts"]["type"] == "integer"
    assert columns["Age"]["jsonPath"] == ".metadata.creationTimestamp" and columns["Age"]["type"] == "date"


def test_agenttask_printer_columns():
    columns = {c["name"]: c for c in agenttask_crd()["spec"]["versions"][0]["additionalPrinterColumns"]}
    assert columns["Run"]["jsonPath"] == ".spec.run"
    assert columns["Phase"]["jsonPath"] == ".status.phase"
    assert columns["Attempts"]["type"] == "integer"
    assert "Age" in columns


@pytest.mark.parametrize("plural", sorted(CRD_BUILDERS))
def test_printer_column_paths_exist_in_the_schema(plural):
    crd = CRD_BUILDERS[plural]()
    schema = schema_of(crd)
    for column in crd["spec"]["versions"][0]["additionalPrinterColumns"]:
        parts = column["jsonPath"].lstrip(".").split(".")
        if parts[0] == "metadata":
            continue
        node = schema
        for part in parts:
            assert part in node.get("properties", {}), f"{column['name']}: {column['jsonPath']} not in the schema"
            node = node["properties"][part]


def rules(node: dict) -> list[str]:
    return [r["rule"] for r in node.get("x-kubernetes-validations", [])]


def test_cel_rule_for_unique_task_names():
    tasks = schema_of(parallelrun_crd())["properties"]["spec"]["properties"]["tasks"]
    assert any("exists_one" in r and "name" in r for r in rules(tasks))
    messages = [r["message"] for r in tasks["x-kubernetes-validations"]]
    assert any("unique" in m for m in messages)


def test_cel_rule_for_self_dependency():
    task = schema_of(parallelrun_crd())["properties"]["spec"]["properties"]["tasks"]["items"]
    assert any("dependsOn" in r and "self.name" in r for r in rules(task))


def test_cel_rules_for_integration_branch():
    schema = schema_of(parallelrun_crd())
    branch = schema["properties"]["spec"]["properties"]["integrationBranch"]
    assert any("'..'" in r for r in rules(branch))
    assert any("startsWith('-')" in r for r in rules(branch))
    assert any("integrationBranch" in r and "/tasks/" in r for r in rules(schema))


def test_sizes_are_bounded_so_cel_cost_is_bounded():
    spec = schema_of(parallelrun_crd())["properties"]["spec"]["properties"]
    task = spec["tasks"]["items"]["properties"]
    assert spec["tasks"]["maxItems"] <= 1000
    assert task["name"]["maxLength"] <= 63
    assert task["dependsOn"]["maxItems"] <= 256
    assert task["dependsOn"]["items"]["maxLength"] <= 63
    assert task["prompt"]["maxLength"] > 0
    assert spec["integrationBranch"]["maxLength"] <= 255


def test_task_name_pattern_matches_the_models():
    task = schema_of(parallelrun_crd())["properties"]["spec"]["properties"]["tasks"]["items"]["properties"]
    assert task["name"]["pattern"] == "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"


def test_enums_and_defaults_survive():
    spec = schema_of(parallelrun_crd())["properties"]["spec"]["properties"]
    assert set(spec["merge"]["properties"]["onConflict"]["enum"]) == {"continue", "stop"}
    assert spec["maxParallel"]["default"] == 4
    assert spec["maxParallel"]["minimum"] == 1
    backend = spec["agent"]["properties"]["backend"]
    assert set(backend["enum"]) >= {"anthropic", "command", "script"}
