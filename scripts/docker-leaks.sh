#!/usr/bin/env bash
# Fails when a container or image labelled with the given sandkit run id remains.
# Usage: scripts/docker-leaks.sh RUN_ID
set -euo pipefail

if [ $# -ne 1 ] || [ -z "$1" ]; then
    echo "usage: $0 RUN_ID" >&2
    exit 2
fi
run_id="$1"
label="sandkit.run-id=$run_id"

if ! docker info >/dev/null 2>&1; then
    echo "docker-leaks: no Docker Engine answers; cannot check run $run_id" >&2
    exit 1
fi

containers="$(docker ps --all --filter "label=$label" \
    --format '{{.ID}}  {{.Names}}  {{.Status}}  {{.Image}}')"
images="$(docker images --all --filter "label=$label" \
    --format '{{.ID}}  {{.Repository}}:{{.Tag}}  {{.CreatedSince}}')"

status=0
if [ -n "$containers" ]; then
    echo "docker-leaks: containers left by run $run_id:" >&2
    echo "$containers" >&2
    status=1
fi
if [ -n "$images" ]; then
    echo "docker-leaks: images left by run $run_id:" >&2
    echo "$images" >&2
    status=1
fi
exit "$status"
