"""Refuse to push work that carries a secret braid holds: plain, reversed, hex or base64."""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .git import Repo

MIN_SECRET = 8
"""Shorter values (a test password such as "x") would match by chance; they are not looked for."""


def _forms(value: bytes) -> set[bytes]:
    """What a copy of `value` looks like after the usual ways of disguising it."""
    forms = {value, value[::-1], value.hex().encode(), value.hex().upper().encode()}
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        for pad in range(3):
            # base64 of the value at each of the three alignments it can start at in a longer text;
            # the characters touched by the neighbours are dropped
            data = b"\0" * pad + value
            text = encode(data)
            core = text[4 if pad else 0: (len(data) // 3) * 4]
            if len(core) >= MIN_SECRET:
                forms.add(core)
    return {f for f in forms if len(f) >= MIN_SECRET}


@dataclass(frozen=True)
class Secrets:
    """The secret values braid holds, by name, and every form they are looked for in."""

    forms: Mapping[str, frozenset[bytes]]

    @classmethod
    def of(cls, values: Mapping[str, str | bytes | None]) -> Secrets:
        out: dict[str, frozenset[bytes]] = {}
        for name, value in values.items():
            if not value:
                continue
            raw = value.encode() if isinstance(value, str) else value
            raw = raw.strip()
            if len(raw) >= MIN_SECRET:
                out[name] = frozenset(_forms(raw))
        return cls(out)

    @classmethod
    def from_files(cls, files: Mapping[str, Path | None]) -> Secrets:
        values: dict[str, bytes | None] = {}
        for name, path in files.items():
            try:
                values[name] = path.read_bytes() if path is not None and path.is_file() else None
            except OSError:
                values[name] = None
        return cls.of(values)

    def __bool__(self) -> bool:
        return bool(self.forms)

    def found_in(self, data: bytes) -> str | None:
        """The name of a secret `data` holds a copy of, or None."""
        for name, forms in self.forms.items():
            if any(form in data for form in forms):
                return name
        return None

    def redact(self, text: str) -> str:
        """`text` with every copy of a secret replaced by [REDACTED]."""
        if not text:
            return text
        for forms in self.forms.values():
            for form in sorted(forms, key=len, reverse=True):
                shown = form.decode("utf-8", errors="ignore")
                if shown and shown in text:
                    text = text.replace(shown, "[REDACTED]")
        return text

    def merged(self, other: Secrets) -> Secrets:
        return Secrets({**self.forms, **other.forms})


def credential_files(credentials_dir: Path | None) -> dict[str, Path | None]:
    """The secret files of a git credentials directory (see auth.py)."""
    if credentials_dir is None:
        return {}
    return {f"git {name}": Path(credentials_dir) / name for name in ("password", "ssh-privatekey")}


@dataclass
class Leak:
    secret: str
    where: str

    def __str__(self) -> str:
        return f"the {self.secret} is in {self.where}"


def scan_outgoing(repo: Repo, head: str, secrets: Secrets) -> Leak | None:
    """The first object reachable from `head` but not from the remote's branches and tags that holds a secret."""
    if not secrets:
        return None
    exclude = ["--not", "--remotes=origin", "--tags"]
    listing = repo.out_z("rev-list", "--objects", "--no-object-names", head, *exclude)
    objects = [line for line in listing.splitlines() if line]
    if not objects:
        return None
    code, out, err = repo.run_bytes("cat-file", "--batch", stdin="\n".join(objects) + "\n")
    pos = 0
    while pos < len(out):
        header_end = out.index(b"\n", pos)
        oid, kind, size = out[pos:header_end].decode().split()
        body = out[header_end + 1: header_end + 1 + int(size)]
        pos = header_end + 1 + int(size) + 1
        name = secrets.found_in(body)
        if name is not None:
            return Leak(name, f"{kind} {oid[:12]}" + _path_of(repo, head, exclude, oid, kind))
    return None


def _path_of(repo: Repo, head: str, exclude: list[str], oid: str, kind: str) -> str:
    if kind != "blob":
        return ""
    listing = repo.out("rev-list", "--objects", head, *exclude)
    for line in listing.splitlines():
        if line.startswith(oid) and " " in line:
            return f" (file {line.split(' ', 1)[1]})"
    return ""
