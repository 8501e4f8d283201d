#!/usr/bin/env bash
# The Python package (crates/python): builds the abi3 wheel with maturin, installs it in
# a venv with inspect-ai, and runs its pytest suite, inspect_ai's own sandbox self_check
# and a small inspect eval on local-process, local-docker and modal (the emulator).
#
# Run from the repository root after the Docker engine is up and the workspace is built
# (scripts/test.sh does both): it uses target/debug/modal-fake and target/debug/sandkit.
set -euo pipefail

target_dir="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TARGET_DIR="$target_dir" CARGO_INCREMENTAL=0
venv="${SANDKIT_PYTHON_VENV:-$PWD/.venv/python}"

echo "== Python venv with maturin, inspect-ai, pytest"
[ -x "$venv/bin/python" ] || python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check \
    'maturin>=1.9,<2' 'inspect-ai==0.3.285' 'pytest>=8' 'pytest-asyncio>=1'

# No --locked for this crate: it has its own Cargo.lock, and a dependency that a
# workspace crate gains must not fail this step; cargo keeps every existing pin.
echo "== lint the extension crate (its own workspace, so the main clippy run skips it)"
(cd crates/python && cargo fmt -- --check && cargo clippy -- -D warnings)

# A debug build by default: it reuses the workspace's debug artifacts (about 1 min here,
# against 4 min for --release, which rebuilds every provider in release mode); set
# SANDKIT_PYTHON_RELEASE=1 for a release wheel (the benchmark wants one).
echo "== build and install the wheel"
started=$(date +%s)
rm -rf "$target_dir/wheels/sandkit-"*.whl
release=()
[ "${SANDKIT_PYTHON_RELEASE:-0}" = 1 ] && release=(--release)
"$venv/bin/maturin" build "${release[@]}" -m crates/python/Cargo.toml -i "$venv/bin/python" \
    -o "$target_dir/wheels" --quiet
wheel=$(ls "$target_dir/wheels/sandkit-"*.whl)
echo "built $(basename "$wheel") ($(du -h "$wheel" | cut -f1)) in $(( $(date +%s) - started )) s"
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheel"

echo "== the Modal emulator"
# shellcheck source=scripts/modal-emulator.sh
. scripts/modal-emulator.sh
start_modal_emulator

echo "== pytest: the package's suite, inspect_ai's self_check and an eval on every provider"
export SANDKIT_PYTHON_PROVIDERS="local-process,local-docker,modal"
export SANDKIT_CLI="$target_dir/debug/sandkit" INSPECT_DISPLAY=none
export INSPECT_LOG_DIR="${INSPECT_LOG_DIR:-$(mktemp -d)}"
(cd crates/python && "$venv/bin/python" -m pytest -p no:cacheprovider -rxXfE)

echo "== no sandbox left by the inspect environment"
for provider in local-process local-docker modal; do
    left=$("$SANDKIT_CLI" --provider "$provider" ls --json --tag inspect.sandbox-env=sandkit)
    if [ "$left" != "[]" ]; then
        echo "$provider: sandboxes left by the inspect environment: $left" >&2
        exit 1
    fi
done
echo "no sandbox left on local-process, local-docker or modal"

stop_modal_emulator
