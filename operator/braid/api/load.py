"""Reading a ParallelRun file, with bounds on what a file may make braid do.

A file is at most MAX_BYTES of UTF-8 (an optional byte order mark allowed) holding YAML
nested at most MAX_DEPTH collections deep, with at most MAX_NODES values and no anchors
or aliases. Anything else is refused with an InvalidSpec naming the file and the line
or byte offset, before it can exhaust memory, time or the stack.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from .errors import InvalidSpec, format_validation_error

# A Kubernetes object is at most ~1.5 MiB in etcd; a ParallelRun file is far smaller.
MAX_BYTES = 1 << 20
MAX_BYTES_TEXT = "1 MiB"
# Collections (mappings and lists) inside each other; the demo's deepest value is 8 deep.
MAX_DEPTH = 64
# Values (mappings, lists and scalars, keys included) over all documents of the file: the
# demo has 239, 200 tasks (the most a run may have) of 50 values each make 10000. PyYAML
# reads about 20000 values a second, so this also bounds the time a file takes to read.
MAX_NODES = 50_000

_BOM = b"\xef\xbb\xbf"
_UTF16_32_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
# What YAML 1.1 (PyYAML's reader) accepts: tab, line breaks and printable characters.
_NOT_YAML_CHAR = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class _Refused(yaml.MarkedYAMLError):
    """Well-formed YAML that braid will not read: aliases, anchors, too deep or too large."""

    def __init__(self, problem: str, mark: yaml.Mark) -> None:
        super().__init__(problem=problem, problem_mark=mark)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader that refuses anchors and aliases and bounds depth and size."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = self.peek_event()
        if event.anchor is not None:
            # an alias repeats a value without its bytes: a few hundred bytes can stand for billions
            kind, sign = ("aliases", "*") if isinstance(event, yaml.AliasEvent) else ("anchors", "&")
            raise _Refused(f"YAML {kind} ({sign}{event.anchor}) are not supported; write the value out",
                           event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} values", event.start_mark)
        nested = isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent))
        self._depth += nested
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= nested

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except yaml.YAMLError:
            raise
        except Exception:
            # PyYAML's own constructors raise ValueError, KeyError, ... on values such as 2001-13-01
            # (read as a date), `!!int x` or an integer of more digits than Python converts
            value = node.value if isinstance(node.value, str) else ""
            shown = repr(value if len(value) <= 40 else value[:40] + "...")
            kind = str(node.tag).rsplit(":", 1)[-1]
            raise _Refused(f"{shown} is not a valid {kind} (quote it to make it a string)",
                           node.start_mark) from None


def _line_at(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _read_text(path: Path) -> str:
    """The file's text: at most MAX_BYTES of UTF-8 holding only characters YAML allows."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_BYTES + 1)  # /dev/zero or a huge file is not read to the end
    except (OSError, ValueError) as exc:
        raise InvalidSpec(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    if len(data) > MAX_BYTES:
        raise InvalidSpec(f"{path}: larger than {MAX_BYTES_TEXT}, the most a ParallelRun file may be")
    start = len(_BOM) if data.startswith(_BOM) else 0
    try:
        text = data[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        at = start + exc.start
        hint = " (a UTF-16 or UTF-32 byte order mark)" if data.startswith(_UTF16_32_BOMS) else ""
        raise InvalidSpec(f"{path}: not UTF-8 at byte {at} (line {_line_at(data, at)}): "
                          f"byte 0x{data[at]:02x}{hint}; save the file as UTF-8") from None
    bad = _NOT_YAML_CHAR.search(text)
    if bad:
        at = start + len(text[: bad.start()].encode("utf-8"))
        char = bad.group()
        hint = "; a NUL byte: is the file UTF-16 or binary? braid reads UTF-8" if char == "\0" else ""
        raise InvalidSpec(f"{path}: not valid YAML at line {_line_at(data, at)}: character U+{ord(char):04X} "
                          f"at byte {at} is not allowed{hint}")
    return text


def load_parallelrun(path: str | Path):
    """Read a ParallelRun YAML file; raise InvalidSpec with a one-line message when it is not one."""
    from .parallelrun import ParallelRun

    path = Path(path)
    text = _read_text(path)
    try:
        docs = [d for d in yaml.load_all(text, Loader=_BoundedLoader) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        if isinstance(exc, _Refused):
            raise InvalidSpec(f"{path}: line {mark.line + 1}: {problem}") from None
        raise InvalidSpec(f"{path}: not valid YAML{where}: {problem}") from None
    runs = [d for d in docs if isinstance(d, dict) and d.get("kind") == "ParallelRun"]
    if len(runs) != 1:
        raise InvalidSpec(f"{path}: expected exactly one document of kind ParallelRun, found {len(runs)}")
    try:
        return ParallelRun.model_validate(runs[0])
    except ValidationError as exc:
        raise InvalidSpec(format_validation_error(exc)) from None
