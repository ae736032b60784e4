"""What reaches a terminal from agents and repositories is shown, never obeyed."""

from braid.text import printable


def test_escape_sequences_and_controls_are_shown_escaped() -> None:
    assert printable("\x1b]0;title\x07\x1b[2Kok\r") == "\\x1b]0;title\\x07\\x1b[2Kok\\x0d"
    assert printable("a\x00b\x7f\x9b") == "a\\x00b\\x7f\\x9b"


def test_text_newlines_and_unicode_stay() -> None:
    assert printable("line 1\n\tline 2 ✓ é") == "line 1\n\tline 2 ✓ é"
    assert printable("one\ntwo", newlines=False) == "one\\ntwo"
