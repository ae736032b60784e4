"""Text from agents, repositories and results, made safe to print on a terminal."""

from __future__ import annotations

import re

# C0 controls but newline and tab, DEL, C1 controls: an escape sequence starts with one of
# these, so showing them escaped keeps agent output from moving the cursor, rewriting
# lines, setting the window title or faking braid's own output.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: str, *, newlines: bool = True) -> str:
    """`text` with every control character shown as an escape (`\\x1b`), newlines kept if asked."""
    out = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
    return out if newlines else out.replace("\n", "\\n")
