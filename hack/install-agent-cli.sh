#!/usr/bin/env bash
# Install a pinned Claude Code CLI from the npm registry into a per-version cache
# outside the repository, for the `command` backend's end-to-end test. Idempotent:
# once installed (and runnable), the cached binary is reused.
#
# usage: hack/install-agent-cli.sh
# prints the path of the `claude` binary on the last line of stdout.
#
# The npm package ships the native binary in a per-platform optional dependency
# (@anthropic-ai/claude-code-linux-x64, ...), so nothing is downloaded from outside
# the registry. Override the pin with BRAID_CLAUDE_CODE_VERSION.
set -euo pipefail

VERSION="${BRAID_CLAUDE_CODE_VERSION:-2.1.330}"
CACHE="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}"
DIR="$CACHE/npm/claude-code-$VERSION"
BIN="$DIR/node_modules/.bin/claude"

log() { echo "install-agent-cli: $*" >&2; }

if [ -x "$BIN" ] && "$BIN" --version >/dev/null 2>&1; then
  echo "$BIN"
  exit 0
fi

command -v npm >/dev/null || { log "needs npm on PATH"; exit 1; }
mkdir -p "$DIR"
start=$(date +%s)
log "installing @anthropic-ai/claude-code@$VERSION into $DIR"
# the package asks for node >= 22 but only its install script runs on node; the CLI
# itself is a native binary, so an older node is fine
npm install --prefix "$DIR" --no-audit --no-fund --no-save --loglevel=error --engine-strict=false \
  "@anthropic-ai/claude-code@$VERSION" >&2
if ! "$BIN" --version >/dev/null 2>&1; then
  log "installed, but $BIN does not run (no native binary for this platform?)"
  exit 1
fi
log "$("$BIN" --version) installed in $(( $(date +%s) - start ))s"
echo "$BIN"
