#!/usr/bin/env bash
# Build the pod sandbox ("pause") image locally, without a registry: compile
# build/pause/linux/pause.c of the k8s.io/kubernetes Go module (the same version
# the kubelet is built from) with `gcc -Os -static`, and wrap the binary in a
# one-layer image written as a docker-archive tarball that
# `ctr -n k8s.io images import` accepts. Nothing of upstream is committed here:
# the source comes from the Go module cache at build time.
#
# usage: hack/pause/build.sh   prints "<archive path> <image name>" on stdout
# Cached per machine under ~/.cache/braid/images: rebuilt only when pause.c,
# this script or the compiler changes.
set -euo pipefail

K8S_VERSION="${BRAID_K8S_VERSION:-v1.34.4}"
CACHE="${BRAID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/braid}"
OUT="$CACHE/images"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod

log() { echo "pause/build.sh: $*" >&2; }

command -v gcc >/dev/null || { log "gcc is missing (apt-get install gcc libc6-dev)"; exit 1; }
command -v go >/dev/null || { log "go is missing"; exit 1; }

# `go mod download` needs a module to run in; an empty one will do.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && go mod init braid.local/pausesrc >/dev/null 2>&1)
src_dir="$(cd "$tmp" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
pause_c="$src_dir/build/pause/linux/pause.c"
[ -f "$pause_c" ] || { log "$pause_c not found in the module"; exit 1; }
# the image tag is upstream's pause version of this Kubernetes release
tag="$(sed -nE 's/^TAG \?= *([0-9.]+).*/\1/p' "$src_dir/build/pause/Makefile")"
[ -n "$tag" ] || { log "no TAG in $src_dir/build/pause/Makefile"; exit 1; }
image="braid.local/pause:$tag"

key="$( { cat "$pause_c" "${BASH_SOURCE[0]}"; gcc --version | head -n 1; echo "$image"; } | sha256sum | cut -c1-16)"
archive="$OUT/pause-$tag-$key.tar"
if [ -f "$archive" ]; then
  echo "$archive $image"
  exit 0
fi

mkdir -p "$OUT"
log "compiling $pause_c ($K8S_VERSION, pause $tag)"
gcc -Os -Wall -Werror -static -DVERSION="v$tag-braid" -o "$tmp/pause" "$pause_c"
strip "$tmp/pause" 2>/dev/null || true
"$tmp/pause" -v >&2

# A docker-archive: manifest.json, the image config and one layer holding /pause,
# with fixed timestamps and owners so the same binary gives the same image ID.
python3 - "$tmp/pause" "$tmp/archive.tar" "$image" <<'PY'
import hashlib, io, json, sys, tarfile

binary, out, image = sys.argv[1:4]

def tar_bytes(members):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()

layer = tar_bytes([("pause", open(binary, "rb").read(), 0o755)])
diff_id = "sha256:" + hashlib.sha256(layer).hexdigest()
config = json.dumps({
    "architecture": "amd64",
    "os": "linux",
    "created": "1970-01-01T00:00:00Z",
    "config": {"Entrypoint": ["/pause"], "User": "65535:65535"},
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created": "1970-01-01T00:00:00Z", "created_by": "hack/pause/build.sh: gcc -Os -static pause.c"}],
}, sort_keys=True, separators=(",", ":")).encode()
config_name = hashlib.sha256(config).hexdigest() + ".json"
layer_name = diff_id.split(":", 1)[1] + "/layer.tar"
manifest = json.dumps([{"Config": config_name, "RepoTags": [image], "Layers": [layer_name]}]).encode()
with open(out, "wb") as fh:
    fh.write(tar_bytes([(config_name, config, 0o644), (layer_name, layer, 0o644), ("manifest.json", manifest, 0o644)]))
PY
mv "$tmp/archive.tar" "$archive"
log "wrote $archive ($image)"
echo "$archive $image"
