#!/usr/bin/env bash
# Copy the generated CRDs (crds/, written by `braid crds`) into the Helm chart, so
# that the chart installs exactly what the API models define.
#
# usage: hack/sync-chart-crds.sh           copy (and drop chart CRDs that no longer exist)
#        hack/sync-chart-crds.sh --check   exit 1 when the chart's copies differ
set -euo pipefail
cd "$(dirname "$0")/.."

SRC=crds
DST=helm/braid/crds

if [ "${1:-}" = "--check" ]; then
  if ! diff -r "$SRC" "$DST" >&2; then
    echo "sync-chart-crds: $DST differs from $SRC; run hack/sync-chart-crds.sh" >&2
    exit 1
  fi
  exit 0
fi

mkdir -p "$DST"
for f in "$DST"/*.yaml; do
  [ -e "$f" ] || continue
  [ -e "$SRC/$(basename "$f")" ] || rm -f "$f"
done
crds=("$SRC"/*.yaml)
cp "${crds[@]}" "$DST"/
echo "sync-chart-crds: copied ${#crds[@]} CRDs into $DST" >&2
