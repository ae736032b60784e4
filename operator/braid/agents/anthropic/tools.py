"""The tools the model may call, and running them inside the worktree.

Every path goes through resolve_inside: `..`, absolute paths, symlinks that lead
outside and the .git directory are refused with an error result the model can
read; nothing outside the worktree is ever read or written by a file tool.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from braid.confine import Placement, Sandbox

from ..paths import OutsideWorktree, resolve_inside
from . import shell

DEFAULT_COMMAND_TIMEOUT = 120
MAX_COMMAND_TIMEOUT = 1800
MAX_FILE_BYTES = 10 * 1024 * 1024
MAX_LIST_ENTRIES = 1000
MAX_GREP_MATCHES = 200
MAX_GREP_LINE = 300

_PATH = {"type": "string", "description": "Path relative to the repository root."}

DEFINITIONS: list[dict[str, Any]] = [
    {
        "name": "run_command",
        "description": (
            "Run a command in the repository root and return its exit code and combined stdout/stderr. "
            "Give either `command` (a shell line, run with bash or sh) or `argv` (a program and its "
            "arguments, run without a shell). There is no network and no terminal; stdin is empty. "
            "Processes it leaves in the background are stopped when it ends. Long output is cut in the middle."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "command": {"type": "string", "description": "A shell command line."},
                "argv": {"type": "array", "items": {"type": "string"}, "description": "Program and arguments."},
                "timeout_seconds": {
                    "type": "integer",
                    "description": f"Kill the command after this many seconds (default {DEFAULT_COMMAND_TIMEOUT}, "
                    f"at most {MAX_COMMAND_TIMEOUT}).",
                },
            },
        },
    },
    {
        "name": "read_file",
        "description": "Read a text file, with line numbers. Optionally only lines start_line..end_line (1-based, inclusive).",
        "input_schema": {
            "type": "object",
            "properties": {
                "path": _PATH,
                "start_line": {"type": "integer", "description": "First line to show (default 1)."},
                "end_line": {"type": "integer", "description": "Last line to show (default: the end)."},
            },
            "required": ["path"],
        },
    },
    {
        "name": "write_file",
        "description": "Create or overwrite a file with the given content; missing parent directories are created.",
        "input_schema": {
            "type": "object",
            "properties": {"path": _PATH, "content": {"type": "string"}},
            "required": ["path", "content"],
        },
    },
    {
        "name": "replace_in_file",
        "description": (
            "Replace one exact occurrence of old_text with new_text in a file. old_text must occur exactly "
            "once (include surrounding lines to make it unique); whitespace must match exactly. "
            "Give the text without the line numbers read_file shows."
        ),
        "input_schema": {
            "type": "object",
            "properties": {"path": _PATH, "old_text": {"type": "string"}, "new_text": {"type": "string"}},
            "required": ["path", "old_text", "new_text"],
        },
    },
    {
        "name": "list_files",
        "description": (
            "List files under a directory (default: the whole repository), recursively, skipping .git. "
            "`pattern` filters them: a glob on the file name (e.g. *.py) or, when it contains '/', on the "
            "path relative to `path` (e.g. src/*/test_*.py, **/*.md)."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "path": {"type": "string", "description": "Directory relative to the repository root (default '.')."},
                "pattern": {"type": "string", "description": "Glob the listed files must match."},
            },
        },
    },
    {
        "name": "grep",
        "description": (
            "Search file contents for a regular expression (Python syntax). Returns path:line: text for each "
            "matching line. Binary files and .git are skipped."
        ),
        "input_schema": {
            "type": "object",
            "properties": {
                "pattern": {"type": "string", "description": "Regular expression."},
                "path": {"type": "string", "description": "File or directory to search (default '.')."},
                "glob": {"type": "string", "description": "Only files matching this glob (as in list_files)."},
                "ignore_case": {"type": "boolean"},
            },
            "required": ["pattern"],
        },
    },
]

TOOL_NAMES = [d["name"] for d in DEFINITIONS]


@dataclass
class ToolResult:
    content: str
    is_error: bool = False


class ToolError(Exception):
    """A problem the model should read and fix (bad input, missing file, ...)."""


class Toolbox:
    """Runs tool calls for one task, confined to `root`."""

    def __init__(
        self,
        root: Path,
        env: dict[str, str],
        cancel: threading.Event,
        time_left: Callable[[], float],
        redact: Callable[[str], str] = lambda text: text,
        sandbox: Sandbox | None = None,
        placement: Placement | None = None,
    ):
        self.root = root.resolve()
        self.env = env
        self.cancel = cancel
        self.time_left = time_left
        self.redact = redact
        self.sandbox = sandbox
        self.placement = placement or Placement()
        self._handlers: dict[str, Callable[[dict[str, Any]], str]] = {
            "run_command": self._run_command,
            "read_file": self._read_file,
            "write_file": self._write_file,
            "replace_in_file": self._replace_in_file,
            "list_files": self._list_files,
            "grep": self._grep,
        }

    def call(self, name: str, args: Any) -> ToolResult:
        handler = self._handlers.get(name)
        if handler is None:
            return ToolResult(f"unknown tool {name!r}; the tools are: {', '.join(TOOL_NAMES)}", True)
        if not isinstance(args, dict):
            return ToolResult(f"{name}: the input must be a JSON object", True)
        try:
            return ToolResult(self.redact(shell.truncate(handler(args))))
        except OutsideWorktree as exc:
            return ToolResult(f"refused: {exc}", True)
        except ToolError as exc:
            return ToolResult(self.redact(f"{name}: {exc}"), True)
        except OSError as exc:
            return ToolResult(self.redact(f"{name}: {exc.strerror or exc}"), True)
        except UnicodeError as exc:  # e.g. a lone surrogate in content to write
            return ToolResult(f"{name}: {exc}", True)

    # -- helpers ----------------------------------------------------------------------------

    def _path(self, path: Any) -> Path:
        if not isinstance(path, str):
            raise ToolError("`path` must be a string")
        return resolve_inside(self.root, path)

    def _rel(self, path: Path) -> str:
        rel = path.relative_to(self.root).as_posix()
        return rel or "."

    def _text_of(self, path: Path, shown: str) -> str:
        if path.is_dir():
            raise ToolError(f"{shown} is a directory; use list_files")
        if not path.exists():
            raise ToolError(f"{shown}: no such file")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ToolError(f"{shown} is too large ({size} bytes); use grep, or run_command with head/sed")
        data = path.read_bytes()
        if b"\0" in data[:8192]:
            raise ToolError(f"{shown} looks like a binary file")
        return data.decode(errors="replace")

    def _walk(self, base: Path) -> Iterator[Path]:
        """Files under `base` in a stable order; symlinked directories are not entered, .git is skipped."""
        if not base.is_dir():
            yield base
            return
        for top, dirs, files in os.walk(base, followlinks=False):
            dirs[:] = sorted(d for d in dirs if d != ".git")
            top_path = Path(top)
            # a symlink to a directory is listed, not entered
            for name in sorted(files + [d for d in dirs if (top_path / d).is_symlink()]):
                yield top_path / name

    # -- the tools --------------------------------------------------------------------------

    def _run_command(self, args: dict[str, Any]) -> str:
        command, argv = args.get("command"), args.get("argv")
        if (command is None) == (argv is None):
            raise ToolError("give exactly one of `command` (a shell line) or `argv` (a list of strings)")
        if command is not None:
            if not isinstance(command, str) or not command.strip():
                raise ToolError("`command` must be a non-empty string")
            argv = [shutil.which("bash", path=self.env.get("PATH")) or "/bin/sh", "-c", command]
        elif not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise ToolError("`argv` must be a non-empty list of strings")
        requested = args.get("timeout_seconds", DEFAULT_COMMAND_TIMEOUT)
        if not isinstance(requested, int | float) or requested <= 0:
            raise ToolError("`timeout_seconds` must be a positive number")
        left = self.time_left()
        if left <= 1:
            raise ToolError("the task has no time left to run commands")
        timeout = min(float(requested), MAX_COMMAND_TIMEOUT, left)
        try:
            env = self.env
            if self.sandbox is not None:
                argv, env = self.sandbox.wrap(argv, self.env), {"PATH": self.env.get("PATH", "/usr/bin:/bin")}
            done = shell.run(argv, self.root, env, timeout, self.cancel, self.placement.preexec())
        except OSError as exc:
            raise ToolError(f"cannot run {argv[0]!r}: {exc.strerror}") from None
        if done.stopped == "timeout":
            raise ToolError(f"timed out after {timeout:g}s and was killed; output so far:\n{done.output}")
        if done.stopped == "cancelled":
            raise ToolError("stopped: the task is being cancelled")
        code = f"{done.exit_code}"
        if done.exit_code in (-9, 137) and self.placement.preexec() is not None:
            code += " (killed by SIGKILL: perhaps the task's memory limit was reached)"
        return f"exit code: {code}\n{done.output}" if done.output else f"exit code: {code}"

    def _read_file(self, args: dict[str, Any]) -> str:
        path = self._path(args.get("path"))
        shown = self._rel(path)
        lines = self._text_of(path, shown).splitlines()
        if not lines:
            return f"({shown} is empty)"
        start, end = args.get("start_line", 1), args.get("end_line", len(lines))
        if not isinstance(start, int) or not isinstance(end, int) or start < 1 or end < start:
            raise ToolError("start_line and end_line must be line numbers, 1 <= start_line <= end_line")
        if start > len(lines):
            raise ToolError(f"{shown} has only {len(lines)} lines")
        end = min(end, len(lines))
        out: list[str] = []
        size = 0
        for number in range(start, end + 1):
            line = f"{number:>6}\t{lines[number - 1]}"
            if size + len(line) > shell.OUTPUT_LIMIT - 200:
                out.append(f"[... stopped at line {number - 1} of {len(lines)}; read on with start_line={number} ...]")
                break
            out.append(line)
            size += len(line) + 1
        else:
            if start > 1 or end < len(lines):
                out.append(f"(lines {start}-{end} of {len(lines)})")
        return "\n".join(out)

    def _write_file(self, args: dict[str, Any]) -> str:
        path = self._path(args.get("path"))
        content = args.get("content")
        if not isinstance(content, str):
            raise ToolError("`content` must be a string")
        if path == self.root or path.is_dir():
            raise ToolError(f"{self._rel(path)} is a directory")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, newline="")
        return f"wrote {self._rel(path)} ({len(content.encode())} bytes)"

    def _replace_in_file(self, args: dict[str, Any]) -> str:
        path = self._path(args.get("path"))
        old, new = args.get("old_text"), args.get("new_text")
        if not isinstance(old, str) or not isinstance(new, str):
            raise ToolError("`old_text` and `new_text` must be strings")
        if not old:
            raise ToolError("`old_text` must not be empty; use write_file to create a file")
        shown = self._rel(path)
        text = self._text_of(path, shown)
        count = text.count(old)
        if count == 0:
            raise ToolError(f"old_text was not found in {shown} (it must match exactly, whitespace included)")
        if count > 1:
            raise ToolError(f"old_text occurs {count} times in {shown}; include more surrounding text to make it unique")
        path.write_text(text.replace(old, new, 1), newline="")
        return f"replaced 1 occurrence in {shown}"

    def _list_files(self, args: dict[str, Any]) -> str:
        base = self._path(args.get("path", "."))
        pattern = args.get("pattern")
        if pattern is not None and not isinstance(pattern, str):
            raise ToolError("`pattern` must be a string")
        if not base.exists():
            raise ToolError(f"{self._rel(base)}: no such file or directory")
        out: list[str] = []
        for path in self._walk(base):
            if pattern and not _glob_match(path, base, pattern):
                continue
            if len(out) == MAX_LIST_ENTRIES:
                out.append(f"[... more than {MAX_LIST_ENTRIES} entries; narrow `path` or `pattern` ...]")
                break
            out.append(self._rel(path) + ("@" if path.is_symlink() else ""))
        return "\n".join(out) if out else "no files match"

    def _grep(self, args: dict[str, Any]) -> str:
        pattern, glob = args.get("pattern"), args.get("glob")
        if not isinstance(pattern, str) or not pattern:
            raise ToolError("`pattern` must be a non-empty string")
        if glob is not None and not isinstance(glob, str):
            raise ToolError("`glob` must be a string")
        try:
            regex = re.compile(pattern, re.IGNORECASE if args.get("ignore_case") else 0)
        except re.error as exc:
            raise ToolError(f"invalid regular expression: {exc}") from None
        base = self._path(args.get("path", "."))
        if not base.exists():
            raise ToolError(f"{self._rel(base)}: no such file or directory")
        out: list[str] = []
        for path in self._walk(base):
            if glob and not _glob_match(path, base, glob):
                continue
            try:
                # a symlink may point outside the worktree: such files are not read
                target = resolve_inside(self.root, path.relative_to(self.root).as_posix())
                if not target.is_file() or target.stat().st_size > MAX_FILE_BYTES:
                    continue
                data = target.read_bytes()
            except (OutsideWorktree, OSError):
                continue
            if b"\0" in data[:8192]:
                continue
            for number, line in enumerate(data.decode(errors="replace").splitlines(), 1):
                if regex.search(line):
                    if len(out) == MAX_GREP_MATCHES:
                        out.append(f"[... more than {MAX_GREP_MATCHES} matches; narrow the pattern, path or glob ...]")
                        return "\n".join(out)
                    out.append(f"{self._rel(path)}:{number}: {line[:MAX_GREP_LINE]}")
        return "\n".join(out) if out else "no matches"


def _glob_match(path: Path, base: Path, pattern: str) -> bool:
    if "/" not in pattern:
        return fnmatchcase(path.name, pattern)
    rel = path.relative_to(base).as_posix() if path != base else path.name
    if fnmatchcase(rel, pattern):
        return True
    # "**/x" also matches x at the top
    return pattern.startswith("**/") and fnmatchcase(rel, pattern[3:])
