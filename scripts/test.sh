#!/usr/bin/env bash
# The whole test suite, on a fresh Debian machine or a developer's: installs what the tests
# need (bubblewrap, passt, busybox, Docker Engine, a local OCI registry, the official
# `modal` Python client), starts the engine and the registry, runs lint, docs and every
# test (each provider through the conformance suite and the security referee), and fails
# if any sandbox, container or image this run created is left behind.
set -euo pipefail
cd "$(dirname "$0")/.."

# Each step says how much disk is left, so a CI log shows where the space went.
step() {
    printf '\n==> %s (disk free: %s)\n' "$*" "$(df -h --output=avail . | tail -n 1 | tr -d ' ')"
}

# One id for everything this run creates, so leftovers can be found.
export SANDKIT_RUN_ID="${SANDKIT_RUN_ID:-test-$(date +%s)-$$}"
export SANDKIT_OWNER="${SANDKIT_OWNER:-sandkit-tests}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# Incremental state is for edit-compile loops; in one run it only costs disk (17 GB here).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
target_dir="${CARGO_TARGET_DIR:-$PWD/target}"

step "system packages"
missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v pasta >/dev/null || missing+=(passt)
command -v tmux >/dev/null || missing+=(tmux)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v dockerd >/dev/null || missing+=(docker.io)
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || missing+=(python3-venv)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "missing packages: ${missing[*]} (run as root, or install them first)" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

step "Docker Engine and the busybox test image"
scripts/docker-engine.sh

step "a local OCI registry on 127.0.0.1:5000 with the busybox test image"
# For local-process's daemonless image pulls and local-docker's pull path.
scripts/registry.sh

step "Python venv with the official modal client"
export SANDKIT_MODAL_VENV="${SANDKIT_MODAL_VENV:-$PWD/.venv/modal}"
if [ ! -x "$SANDKIT_MODAL_VENV/bin/python" ] || ! "$SANDKIT_MODAL_VENV/bin/python" -c 'import modal' 2>/dev/null; then
    python3 -m venv "$SANDKIT_MODAL_VENV"
    "$SANDKIT_MODAL_VENV/bin/pip" install --quiet --disable-pip-version-check 'modal==1.6.4'
fi

step "the official modal JavaScript SDK (npm modal@0.11.1, for the emulator's JS referee)"
export SANDKIT_MODAL_JS_DIR="${SANDKIT_MODAL_JS_DIR:-$PWD/.venv/modal-js}"
modal_js_manifest="$SANDKIT_MODAL_JS_DIR/node_modules/modal/package.json"
if ! node -e 'process.exit(require(process.argv[1]).version === "0.11.1" ? 0 : 1)' "$modal_js_manifest" 2>/dev/null; then
    # Not from apt: Debian's Node.js is older than the 20 the SDK needs.
    if ! command -v npm >/dev/null; then
        echo "npm (Node.js 20 or newer) is needed to install the modal JavaScript SDK" >&2
        exit 1
    fi
    npm install --prefix "$SANDKIT_MODAL_JS_DIR" --no-audit --no-fund --loglevel=error 'modal@0.11.1'
fi

step "format, lints, docs, and core's dependency rule"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet
if cargo tree -p sandkit-core -e normal --prefix none | grep -E '^(bollard|tonic|reqwest|hyper) ' ; then
    echo "sandkit-core must not depend on a transport crate" >&2
    exit 1
fi
# The facade with default features links local-process only: no engine or gRPC client, and
# none of the command line's crates.
if cargo tree -p sandkit -e normal --prefix none | grep -E '^(bollard|tonic|clap|indicatif|sandkit-conformance) ' ; then
    echo "sandkit with default features must not depend on these" >&2
    exit 1
fi

step "tests (every provider runs the conformance suite)"
cargo test --workspace --locked --no-fail-fast
# The binaries the later steps run, built with the workspace's features (a `cargo run -p`
# would resolve features per package and rebuild much of the tree a second time).
cargo build --workspace --bins --locked --quiet

step "local-docker survives a dockerd restart (this run owns the engine)"
SANDKIT_DOCKER_RESTART_TEST=1 cargo test --workspace --locked --test engine_restart

step "the out-of-tree provider template, with its own conformance run"
(cd examples/provider-template && export CARGO_TARGET_DIR="$target_dir" CARGO_PROFILE_DEV_DEBUG=line-tables-only && cargo clippy --all-targets --locked -- -D warnings && cargo test --locked)

step "the example orchestrator: 100 jobs routed over local-process"
"$target_dir/debug/sandkit-example-orchestrator" --pools examples/orchestrator/pools-local.toml --jobs 100

step "the example orchestrator: 100 jobs over local-process and Modal (the emulator)"
# shellcheck source=scripts/modal-emulator.sh
. scripts/modal-emulator.sh
start_modal_emulator
"$target_dir/debug/sandkit-example-orchestrator" --pools examples/orchestrator/pools-with-modal.toml --jobs 100
stop_modal_emulator

step "the Python package: its pytest suite, inspect_ai's self_check and an inspect eval on every provider"
scripts/python.sh

step "leak check"
scripts/docker-leaks.sh "$SANDKIT_RUN_ID"
left=$("$target_dir/debug/sandkit" --provider local-process ls --json --tag "sandkit.run-id=$SANDKIT_RUN_ID")
if [ "$left" != "[]" ]; then
    echo "local-process sandboxes left by run $SANDKIT_RUN_ID:" >&2
    echo "$left" >&2
    exit 1
fi
echo "no sandboxes, containers or images left by run $SANDKIT_RUN_ID"
