"""The Helm chart, linted and rendered by a real helm (hack/install-helm.sh builds it once per machine)."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from braid.api.parallelrun import ParallelRun
from braid.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "braid"
NAMESPACE = "braid-system"
METRICS_PY = ROOT / "operator" / "braid" / "metrics.py"

# Building helm from source takes a minute or two the first time on a machine.
pytestmark = pytest.mark.timeout(1200)


# -- running helm ---------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def helm(tmp_path_factory) -> list[str]:
    proc = subprocess.run([str(ROOT / "hack" / "install-helm.sh")], capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"hack/install-helm.sh failed:\n{proc.stderr[-4000:]}"
    binary = proc.stdout.strip().splitlines()[-1]
    assert os.access(binary, os.X_OK), binary
    return [binary]


@pytest.fixture(scope="session")
def helm_env(tmp_path_factory) -> dict[str, str]:
    """helm's own config, cache and data directories, away from the user's."""
    home = tmp_path_factory.mktemp("helm-home")
    return {
        **os.environ,
        "HELM_CACHE_HOME": str(home / "cache"),
        "HELM_CONFIG_HOME": str(home / "config"),
        "HELM_DATA_HOME": str(home / "data"),
    }


def run_helm(helm, helm_env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*helm, *args], capture_output=True, text=True, env=helm_env, cwd=ROOT, timeout=120)


def set_args(values: dict | None) -> list[str]:
    """Values as --set-json flags, one per top-level key (types survive, unlike --set)."""
    return [arg for key, value in (values or {}).items() for arg in ("--set-json", f"{key}={json.dumps(value)}")]


@pytest.fixture
def render(helm, helm_env):
    def render(values: dict | None = None, *extra: str, release: str = "braid", namespace: str = NAMESPACE) -> list[dict]:
        proc = run_helm(helm, helm_env, "template", release, str(CHART), "--namespace", namespace,
                        *set_args(values), *extra)
        assert proc.returncode == 0, proc.stderr
        return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]

    return render


def one(objects: list[dict], kind: str, name: str | None = None, namespace: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind
             and (name is None or o["metadata"]["name"] == name)
             and (namespace is None or o["metadata"].get("namespace") == namespace)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def kinds(objects: list[dict]) -> list[str]:
    return sorted(o["kind"] for o in objects)


def container(objects: list[dict]) -> dict:
    (c,) = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"]
    return c


def env_of(objects: list[dict]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container(objects)["env"] if "value" in e}


# -- lint -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("strict", [False, True], ids=["lint", "lint-strict"])
def test_helm_lint_passes(helm, helm_env, strict):
    proc = run_helm(helm, helm_env, "lint", str(CHART), *(["--strict"] if strict else []))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout


def test_helm_lint_passes_in_namespaced_mode(helm, helm_env):
    values = {"watchNamespaces": ["team-a", "team-b"],
              "agents": {"runtimeClassName": "gvisor", "cachePVC": "braid-git-cache"}}
    proc = run_helm(helm, helm_env, "lint", str(CHART), "--strict", *set_args(values))
    assert proc.returncode == 0, proc.stdout + proc.stderr


# -- the operator Deployment ----------------------------------------------------------------------

def test_renders_what_an_operator_install_needs(render):
    objects = render()
    assert kinds(objects) == sorted([
        "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding",
        "Service", "Deployment", "ConfigMap",
    ])
    for obj in objects:
        if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding"):
            assert obj["metadata"]["namespace"] == NAMESPACE, obj["kind"]
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "braid"


def test_one_operator_replica_replaced_not_rolled(render):
    deployment = one(render(), "Deployment", "braid")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= deployment["spec"]["template"]["metadata"]["labels"].items()


def test_operator_runs_non_root_on_a_read_only_root_file_system(render):
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (c,) = pod["containers"]
    sc = c["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert sc.get("privileged") is not True
    assert not any("hostPath" in v for v in pod.get("volumes", []))
    assert not pod.get("hostNetwork") and not pod.get("hostPID")
    # a writable scratch directory, since the root file system is not
    assert {"name": "tmp", "mountPath": "/tmp"} in c["volumeMounts"]
    assert pod["serviceAccountName"] == "braid"


def test_operator_command_probes_ports_and_resources(render):
    c = container(render())
    assert c["command"] == ["braid", "operator"]
    assert c["image"] == "braid-operator:0.1.0"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": 8080, "health": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]


def test_image_tag_defaults_to_the_app_version_and_a_digest_wins(render):
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert container(render())["image"] == f"braid-operator:{chart['appVersion']}"
    digest = "sha256:" + "a" * 64
    objects = render({"image": {"repository": "registry.example.com/braid", "tag": "9.9.9", "digest": digest},
                      "agents": {"image": {"repository": "registry.example.com/agent", "tag": "1.2.3"}}})
    assert container(objects)["image"] == f"registry.example.com/braid@{digest}"
    assert env_of(objects)["BRAID_RUNNER_IMAGE"] == "registry.example.com/agent:1.2.3"


def test_verbose_adds_the_flag(render):
    assert "args" not in container(render())
    assert container(render({"operator": {"verbose": True}}))["args"] == ["--verbose"]


# -- settings: values -> BRAID_* env -> braid.settings.Settings ------------------------------------

ALL_ON = {
    "watchNamespaces": ["team-a", "team-b"],
    "agents": {
        "image": {"repository": "registry.example.com/braid-agent", "tag": "2.0.0"},
        "pullPolicy": "Always",
        "runtimeClassName": "gvisor",
        "schedulerName": "braid-scheduler",
        "nodeSelector": {"braid.dev/agents": "true"},
        "tolerations": [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}],
        "serviceAccountName": "braid-agent",
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        "workspaceSizeLimit": "20Gi",
        "workspaceStorageClass": "fast-ssd",
        "cachePVC": "braid-git-cache",
        "tmpSizeLimit": "2Gi",
        "runAsUser": 2000,
        "runAsGroup": 2001,
        "fsGroup": 2002,
        "terminationGracePeriodSeconds": 90,
        "deadlineGraceSeconds": 45,
        "maxInterruptions": 7,
        "mergeTimeoutSeconds": 900,
        "mergeBackoffLimit": 4,
        "mergeServiceAccountName": "braid-merge",
    },
    "operator": {"apiQPS": 7.5, "apiBurst": 15, "workers": 3, "resyncSeconds": 120, "metricsPort": 9090,
                 "healthPort": 9091},
}


def settings_from(env: dict[str, str], monkeypatch) -> Settings:
    for name in list(os.environ):
        if name.startswith("BRAID_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings()


def test_values_reach_the_operator_settings(render, monkeypatch):
    env = env_of(render(ALL_ON))
    assert env["BRAID_NAMESPACES"] == "team-a,team-b"
    assert json.loads(env["BRAID_NODE_SELECTOR"]) == {"braid.dev/agents": "true"}
    settings = settings_from({k: v for k, v in env.items() if k.startswith("BRAID_")}, monkeypatch)
    assert settings.namespaces == ["team-a", "team-b"]
    assert settings.runner_image == "registry.example.com/braid-agent:2.0.0"
    assert settings.image_pull_policy == "Always"
    assert settings.runtime_class_name == "gvisor"
    assert settings.node_selector == {"braid.dev/agents": "true"}
    assert settings.tolerations == [{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}]
    assert settings.service_account == "braid-agent"
    assert (settings.default_cpu_request, settings.default_memory_request) == ("250m", "512Mi")
    assert (settings.default_cpu_limit, settings.default_memory_limit) == ("1", "2Gi")
    assert settings.workspace_size_limit == "20Gi"
    assert settings.workspace_storage_class == "fast-ssd"
    assert settings.cache_pvc == "braid-git-cache"
    assert settings.tmp_size_limit == "2Gi"
    assert (settings.run_as_user, settings.run_as_group, settings.fs_group) == (2000, 2001, 2002)
    assert settings.termination_grace_seconds == 90
    assert settings.deadline_grace_seconds == 45
    assert settings.max_interruptions == 7
    assert settings.merge_timeout_seconds == 900
    assert settings.merge_backoff_limit == 4
    assert settings.merge_service_account == "braid-merge"
    assert (settings.api_qps, settings.api_burst) == (7.5, 15)
    assert (settings.workers, settings.resync_seconds) == (3, 120)
    assert (settings.metrics_port, settings.health_port) == (9090, 9091)
    ports = {p["name"]: p["containerPort"] for p in container(render(ALL_ON))["ports"]}
    assert ports == {"metrics": 9090, "health": 9091}


def test_every_operator_setting_can_be_set_from_values(render):
    env = env_of(render(ALL_ON))
    rendered = {name for name in env if name.startswith("BRAID_")}
    expected = {f"BRAID_{field.upper()}" for field in Settings.model_fields}
    assert rendered == expected, (
        f"settings without a chart value: {sorted(expected - rendered)}; "
        f"env vars the operator ignores: {sorted(rendered - expected)}"
    )


def test_default_values_are_the_operators_defaults(render, monkeypatch):
    """values.yaml documents the defaults; it must not quietly differ from what the operator assumes."""
    env = {k: v for k, v in env_of(render()).items() if k.startswith("BRAID_")}
    assert settings_from(env, monkeypatch) == settings_from({}, monkeypatch)


def test_unset_optional_settings_are_left_out_rather_than_empty(render):
    env = env_of(render())
    for name in ("BRAID_RUNTIME_CLASS_NAME", "BRAID_CACHE_PVC", "BRAID_WORKSPACE_STORAGE_CLASS",
                 "BRAID_SERVICE_ACCOUNT", "BRAID_MERGE_SERVICE_ACCOUNT"):
        assert name not in env


def test_extra_env_is_appended(render):
    objects = render({"operator": {"extraEnv": [{"name": "HTTPS_PROXY", "value": "http://proxy:3128"}]}})
    assert env_of(objects)["HTTPS_PROXY"] == "http://proxy:3128"


# -- values.schema.json -----------------------------------------------------------------------------

@pytest.mark.parametrize("values, complaint", [
    ({"agents": {"imagee": {"repository": "x"}}}, "imagee"),
    ({"watchNamespaces": ["Team_A"]}, "watchNamespaces"),
    ({"image": {"pullPolicy": "Sometimes"}}, "pullPolicy"),
    ({"operator": {"apiBurst": 0}}, "apiBurst"),
    ({"replicaCount": 2}, "replicaCount"),
])
def test_schema_rejects_mistakes(helm, helm_env, values, complaint):
    proc = run_helm(helm, helm_env, "template", "braid", str(CHART), *set_args(values))
    assert proc.returncode != 0
    assert complaint in proc.stderr


def test_values_yaml_is_valid_against_its_schema_and_comments_every_section():
    json.loads((CHART / "values.schema.json").read_text())
    text = (CHART / "values.yaml").read_text()
    values = yaml.safe_load(text)
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert set(values) <= set(schema["properties"])
    assert text.count("#") > len(values), "values.yaml explains its values"


# -- RBAC -------------------------------------------------------------------------------------------

# (apiGroup, resource, verb) the operator and kopf use inside a watched namespace
NAMESPACED_NEEDS = [
    ("braid.dev", res, verb)
    for res in ("parallelruns", "agenttasks") for verb in ("get", "list", "watch", "patch", "update")
] + [
    ("braid.dev", "agenttasks", "create"), ("braid.dev", "agenttasks", "delete"),
    ("braid.dev", "parallelruns/status", "patch"), ("braid.dev", "agenttasks/status", "patch"),
    ("", "pods/status", "get"),
    ("", "events", "create"), ("", "events", "patch"),
    ("events.k8s.io", "events", "create"), ("events.k8s.io", "events", "patch"),
] + [
    (group, res, verb)
    for group, res in (("", "pods"), ("batch", "jobs"), ("", "configmaps"))
    for verb in ("create", "delete", "get", "list", "watch", "patch")
]
CLUSTER_NEEDS = [
    ("apiextensions.k8s.io", "customresourcedefinitions", verb) for verb in ("get", "list", "watch")
] + [("", "namespaces", "get"), ("", "namespaces", "list")]


def allows(rules: list[dict], group: str, resource: str, verb: str) -> bool:
    return any(group in r["apiGroups"] and resource in r["resources"] and verb in r["verbs"] for r in rules)


def assert_no_wildcards_or_secrets(objects: list[dict]) -> None:
    for obj in objects:
        for rule in obj.get("rules", []):
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], f"{obj['kind']} {obj['metadata']['name']}: wildcard {field}"
            assert "secrets" not in rule["resources"], f"{obj['kind']} {obj['metadata']['name']} grants secrets"


def test_cluster_wide_rbac_by_default(render):
    objects = render()
    role = one(objects, "ClusterRole")
    for need in NAMESPACED_NEEDS + CLUSTER_NEEDS:
        assert allows(role["rules"], *need), need
    binding = one(objects, "ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                                  "name": role["metadata"]["name"]}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "braid", "namespace": NAMESPACE}]
    # the only Role is the operator's own (leases, events in its namespace)
    (own,) = [o for o in objects if o["kind"] == "Role"]
    assert own["metadata"]["namespace"] == NAMESPACE
    assert allows(own["rules"], "coordination.k8s.io", "leases", "update")
    assert not any(allows(own["rules"], *need) for need in NAMESPACED_NEEDS if need[1] != "events")
    assert_no_wildcards_or_secrets(objects)


def test_namespaced_rbac_when_watch_namespaces_is_set(render):
    objects = render({"watchNamespaces": ["team-a", "team-b"]})
    assert env_of(objects)["BRAID_NAMESPACES"] == "team-a,team-b"
    cluster_role = one(objects, "ClusterRole")
    for need in CLUSTER_NEEDS:
        assert allows(cluster_role["rules"], *need), need
    for need in NAMESPACED_NEEDS:
        assert not allows(cluster_role["rules"], *need), f"{need} granted cluster-wide in namespaced mode"
    for namespace in ("team-a", "team-b"):
        role = one(objects, "Role", "braid", namespace)
        for need in NAMESPACED_NEEDS:
            assert allows(role["rules"], *need), (namespace, need)
        binding = one(objects, "RoleBinding", "braid", namespace)
        assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "braid"}
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "braid", "namespace": NAMESPACE}]
    assert not [o for o in objects if o["kind"] == "Role" and o["metadata"]["namespace"] == "default"]
    assert_no_wildcards_or_secrets(objects)


def test_cluster_scoped_names_differ_between_namespaces(render):
    """Two teams may each install a namespaced braid under the same release name."""
    a = one(render(namespace="team-a-system"), "ClusterRole")["metadata"]["name"]
    b = one(render(namespace="team-b-system"), "ClusterRole")["metadata"]["name"]
    assert a != b


def test_rbac_and_service_account_can_be_turned_off(render):
    objects = render({"rbac": {"create": False}, "serviceAccount": {"create": False, "name": "my-operator"}})
    assert not {"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "ServiceAccount"} & set(kinds(objects))
    assert one(objects, "Deployment")["spec"]["template"]["spec"]["serviceAccountName"] == "my-operator"


# -- metrics: Service, ServiceMonitor ----------------------------------------------------------------

def test_metrics_service_selects_the_operator_pod(render):
    objects = render()
    service = one(objects, "Service", "braid-metrics")
    pod_labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= pod_labels.items()
    assert service["spec"]["ports"] == [{"name": "metrics", "port": 8080, "targetPort": "metrics", "protocol": "TCP"}]


def test_no_service_monitor_unless_enabled(render):
    objects = render({}, "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    assert "ServiceMonitor" not in kinds(objects)


def test_service_monitor_scrapes_the_metrics_service(render):
    objects = render({"serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}}},
                     "--api-versions", "monitoring.coreos.com/v1/ServiceMonitor")
    monitor = one(objects, "ServiceMonitor")
    service = one(objects, "Service", "braid-metrics")
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] == "metrics" and endpoint["path"] == "/metrics"


def test_service_monitor_without_its_crd_fails_with_a_clear_message(helm, helm_env):
    proc = run_helm(helm, helm_env, "template", "braid", str(CHART), *set_args({"serviceMonitor": {"enabled": True}}))
    assert proc.returncode != 0
    assert "monitoring.coreos.com/v1" in proc.stderr


# -- Grafana dashboard ------------------------------------------------------------------------------

def dashboard() -> dict:
    return json.loads((CHART / "dashboards" / "braid.json").read_text())


def test_dashboard_configmap_for_the_grafana_sidecar(render):
    config_map = one(render(), "ConfigMap", "braid-dashboard")
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(config_map["data"]["braid.json"]) == dashboard()
    objects = render({"dashboards": {"namespace": "monitoring", "annotations": {"grafana_folder": "braid"}}})
    config_map = one(objects, "ConfigMap", "braid-dashboard")
    assert config_map["metadata"]["namespace"] == "monitoring"
    assert config_map["metadata"]["annotations"] == {"grafana_folder": "braid"}
    assert "ConfigMap" not in kinds(render({"dashboards": {"enabled": False}}))


# What each metric is and which labels it has. metrics.py is the truth when it exists;
# this is the agreed list it is built to.
AGREED_METRICS: dict[str, tuple[str, set[str] | None]] = {
    "braid_runs": ("gauge", {"phase"}),
    "braid_tasks": ("gauge", {"phase", "namespace"}),
    "braid_task_duration_seconds": ("histogram", None),
    "braid_tokens": ("counter", {"namespace", "model", "kind"}),
    "braid_cost_usd": ("counter", {"namespace", "model"}),
    "braid_running_agents": ("gauge", None),
    "braid_merge_conflicts": ("counter", None),
    "braid_reconcile_duration_seconds": ("histogram", None),
    "braid_reconcile_errors": ("counter", None),
    "braid_api_retries": ("counter", None),
}
_KINDS = {"Counter": "counter", "Gauge": "gauge", "Histogram": "histogram", "Summary": "summary",
          "CounterMetricFamily": "counter", "GaugeMetricFamily": "gauge",
          "HistogramMetricFamily": "histogram", "SummaryMetricFamily": "summary"}


def _str_list(node: ast.AST | None) -> set[str] | None:
    if isinstance(node, (ast.List, ast.Tuple)) and all(
            isinstance(e, ast.Constant) and isinstance(e.value, str) for e in node.elts):
        return {e.value for e in node.elts}
    return None


def metrics_defined_in(source: str) -> dict[str, tuple[str, set[str] | None]]:
    """Metric families metrics.py declares: name -> (type, label names when they are literal)."""
    found: dict[str, tuple[str, set[str] | None]] = {}
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
        if func not in _KINDS or not node.args or not isinstance(node.args[0], ast.Constant):
            continue
        kwargs = {k.arg: k.value for k in node.keywords}
        parts = [kwargs[k].value for k in ("namespace", "subsystem")
                 if isinstance(kwargs.get(k), ast.Constant) and kwargs[k].value]
        name = "_".join([*parts, node.args[0].value])
        if _KINDS[func] == "counter":
            name = name.removesuffix("_total")
        label_arg = kwargs.get("labelnames", kwargs.get("labels"))
        if label_arg is None and func in ("Counter", "Gauge", "Histogram", "Summary") and len(node.args) > 2:
            label_arg = node.args[2]
        # no label argument: no labels; one that is not a literal list: unknown
        labels = set() if label_arg is None else _str_list(label_arg)
        found[name] = (_KINDS[func], labels)
    return found


def defined_metrics() -> dict[str, tuple[str, set[str] | None]]:
    if not METRICS_PY.exists():
        return AGREED_METRICS
    found = metrics_defined_in(METRICS_PY.read_text())
    assert found, f"{METRICS_PY} declares no metric this test can read"
    return found


def series_names(family: str, kind: str) -> set[str]:
    """The sample names Prometheus stores for one metric family."""
    return {
        "counter": {f"{family}_total"},
        "gauge": {family},
        "histogram": {f"{family}_bucket", f"{family}_sum", f"{family}_count"},
        "summary": {family, f"{family}_sum", f"{family}_count"},
    }[kind]


def dashboard_queries() -> list[str]:
    exprs = []
    for panel in dashboard()["panels"]:
        exprs += [t["expr"] for t in panel.get("targets", [])]
    return exprs


def test_dashboard_is_a_grafana_dashboard_with_a_datasource_variable():
    board = dashboard()
    assert board["title"] == "braid" and board["uid"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["targets"], panel["title"]
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]


def test_dashboard_queries_only_metrics_the_operator_defines():
    metrics = defined_metrics()
    series = {s: family for family, (kind, _) in metrics.items() for s in series_names(family, kind)}
    for expr in dashboard_queries():
        assert expr.count("(") == expr.count(")"), expr
        used = set(re.findall(r"\bbraid_[a-zA-Z0-9_:]+", expr))
        assert used, f"query uses no braid metric: {expr}"
        for name in used:
            assert name in series, f"{name} (in {expr!r}) is not a series of operator/braid/metrics.py"
        if len(used) == 1:
            _, labels = metrics[series[used.pop()]]
            if labels is not None:
                by = {label.strip() for group in re.findall(r"\bby \(([^)]*)\)", expr) for label in group.split(",")}
                matched = set(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*[=!]~?\s*\"", expr))
                assert (by | matched) - {"le"} <= labels, f"{expr}: labels beyond {sorted(labels)}"


def test_dashboard_covers_what_platform_engineers_watch():
    queries = " ".join(dashboard_queries())
    for needed in ("braid_runs", "braid_tasks", "braid_running_agents", "braid_task_duration_seconds_bucket",
                   "braid_tokens_total", "braid_cost_usd_total", "braid_merge_conflicts_total",
                   "braid_reconcile_errors_total", "braid_reconcile_duration_seconds_bucket"):
        assert re.search(rf"\b{needed}\b", queries), needed
    assert "histogram_quantile(0.50" in queries and "histogram_quantile(0.95" in queries


# -- CRDs and the plain install ----------------------------------------------------------------------

def test_chart_crds_are_identical_to_crds():
    source = sorted(p.name for p in (ROOT / "crds").glob("*.yaml"))
    chart = sorted(p.name for p in (CHART / "crds").glob("*.yaml"))
    assert chart == source, "run hack/sync-chart-crds.sh"
    for name in source:
        assert (CHART / "crds" / name).read_bytes() == (ROOT / "crds" / name).read_bytes(), (
            f"helm/braid/crds/{name} differs from crds/{name}; run hack/sync-chart-crds.sh")
    proc = subprocess.run([str(ROOT / "hack" / "sync-chart-crds.sh"), "--check"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


# The fields of apiextensions.k8s.io/v1 JSONSchemaProps (OpenAPI v3.0, not JSON Schema 2020).
SCHEMA_PROPS = {
    "description", "type", "format", "title", "default", "maximum", "exclusiveMaximum", "minimum",
    "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems", "minItems", "uniqueItems", "multipleOf",
    "enum", "maxProperties", "minProperties", "required", "items", "allOf", "oneOf", "anyOf", "not", "properties",
    "additionalProperties", "patternProperties", "dependencies", "additionalItems", "externalDocs", "example",
    "nullable", "x-kubernetes-preserve-unknown-fields", "x-kubernetes-embedded-resource",
    "x-kubernetes-int-or-string", "x-kubernetes-list-map-keys", "x-kubernetes-list-type", "x-kubernetes-map-type",
    "x-kubernetes-validations",
}


def schema_problems(node: dict, path: str) -> list[str]:
    problems = [f"{path}: unknown field {key}" for key in sorted(set(node) - SCHEMA_PROPS)]
    if "type" in node and not isinstance(node["type"], str):
        problems.append(f"{path}.type must be one string, not {node['type']!r}")
    for key in ("exclusiveMinimum", "exclusiveMaximum", "uniqueItems", "nullable"):
        if key in node and not isinstance(node[key], bool):
            problems.append(f"{path}.{key} must be a boolean in apiextensions/v1, not {node[key]!r}")
    for name, sub in node.get("properties", {}).items():
        problems += schema_problems(sub, f"{path}.{name}")
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            problems += schema_problems(node[key], f"{path}.{key}")
    for key in ("allOf", "oneOf", "anyOf"):
        for i, sub in enumerate(node.get(key, [])):
            problems += schema_problems(sub, f"{path}.{key}[{i}]")
    return problems


@pytest.mark.parametrize("name", sorted(p.name for p in (CHART / "crds").glob("*.yaml")))
def test_chart_crds_decode_as_apiextensions_v1(name):
    """helm install decodes the chart's CRDs strictly; one wrong type fails the whole install."""
    crd = yaml.safe_load((CHART / "crds" / name).read_text())
    problems = []
    for version in crd["spec"]["versions"]:
        problems += schema_problems(version["schema"]["openAPIV3Schema"], f"{version['name']}")
    assert not problems, "\n".join(problems)


def test_crds_are_rendered_only_with_include_crds(render):
    assert "CustomResourceDefinition" not in kinds(render())
    crds = [o["metadata"]["name"] for o in render({}, "--include-crds") if o["kind"] == "CustomResourceDefinition"]
    assert sorted(crds) == ["agenttasks.braid.dev", "parallelruns.braid.dev"]


def test_install_yaml_is_rendered_from_the_chart(helm):
    proc = subprocess.run([str(ROOT / "hack" / "render-manifests.sh"), "--check"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"run hack/render-manifests.sh\n{proc.stderr[-4000:]}"


def test_install_yaml_installs_namespace_crds_rbac_and_operator():
    objects = [o for o in yaml.safe_load_all((ROOT / "manifests" / "install.yaml").read_text()) if o]
    assert objects[0] == {
        "apiVersion": "v1", "kind": "Namespace",
        "metadata": {"name": NAMESPACE, "labels": {"app.kubernetes.io/part-of": "braid",
                                                   "pod-security.kubernetes.io/enforce": "restricted"}},
    }
    assert [o["kind"] for o in objects[1:3]] == ["CustomResourceDefinition"] * 2
    assert kinds(objects) == sorted([
        "Namespace", "CustomResourceDefinition", "CustomResourceDefinition", "ServiceAccount", "ClusterRole",
        "ClusterRoleBinding", "Role", "RoleBinding", "Service", "Deployment",
    ])
    deployment = one(objects, "Deployment")
    assert deployment["metadata"]["namespace"] == NAMESPACE
    assert deployment["spec"]["replicas"] == 1 and deployment["spec"]["strategy"]["type"] == "Recreate"


# -- examples ---------------------------------------------------------------------------------------

EXAMPLES = ROOT / "manifests" / "examples"


def example_objects() -> list[dict]:
    return [o for path in sorted(EXAMPLES.glob("*.yaml")) for o in yaml.safe_load_all(path.read_text()) if o]


def test_example_parallel_runs_are_valid_and_cover_both_agent_backends():
    runs = [ParallelRun.from_manifest(o) for o in example_objects() if o["kind"] == "ParallelRun"]
    backends = {run.spec.agent.effective_backend for run in runs}
    assert {"anthropic", "command"} <= backends
    anthropic = next(r for r in runs if r.spec.agent.effective_backend == "anthropic")
    assert anthropic.spec.agent.api_key_secret and anthropic.spec.repo.credentials_secret
    command = next(r for r in runs if r.spec.agent.effective_backend == "command")
    assert command.spec.agent.command and any("claude" in arg for arg in command.spec.agent.command)


def test_example_secrets_have_the_keys_braid_mounts():
    secrets = {o["metadata"]["name"]: o for o in example_objects() if o["kind"] == "Secret"}
    runs = [ParallelRun.from_manifest(o) for o in example_objects() if o["kind"] == "ParallelRun"]
    for run in runs:
        if run.spec.agent.api_key_secret:
            assert set(secrets[run.spec.agent.api_key_secret]["stringData"]) == {"api-key"}
        if run.spec.repo.credentials_secret:
            assert {"username", "password"} <= set(secrets[run.spec.repo.credentials_secret]["stringData"])
    assert any({"ssh-privatekey", "known_hosts"} <= set(s["stringData"]) for s in secrets.values())


def test_agent_pods_get_a_default_deny_network_policy_in_each_watched_namespace(render):
    from braid.kube import labels

    objects = render({"watchNamespaces": ["team-a", "team-b"]})
    policies = [o for o in objects if o["kind"] == "NetworkPolicy"]
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["team-a", "team-b"]
    policy = policies[0]["spec"]
    pod_labels = labels.for_pod("run", "task", 1)
    assert policy["podSelector"]["matchLabels"].items() <= pod_labels.items()
    assert policy["policyTypes"] == ["Ingress", "Egress"] and policy["ingress"] == []
    dns, outside = policy["egress"]
    assert {p["port"] for p in dns["ports"]} == {53}
    block = outside["to"][0]["ipBlock"]
    assert block["cidr"] == "0.0.0.0/0" and "169.254.0.0/16" in block["except"] and "10.0.0.0/8" in block["except"]
    assert {p["port"] for p in outside["ports"]} == {443, 22}
    # every namespace watched: where agents.networkPolicy.namespaces says (the chart cannot know them all)
    assert not [p for p in render() if p["kind"] == "NetworkPolicy"]
    named = render({"agents": {"networkPolicy": {"namespaces": ["x"]}}})
    assert [p["metadata"]["namespace"] for p in named if p["kind"] == "NetworkPolicy"] == ["x"]
    assert not [p for p in render({"agents": {"networkPolicy": {"enabled": False}}}) if p["kind"] == "NetworkPolicy"]
