#!/usr/bin/env bash
# Re-vendors the front-end libraries from the npm registry at their pinned versions
# (run by hand when a version changes; the app never loads anything from a CDN).
# Checks each tarball's SHA-256 so a changed package cannot slip in unnoticed.
set -euo pipefail
cd "$(dirname "$0")/.."
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

vendor() {  # name version sha256 file-in-package target-dir
    local name="$1" version="$2" sha="$3" file="$4" target="$5"
    (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
    local tarball="$work/${name//\//-}-$version.tgz"
    echo "$sha  $tarball" | sha256sum --check --quiet
    mkdir -p "$work/$name" "$target"
    tar xzf "$tarball" -C "$work/$name"
    cp "$work/$name/package/$file" "$target/"
    cp "$work/$name/package/LICENSE"* "$target/"
}

vendor chart.js 4.5.1 f540d98468457ac7a0aabb32006dfb066297e096c5ea063a5d80aa973d1c337a \
    dist/chart.umd.min.js static/vendor/chartjs
