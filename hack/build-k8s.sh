#!/usr/bin/env bash
# Build pinned Kubernetes and etcd binaries from the Go module proxy into a
# per-version cache outside the repository. Idempotent: a binary already in the
# cache is not rebuilt, so the cost is paid once per machine.
#
# usage: hack/build-k8s.sh [component ...]
#   components: etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet
#   (default: the control plane and kubectl)
# prints the bin directory on the last line of stdout.
set -euo pipefail

K8S_VERSION="${BRAID_K8S_VERSION:-v1.34.4}"
ETCD_VERSION="${BRAID_ETCD_VERSION:-v3.6.16}"
CACHE="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}"
BIN="$CACHE/k8s/$K8S_VERSION-etcd$ETCD_VERSION/bin"
WORK="$CACHE/k8s/build"
export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-mod=mod

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)

log() { echo "build-k8s: $*" >&2; }
mkdir -p "$BIN" "$WORK"

# a wrapper module per upstream module: k8s.io/kubernetes requires its staging
# modules at v0.0.0, which only resolve through replace directives.
k8s_module() {
  local dir="$WORK/k8s-$K8S_VERSION"
  if [ ! -f "$dir/.ready" ]; then
    log "preparing wrapper module for k8s.io/kubernetes $K8S_VERSION"
    rm -rf "$dir" && mkdir -p "$dir"
    local gomod minor
    gomod=$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | python3 -c 'import json,sys; print(json.load(sys.stdin)["GoMod"])')
    minor="v0.${K8S_VERSION#v1.}"
    {
      echo "module braid.local/k8sbuild"
      echo
      echo "go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')"
      echo
      echo "require k8s.io/kubernetes $K8S_VERSION"
      echo
      # the staging modules are the ones upstream replaces with ./staging/src/...
      grep -oE 'k8s\.io/[a-z0-9-]+ => \./staging/' "$gomod" | awk -v v="$minor" '{print "replace " $1 " => " $1 " " v}' | sort -u
    } > "$dir/go.mod"
    cat > "$dir/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    (cd "$dir" && go mod tidy -e >/dev/null 2>&1) || true
    (cd "$dir" && go mod download k8s.io/kubernetes)
    touch "$dir/.ready"
  fi
  echo "$dir"
}

etcd_module() {
  local dir="$WORK/etcd-$ETCD_VERSION"
  if [ ! -f "$dir/.ready" ]; then
    log "preparing wrapper module for etcd $ETCD_VERSION"
    rm -rf "$dir" && mkdir -p "$dir"
    cat > "$dir/go.mod" <<GOMOD
module braid.local/etcdbuild

go $(go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/')

require go.etcd.io/etcd/server/v3 $ETCD_VERSION
GOMOD
    (cd "$dir" && go mod download go.etcd.io/etcd/server/v3 && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null)
    touch "$dir/.ready"
  fi
  echo "$dir"
}

k8s_ldflags() {
  local major minor
  major=$(echo "$K8S_VERSION" | sed -E 's/^v([0-9]+)\..*/\1/')
  minor=$(echo "$K8S_VERSION" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
  local flags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    flags="$flags -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
    flags="$flags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  echo "$flags"
}

locked=
for c in "${components[@]}"; do
  if [ -x "$BIN/$c" ]; then continue; fi
  if [ -z "$locked" ]; then
    # one build at a time per cache; whoever waited may find the binary built
    exec 8> "$WORK/.lock"
    flock 8
    locked=1
    if [ -x "$BIN/$c" ]; then continue; fi
  fi
  start=$(date +%s)
  case "$c" in
    etcd)
      dir=$(etcd_module)
      log "building etcd $ETCD_VERSION"
      (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" go.etcd.io/etcd/server/v3)
      ;;
    kube-apiserver|kube-controller-manager|kube-scheduler|kubectl|kubelet)
      dir=$(k8s_module)
      log "building $c $K8S_VERSION"
      (cd "$dir" && go build -trimpath -ldflags "$(k8s_ldflags)" -o "$BIN/$c.tmp" "k8s.io/kubernetes/cmd/$c")
      ;;
    *) echo "build-k8s: unknown component '$c'" >&2; exit 2 ;;
  esac
  mv "$BIN/$c.tmp" "$BIN/$c"
  log "built $c in $(( $(date +%s) - start ))s"
done
echo "$BIN"
