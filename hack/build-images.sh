#!/usr/bin/env bash
# Build braid's images from images/*/Dockerfile without Docker and without a
# registry, and (with --load) import them into the test node of hack/node.sh.
#
# usage: hack/build-images.sh [--load] [agent-runner] [operator]   (default: both)
# prints one line per image on stdout:  <dir>=<image reference>
#   agent-runner=braid-agent:0.1.0-<key>   operator=braid-operator:0.1.0-<key>
# With --load each image is also tagged <name>:<version> (braid-agent:0.1.0, the
# default of BRAID_RUNNER_IMAGE and of the Helm chart) in the node's image store.
#
# How: the Dockerfiles start FROM docker.io/library/debian:bookworm-slim, which no
# registry can give us here, so `debootstrap --variant=minbase bookworm` makes that
# root file system from Debian's package mirror and buildah imports it under exactly
# that name; `buildah bud` then builds the unchanged Dockerfile on it (network host
# for apt and pip; the machine's CA bundle as the optional `build-ca` build secret),
# and pushes a docker-archive that `ctr -n k8s.io images import` loads.
#
# Cached per machine under ~/.cache/braid/images: the base root file system once,
# each image keyed by a hash of its Dockerfile, the package source (pyproject.toml,
# requirements/, README.md, operator/) and the base; an unchanged key is neither rebuilt nor
# re-imported. BRAID_IMAGES_REFRESH_BASE=1 debootstraps the base again.
set -euo pipefail

HACK="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HACK")"
CACHE="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}/images"
MIRROR="${BRAID_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SUITE=bookworm
# the image names the settings (BRAID_RUNNER_IMAGE) and the Helm chart default to
declare -A IMAGE_NAME=([agent-runner]=braid-agent [operator]=braid-operator)

log() { echo "build-images: $*" >&2; }
die() { log "$*"; exit 1; }

load=
names=()
for arg in "$@"; do
  case "$arg" in
    --load) load=1 ;;
    agent-runner|operator) names+=("$arg") ;;
    *) die "unknown argument '$arg' (usage: build-images.sh [--load] [agent-runner] [operator])" ;;
  esac
done
[ ${#names[@]} -gt 0 ] || names=(agent-runner operator)

[ "$(id -u)" = 0 ] || die "needs root (debootstrap; buildah's storage is per user, the node's containerd is root's)"
missing=()
command -v debootstrap >/dev/null || missing+=(debootstrap)
command -v buildah >/dev/null || missing+=(buildah)
command -v runc >/dev/null || missing+=(runc)
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]} from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

mkdir -p "$CACHE"
exec 8> "$CACHE/.lock"
flock 8
tmp="$(mktemp -d)"
cleanup() {
  [ -z "${work_ctr:-}" ] || buildah rm "$work_ctr" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

version="$(python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
  "$REPO/pyproject.toml" 2>/dev/null || sed -nE 's/^version = "([^"]+)"/\1/p' "$REPO/pyproject.toml")"

# --- the base image -------------------------------------------------------------

base_ref() {
  local ref
  ref="$(awk 'toupper($1) == "FROM" {print $2; exit}' "$REPO/images/$1/Dockerfile")"
  [ -n "$ref" ] || die "no FROM in images/$1/Dockerfile"
  echo "$ref"
}

# debootstrap's minbase, tidied the way the official debian:*-slim images are
build_rootfs() {
  local tar="$1" root="$tmp/rootfs" start=$SECONDS
  log "debootstrap --variant=minbase $SUITE from $MIRROR (once per machine)"
  debootstrap --variant=minbase "$SUITE" "$root" "$MIRROR" > "$tmp/debootstrap.log" 2>&1 ||
    { tail -n 20 "$tmp/debootstrap.log" >&2; die "debootstrap failed"; }
  rm -f "$root/etc/apt/sources.list" "$root/etc/hostname" "$root/etc/resolv.conf"
  cat > "$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # as in the official images: no .deb kept after install, no translations
  cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
  echo 'Acquire::Languages "none";' > "$root/etc/apt/apt.conf.d/docker-no-languages"
  # the "slim" part: no documentation, manuals or translations, now or in later installs
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/lintian/overrides/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/man/*
EOF
  find "$root/usr/share/doc" -mindepth 1 ! -name copyright ! -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root"/usr/share/{groff,info,linda,lintian/overrides,locale,man}/*
  echo 'APT::Install-Recommends "false"; APT::Install-Suggests "false";' > "$root/etc/apt/apt.conf.d/docker-autoremove-suggests"
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* "$root"/var/log/* "$root"/tmp/*
  tar --numeric-owner --xattrs -C "$root" -cf "$tar.tmp" .
  mv "$tar.tmp" "$tar"
  rm -rf "$root"
  log "base root file system: $(du -h "$tar" | cut -f1) in $((SECONDS - start))s"
}

# import the root file system into buildah's storage under the Dockerfile's FROM name
ensure_base() {
  # named by a hash of the recipe: a changed build_rootfs makes a new one
  local ref="$1" tar key have
  tar="$CACHE/debian-$SUITE-minbase-$(declare -f build_rootfs | sha256sum | cut -c1-12).tar"
  if [ ! -f "$tar" ] || [ -n "${BRAID_IMAGES_REFRESH_BASE:-}" ]; then
    rm -f "$CACHE/debian-$SUITE-minbase"*.tar
    build_rootfs "$tar"
  fi
  key="$(sha256sum "$tar" | cut -c1-16)"
  have="$(buildah inspect --type image --format '{{index .ImageAnnotations "dev.braid.base"}}' "$ref" 2>/dev/null || true)"
  if [ "$have" != "$key" ]; then
    log "importing the base root file system as $ref"
    work_ctr="$(buildah from --pull=never scratch)"
    buildah add --quiet "$work_ctr" "$tar" / >/dev/null
    buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd bash \
      --annotation "dev.braid.base=$key" --created-by "debootstrap --variant=minbase $SUITE" "$work_ctr"
    buildah commit --quiet --rm "$work_ctr" "$ref" >/dev/null
    work_ctr=
  fi
  echo "$key"
}

# --- the images -----------------------------------------------------------------

# the build context: only what the Dockerfiles COPY (no .venv, caches, .git)
make_context() {
  local ctx="$tmp/context"
  rm -rf "$ctx" && mkdir -p "$ctx"
  cp "$REPO/pyproject.toml" "$REPO/README.md" "$ctx/"
  cp -r "$REPO/requirements" "$ctx/"
  (cd "$REPO" && find operator -type f ! -path '*/__pycache__/*' ! -name '*.pyc' ! -path '*.egg-info/*' -print0 |
    sort -z | xargs -0 cp --parents -t "$ctx")
  echo "$ctx"
}

context_hash() {
  (cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -c1-16
}

# the CA bundle this machine trusts, for pip inside the build (see the Dockerfiles)
build_ca() {
  local f
  for f in "${PIP_CERT:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$f" ] && [ -s "$f" ]; then echo "$f"; return; fi
  done
}

# stdin: "<ref> <digest>" lines of the node's images; argv: name, refs to keep.
# prints the other tags of that name, and the sha256:<id> names pointing only at them
PRUNE_PY='
import re, sys
name, keep = sys.argv[1], set(sys.argv[2:])
rows = [line.split() for line in sys.stdin if line.strip()]
old = {r for r, _ in rows if re.match(rf"(localhost|docker\.io/library)/{re.escape(name)}:", r) and r not in keep}
named = [(r, d) for r, d in rows if not r.startswith("sha256:")]
kept = {d for r, d in named if r not in old}
gone = {d for r, d in named if r in old} - kept
print("\n".join(sorted(old) + [r for r, d in rows if r.startswith("sha256:") and d in gone]))
'

node_has() { "$HACK/node.sh" ctr images ls -q 2>/dev/null | grep -qxF "$1"; }

ctx="$(make_context)"
ctx_key="$(context_hash "$ctx")"
ca="$(build_ca)"
for dir in "${names[@]}"; do
  dockerfile="$REPO/images/$dir/Dockerfile"
  [ -f "$dockerfile" ] || die "$dockerfile does not exist"
  base="$(base_ref "$dir")"
  base_key="$(ensure_base "$base")"
  key="$( { sha256sum < "$dockerfile"; echo "$ctx_key $base_key"; } | sha256sum | cut -c1-12)"
  name="${IMAGE_NAME[$dir]}"
  ref="$name:$version-$key"
  # fully qualified, as Kubernetes and containerd normalize a short name
  full="docker.io/library/$ref"
  archive="$CACHE/$name-$version-$key.tar"
  if [ ! -f "$archive" ]; then
    start=$SECONDS
    log "building $ref from images/$dir/Dockerfile"
    secret=()
    [ -z "$ca" ] || secret=(--secret "id=build-ca,src=$ca")
    buildah bud --quiet --layers --pull=never --network host --format docker "${secret[@]}" \
      -f "$dockerfile" -t "$full" "$ctx" > "$tmp/build.log" 2>&1 ||
      { tail -n 40 "$tmp/build.log" >&2; die "buildah bud -f images/$dir/Dockerfile failed"; }
    buildah push --quiet "$full" "docker-archive:$archive.tmp:$full" >/dev/null
    mv "$archive.tmp" "$archive"
    # older builds of this image: the three newest stay (work trees of different
    # versions on one machine need not rebuild in turn), the rest and their tags go
    # shellcheck disable=SC2012
    ls -1t "$CACHE/$name"-*.tar | tail -n +4 | xargs -r rm -f
    for old in $(buildah images --format '{{.Name}}:{{.Tag}}' 2>/dev/null | grep -E "^(localhost|docker.io/library)/$name:"); do
      [ -f "$CACHE/$name-${old##*:}.tar" ] || buildah rmi "$old" >/dev/null 2>&1 || true
    done
    log "built $ref in $((SECONDS - start))s ($(du -h "$archive" | cut -f1))"
  fi
  if [ -n "$load" ]; then
    if ! node_has "$full"; then
      start=$SECONDS
      "$HACK/node.sh" load "$archive" >/dev/null 2>&1 || die "could not load $archive into the node (is it up?)"
      log "loaded $ref into the node in $((SECONDS - start))s"
    fi
    "$HACK/node.sh" ctr images tag --force "$full" "docker.io/library/$name:$version" >/dev/null
    # earlier builds of this image leave the node's store, with the sha256:<id> names
    # the CRI plugin gave them; containerd then collects their layers
    "$HACK/node.sh" ctr images ls | awk 'NR > 1 {print $1, $3}' |
      python3 -c "$PRUNE_PY" "$name" "$full" "docker.io/library/$name:$version" |
      xargs -r "$HACK/node.sh" ctr images rm >/dev/null 2>&1 || true
  fi
  echo "$dir=$ref"
done
