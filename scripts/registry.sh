#!/usr/bin/env bash
# Makes sure a local OCI registry answers on 127.0.0.1:5000 and holds the busybox test
# image, and saves that image as a `docker save` tarball for the local-file tests.
# Idempotent, and quick when everything is already in place.
#
# - A registry that already answers `GET /v2/` on $SANDKIT_REGISTRY (default
#   127.0.0.1:5000) is used as it is.
# - Otherwise, as root: installs Debian's `docker-registry` when missing and starts it in
#   the background (setsid; log: $SANDKIT_REGISTRY_LOG, default /tmp/sandkit-registry.log)
#   with its config file and storage in fresh temporary directories, then waits up to
#   30 s for `/v2/` to answer.
# - Makes sure the Docker Engine and `sandkit-test-busybox:latest` exist
#   (scripts/docker-engine.sh), and pushes that image as
#   $SANDKIT_REGISTRY/sandkit-test-busybox:latest unless the registry already has it
#   (same config digest as the engine's image id). Docker speaks plain HTTP to
#   registries on 127.0.0.0/8 without configuration.
# - Saves the image with `docker save` to $SANDKIT_TEST_IMAGES/busybox.tar (default
#   <repo>/target/test-images/busybox.tar) unless the saved one is of the same image id.
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
REGISTRY="${SANDKIT_REGISTRY:-127.0.0.1:5000}"
REGISTRY_LOG="${SANDKIT_REGISTRY_LOG:-/tmp/sandkit-registry.log}"
SOURCE_IMAGE="${SANDKIT_DOCKER_TEST_IMAGE:-sandkit-test-busybox:latest}"
PUSHED_IMAGE="$REGISTRY/sandkit-test-busybox:latest"
IMAGES_DIR="${SANDKIT_TEST_IMAGES:-$REPO_ROOT/target/test-images}"
WAIT_SECS=30

log() { printf 'registry: %s\n' "$*" >&2; }

need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        log "$1 needs root; run as root or do it first"
        exit 1
    fi
}

if ! command -v curl >/dev/null; then
    need_root "installing curl"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq curl >/dev/null
fi

registry_answers() { curl -fsS -m 2 -o /dev/null "http://$REGISTRY/v2/" 2>/dev/null; }

start_registry() {
    need_root "starting a registry"
    if ! command -v docker-registry >/dev/null; then
        log "installing docker-registry"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry >/dev/null
    fi
    local config_dir storage_dir
    config_dir="$(mktemp -d /tmp/sandkit-registry-config.XXXXXX)"
    storage_dir="$(mktemp -d /tmp/sandkit-registry-storage.XXXXXX)"
    cat >"$config_dir/config.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $storage_dir
  delete:
    enabled: true
http:
  addr: $REGISTRY
EOF
    log "starting docker-registry on $REGISTRY (storage $storage_dir, log $REGISTRY_LOG)"
    # setsid + nohup: the registry outlives this script and the shell that ran it.
    setsid nohup docker-registry serve "$config_dir/config.yml" \
        >>"$REGISTRY_LOG" 2>&1 </dev/null &
    local waited=0
    until registry_answers; do
        if [ "$waited" -ge "$WAIT_SECS" ]; then
            log "the registry did not answer within ${WAIT_SECS}s; last lines of $REGISTRY_LOG:"
            tail -n 20 "$REGISTRY_LOG" >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "registry answers after ${waited}s"
}

# The config digest of the pushed image, or nothing.
pushed_config_digest() {
    curl -fsS -m 5 \
        -H 'Accept: application/vnd.docker.distribution.manifest.v2+json' \
        -H 'Accept: application/vnd.oci.image.manifest.v1+json' \
        "http://$REGISTRY/v2/sandkit-test-busybox/manifests/latest" 2>/dev/null \
        | tr -d ' \n' | grep -o '"config":{[^}]*}' | grep -o 'sha256:[0-9a-f]*' | head -n 1 || true
}

registry_answers || start_registry
"$REPO_ROOT/scripts/docker-engine.sh"

image_id="$(docker image inspect --format '{{.Id}}' "$SOURCE_IMAGE")"
if [ "$(pushed_config_digest)" != "$image_id" ]; then
    log "pushing $SOURCE_IMAGE as $PUSHED_IMAGE"
    docker tag "$SOURCE_IMAGE" "$PUSHED_IMAGE"
    docker push --quiet "$PUSHED_IMAGE" >/dev/null
    if [ "$(pushed_config_digest)" != "$image_id" ]; then
        log "the registry does not hold $image_id as $PUSHED_IMAGE after the push"
        exit 1
    fi
fi

mkdir -p "$IMAGES_DIR"
if [ "$(cat "$IMAGES_DIR/busybox.tar.id" 2>/dev/null || true)" != "$image_id" ]; then
    log "saving $SOURCE_IMAGE to $IMAGES_DIR/busybox.tar"
    docker save -o "$IMAGES_DIR/busybox.tar.partial" "$SOURCE_IMAGE"
    mv "$IMAGES_DIR/busybox.tar.partial" "$IMAGES_DIR/busybox.tar"
    printf '%s\n' "$image_id" >"$IMAGES_DIR/busybox.tar.id"
fi
log "ready: $PUSHED_IMAGE ($image_id), $IMAGES_DIR/busybox.tar"
