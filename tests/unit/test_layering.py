"""Deciding code (plan/, kube/, merge/, api/) does no Kubernetes I/O: it imports neither kopf nor kubernetes."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "operator" / "braid"
PURE = ["plan", "kube", "merge", "api"]
FORBIDDEN = {"kopf", "kubernetes"}


def imported_modules(path: Path) -> set[str]:
    """Absolute module names a file imports (relative imports resolved against the package)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if path.name != "__init__.py":
        package = package.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) == "__import__" and node.args:
            if isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
    return found


def braid_module_file(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "braid":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def reachable_files(start: list[Path]) -> set[Path]:
    """Every braid source file reachable by imports from `start`."""
    seen: set[Path] = set()
    todo = list(start)
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for module in imported_modules(path):
            target = braid_module_file(module)
            if target is not None:
                todo.append(target)
                # importing braid.x.y runs braid/x/__init__.py too
                parts = module.split(".")
                for i in range(2, len(parts)):
                    init = PACKAGE.joinpath(*parts[1:i]) / "__init__.py"
                    if init.is_file():
                        todo.append(init)
    return seen


@pytest.mark.parametrize("package", PURE)
def test_pure_package_imports_no_kubernetes_client(package):
    files = sorted((PACKAGE / package).rglob("*.py"))
    assert files, f"{package}/ has no modules"
    offenders = []
    for path in reachable_files(files):
        for module in imported_modules(path):
            if module.split(".")[0] in FORBIDDEN:
                offenders.append(f"{path.relative_to(ROOT)} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_pure_packages_import_without_kopf_or_kubernetes_loaded():
    code = (
        "import sys\n"
        "import braid.api, braid.plan, braid.merge, braid.kube\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('kopf', 'kubernetes'))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"loaded by the pure packages: {proc.stdout.strip()}"


def test_import_linter_contract_holds():
    lint = shutil.which("lint-imports")
    assert lint, "import-linter is part of the [test] extra"
    proc = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Deciding code does no Kubernetes I/O KEPT" in proc.stdout


def test_operator_is_not_an_importable_package():
    # it would shadow the standard library's `operator` module
    assert not (ROOT / "operator" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")
