#!/usr/bin/env bash
# Build a pinned helm v3 from the Go module proxy into a per-version cache outside
# the repository. Idempotent: once built, the cached binary is reused, so the cost
# is paid once per machine.
#
# usage: hack/install-helm.sh
# prints the path of the helm binary on the last line of stdout.
#
# The pin is the newest v3 whose go.mod `go` line the local toolchain satisfies
# (v3.22.0 needs go 1.26.0); override with BRAID_HELM_VERSION.
set -euo pipefail

HELM_VERSION="${BRAID_HELM_VERSION:-v3.22.0}"
CACHE="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}"
DIR="$CACHE/helm/$HELM_VERSION"
BIN="$DIR/helm"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

log() { echo "install-helm: $*" >&2; }

if [ -x "$BIN" ]; then
  echo "$BIN"
  exit 0
fi

command -v go >/dev/null || { log "needs a Go toolchain on PATH"; exit 1; }
mkdir -p "$DIR"
start=$(date +%s)

# helm derives its default Kubernetes version (for .Capabilities and lint) from
# the client-go it was built with; its Makefile passes it in through ldflags.
gomod=$(cd "$DIR" && go mod download -json "helm.sh/helm/v3@$HELM_VERSION" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")
k8s_major=$(( $(echo "$client_go" | sed -E 's/^v([0-9]+)\..*/\1/') + 1 ))
k8s_minor=$(echo "$client_go" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')

ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
ldflags="$ldflags -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags="$ldflags -X $pkg.k8sVersionMajor=$k8s_major -X $pkg.k8sVersionMinor=$k8s_minor"
done

log "building helm $HELM_VERSION (Kubernetes v$k8s_major.$k8s_minor defaults)"
tmp=$(mktemp -d "$DIR/build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# a private GOBIN so that concurrent builds never see a half-written binary
(cd "$tmp" && GOBIN="$tmp" go install -trimpath -ldflags "$ldflags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
mv -f "$tmp/helm" "$BIN"
log "built helm $HELM_VERSION in $(( $(date +%s) - start ))s"
echo "$BIN"
