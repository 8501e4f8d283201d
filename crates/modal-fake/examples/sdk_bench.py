"""The official Modal Python client's side of `sdk_bench.rs`: against MODAL_SERVER_URL, times
create-to-first-exec (`Sandbox.create`, then `exec("true")` with its output read and its
end waited for) and the exec round trip of `true` in one sandbox, and prints them as one JSON line. Run by `sdk_bench.rs`,
which sets the server, the credentials and MODAL_SANDBOX_V2.
"""

import json
import sys
import time

import modal
import modal.config


def main():
    creates, execs = int(sys.argv[1]), int(sys.argv[2])
    app = modal.App.lookup("sandkit-sdk-bench", create_if_missing=True)

    def run_true(sb):
        # The output is read, as sandkit's `run` returns it.
        p = sb.exec("true")
        p.stdout.read()
        p.stderr.read()
        p.wait()
        assert p.returncode == 0, p.returncode

    create_ms = []
    # One round more than asked: the first warms the client's connections up.
    for i in range(creates + 1):
        started = time.perf_counter()
        sb = modal.Sandbox.create(app=app, timeout=300)
        run_true(sb)
        if i > 0:
            create_ms.append((time.perf_counter() - started) * 1000)
        sb.terminate()

    sb = modal.Sandbox.create(app=app, timeout=300)
    exec_ms = []
    for i in range(execs + 5):
        started = time.perf_counter()
        run_true(sb)
        if i >= 5:
            exec_ms.append((time.perf_counter() - started) * 1000)
    sb.terminate()
    mode = "V2" if modal.config.config.get("sandbox_v2") else "V1"
    print(json.dumps({"mode": mode, "create_ms": create_ms, "exec_ms": exec_ms}), flush=True)


if __name__ == "__main__":
    main()
