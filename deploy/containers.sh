#!/usr/bin/env bash
# Prepares a container engine for tests/containers on a machine with no Docker engine and no reachable image
# registry (CI's), once; a second run only checks (about a second):
#   1. podman, runc and debootstrap from Debian's packages (apt-get, as root);
#   2. podman's Docker-compatible API on a unix socket, started in the background and left running
#      (`bash deploy/containers.sh stop` stops it), configured by deploy/containers/containers.conf through
#      CONTAINERS_CONF (nothing under /etc changes);
#   3. the local base image localhost/mirror-base:<tag>: Debian bookworm (minbase) with python3, python3-venv,
#      ca-certificates and the machine's CA bundle, made with debootstrap (about a minute) and imported.
#      Its root file system is kept as a tarball in ${MIRROR_CACHE_DIR:-~/.cache/mirror}/containers/, so a
#      machine whose image store was wiped imports it again in seconds.
# The tests build mirror's Dockerfile and deploy/kafka/Dockerfile on that base themselves.
#
# Prints, on stdout, the settings the tests need (progress goes to stderr):
#   eval "$(bash deploy/containers.sh)" && pytest -q tests/containers
# Where Docker runs, none of this is needed: the tests use the default engine and Docker Hub's images.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
cache="${MIRROR_CACHE_DIR:-$HOME/.cache/mirror}/containers"
socket="$cache/podman.sock"
pidfile="$cache/podman-service.pid"
# Bump the tag when the packages below change: the cached root file system is rebuilt then.
base_tag=bookworm-1
base_image="localhost/mirror-base:$base_tag"
base_tar="$cache/mirror-base-$base_tag.tar"
packages=python3,python3-venv,ca-certificates
export CONTAINERS_CONF="$here/containers/containers.conf"
mkdir -p "$cache"

log() { echo "containers.sh: $*" >&2; }
sudo=$([ "$(id -u)" = 0 ] || echo sudo)

if [ "${1:-}" = stop ]; then
    if [ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null; then
        log "stopped the podman API service (pid $(cat "$pidfile"))"
    fi
    rm -f "$pidfile"
    exit 0
fi

# --- 1. the engine ----------------------------------------------------------------------------------------
if ! command -v podman >/dev/null || ! command -v runc >/dev/null || ! command -v debootstrap >/dev/null; then
    log "installing podman, runc and debootstrap (apt-get)"
    start=$(date +%s)
    {
        $sudo apt-get update -qq &&
            $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap
    } >"$cache/apt.log" 2>&1 || {
        log "apt-get failed; the end of $cache/apt.log:"
        tail -20 "$cache/apt.log" >&2
        exit 1
    }
    log "installed in $(($(date +%s) - start))s"
fi

# --- 2. the Docker-compatible API -------------------------------------------------------------------------
ping() { curl -sf --max-time 2 --unix-socket "$socket" http://engine/_ping >/dev/null 2>&1; }
if ! ping; then
    log "starting podman's API service on $socket"
    rm -f "$socket"
    # setsid: the service outlives this script (and the shell that evals its output), until `stop`.
    setsid podman system service --time=0 "unix://$socket" >"$cache/podman-service.log" 2>&1 </dev/null &
    echo $! >"$pidfile"
    for _ in $(seq 100); do ping && break || sleep 0.2; done
    ping || {
        log "podman's API service did not answer on $socket; its log:"
        tail -20 "$cache/podman-service.log" >&2
        exit 1
    }
fi

# --- 3. the local base image ------------------------------------------------------------------------------
if ! podman image exists "$base_image"; then
    if [ ! -s "$base_tar" ]; then
        # The Debian mirror this machine's apt uses (no image registry is reachable, but Debian's is).
        mirror_url=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null |
            grep -oE '^[^#]*https?://[^ ]*/debian/?( |$)' | grep -oE 'https?://[^ ]+' | head -1 || true)
        mirror_url=${mirror_url:-http://deb.debian.org/debian}
        log "debootstrap bookworm ($packages) from $mirror_url"
        start=$(date +%s)
        root=$(mktemp -d "$cache/rootfs.XXXXXX")
        trap '$sudo rm -rf "$root"' EXIT
        $sudo debootstrap --variant=minbase --include="$packages" bookworm "$root" "$mirror_url" >"$cache/debootstrap.log" 2>&1 || {
            log "debootstrap failed; the end of $cache/debootstrap.log:"
            tail -20 "$cache/debootstrap.log" >&2
            exit 1
        }
        $sudo ln -sf python3 "$root/usr/bin/python"
        # pip inside a build then trusts what it trusts on this machine (e.g. a proxy's CA).
        $sudo cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
        $sudo rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
        $sudo tar -C "$root" -cf "$base_tar.tmp" .
        mv "$base_tar.tmp" "$base_tar"
        log "root file system made in $(($(date +%s) - start))s ($(du -h "$base_tar" | cut -f1))"
    fi
    log "importing $base_image"
    podman import --quiet "$base_tar" "$base_image" >/dev/null
fi

log "ready: $(podman --version), base image $base_image ($(podman image inspect --format '{{.Size}}' "$base_image") bytes)"
cat <<EOF
export DOCKER_HOST=unix://$socket
export TESTCONTAINERS_RYUK_DISABLED=true
export CONTAINERS_CONF=$CONTAINERS_CONF
export MIRROR_PYTHON_IMAGE=$base_image
export MIRROR_DEBIAN_IMAGE=$base_image
EOF
