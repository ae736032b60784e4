"""Every install is the locked one: uv.lock matches pyproject.toml, the images' requirement
lists are exported from it, and this environment runs exactly the locked versions."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import tomllib
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
EXPORTS = {
    "requirements/runtime.txt": ["--no-dev", "--no-emit-project"],
    "requirements/build.txt": ["--only-group", "build", "--no-emit-project"],
}


@pytest.fixture(scope="module")
def uv() -> str:
    proc = subprocess.run([str(ROOT / "hack" / "uv.sh")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def run_uv(uv: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    return subprocess.run([uv, *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def locked() -> dict[str, str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {canonicalize_name(p["name"]): p["version"] for p in lock["package"] if p["name"] != "braid"}


def pins(text: str) -> list[str]:
    """The `name==version` lines of a requirements file, without uv's header comment."""
    return [line.split()[0] for line in text.splitlines() if re.match(r"^[A-Za-z0-9]", line)]


def test_lock_matches_pyproject(uv: str) -> None:
    proc = run_uv(uv, "lock", "--check")
    assert proc.returncode == 0, f"uv.lock is stale; run `make lock`:\n{proc.stderr}"


@pytest.mark.parametrize("path", sorted(EXPORTS))
def test_image_requirements_are_exported_from_the_lock(uv: str, path: str) -> None:
    proc = run_uv(uv, "export", "--frozen", "--format", "requirements-txt", *EXPORTS[path])
    assert proc.returncode == 0, proc.stderr
    committed = (ROOT / path).read_text()
    assert pins(committed) == pins(proc.stdout), f"{path} is stale; run `make requirements`"
    assert committed.split("\n", 2)[2] == proc.stdout.split("\n", 2)[2], f"{path}: hashes differ from uv.lock"
    assert "--hash=sha256:" in committed


def test_every_image_requirement_is_pinned_with_hashes() -> None:
    for path in EXPORTS:
        blocks = re.split(r"\n(?=[A-Za-z0-9])", (ROOT / path).read_text())
        for block in blocks[1:]:
            name = block.split()[0]
            assert "==" in name and "--hash=sha256:" in block, f"{path}: {name} is not pinned with a hash"


def test_this_environment_runs_the_locked_versions() -> None:
    want = locked()
    installed = {canonicalize_name(d.metadata["Name"]): d.version for d in importlib.metadata.distributions()}
    # What the lock lists for other platforms or Pythons is absent here; what is here must match.
    wrong = {name: (version, want[name]) for name, version in installed.items()
             if name in want and version != want[name]}
    assert not wrong, f"installed (version, locked): {wrong}"
    for name in ("anthropic", "kopf", "kubernetes", "pydantic", "gitpython", "pytest"):
        assert name in installed, f"{name} is locked but not installed"


def test_the_images_install_only_the_exported_lists() -> None:
    for dockerfile in sorted((ROOT / "images").glob("*/Dockerfile")):
        text = dockerfile.read_text()
        installs = re.findall(r"pip install[^\n]*", text)
        assert installs, dockerfile
        for line in installs:
            # a requirements file is hash-checked; a wheel path is braid's own, built locally
            assert ("--require-hashes" in line and "-r /src/requirements/" in line) or (
                "--no-deps /tmp/wheel/" in line), f"{dockerfile.relative_to(ROOT)}: unlocked install: {line}"
