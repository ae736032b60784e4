"""The anthropic backend's tools: what they do inside a worktree, and that nothing leaves it."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from braid.agents.anthropic import shell
from braid.agents.anthropic.tools import DEFINITIONS, TOOL_NAMES, Toolbox
from gitrepos import make_repo


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory next to the worktree, with a file the tools must never read or change."""
    path = tmp_path / "outside"
    path.mkdir()
    (path / "secret.txt").write_text("outside data\n")
    return path


@pytest.fixture
def root(tmp_path: Path) -> Path:
    repo = make_repo(tmp_path / "repo", {"README.md": "# app\n\nTBD\n", "src/app.py": "def main():\n    return 1\n"})
    return repo.path


@pytest.fixture
def box(root: Path) -> Toolbox:
    env = {"PATH": os.environ["PATH"], "HOME": str(root), "BRAID_TASK": "t"}
    return Toolbox(root, env, threading.Event(), lambda: 60.0)


def snapshot(path: Path) -> dict[str, str]:
    return {str(p.relative_to(path)): p.read_text() for p in sorted(path.rglob("*")) if p.is_file()}


def test_definitions_are_well_formed() -> None:
    assert TOOL_NAMES == ["run_command", "read_file", "write_file", "replace_in_file", "list_files", "grep"]
    for tool in DEFINITIONS:
        assert tool["description"]
        assert tool["input_schema"]["type"] == "object"
        assert set(tool["input_schema"].get("required", [])) <= set(tool["input_schema"]["properties"])


def test_write_then_read_with_line_numbers_and_ranges(box: Toolbox, root: Path) -> None:
    result = box.call("write_file", {"path": "pkg/new/mod.py", "content": "a = 1\nb = 2\nc = 3\n"})
    assert not result.is_error and result.content == "wrote pkg/new/mod.py (18 bytes)"
    assert (root / "pkg/new/mod.py").read_text() == "a = 1\nb = 2\nc = 3\n"

    whole = box.call("read_file", {"path": "pkg/new/mod.py"})
    assert whole.content == "     1\ta = 1\n     2\tb = 2\n     3\tc = 3"
    part = box.call("read_file", {"path": "./pkg/new/mod.py", "start_line": 2, "end_line": 2})
    assert part.content == "     2\tb = 2\n(lines 2-2 of 3)"
    assert box.call("read_file", {"path": "pkg/new/mod.py", "start_line": 9}).is_error
    assert box.call("read_file", {"path": "pkg/new/mod.py", "start_line": 3, "end_line": 1}).is_error


def test_read_file_errors_are_readable(box: Toolbox, root: Path) -> None:
    (root / "blob.bin").write_bytes(b"\x00\x01\x02")
    for args, expected in [
        ({"path": "missing.py"}, "missing.py: no such file"),
        ({"path": "src"}, "src is a directory"),
        ({"path": "blob.bin"}, "binary"),
        ({}, "`path` must be a string"),
    ]:
        result = box.call("read_file", args)
        assert result.is_error and expected in result.content, result


def test_long_file_reads_stop_with_a_marker(box: Toolbox, root: Path) -> None:
    (root / "big.txt").write_text("".join(f"line {i} " + "x" * 100 + "\n" for i in range(1, 2001)))
    result = box.call("read_file", {"path": "big.txt"})
    assert len(result.content) <= shell.OUTPUT_LIMIT
    assert "[... stopped at line" in result.content and "read on with start_line=" in result.content


def test_replace_in_file_needs_exactly_one_match(box: Toolbox, root: Path) -> None:
    ok = box.call("replace_in_file", {"path": "README.md", "old_text": "TBD", "new_text": "Ready"})
    assert not ok.is_error and (root / "README.md").read_text() == "# app\n\nReady\n"

    (root / "twice.txt").write_text("x\nx\n")
    twice = box.call("replace_in_file", {"path": "twice.txt", "old_text": "x", "new_text": "y"})
    assert twice.is_error and "occurs 2 times" in twice.content
    missing = box.call("replace_in_file", {"path": "README.md", "old_text": "nope", "new_text": "y"})
    assert missing.is_error and "not found" in missing.content
    assert (root / "twice.txt").read_text() == "x\nx\n"


def test_list_files_skips_git_and_filters_by_glob(box: Toolbox, root: Path) -> None:
    (root / "src/sub").mkdir()
    (root / "src/sub/test_x.py").write_text("")
    (root / "notes.md").write_text("")
    everything = box.call("list_files", {}).content.splitlines()
    assert everything == ["README.md", "notes.md", "src/app.py", "src/sub/test_x.py"]
    assert box.call("list_files", {"pattern": "*.py"}).content.splitlines() == ["src/app.py", "src/sub/test_x.py"]
    assert box.call("list_files", {"pattern": "**/*.md"}).content.splitlines() == ["README.md", "notes.md"]
    assert box.call("list_files", {"path": "src", "pattern": "sub/test_*.py"}).content == "src/sub/test_x.py"
    assert box.call("list_files", {"pattern": "*.rs"}).content == "no files match"


def test_grep_finds_lines_and_skips_binaries(box: Toolbox, root: Path) -> None:
    (root / "blob.bin").write_bytes(b"\x00def main")
    result = box.call("grep", {"pattern": r"def \w+"})
    assert result.content == "src/app.py:1: def main():"
    assert box.call("grep", {"pattern": "tbd", "ignore_case": True, "glob": "*.md"}).content == "README.md:3: TBD"
    assert box.call("grep", {"pattern": "nothing-here"}).content == "no matches"
    bad = box.call("grep", {"pattern": "("})
    assert bad.is_error and "invalid regular expression" in bad.content


@pytest.mark.parametrize("path", ["../outside/secret.txt", "src/../../outside/secret.txt"])
def test_dotdot_escapes_are_refused(box: Toolbox, root: Path, outside: Path, path: str) -> None:
    before = snapshot(outside)
    for name, args in [
        ("read_file", {"path": path}),
        ("write_file", {"path": path, "content": "pwned"}),
        ("replace_in_file", {"path": path, "old_text": "outside", "new_text": "pwned"}),
        ("list_files", {"path": "../outside"}),
        ("grep", {"pattern": "outside", "path": "../outside"}),
    ]:
        result = box.call(name, args)
        assert result.is_error and result.content.startswith("refused:"), (name, result)
        assert "outside data" not in result.content
    assert snapshot(outside) == before


def test_absolute_paths_are_refused_even_inside(box: Toolbox, root: Path, outside: Path) -> None:
    for path in [str(outside / "secret.txt"), str(root / "README.md"), "/etc/passwd"]:
        result = box.call("read_file", {"path": path})
        assert result.is_error and "absolute paths are not allowed" in result.content
    result = box.call("write_file", {"path": str(outside / "new.txt"), "content": "x"})
    assert result.is_error and not (outside / "new.txt").exists()


def test_symlinks_leading_outside_are_never_followed(box: Toolbox, root: Path, outside: Path) -> None:
    (root / "link-file").symlink_to(outside / "secret.txt")
    (root / "link-dir").symlink_to(outside, target_is_directory=True)
    (root / "dangling").symlink_to(outside / "created-through-link.txt")
    before = snapshot(outside)
    attempts = [
        ("read_file", {"path": "link-file"}),
        ("write_file", {"path": "link-file", "content": "pwned"}),
        ("replace_in_file", {"path": "link-file", "old_text": "outside", "new_text": "pwned"}),
        ("read_file", {"path": "link-dir/secret.txt"}),
        ("write_file", {"path": "link-dir/new.txt", "content": "pwned"}),
        ("write_file", {"path": "dangling", "content": "pwned"}),
        ("list_files", {"path": "link-dir"}),
        ("grep", {"pattern": "outside", "path": "link-dir"}),
    ]
    for name, args in attempts:
        result = box.call(name, args)
        assert result.is_error and "leads outside the repository" in result.content, (name, result)
    assert snapshot(outside) == before
    assert not (outside / "created-through-link.txt").exists()
    # a search of the whole tree passes the links by without reading through them
    assert box.call("grep", {"pattern": "outside data"}).content == "no matches"
    listing = box.call("list_files", {}).content.splitlines()
    assert "link-dir@" in listing and not any(line.startswith("link-dir/") for line in listing)


def test_symlinks_inside_the_worktree_work(box: Toolbox, root: Path) -> None:
    (root / "alias.py").symlink_to(root / "src/app.py")
    assert "def main" in box.call("read_file", {"path": "alias.py"}).content


def test_the_git_directory_is_off_limits(box: Toolbox, root: Path) -> None:
    head = (root / ".git/HEAD").read_text()
    result = box.call("write_file", {"path": ".git/HEAD", "content": "ref: refs/heads/evil\n"})
    assert result.is_error and ".git directory is off limits" in result.content
    assert (root / ".git/HEAD").read_text() == head


def test_unknown_tools_and_bad_input_are_errors(box: Toolbox) -> None:
    assert box.call("delete_everything", {}).is_error
    assert box.call("read_file", "README.md").is_error  # type: ignore[arg-type]
    assert box.call("write_file", {"path": "x", "content": 3}).is_error
    assert box.call("write_file", {"path": "x", "content": "lone \ud800 surrogate"}).is_error


def test_run_command_argv_and_shell_line_run_in_the_worktree(box: Toolbox, root: Path) -> None:
    result = box.call("run_command", {"argv": ["pwd"]})
    assert result.content == f"exit code: 0\n{root.resolve()}\n"
    shell_line = box.call("run_command", {"command": "echo out; echo err >&2; exit 3"})
    assert not shell_line.is_error
    assert shell_line.content.startswith("exit code: 3\n") and "out" in shell_line.content and "err" in shell_line.content
    assert box.call("run_command", {"command": "x", "argv": ["y"]}).is_error
    assert box.call("run_command", {}).is_error
    missing = box.call("run_command", {"argv": ["no-such-program-braid"]})
    assert missing.is_error and "cannot run" in missing.content


def test_run_command_gets_only_the_environment_it_is_given(root: Path) -> None:
    os.environ["BRAID_TEST_LEAK"] = "leaked"
    try:
        box = Toolbox(root, {"PATH": os.environ["PATH"], "ONLY": "this"}, threading.Event(), lambda: 60.0)
        out = box.call("run_command", {"argv": ["env"]}).content
    finally:
        del os.environ["BRAID_TEST_LEAK"]
    assert "ONLY=this" in out and "leaked" not in out


def test_run_command_times_out_and_kills_the_process_group(box: Toolbox, root: Path) -> None:
    result = box.call("run_command", {"command": "echo started; (sleep 30; touch late) & sleep 30", "timeout_seconds": 1})
    assert result.is_error and "timed out after 1s" in result.content and "started" in result.content
    assert not (root / "late").exists()


def test_run_command_timeout_is_capped_by_the_task_time_left(root: Path) -> None:
    box = Toolbox(root, {"PATH": os.environ["PATH"]}, threading.Event(), lambda: 1.5)
    result = box.call("run_command", {"argv": ["sleep", "20"], "timeout_seconds": 600})
    assert result.is_error and "timed out after 1.5s" in result.content
    no_time = Toolbox(root, {"PATH": os.environ["PATH"]}, threading.Event(), lambda: 0.0)
    assert "no time left" in no_time.call("run_command", {"argv": ["true"]}).content


def test_run_command_stops_when_the_task_is_cancelled(root: Path) -> None:
    cancel = threading.Event()
    box = Toolbox(root, {"PATH": os.environ["PATH"]}, cancel, lambda: 60.0)
    threading.Timer(0.3, cancel.set).start()
    result = box.call("run_command", {"argv": ["sleep", "20"]})
    assert result.is_error and "cancelled" in result.content


def test_long_command_output_is_cut_with_a_marker(box: Toolbox) -> None:
    result = box.call("run_command", {"command": "seq 1 200000"})
    assert len(result.content) < shell.OUTPUT_LIMIT + 200
    assert "[... output truncated:" in result.content
    assert result.content.startswith("exit code: 0\n1\n2\n") and result.content.rstrip().endswith("200000")


def test_truncate_keeps_head_and_tail() -> None:
    assert shell.truncate("short", 10) == "short"
    cut = shell.truncate("a" * 50 + "b" * 50, 20)
    assert cut.startswith("a" * 10) and cut.endswith("b" * 10) and "80 characters omitted" in cut


def test_outputs_are_redacted(root: Path) -> None:
    (root / "leak.txt").write_text("token=hunter2\n")
    box = Toolbox(root, {"PATH": os.environ["PATH"]}, threading.Event(), lambda: 60.0,
                  redact=lambda text: text.replace("hunter2", "[REDACTED]"))
    assert box.call("read_file", {"path": "leak.txt"}).content == "     1\ttoken=[REDACTED]"
    assert "hunter2" not in box.call("run_command", {"argv": ["cat", "leak.txt"]}).content
