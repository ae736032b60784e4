#!/usr/bin/env bash
# Make sure bubblewrap, the sandbox local runs confine agents in, is installed and works.
# Installs the Debian package when it is missing and this runs as root with apt-get;
# otherwise says what to do. With --require, a sandbox that cannot run is an error
# (the tests need it); without, it is a warning (braid then runs agents unconfined and
# says so on every run).
#
# usage: hack/sandbox.sh [--require]
set -euo pipefail

require=0
[ "${1:-}" = "--require" ] && require=1
log() { echo "sandbox: $*" >&2; }

works() {
  command -v bwrap >/dev/null && bwrap --die-with-parent --unshare-pid --ro-bind / / --dev /dev --proc /proc -- true 2>/dev/null
}

if ! works && ! command -v bwrap >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  log "installing bubblewrap from Debian"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
fi

if works; then
  exit 0
fi
if command -v bwrap >/dev/null; then
  problem="bwrap is installed but cannot create a sandbox here (unprivileged user namespaces disabled?)"
else
  problem="bubblewrap is not installed (Debian/Ubuntu: apt-get install bubblewrap)"
fi
if [ "$require" = 1 ]; then
  log "$problem"
  exit 1
fi
log "WARNING: $problem; agents will run without a sandbox (see docs/security.md)"
