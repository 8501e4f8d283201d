// The official Modal JavaScript SDK (npm `modal`, 0.11.1) running a sandbox flow against
// modal-fake.
//
// Run by tests/js_client.rs with MODAL_SERVER_URL pointing at an emulator, twice: in the
// SDK's default mode (V2 sandboxes: `SandboxCreateV2`, `SandboxWaitV2`, ...) and with
// MODAL_SANDBOX_V2=0 (V1 sandboxes). Every step asserts what it expects and prints a line;
// a failure prints the step it happened in and exits non-zero.
//
// The SDK is loaded from $SANDKIT_MODAL_JS_DIR/node_modules, not from a node_modules next
// to this file: ES module imports resolve bare names relative to the importing file only,
// so the package is required through its own `require` entry point from that directory.

import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { createRequire } from "node:module";
import path from "node:path";

const sdkDir = process.env.SANDKIT_MODAL_JS_DIR;
if (!sdkDir) {
  console.error("SANDKIT_MODAL_JS_DIR is not set");
  process.exit(2);
}
const require = createRequire(path.join(path.resolve(sdkDir), "flow-loader.cjs"));
const modal = require("modal");

const RUN = randomUUID().replaceAll("-", "").slice(0, 10);
const APP_NAME = "sandkit-js-flow";
// Files go under /tmp, writable in every sandbox: on Modal and Docker the whole root is
// writable, but local processes under bubblewrap keep system directories (and `/`) read-only.
const BASE_DIR = "/tmp";
const FLOW_DIR = `${BASE_DIR}/flow`;

let current = "start";
function step(name) {
  current = name;
  console.log(`step: ${name}`);
}

/** Modal's V1 shape, which the SDK routes V1 calls by: `sb-` + 22 alphanumerics. */
function isV1Id(sandboxId) {
  return /^sb-[0-9A-Za-z]{22}$/.test(sandboxId);
}

/** Collects an async generator of sandboxes into their ids. */
async function ids(generator) {
  const found = [];
  for await (const sandbox of generator) {
    found.push(sandbox.sandboxId);
  }
  return found;
}

/** Awaits `promise`, which must reject with an instance of `errorClass`. */
async function rejectsWith(promise, errorClass, what) {
  try {
    await promise;
  } catch (err) {
    assert.ok(
      err instanceof errorClass,
      `${what}: expected ${errorClass.name}, got ${err?.constructor?.name}: ${err?.message}`,
    );
    return err;
  }
  assert.fail(`${what}: did not fail`);
}

async function main() {
  const client = new modal.ModalClient();
  // Ask the SDK's own profile rather than parse MODAL_SANDBOX_V2 again.
  const v2 = client.profile.sandboxV2;
  console.log(`mode: ${v2 ? "V2" : "V1"} sandboxes`);
  const assertSandboxId = (sandboxId) => {
    assert.ok(sandboxId.startsWith("sb-"), sandboxId);
    assert.equal(isV1Id(sandboxId), !v2, `${sandboxId} is not a ${v2 ? "V2" : "V1"} id`);
  };

  step("app lookup");
  const app = await client.apps.fromName(APP_NAME, { createIfMissing: true });
  assert.ok(app.appId.startsWith("ap-"), app.appId);
  const image = client.images.fromRegistry("debian:bookworm-slim");

  step("create with tags, name, env and a secret");
  const name = `flow-${RUN}`;
  const tags = { suite: "js-flow", run: RUN };
  const secret = await client.secrets.fromObject({ FLOW_SECRET: "s3cret-value" });
  const sb = await client.sandboxes.create(app, image, {
    name,
    tags,
    env: { SANDBOX_VAR: "from-sandbox" },
    secrets: [secret],
    timeoutMs: 300_000,
  });
  assertSandboxId(sb.sandboxId);

  step("exec: stdout, stderr and exit code");
  let p = await sb.exec(["sh", "-c", "echo out; echo err >&2; exit 3"]);
  assert.equal(await p.stdout.readText(), "out\n");
  assert.equal(await p.stderr.readText(), "err\n");
  assert.equal(await p.wait(), 3);

  step("exec: stdin");
  p = await sb.exec(["cat"]);
  await p.stdin.writeText("hello stdin\n");
  await p.stdin.writeText("second line\n");
  await p.stdin.close();
  assert.equal(await p.stdout.readText(), "hello stdin\nsecond line\n");
  assert.equal(await p.wait(), 0);

  step("exec: environment from the sandbox's env and secret, and the exec's env");
  p = await sb.exec(
    ["sh", "-c", 'printf "%s/%s/%s" "$FLOW_SECRET" "$SANDBOX_VAR" "$EXEC_VAR"'],
    { env: { EXEC_VAR: "from-exec" } },
  );
  assert.equal(await p.stdout.readText(), "s3cret-value/from-sandbox/from-exec");
  assert.equal(await p.wait(), 0);

  step("exec: workdir");
  p = await sb.exec(["sh", "-c", "mkdir -p made && echo from-exec > made/by-exec.txt"], {
    workdir: BASE_DIR,
  });
  assert.equal(await p.wait(), 0);
  assert.equal(await sb.filesystem.readText(`${BASE_DIR}/made/by-exec.txt`), "from-exec\n");
  p = await sb.exec(["cat", "made/by-exec.txt"], { workdir: BASE_DIR });
  assert.equal(await p.stdout.readText(), "from-exec\n");
  assert.equal(await p.wait(), 0);

  step("exec: binary output survives");
  p = await sb.exec(["printf", "\\377\\376abc"], { mode: "binary" });
  assert.deepEqual(
    Buffer.from(await p.stdout.readBytes()),
    Buffer.from([0xff, 0xfe, 0x61, 0x62, 0x63]),
  );
  assert.equal(await p.wait(), 0);

  step("exec: a timeout kills the command");
  const started = Date.now();
  p = await sb.exec(["sleep", "60"], { timeoutMs: 1000 });
  // Killed by SIGKILL at its timeout: 128 + 9, as the SDK's own tests expect of Modal.
  assert.equal(await p.wait(), 137);
  const took = Date.now() - started;
  assert.ok(took < 20_000, `the timed-out exec took ${took} ms`);

  step("files: write, read, stat, list");
  await sb.filesystem.writeText("hello file\n", `${FLOW_DIR}/hello.txt`);
  assert.equal(await sb.filesystem.readText(`${FLOW_DIR}/hello.txt`), "hello file\n");
  await sb.filesystem.writeBytes(new Uint8Array([0, 1, 0x62, 0x69, 0x6e]), `${FLOW_DIR}/data.bin`);
  assert.deepEqual(
    Buffer.from(await sb.filesystem.readBytes(`${FLOW_DIR}/data.bin`)),
    Buffer.from([0, 1, 0x62, 0x69, 0x6e]),
  );
  const info = await sb.filesystem.stat(`${FLOW_DIR}/hello.txt`);
  assert.equal(info.type, "file");
  assert.equal(info.size, "hello file\n".length);
  assert.equal(info.name, "hello.txt");
  // What the filesystem API wrote, a command reads (by a path relative to its workdir:
  // without bubblewrap, paths inside command lines are not translated).
  p = await sb.exec(["cat", "flow/hello.txt"], { workdir: BASE_DIR });
  assert.equal(await p.stdout.readText(), "hello file\n");
  assert.equal(await p.wait(), 0);
  await sb.filesystem.makeDirectory(`${FLOW_DIR}/sub`);
  const listed = (await sb.filesystem.listFiles(FLOW_DIR)).map((entry) => [entry.name, entry.type]);
  assert.deepEqual(listed, [
    ["data.bin", "file"],
    ["hello.txt", "file"],
    ["sub", "directory"],
  ]);

  step("files: remove");
  await sb.filesystem.remove(`${FLOW_DIR}/data.bin`);
  await rejectsWith(
    sb.filesystem.stat(`${FLOW_DIR}/data.bin`),
    modal.SandboxFilesystemNotFoundError,
    "stat of a removed file",
  );
  await sb.filesystem.remove(`${BASE_DIR}/made`, { recursive: true });
  await rejectsWith(
    sb.filesystem.listFiles(`${BASE_DIR}/made`),
    modal.SandboxFilesystemNotFoundError,
    "listing a removed directory",
  );

  step("files: errors map to the SDK's exceptions");
  await rejectsWith(
    sb.filesystem.readText(`${FLOW_DIR}/missing.txt`),
    modal.SandboxFilesystemNotFoundError,
    "reading a missing file",
  );
  await rejectsWith(
    sb.filesystem.readText(FLOW_DIR),
    modal.SandboxFilesystemIsADirectoryError,
    "reading a directory",
  );
  await rejectsWith(
    sb.filesystem.remove(FLOW_DIR),
    modal.SandboxFilesystemDirectoryNotEmptyError,
    "removing a non-empty directory without recursive",
  );

  step("tags and list by tags");
  assert.deepEqual(await sb.getTags(), tags);
  assert.deepEqual(await ids(client.sandboxes.list({ appId: app.appId, tags: { run: RUN } })), [
    sb.sandboxId,
  ]);
  assert.deepEqual(await ids(client.sandboxes.list({ appId: app.appId, tags: { run: "nope" } })), []);
  const retagged = { ...tags, extra: "yes" };
  await sb.setTags(retagged);
  assert.deepEqual(await sb.getTags(), retagged);
  assert.deepEqual(
    await ids(client.sandboxes.list({ appId: app.appId, tags: { run: RUN, extra: "yes" } })),
    [sb.sandboxId],
  );

  step("fromId");
  const byId = await client.sandboxes.fromId(sb.sandboxId);
  assert.equal(byId.sandboxId, sb.sandboxId);
  p = await byId.exec(["echo", "via-from-id"]);
  assert.equal(await p.stdout.readText(), "via-from-id\n");
  assert.equal(await p.wait(), 0);
  assert.equal(await byId.filesystem.readText(`${FLOW_DIR}/hello.txt`), "hello file\n");

  step("fromName");
  const byName = await client.sandboxes.fromName(APP_NAME, name);
  assert.equal(byName.sandboxId, sb.sandboxId);
  p = await byName.exec(["echo", "via-from-name"]);
  assert.equal(await p.stdout.readText(), "via-from-name\n");
  assert.equal(await p.wait(), 0);
  await rejectsWith(
    client.sandboxes.fromName(APP_NAME, `missing-${RUN}`),
    modal.NotFoundError,
    "fromName of a name no sandbox has",
  );

  step("duplicate names are refused");
  await rejectsWith(
    client.sandboxes.create(app, image, { name }),
    modal.AlreadyExistsError,
    "a second sandbox with the same name",
  );

  step("filesystem snapshot and restore");
  const snapshot = await sb.snapshotFilesystem();
  assert.ok(snapshot.imageId.startsWith("im-"), snapshot.imageId);
  const restored = await client.sandboxes.create(app, snapshot, {
    tags: { run: RUN, restored: "yes" },
  });
  assertSandboxId(restored.sandboxId);
  assert.notEqual(restored.sandboxId, sb.sandboxId);
  assert.equal(await restored.filesystem.readText(`${FLOW_DIR}/hello.txt`), "hello file\n");
  await restored.terminate();

  step("entrypoint: stdout, stderr and exit code");
  const main = await client.sandboxes.create(app, image, {
    command: ["sh", "-c", "echo from-entrypoint; echo to-stderr >&2; exit 5"],
    timeoutMs: 120_000,
  });
  assertSandboxId(main.sandboxId);
  assert.equal(await main.stdout.readText(), "from-entrypoint\n");
  assert.equal(await main.stderr.readText(), "to-stderr\n");
  assert.equal(await main.wait(), 5);

  step("entrypoint: stdin");
  const fed = await client.sandboxes.create(app, image, {
    command: ["sh", "-c", 'while read -r line; do echo "got $line"; done'],
    timeoutMs: 120_000,
  });
  await fed.stdin.writeText("one\n");
  await fed.stdin.writeText("two\n");
  await fed.stdin.close();
  assert.equal(await fed.stdout.readText(), "got one\ngot two\n");
  assert.equal(await fed.wait(), 0);

  step("terminate");
  assert.equal(await sb.poll(), null);
  await sb.terminate();
  assert.equal(await sb.wait(), 137);
  assert.equal(await sb.poll(), 137);
  assert.deepEqual(await ids(client.sandboxes.list({ appId: app.appId, tags: { run: RUN } })), []);
  await rejectsWith(
    client.sandboxes.fromName(APP_NAME, name),
    modal.NotFoundError,
    "fromName of a terminated sandbox",
  );

  step("exec after terminate fails");
  // Through the handle that knows the task and its router...
  await rejectsWith(sb.exec(["echo", "too late"]), Error, "exec on the terminated handle");
  // ...and through a fresh one. The SDK takes a task id when `SandboxGetTaskId` has one
  // and raises ConflictError only for a result without one; the emulator reports the
  // finished task's id beside its result, so here the router refuses the exec instead.
  await rejectsWith(
    (await client.sandboxes.fromId(sb.sandboxId)).exec(["echo", "too late"]),
    Error,
    "exec on a fresh handle to the terminated sandbox",
  );

  client.close();
  console.log("js flow: ok");
}

try {
  await main();
  // The SDK keeps gRPC channels and idle timers that would hold the process open.
  process.exit(0);
} catch (err) {
  console.error(`step failed: ${current}`);
  console.error(err?.stack ?? err);
  process.exit(1);
}
