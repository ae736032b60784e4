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
