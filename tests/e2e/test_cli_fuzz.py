"""`braid validate FILE` (and `braid run --local FILE`) on mutations of the demo ParallelRun:
whatever the file holds, the command exits 0 or 2, never with a traceback, and an error is
exactly one line `braid: error: ...`."""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from braid.cli import main

SEED = (Path(__file__).resolve().parents[2] / "operator" / "braid" / "examples" / "demo.yaml").read_bytes()
# the values of `key: value` lines, flow mappings included
VALUES = [m.span(1) for m in re.finditer(rb"(?:^|[{,])\s*(?:- )?[A-Za-z]+: ([^\n,{}]+)", SEED, re.M)]
LINE_STARTS = [0] + [m.end() for m in re.finditer(rb"\n", SEED)]

FRAGMENTS = [
    "- ", ": ", "? ", "{", "}", "[", "]", ",", "&a ", "*a", "&a [x, y]", "*a\n", "<<: *a\n", "<<: {x: 1}\n",
    "!!int ", "!!float ", "!!bool ", "!!binary ", "!!timestamp ", "!!set ", "!!omap ", "!!pairs ", "!!map ",
    "!!python/object:os.system ", "!foo ", "%YAML 1.1\n", "%TAG ! tag:x,2000:\n", "---\n", "...\n", "|\n", ">-\n",
    "'", '"', "#", "\t", "\r", "\r\n", "\\", "\\x00", "\ufeff", "\u2028", "\x85", "null", "~", "2001-13-01",
    "1e400", "0x_", "-.inf", ".nan", "9" * 5000, "kind: ParallelRun\n", "apiVersion: v1\n", "tasks: []\n",
]

positions = st.integers(min_value=0, max_value=1 << 20)
junk = st.one_of(st.binary(max_size=8), st.text(max_size=8).map(str.encode), st.sampled_from(FRAGMENTS).map(str.encode))


def at(data: bytes, pos: int) -> int:
    return pos % (len(data) + 1)


def flip(pos: int, byte: int):
    return lambda d: d if not d else d[: pos % len(d)] + bytes([byte]) + d[pos % len(d) + 1 :]


def insert(pos: int, piece: bytes):
    return lambda d: d[: at(d, pos)] + piece + d[at(d, pos) :]


def insert_at_line(line: int, piece: bytes):
    return lambda d: d[: LINE_STARTS[line % len(LINE_STARTS)]] + piece + d[LINE_STARTS[line % len(LINE_STARTS)] :]


def truncate(pos: int):
    return lambda d: d[: at(d, pos)]


def replace_value(which: int, text: str, raw: bool):
    """One of the seed's field values, as `text` written raw or as a YAML string."""
    start, end = VALUES[which % len(VALUES)]
    piece = text.encode() if raw else yaml.safe_dump(text, width=1 << 20).removesuffix("\n...\n").strip().encode()

    def apply(d: bytes) -> bytes:
        return d[:start] + piece + d[end:] if d[:start] == SEED[:start] else d

    return apply


def nest(which: int, depth: int, mapping: bool):
    start, end = VALUES[which % len(VALUES)]
    before, after = ("{a: " * depth, "}" * depth) if mapping else ("[" * depth, "]" * depth)

    def apply(d: bytes) -> bytes:
        if d[:start] != SEED[:start]:
            return d
        return d[:start] + before.encode() + d[start:end] + after.encode() + d[end:]

    return apply


def alias(which: int, other: int):
    """An anchor on one value and an alias to it in place of another."""
    (s1, e1), (s2, e2) = sorted([VALUES[which % len(VALUES)], VALUES[other % len(VALUES)]])

    def apply(d: bytes) -> bytes:
        if s1 == s2 or d[:s2] != SEED[:s2]:
            return d
        return d[:s1] + b"&v " + d[s1:e1] + d[e1:s2] + b"*v" + d[e2:]

    return apply


def encode(encoding: str):
    return lambda d: d.decode("utf-8", "replace").encode(encoding, "replace")


# a change to one of the seed's values comes first, while the offsets of VALUES still hold
value_changes = st.one_of(
    st.builds(replace_value, positions, st.text(max_size=40), st.booleans()),
    st.builds(nest, positions, st.integers(min_value=1, max_value=200), st.booleans()),
    st.builds(alias, positions, positions),
)
byte_changes = st.one_of(
    st.builds(flip, positions, st.integers(min_value=0, max_value=255)),
    st.builds(insert, positions, junk),
    st.builds(insert_at_line, positions, st.sampled_from(FRAGMENTS).map(str.encode)),
    st.builds(truncate, positions),
    st.builds(encode, st.sampled_from(["utf-16", "utf-16-le", "utf-32", "latin-1", "utf-8-sig"])),
)
files = st.builds(
    lambda first, rest: _apply([*first, *rest]),
    st.lists(value_changes, max_size=1),
    st.lists(byte_changes, max_size=3),
)


def _apply(changes) -> bytes:
    data = SEED
    for change in changes:
        data = change(data)
    return data


def assert_clean(code: int, out: str, err: str) -> None:
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        assert err.startswith("braid: error: "), err
        assert err.endswith("\n") and len(err.splitlines()) == 1, f"not one line: {err!r}"
        assert out == "", out
    else:
        assert err == "", err
        assert "is valid" in out, out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


FUZZ = settings(database=None, derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings(FUZZ, max_examples=400)
@given(data=files)
def test_validate_in_process_exits_0_or_2_with_one_line(workdir, data):
    path = workdir / "run.yaml"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    assert_clean(code, out.getvalue(), err.getvalue())


def braid(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HOME": str(cwd), "GIT_ALLOW_PROTOCOL": "file"}
    return subprocess.run([sys.executable, "-m", "braid", *args], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=60)


@settings(FUZZ, max_examples=40)
@given(data=files)
def test_validate_command_exits_0_or_2_with_one_line(workdir, data):
    path = workdir / "run.yaml"
    path.write_bytes(data)
    proc = braid("validate", str(path), cwd=workdir)
    assert_clean(proc.returncode, proc.stdout, proc.stderr)


@settings(FUZZ, max_examples=15)
@given(data=files)
def test_run_local_refuses_with_one_line(workdir, data):
    # the demo's repo.url ./repo is not there: every file is refused, the well-formed ones by preflight
    path = workdir / "run.yaml"
    path.write_bytes(data)
    proc = braid("run", "--local", "--state-dir", str(workdir / "state"), "--cache-dir", str(workdir / "cache"),
                 str(path), cwd=workdir)
    assert "Traceback" not in proc.stderr, proc.stderr
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    assert proc.stderr.startswith("braid: error: ") and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stdout == ""


def test_the_seed_is_valid(workdir):
    assert_clean(*_validate(workdir, SEED))
    assert len(VALUES) > 30


def _validate(workdir: Path, data: bytes) -> tuple[int, str, str]:
    path = workdir / "seed.yaml"
    path.write_bytes(data)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["validate", str(path)])
    return code, out.getvalue(), err.getvalue()
