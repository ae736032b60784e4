"""Fixtures every end-to-end test of `braid run --local` shares."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from localrun import Workspace


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """A temp area with its own cache and state directories."""
    return Workspace(tmp_path)


@pytest.fixture(scope="module")
def gitea(tmp_path_factory: pytest.TempPathFactory):
    """A real Gitea server (hack/gitea.sh builds it once per machine); the test fails when it cannot be had."""
    from forge_gitea import Gitea, gitea_binary

    server = Gitea(gitea_binary(), tmp_path_factory.mktemp("gitea")).start()
    try:
        yield server
    finally:
        server.stop()
