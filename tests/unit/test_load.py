"""Reading a ParallelRun file is bounded: bad bytes, deep nesting, aliases and huge files
give one-line errors naming the line or byte offset, never a crash or a hang."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from braid.api import InvalidSpec, load_parallelrun

DEMO = (Path(__file__).resolve().parents[2] / "operator" / "braid" / "examples" / "demo.yaml").read_bytes()
PROMPT = b"Add a users table."
PROMPT_AT = DEMO.index(PROMPT)
PROMPT_LINE = DEMO[:PROMPT_AT].count(b"\n") + 1


def error_of(path: Path) -> str:
    with pytest.raises(InvalidSpec) as info:
        load_parallelrun(path)
    message = str(info.value)
    assert "\n" not in message, f"error is not one line: {message!r}"
    assert "Traceback" not in message and "<unicode string>" not in message, message
    return message


def write(tmp_path: Path, data: bytes | str) -> Path:
    path = tmp_path / "run.yaml"
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


def test_the_demo_loads(tmp_path):
    assert load_parallelrun(write(tmp_path, DEMO)).name == "demo"


def test_a_utf8_byte_order_mark_is_accepted(tmp_path):
    assert load_parallelrun(write(tmp_path, b"\xef\xbb\xbf" + DEMO)).name == "demo"


# -- encodings and characters ----------------------------------------------------------------------


def test_utf16_with_byte_order_mark_is_refused_at_byte_0(tmp_path):
    path = write(tmp_path, DEMO.decode().encode("utf-16"))
    message = error_of(path)
    assert message.startswith(f"{path}: not UTF-8 at byte 0 (line 1)"), message
    assert "byte order mark" in message


def test_utf16_without_byte_order_mark_is_refused_at_its_first_nul_byte(tmp_path):
    message = error_of(write(tmp_path, DEMO.decode().encode("utf-16-le")))
    assert "character U+0000 at byte 1 is not allowed" in message and "UTF-16" in message, message


def test_a_latin1_byte_is_refused_naming_its_offset_and_line(tmp_path):
    data = DEMO.replace(PROMPT, "Add a café table.".encode("latin-1"))
    at = PROMPT_AT + len("Add a caf")
    message = error_of(write(tmp_path, data))
    assert f"not UTF-8 at byte {at} (line {PROMPT_LINE}): byte 0xe9" in message, message


def test_a_nul_byte_is_refused_naming_its_line_and_offset(tmp_path):
    data = DEMO.replace(PROMPT, b"Add a\x00users table.")
    message = error_of(write(tmp_path, data))
    assert f"at line {PROMPT_LINE}: character U+0000 at byte {PROMPT_AT + 5} is not allowed" in message, message


def test_an_escape_character_is_refused_naming_its_line(tmp_path):
    data = DEMO.replace(PROMPT, b"Add a\x1b[2Jusers table.")
    message = error_of(write(tmp_path, data))
    assert f"at line {PROMPT_LINE}: character U+001B at byte {PROMPT_AT + 5} is not allowed" in message, message


# -- structure -------------------------------------------------------------------------------------


def test_lists_nested_10000_deep_are_refused_naming_the_line(tmp_path):
    message = error_of(write(tmp_path, "kind: ParallelRun\nspec: " + "[" * 10000 + "]" * 10000 + "\n"))
    assert message.endswith(": line 2: nested deeper than 64 levels"), message


def test_mappings_nested_10000_deep_are_refused(tmp_path):
    message = error_of(write(tmp_path, "metadata: " + "{a: " * 10000 + "1" + "}" * 10000 + "\n"))
    assert "nested deeper than 64 levels" in message, message


def test_nesting_64_deep_is_read(tmp_path):
    # the top-level mapping is the first level
    message = error_of(write(tmp_path, "kind: ConfigMap\ndata: " + "[" * 63 + "]" * 63 + "\n"))
    assert "found 0" in message, message


def test_an_alias_bomb_is_refused_at_once(tmp_path):
    lines = ["apiVersion: braid.dev/v1alpha1", "kind: ParallelRun", "metadata:", "  name: x", "  lol:",
             "    a: &a [" + ",".join(['"lol"'] * 9) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"    {name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines += ["spec:", "  repo: {url: ./repo}", "  tasks: [{name: a, prompt: b}]"]
    path = write(tmp_path, "\n".join(lines) + "\n")
    started = time.monotonic()
    message = error_of(path)
    assert time.monotonic() - started < 2
    assert message.endswith(": line 6: YAML anchors (&a) are not supported; write the value out"), message


def test_an_alias_is_refused_naming_its_line(tmp_path):
    # an undefined alias, so the anchor check cannot be what refuses it
    message = error_of(write(tmp_path, DEMO.replace(b"baseRef: main", b"baseRef: *main")))
    line = DEMO[: DEMO.index(b"baseRef")].count(b"\n") + 1
    assert f": line {line}: YAML aliases (*main) are not supported" in message, message


def test_more_than_50000_values_are_refused(tmp_path):
    message = error_of(write(tmp_path, "[" + "0," * 50_000 + "0]\n"))
    assert message.endswith(": line 1: more than 50000 values"), message


@pytest.mark.parametrize(("value", "kind"), [("2001-13-01", "timestamp"), ("!!int abc", "int"),
                                             ("1" * 5000, "int"), ("!!bool maybe", "bool")])
def test_a_value_pyyaml_cannot_convert_is_refused_naming_its_line(tmp_path, value, kind):
    message = error_of(write(tmp_path, DEMO.replace(b"baseRef: main", f"baseRef: {value}".encode())))
    line = DEMO[: DEMO.index(b"baseRef")].count(b"\n") + 1
    assert f": line {line}: " in message and f"is not a valid {kind}" in message, message


# -- what the file is -----------------------------------------------------------------------------


def test_a_file_over_1_mib_is_refused(tmp_path):
    padding = b"#" * ((1 << 20) - len(DEMO) - 1) + b"\n"
    assert load_parallelrun(write(tmp_path, DEMO + padding)).name == "demo"  # exactly 1 MiB
    message = error_of(write(tmp_path, DEMO + b" " + padding))
    assert message.endswith("run.yaml: larger than 1 MiB, the most a ParallelRun file may be"), message


@pytest.mark.timeout(30)
def test_dev_zero_is_refused_without_reading_it_all():
    assert error_of(Path("/dev/zero")) == "/dev/zero: larger than 1 MiB, the most a ParallelRun file may be"


def test_a_directory_is_refused(tmp_path):
    assert error_of(tmp_path) == f"{tmp_path}: cannot read: Is a directory"
