"""The layering holds: import-linter's contracts (pyproject.toml), and what importing deciding code loads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def lint_imports() -> str:
    """`lint-imports` of this interpreter's environment, also when its bin/ is not on PATH."""
    beside = Path(sys.executable).parent / "lint-imports"
    found = str(beside) if beside.exists() else shutil.which("lint-imports")
    assert found, "import-linter is part of the [test] extra"
    return found


def test_import_linter_contracts_hold() -> None:
    proc = subprocess.run([lint_imports()], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Layers: launchers, workers, builders, the pure engine, the API KEPT" in proc.stdout
    assert "Deciding code does no I/O KEPT" in proc.stdout


@pytest.mark.parametrize("module", ["braid.plan", "braid.kube", "braid.api", "braid.controller.decide"])
def test_importing_deciding_code_loads_no_io(module: str) -> None:
    code = (
        "import sys\n"
        f"import {module}\n"
        "io = ('kopf', 'kubernetes', 'git', 'aiohttp', 'anthropic')\n"
        "ours = ('braid.gitops', 'braid.runner', 'braid.agents', 'braid.merge', 'braid.local')\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in io or m.startswith(ours))\n"
        "print(','.join(bad))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"importing {module} loads: {proc.stdout.strip()}"


def test_operator_is_not_an_importable_package() -> None:
    # it would shadow the standard library's `operator` module
    assert not (ROOT / "operator" / "__init__.py").exists()
    import operator

    assert hasattr(operator, "itemgetter")
