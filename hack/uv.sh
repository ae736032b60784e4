#!/usr/bin/env bash
# Install the pinned uv (hack/requirements-uv.txt, checked by hash) into a per-version
# cache outside the repository and print the path of its binary on stdout.
# Idempotent: once installed, the cached binary is reused.
#
# usage: hack/uv.sh
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
REQ="$ROOT/hack/requirements-uv.txt"
VERSION="$(sed -n 's/^uv==\([^ ]*\).*/\1/p' "$REQ")"
CACHE="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}"
DIR="$CACHE/uv/$VERSION"
BIN="$DIR/bin/uv"
PYTHON="${PYTHON:-python3}"

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

mkdir -p "$CACHE/uv"
tmp="$(mktemp -d "$CACHE/uv/.install.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
"$PYTHON" -m venv "$tmp/venv" >&2
PIP_FIND_LINKS= "$tmp/venv/bin/pip" install --quiet --require-hashes --only-binary :all: \
  --no-deps --target "$tmp/uv" -r "$REQ" >&2
mkdir -p "$tmp/out/bin"
cp "$tmp/uv/bin/uv" "$tmp/out/bin/uv"
# A concurrent install may have finished first; either copy is the same.
mv -T "$tmp/out" "$DIR" 2>/dev/null || true
echo "$BIN"
