#!/usr/bin/env bash
# Build a pinned Gitea server from the Go module proxy into a per-version cache outside
# the repository, for the tests of spec.delivery.pullRequest against a real forge.
# Idempotent: a binary already in the cache is not rebuilt, so the cost is paid once
# per machine.
#
# usage: hack/gitea.sh
# prints the path of the gitea binary on the last line of stdout; its locales and templates
# are in ../static beside its directory (STATIC_ROOT_PATH).
set -euo pipefail

GITEA_VERSION="${BRAID_GITEA_VERSION:-v1.26.0}"
CACHE="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}"
BIN="$CACHE/gitea/$GITEA_VERSION/bin"
# built without `bindata`, gitea reads its locales and templates from STATIC_ROOT_PATH: this
STATIC="$CACHE/gitea/$GITEA_VERSION/static"
WORK="$CACHE/gitea/build"
# sqlite is mattn/go-sqlite3, which needs cgo
export GOTOOLCHAIN=local CGO_ENABLED=1 GOFLAGS=-mod=mod

log() { echo "gitea: $*" >&2; }

if [ -x "$BIN/gitea" ] && [ -d "$STATIC/options" ]; then echo "$BIN/gitea"; exit 0; fi
mkdir -p "$BIN" "$WORK"
# one build at a time per cache; whoever waited may find the binary built
exec 8> "$WORK/.lock"
flock 8
if [ -x "$BIN/gitea" ] && [ -d "$STATIC/options" ]; then echo "$BIN/gitea"; exit 0; fi

start=$(date +%s)
# code.gitea.io/gitea has replace directives, so `go install pkg@version` is refused:
# a wrapper module requires it and carries the same replace directives.
dir="$WORK/gitea-$GITEA_VERSION"
if [ ! -f "$dir/.ready" ]; then
  log "preparing wrapper module for code.gitea.io/gitea $GITEA_VERSION"
  rm -rf "$dir" && mkdir -p "$dir"
  gomod=$(cd "$dir" && go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
  {
    echo "module braid.local/giteabuild"
    echo
    grep -E '^go [0-9.]+$' "$gomod"
    echo
    echo "require code.gitea.io/gitea $GITEA_VERSION"
    echo
    grep -E '^replace ' "$gomod" | sed -E 's# //.*##'
  } > "$dir/go.mod"
  cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import _ "code.gitea.io/gitea"
GO
  (cd "$dir" && go mod download code.gitea.io/gitea && go get "code.gitea.io/gitea@$GITEA_VERSION")
  touch "$dir/.ready"
fi
if [ ! -d "$STATIC/options" ]; then
  src=$(cd "$dir" && go list -m -f '{{.Dir}}' code.gitea.io/gitea)
  rm -rf "$STATIC.tmp" && mkdir -p "$STATIC.tmp"
  cp -r "$src/options" "$src/templates" "$STATIC.tmp/"
  chmod -R u+w "$STATIC.tmp"
  rm -rf "$STATIC" && mv "$STATIC.tmp" "$STATIC"
fi
if [ -x "$BIN/gitea" ]; then echo "$BIN/gitea"; exit 0; fi
log "building gitea $GITEA_VERSION (takes minutes on a cold machine)"
(cd "$dir" && go build -trimpath -tags 'sqlite sqlite_unlock_notify' \
  -ldflags "-s -w -X code.gitea.io/gitea/modules/setting.AppVer=${GITEA_VERSION#v}" \
  -o "$BIN/gitea.tmp" code.gitea.io/gitea)
mv "$BIN/gitea.tmp" "$BIN/gitea"
log "built gitea in $(( $(date +%s) - start ))s"
echo "$BIN/gitea"
