#!/usr/bin/env bash
# Installs the two tools tests/unit/test_deploy.py runs on deploy/, once:
#   kustomize v5.6.0  renders deploy/kubernetes/base       (go install, from the Go module proxy)
#   promtool          checks and unit-tests deploy/prometheus (the binary of Debian's prometheus package)
# into ${MIRROR_CACHE_DIR:-~/.cache/mirror}/tools/bin, where the tests look for them (MIRROR_KUSTOMIZE and
# MIRROR_PROMTOOL override the paths). A tool already there is kept, so a second run does nothing.
# Prints that directory on stdout; progress goes to stderr. Needs Go 1.22+ and apt (Debian or Ubuntu).
set -euo pipefail

KUSTOMIZE_VERSION=v5.6.0 # v5.7+ needs a newer Go than .ci/run's machine has
bin="${MIRROR_CACHE_DIR:-$HOME/.cache/mirror}/tools/bin"
mkdir -p "$bin"

go=$(command -v go || echo /usr/local/go/bin/go)
# `kustomize version` says "(devel)" for a go-installed binary; the module version is in its build info.
built=$("$go" version -m "$bin/kustomize" 2>/dev/null || true)
if ! grep -Eq "kustomize/v5[[:space:]]+$KUSTOMIZE_VERSION" <<<"$built"; then
    echo "installing kustomize $KUSTOMIZE_VERSION into $bin" >&2
    start=$(date +%s)
    GOBIN="$bin" GOTOOLCHAIN=local "$go" install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    echo "kustomize installed in $(($(date +%s) - start))s" >&2
fi

if [ ! -x "$bin/promtool" ]; then
    # Only promtool is taken from the package: installing it would also install (and, where services
    # start, run) a Prometheus server and a dozen JavaScript packages the checks do not need.
    echo "installing promtool (Debian's prometheus package) into $bin" >&2
    start=$(date +%s)
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    if ! (cd "$tmp" && apt-get download -qq prometheus 2>/dev/null); then
        # no package list yet (a fresh machine): fetch it (as root) and try again
        sudo=$([ "$(id -u)" = 0 ] || echo sudo)
        $sudo apt-get update -qq >&2
        (cd "$tmp" && apt-get download -qq prometheus)
    fi
    dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
    mv "$tmp/usr/bin/promtool" "$bin/promtool"
    echo "promtool installed in $(($(date +%s) - start))s" >&2
fi

"$bin/promtool" --version 2>&1 | sed -n 1p >&2
"$go" version -m "$bin/kustomize" | sed -n "/mod[[:space:]]*sigs.k8s.io\/kustomize/p" >&2
echo "$bin"
