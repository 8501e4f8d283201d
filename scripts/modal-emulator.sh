# Sourced by the test scripts: `start_modal_emulator` runs `modal-fake emulate` on a free
# port, exports MODAL_SERVER_URL and test credentials for Modal clients, and kills the
# emulator when the calling script exits; `stop_modal_emulator` ends it sooner.
# Needs $target_dir (the cargo target directory holding debug/modal-fake).

start_modal_emulator() {
    local log
    log=$(mktemp)
    "$target_dir/debug/modal-fake" emulate --port 0 >"$log" 2>&1 &
    emulator_pid=$!
    trap 'kill "$emulator_pid" 2>/dev/null || true' EXIT
    for _ in $(seq 1 100); do
        grep -q '^listening on ' "$log" && break
        sleep 0.1
    done
    MODAL_SERVER_URL=$(sed -n 's/^listening on //p' "$log" | head -n 1)
    if [ -z "$MODAL_SERVER_URL" ]; then
        cat "$log" >&2
        echo "the Modal emulator did not start" >&2
        exit 1
    fi
    export MODAL_SERVER_URL MODAL_TOKEN_ID=ak-sandkit-test MODAL_TOKEN_SECRET=as-sandkit-test
}

stop_modal_emulator() {
    kill "$emulator_pid"
    wait "$emulator_pid" 2>/dev/null || true
    trap - EXIT
    unset MODAL_SERVER_URL MODAL_TOKEN_ID MODAL_TOKEN_SECRET
}
