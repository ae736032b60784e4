"""Generate the CustomResourceDefinitions in crds/ from the pydantic models.

Pydantic emits JSON Schema; the API server wants a *structural* OpenAPI v3 schema:
every node typed, no $ref, no `additionalProperties: false` next to `properties`,
`x-kubernetes-int-or-string` instead of `anyOf: [integer, string]`. This module does
that translation and adds what only Kubernetes knows about: scope, short names,
the status subresource and printer columns.
"""

from __future__ import annotations

from typing import Any

import yaml

from .agenttask import AgentTask
from .common import GROUP, VERSION
from .parallelrun import ParallelRun

_DROP = {"title", "additionalProperties", "$defs", "discriminator"}


def _structural(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_structural(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
        return _structural(merged, defs)
    if "anyOf" in node:
        options = [o for o in node["anyOf"] if o.get("type") != "null"]
        rest = {k: v for k, v in node.items() if k != "anyOf"}
        types = sorted(o.get("type", "") for o in options)
        if types == ["integer", "string"]:
            return {**_structural(rest, defs), "x-kubernetes-int-or-string": True}
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']} structurally")
        return _structural({**options[0], **rest}, defs)

    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROP:
            continue
        if key == "const":
            out["enum"] = [value]
        elif key == "properties":
            out["properties"] = {name: _structural(v, defs) for name, v in value.items()}
        elif key == "default" and value is None:
            continue
        elif key in ("exclusiveMinimum", "exclusiveMaximum"):
            # JSON Schema 2020 gives the bound; OpenAPI v3.0 (what the API server speaks) a flag
            out["minimum" if key == "exclusiveMinimum" else "maximum"] = value
            out[key] = True
        else:
            out[key] = _structural(value, defs) if isinstance(value, dict | list) and key != "default" else value
    additional = node.get("additionalProperties")
    if isinstance(additional, dict):
        out["additionalProperties"] = _structural(additional, defs)
    if out.get("type") == "object" and "properties" not in out and "additionalProperties" not in out:
        out["x-kubernetes-preserve-unknown-fields"] = True
    return out


def _schema_of(model: type) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, mode="validation")
    schema = _structural(raw, raw.get("$defs", {}))
    props = schema["properties"]
    # metadata is the API server's business; name length is checked at the top.
    props["metadata"] = {"type": "object"}
    props.pop("apiVersion", None)
    props.pop("kind", None)
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    schema["required"] = ["spec"]
    # status is written only by the controller through the subresource
    schema.pop("default", None)
    return schema


def _crd(model: type, plural: str, short: str, columns: list[dict[str, Any]], description: str) -> dict[str, Any]:
    kind = model.model_fields["kind"].default
    schema = _schema_of(model)
    schema["description"] = description
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "braid"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": [short],
                "categories": ["braid"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def _col(name: str, path: str, type_: str = "string", priority: int = 0, description: str = "") -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path}
    if priority:
        col["priority"] = priority
    if description:
        col["description"] = description
    return col


def parallelrun_crd() -> dict[str, Any]:
    return _crd(
        ParallelRun,
        "parallelruns",
        "prun",
        [
            _col("Phase", ".status.phase"),
            _col("Progress", ".status.progress", description="ended tasks / all tasks"),
            _col("Running", ".status.counts.running", "integer"),
            _col("Failed", ".status.counts.failed", "integer"),
            _col("Cost", ".status.usage.costUSD", "number", description="USD spent so far"),
            _col("Conflicts", ".status.merge.conflictCount", "integer"),
            _col("Branch", ".status.merge.branch", priority=1),
            _col("Age", ".metadata.creationTimestamp", "date"),
        ],
        "A git repository and a DAG of coding tasks, each run by an agent on its own branch, "
        "then merged into one integration branch.",
    )


def agenttask_crd() -> dict[str, Any]:
    return _crd(
        AgentTask,
        "agenttasks",
        "atask",
        [
            _col("Run", ".spec.run"),
            _col("Task", ".spec.task"),
            _col("Phase", ".status.phase"),
            _col("Attempts", ".status.attempts", "integer"),
            _col("Cost", ".status.usage.costUSD", "number"),
            _col("Commit", ".status.commit", priority=1),
            _col("Reason", ".status.reason", priority=1),
            _col("Age", ".metadata.creationTimestamp", "date"),
        ],
        "One task of a ParallelRun: the agent pod(s) that work on one branch.",
    )


def render_all() -> dict[str, str]:
    """File name -> YAML text of every CRD."""
    out = {}
    for crd in (parallelrun_crd(), agenttask_crd()):
        text = "# Generated from operator/braid/api by `braid crds`; do not edit.\n"
        text += yaml.safe_dump(crd, sort_keys=False, width=120)
        out[f"{crd['metadata']['name']}.yaml"] = text
    return out
