#!/usr/bin/env bash
# Makes sure a Docker Engine answers and the busybox test image exists. Idempotent.
#
# - An engine that already answers `docker info` is used as it is (DOCKER_HOST honoured).
# - Otherwise, as root: installs Debian's `docker.io` (and `busybox-static`) when missing,
#   starts `dockerd` in the background (log: $SANDKIT_DOCKERD_LOG, default
#   /tmp/sandkit-dockerd.log) with --live-restore, so sandboxes survive an engine restart,
#   and waits up to 60 s for it to answer.
# - Builds `sandkit-test-busybox:latest` when missing: `FROM scratch` plus Debian's static
#   busybox, so no registry is needed.
set -euo pipefail

TEST_IMAGE="${SANDKIT_DOCKER_TEST_IMAGE:-sandkit-test-busybox:latest}"
DOCKERD_LOG="${SANDKIT_DOCKERD_LOG:-/tmp/sandkit-dockerd.log}"
WAIT_SECS="${SANDKIT_DOCKERD_WAIT_SECS:-60}"

log() { printf 'docker-engine: %s\n' "$*" >&2; }

engine_answers() { docker info >/dev/null 2>&1; }

install_missing() {
    local missing=()
    command -v dockerd >/dev/null || missing+=(docker.io)
    command -v docker >/dev/null || missing+=(docker.io)
    [ -x /bin/busybox ] || missing+=(busybox-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    if [ "$(id -u)" -ne 0 ]; then
        log "missing packages: ${missing[*]}; run as root or install them first"
        exit 1
    fi
    log "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

start_engine() {
    if [ "$(id -u)" -ne 0 ]; then
        log "no Docker Engine answers and starting dockerd needs root"
        exit 1
    fi
    if [ -n "${DOCKER_HOST:-}" ] && [ "$DOCKER_HOST" != "unix:///var/run/docker.sock" ]; then
        log "DOCKER_HOST=$DOCKER_HOST does not answer; not starting a local engine in its place"
        exit 1
    fi
    if pgrep -x dockerd >/dev/null; then
        log "dockerd is running but does not answer yet; waiting for it"
    else
        log "starting dockerd (log: $DOCKERD_LOG)"
        # setsid + nohup: the engine outlives this script and the shell that ran it.
        # --live-restore: containers (sandboxes) keep running while dockerd restarts.
        setsid nohup dockerd --host unix:///var/run/docker.sock --live-restore \
            >>"$DOCKERD_LOG" 2>&1 </dev/null &
    fi
    local waited=0
    until engine_answers; do
        if [ "$waited" -ge "$WAIT_SECS" ]; then
            log "dockerd did not answer within ${WAIT_SECS}s; last lines of $DOCKERD_LOG:"
            tail -n 20 "$DOCKERD_LOG" >&2 || true
            exit 1
        fi
        sleep 1
        waited=$((waited + 1))
    done
    log "engine answers after ${waited}s"
}

# Bump when the Dockerfile below changes, so existing machines rebuild the image.
TEST_IMAGE_VERSION=2

build_test_image() {
    local version
    version="$(docker image inspect --format '{{ index .Config.Labels "org.sandkit.test-image.version" }}' "$TEST_IMAGE" 2>/dev/null || true)"
    if [ "$version" = "$TEST_IMAGE_VERSION" ]; then
        return 0
    fi
    [ -x /bin/busybox ] || install_missing
    log "building $TEST_IMAGE from /bin/busybox"
    local context
    context="$(mktemp -d)"
    trap 'rm -rf "$context"' RETURN
    cp /bin/busybox "$context/busybox"
    # Besides busybox: /tmp, and a passwd file with an unprivileged user (uid 1000) so
    # tests can run commands as someone other than root.
    cat >"$context/Dockerfile" <<EOF
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN mkdir -p /tmp /root /home/sandbox && chmod 1777 /tmp \\
 && printf 'root:x:0:0:root:/root:/bin/sh\\nsandbox:x:1000:1000:sandbox:/home/sandbox:/bin/sh\\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\\n' > /etc/passwd \\
 && printf 'root:x:0:\\nsandbox:x:1000:\\nnogroup:x:65534:\\n' > /etc/group \\
 && chown 1000:1000 /home/sandbox
LABEL org.sandkit.test-image.version="$TEST_IMAGE_VERSION"
CMD ["/bin/sh"]
EOF
    # The legacy builder needs no registry and no buildx plugin.
    DOCKER_BUILDKIT=0 docker build --quiet --tag "$TEST_IMAGE" "$context" >/dev/null 2>"$context/build.log" || {
        cat "$context/build.log" >&2
        return 1
    }
}

if ! engine_answers; then
    install_missing
    start_engine
fi
build_test_image
log "ready: $(docker version --format 'engine {{.Server.Version}}, API {{.Server.APIVersion}}'), image $TEST_IMAGE"
