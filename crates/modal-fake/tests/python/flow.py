"""The official Modal Python client (modal==1.6.4) running a sandbox flow against modal-fake.

Run by tests/python_client.rs with MODAL_SERVER_URL pointing at an emulator, twice: in the
client's default mode (V2 sandboxes: `SandboxCreateV2`, `SandboxWaitV2`, ...) and with
MODAL_SANDBOX_V2=0 (V1 sandboxes). Every step asserts what it expects and prints a line, so
a failure names the step.
"""

import os
import sys
import uuid

import modal
import modal.config

RUN = uuid.uuid4().hex[:10]
APP_NAME = "sandkit-python-flow"
# Files go under /tmp, writable in every sandbox: on Modal and Docker the whole root is
# writable, but local processes under bubblewrap keep system directories (and `/`) read-only.
BASE_DIR = "/tmp"
FLOW_DIR = f"{BASE_DIR}/flow"
# The client creates V2 sandboxes unless MODAL_SANDBOX_V2 (or the profile) turns them off;
# ask the client's own configuration rather than parse the variable again.
V2 = bool(modal.config.config.get("sandbox_v2"))


def step(name):
    print(f"step: {name}", flush=True)


def is_v1_id(sandbox_id):
    """Modal's V1 shape, which the client routes V1 calls by: `sb-` + 22 alphanumerics."""
    suffix = sandbox_id.removeprefix("sb-")
    return sandbox_id.startswith("sb-") and len(suffix) == 22 and suffix.isalnum()


def assert_sandbox_id(sandbox_id):
    """A sandbox of the mode's family: V1-shaped ids with MODAL_SANDBOX_V2=0, others by default."""
    assert sandbox_id.startswith("sb-"), sandbox_id
    assert is_v1_id(sandbox_id) != V2, (sandbox_id, "V2" if V2 else "V1")


def main():
    print(f"mode: {'V2' if V2 else 'V1'} sandboxes", flush=True)
    step("app lookup")
    app = modal.App.lookup(APP_NAME, create_if_missing=True)

    step("create with tags, name and a secret")
    sb = modal.Sandbox.create(
        app=app,
        name=f"flow-{RUN}",
        tags={"suite": "python-flow", "run": RUN},
        secrets=[modal.Secret.from_dict({"FLOW_SECRET": "s3cret-value"})],
        timeout=300,
    )
    assert_sandbox_id(sb.object_id)

    step("exec: stdout, stderr and exit code")
    p = sb.exec("sh", "-c", "echo out; echo err >&2; exit 3")
    out = p.stdout.read()
    err = p.stderr.read()
    code = p.wait()
    assert out == "out\n", repr(out)
    assert err == "err\n", repr(err)
    assert code == 3, code

    step("exec: stdin")
    p = sb.exec("cat")
    p.stdin.write(b"hello stdin\n")
    p.stdin.write(b"second line\n")
    p.stdin.write_eof()
    p.stdin.drain()
    out = p.stdout.read()
    assert out == "hello stdin\nsecond line\n", repr(out)
    assert p.wait() == 0

    step("exec: environment from the sandbox secret and the exec")
    p = sb.exec("sh", "-c", 'printf "%s/%s" "$FLOW_SECRET" "$EXEC_VAR"', env={"EXEC_VAR": "from-exec"})
    out = p.stdout.read()
    assert out == "s3cret-value/from-exec", repr(out)
    p.wait()

    step("exec: binary output survives")
    p = sb.exec("printf", "\\377\\376abc", text=False)
    raw = p.stdout.read()
    assert raw == b"\xff\xfeabc", repr(raw)
    p.wait()

    step("files: write and read")
    sb.filesystem.write_text("hello file\n", f"{FLOW_DIR}/hello.txt")
    assert sb.filesystem.read_text(f"{FLOW_DIR}/hello.txt") == "hello file\n"
    sb.filesystem.write_bytes(b"\x00\x01binary", f"{FLOW_DIR}/data.bin")
    assert sb.filesystem.read_bytes(f"{FLOW_DIR}/data.bin") == b"\x00\x01binary"
    info = sb.filesystem.stat(f"{FLOW_DIR}/hello.txt")
    assert info.size == len("hello file\n") and info.is_file(), info
    names = sorted(entry.name for entry in sb.filesystem.list_files(FLOW_DIR))
    assert names == ["data.bin", "hello.txt"], names

    step("files: errors map to the client's exceptions")
    try:
        sb.filesystem.read_text(f"{FLOW_DIR}/missing.txt")
    except modal.exception.SandboxFilesystemNotFoundError:
        pass
    else:
        raise AssertionError("reading a missing file did not fail")

    step("files: what exec wrote is readable and vice versa")
    p = sb.exec("cat", "flow/hello.txt", workdir=BASE_DIR)
    assert p.stdout.read() == "hello file\n"
    assert p.wait() == 0
    p = sb.exec("sh", "-c", "mkdir -p made && echo from-exec > made/by-exec.txt", workdir=BASE_DIR)
    assert p.wait() == 0
    assert sb.filesystem.read_text(f"{BASE_DIR}/made/by-exec.txt") == "from-exec\n"
    sb.filesystem.remove(f"{BASE_DIR}/made", recursive=True)

    step("list by tags")
    listed = [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"run": RUN})]
    assert listed == [sb.object_id], listed
    assert [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"run": "nope"})] == []
    assert sb.get_tags() == {"suite": "python-flow", "run": RUN}

    step("from_name")
    same = modal.Sandbox.from_name(APP_NAME, f"flow-{RUN}")
    assert same.object_id == sb.object_id
    p = same.exec("echo", "via-from-name")
    assert p.stdout.read() == "via-from-name\n"

    if V2:
        step("a name set after creation (V2 only)")
        late = modal.Sandbox.create(app=app, timeout=120)
        late._experimental_set_name(f"late-{RUN}")
        late._experimental_set_name(f"late-{RUN}")  # the same name again: a retry
        assert modal.Sandbox.from_name(APP_NAME, f"late-{RUN}").object_id == late.object_id
        late.terminate()

    step("duplicate names are refused")
    try:
        modal.Sandbox.create(app=app, name=f"flow-{RUN}")
    except modal.exception.AlreadyExistsError:
        pass
    else:
        raise AssertionError("a second sandbox with the same name was created")

    step("filesystem snapshot and restore")
    image = sb.snapshot_filesystem()
    assert image.object_id.startswith("im-"), image.object_id
    restored = modal.Sandbox.create(app=app, image=image, tags={"run": RUN, "restored": "yes"})
    assert_sandbox_id(restored.object_id)
    assert restored.filesystem.read_text(f"{FLOW_DIR}/hello.txt") == "hello file\n"
    restored.terminate()

    step("entrypoint: stdout, stderr and exit code")
    main = modal.Sandbox.create(
        "sh", "-c", "echo from-entrypoint; echo to-stderr >&2; exit 5", app=app, timeout=120
    )
    assert_sandbox_id(main.object_id)
    assert main.stdout.read() == "from-entrypoint\n"
    assert main.stderr.read() == "to-stderr\n"
    main.wait(raise_on_termination=False)
    assert main.returncode == 5, main.returncode

    step("entrypoint: stdin")
    fed = modal.Sandbox.create("sh", "-c", "while read -r line; do echo \"got $line\"; done", app=app, timeout=120)
    fed.stdin.write(b"one\n")
    fed.stdin.write(b"two\n")
    fed.stdin.write_eof()
    fed.stdin.drain()
    assert fed.stdout.read() == "got one\ngot two\n"
    fed.wait(raise_on_termination=False)
    assert fed.returncode == 0, fed.returncode

    step("terminate")
    assert sb.poll() is None
    sb.terminate()
    sb.wait(raise_on_termination=False)
    assert sb.returncode == 137, sb.returncode
    assert [s.object_id for s in modal.Sandbox.list(app_id=app.app_id, tags={"run": RUN})] == []
    try:
        modal.Sandbox.from_name(APP_NAME, f"flow-{RUN}")
    except modal.exception.NotFoundError:
        pass
    else:
        raise AssertionError("a terminated sandbox was still found by name")

    print("python flow: ok", flush=True)


if __name__ == "__main__":
    try:
        main()
    except Exception:
        import traceback

        traceback.print_exc()
        sys.exit(1)
