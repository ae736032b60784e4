"""The lock on a local run's state directory: who holds it, and a directory moved away under it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from braid.local import RunLocked
from braid.local.lock import state_lock


def test_a_second_holder_is_refused_with_who_holds_it(tmp_path: Path) -> None:
    state = tmp_path / "run"
    with state_lock(state, "braid clean"):
        with pytest.raises(RunLocked) as refused, state_lock(state):
            pass
        assert (refused.value.pid, refused.value.holder) == (str(os.getpid()), "braid clean")
        assert f"another `braid clean` (pid {os.getpid()}) is using {state}" in str(refused.value)
    with state_lock(state):  # released
        pass


def test_a_lock_file_from_before_the_holder_was_recorded_names_braid_run(tmp_path: Path) -> None:
    state = tmp_path / "run"
    with state_lock(state):
        (state / "lock").write_text("12345\n")
        with pytest.raises(RunLocked, match=r"another `braid run` \(pid 12345\)"), state_lock(state):
            pass


def test_a_state_dir_moved_away_under_its_lock_is_free_at_its_old_path(tmp_path: Path) -> None:
    state = tmp_path / "run"
    with state_lock(state, "braid clean"):
        state.rename(tmp_path / ".run.removing-1")  # what `braid clean --purge` does
        with state_lock(state):
            assert (state / "lock").read_text().split()[1:] == ["braid", "run"]
