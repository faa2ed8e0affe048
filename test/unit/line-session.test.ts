import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { LineSession, deadlineRunner, type LineProtocol } from "../../src/adapters/firewall/exec.js";
import { FirewallError } from "../../src/core/errors.js";

/**
 * A stand-in for `ipset -`: a prompt at start and after each command; output comes in two writes,
 * and the prompt itself is split across writes, as a pipe may deliver it.
 */
const TOOL = `
const w = (s) => new Promise((r) => process.stdout.write(s, r));
const pause = (ms = 5) => new Promise((r) => setTimeout(r, ms));
let chain = w("tool> ");
require("node:readline").createInterface({ input: process.stdin }).on("line", (line) => {
  if (line === "" && process.env.NOOP_LOG) require("node:fs").appendFileSync(process.env.NOOP_LOG, "noop\\n");
  // A no-op answered late, while the next line is already being worked on.
  if (line === "" && process.env.NOOP_PROMPT_AFTER_MS) return void setTimeout(() => process.stdout.write("tool> "), Number(process.env.NOOP_PROMPT_AFTER_MS));
  chain = chain.then(async () => {
    if (line === "hang") return new Promise(() => undefined);
    if (line === "fail") process.stderr.write("no such thing\\n");
    else if (line === "quietfail") return void process.stderr.write("no ack set\\n");
    else if (line === "die") process.kill(process.pid, "SIGKILL");
    else if (line.startsWith("pid:")) require("node:fs").appendFileSync(line.slice(4), process.pid + "\\n");
    else if (line === "split") { await new Promise((r) => process.stderr.write("tool v1: ", r)); await pause(); process.stderr.write("it's already added\\n"); }
    else if (line === "slowsplit") { await new Promise((r) => process.stderr.write("tool v1: ", r)); await pause(60); process.stderr.write("it's already added\\n"); }
    else { await w("out:"); await pause(); await w(line + "\\n"); }
    await w("to"); await pause(); await w("ol> ");
  });
});`;

function session(protocol: Partial<LineProtocol> = {}) {
  return new LineSession({ argv: [process.execPath, "-e", TOOL], marker: /tool> /, initial: 1, ...protocol });
}

test("queued commands resolve in order, one per prompt, even when the prompt straddles reads", { timeout: 5000 }, async () => {
  const s = session();
  try {
    const done: string[] = [];
    await Promise.all(["a", "b", "c"].map((line) => s.send(line).then(() => done.push(line))));
    assert.deepEqual(done, ["a", "b", "c"]);
  } finally {
    s.close();
  }
});

/**
 * A session whose no-op is an empty line, as nft's (the stand-in answers it like any command), and
 * how many no-ops its children have read.
 */
function wakeable(protocol: Partial<LineProtocol> = {}, env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), "knockgate-wake-"));
  const log = join(dir, "noops");
  const s = session({ noop: "", env: { NOOP_LOG: log, ...env }, ...protocol });
  const noops = () => (readFileSync(log, { encoding: "utf8", flag: "a+" }).match(/noop/g) ?? []).length;
  const close = () => {
    s.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { s, noops, close, dir };
}

test("wake sends the no-op to an idle child; nothing before a child runs or while a command is pending; answers stay in step", { timeout: 5000 }, async () => {
  const { s, noops, close } = wakeable();
  try {
    s.wake();
    await s.send("a");
    assert.equal(noops(), 0, "no child ran: nothing to wake, and none is started for it");
    s.wake();
    const done: string[] = [];
    const b = s.send("b").then(() => done.push("b"));
    s.wake();
    await b;
    await s.send("c").then(() => done.push("c"));
    assert.equal(noops(), 1, "one no-op: the second wake came while b was pending");
    assert.deepEqual(done, ["b", "c"]);
  } finally {
    close();
  }
});

// "a\n" is 2 bytes and the no-op's "\n" 1: with a share of 3 bytes, the no-op would take the third.
for (const [name, protocol] of [
  ["for a protocol without a no-op (ipset's)", { noop: undefined }],
  ["when its no-op would take the child past renewAfter's bytes", { renewAfter: { commands: 100, bytes: 3 } }],
] as const) {
  test(`a wake sends nothing ${name}`, { timeout: 5000 }, async () => {
    const { s, noops, close } = wakeable(protocol);
    try {
      await s.send("a");
      s.wake();
      await s.send("b");
      assert.equal(noops(), 0);
    } finally {
      close();
    }
  });
}

test("a wake is skipped when its no-op would wear the child out (renewAfter): the command it wakes for would meet a child still starting", { timeout: 5000 }, async () => {
  const { s, noops, close } = wakeable({ renewAfter: { commands: 4, bytes: 1 << 20 } });
  try {
    await s.send("a");
    s.wake();
    await s.send("b");
    assert.equal(noops(), 1, "the second of four commands: sent");
    s.wake();
    await s.send("c");
    assert.equal(noops(), 1, "it would have been the fourth: skipped");
  } finally {
    close();
  }
});

test("an error read with a no-op's marker while a command waits behind it is nobody's: the command fails with no message of its own, never with part of one", { timeout: 5000 }, async () => {
  // The no-op's prompt comes 20 ms late, between the two pieces of the next command's message.
  const { s, close } = wakeable({}, { NOOP_PROMPT_AFTER_MS: "20" });
  try {
    await s.send("a");
    s.wake();
    await assert.rejects(s.send("slowsplit"), (err: Error) => !(err instanceof FirewallError) && /behind a no-op/.test(err.message));
    await s.send("again");
  } finally {
    close();
  }
});

test("a no-op that fails without a marker (nft's listing of a deleted ack set) does not hold the command behind it until the deadline", { timeout: 3000 }, async () => {
  const { s, close } = wakeable({ noop: "quietfail", deadlineMs: 10_000 });
  try {
    await s.send("a");
    s.wake();
    await assert.rejects(s.send("b"), (err: Error) => !(err instanceof FirewallError) && /no ack set/.test(err.message));
    await s.send("again");
  } finally {
    close();
  }
});

test("a no-op that fails with no command after it ends the child as a failed command does; the next command runs in a new one", { timeout: 5000 }, async () => {
  const { s, close, dir } = wakeable({ noop: "fail" });
  const pids = join(dir, "pids");
  try {
    await s.send(`pid:${pids}`);
    s.wake();
    await new Promise((r) => setTimeout(r, 200));
    await s.send(`pid:${pids}`);
    const [first, second] = readFileSync(pids, "utf8").trim().split("\n");
    assert.notEqual(first, second);
    assert.equal(s.takeLoss(), null, "a failed command is no loss");
  } finally {
    close();
  }
});

test("a child that answers nothing within the deadline is killed: its commands fail, takeLoss says so, the next command starts a fresh child", { timeout: 5000 }, async () => {
  const s = new LineSession({ argv: [process.execPath, "-e", TOOL], marker: /tool> /, initial: 1, deadlineMs: 300 });
  try {
    await s.send("a");
    const stuck = [s.send("hang"), s.send("b")];
    for (const p of stuck) await assert.rejects(p, /gave no answer within 300 ms/);
    assert.match(s.takeLoss() ?? "", /ended \(no answer within 300 ms\); started again/);
    await s.send("again");
    assert.equal(s.takeLoss(), null);
  } finally {
    s.close();
  }
});

test("output on stderr fails the pending commands; the next command starts a fresh child", { timeout: 5000 }, async () => {
  const s = session();
  try {
    await assert.rejects(s.send("fail"), /no such thing/);
    await s.send("again");
  } finally {
    s.close();
  }
});

test("a child that dies by itself is reported once by takeLoss; one that failed a command or was closed is not", { timeout: 5000 }, async () => {
  const s = session();
  try {
    await assert.rejects(s.send("fail"), /no such thing/);
    assert.equal(s.takeLoss(), null);
    await assert.rejects(s.send("die"), /exited/);
    assert.match(s.takeLoss() ?? "", /ended \(signal SIGKILL\); started again/);
    assert.equal(s.takeLoss(), null);
    await s.send("again");
  } finally {
    s.close();
  }
  assert.equal(s.takeLoss(), null);
});

test("a loss names the helper by the protocol's name when it has one", { timeout: 5000 }, async () => {
  const s = session({ name: "replay records' helper `tool`" });
  try {
    await assert.rejects(s.send("die"), /exited/);
    assert.equal(s.takeLoss(), "replay records' helper `tool` ended (signal SIGKILL); started again");
  } finally {
    s.close();
  }
});

test("a message written to stderr in pieces fails the command with all of it", { timeout: 5000 }, async () => {
  const s = session();
  try {
    await assert.rejects(s.send("split"), (err: Error & { stderr?: string }) => err.stderr === "tool v1: it's already added\n");
  } finally {
    s.close();
  }
});

test("stderr read together with the start's prompt belongs to the first command, whole", { timeout: 5000 }, async () => {
  // A tool slow to start: the first piece of the first command's error, then its start prompt, both there at one read.
  const slow = `
const pause = () => new Promise((r) => setTimeout(r, 20));
require("node:readline").createInterface({ input: process.stdin }).once("line", async () => {
  process.stderr.write("tool v1: ");
  process.stdout.write("tool> ");
  await pause();
  process.stderr.write("it's already added\\n");
  process.stdout.write("tool> ");
});`;
  const s = new LineSession({ argv: [process.execPath, "-e", slow], marker: /tool> /, initial: 1 });
  try {
    await assert.rejects(s.send("split"), (err: Error & { stderr?: string }) => err.stderr === "tool v1: it's already added\n");
  } finally {
    s.close();
  }
});

/** Resolves once no process has `pid` (polled: a signal takes effect when the kernel next runs it). */
async function gone(pid: number): Promise<void> {
  for (const end = Date.now() + 5000; ; await new Promise((r) => setTimeout(r, 20))) {
    try {
      process.kill(pid, 0);
    } catch {
      return;
    }
    if (Date.now() > end) assert.fail(`process ${pid} is still there`);
  }
}

test("a child is replaced once it took renewAfter's commands and nothing is pending; never while commands are in flight, and not as a loss", { timeout: 10_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "kg-session-"));
  const file = join(dir, "pids");
  const pids = () => readFileSync(file, "utf8").trim().split("\n");
  const s = new LineSession({ argv: [process.execPath, "-e", TOOL], marker: /tool> /, initial: 1, renewAfter: { commands: 2, bytes: 1 << 20 } });
  try {
    for (let i = 0; i < 5; i++) await s.send(`pid:${file}`);
    const [a, b, c, d, e] = pids();
    assert.ok(a === b && b !== c && c === d && d !== e, `children by line: ${pids().join(" ")}`);
    // The replaced children end (stdin closed, then SIGTERM).
    for (const pid of [a, c]) await gone(Number(pid));
    assert.equal(s.takeLoss(), null);
    // Four commands in flight at once stay with one child, then the next goes to a fresh one.
    rmSync(file);
    await Promise.all(Array.from({ length: 4 }, () => s.send(`pid:${file}`)));
    await s.send(`pid:${file}`);
    const batch = pids();
    assert.equal(new Set(batch.slice(0, 4)).size, 1, batch.join(" "));
    assert.notEqual(batch[4], batch[0]);
    // The byte budget renews too: here it is two commands' worth.
    const line = `pid:${file}`;
    const bytes = new LineSession({ argv: [process.execPath, "-e", TOOL], marker: /tool> /, initial: 1, renewAfter: { commands: 100, bytes: 2 * (line.length + 1) } });
    try {
      rmSync(file);
      await bytes.send(line);
      await bytes.send(line);
      const [first, second] = pids();
      assert.equal(first, second, "under the byte budget");
      await bytes.send(line);
      assert.notEqual(pids()[2], first, "over the byte budget");
    } finally {
      bytes.close();
    }
  } finally {
    s.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a renewal that cannot start the next child (no file descriptors left) ends nothing: it is kept for takeLoss, and the next command starts one once it can", { timeout: 20_000 }, () => {
  // In a process of its own, with few descriptors: the test runner's own must stay untouched.
  const script = `
const { openSync, closeSync } = require("node:fs");
import(${JSON.stringify(new URL("../../src/adapters/firewall/exec.js", import.meta.url).href)}).then(async ({ LineSession }) => {
  const s = new LineSession({ argv: [process.execPath, "-e", ${JSON.stringify(TOOL)}], marker: /tool> /, initial: 1, renewAfter: { commands: 2, bytes: 1 << 20 } });
  await s.send("a");
  const held = [];
  for (;;) { try { held.push(openSync("/dev/null", "r")); } catch { break; } }
  await s.send("b");
  await new Promise((r) => setTimeout(r, 200));
  const lost = s.takeLoss();
  for (const fd of held) closeSync(fd);
  await s.send("c");
  s.close();
  console.log(JSON.stringify({ lost, held: held.length }));
});`;
  const r = spawnSync("sh", ["-c", 'ulimit -n 64 && exec "$0" -e "$1"', process.execPath, script], { encoding: "utf8", timeout: 15_000 });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { lost: string | null; held: number };
  assert.ok(out.held > 0, "the descriptors were used up");
  assert.match(out.lost ?? "", /could not be started again \(.*out of file descriptors/);
});

test("a one-shot command that runs past its deadline is killed and fails with a FirewallError; one within it answers as usual", { timeout: 15_000 }, async () => {
  const run = deadlineRunner(300);
  const hung = [process.execPath, "-e", "setInterval(() => undefined, 1000)"];
  await assert.rejects(run(hung), (err: Error & { code?: string }) => {
    assert.equal(err.code, "KNOCK_E_FIREWALL");
    assert.match(err.message, /no answer within 300 ms, so it was killed/);
    return true;
  });
  // A deadline a Node start-up cannot miss on a loaded machine.
  assert.deepEqual(await deadlineRunner(10_000)([process.execPath, "-e", "process.stdin.pipe(process.stdout)"], "in"), { stdout: "in", stderr: "", code: 0 });
});

test("firewall tools get PATH, LC_ALL=C and their protocol's variables, none of the daemon's (sequences, inline keys)", { timeout: 10_000 }, async () => {
  const envOf = `JSON.stringify(Object.keys(process.env).sort().map((k) => k + "=" + (k === "PATH" ? "" : process.env[k])))`;
  process.env["KNOCK_DOOR_SSH_SEQUENCE"] = "7000,8000,9000";
  try {
    const once = await deadlineRunner(5000)([process.execPath, "-e", `process.stdout.write(${envOf})`]);
    assert.deepEqual(JSON.parse(once.stdout), ["LC_ALL=C", "PATH="]);
    // The session's tool answers with a prompt, after writing its environment on stderr when it is not the one expected (failing the command).
    const expected = JSON.stringify(["HOME=/dev/null", "LC_ALL=C", "PATH="]);
    const tool = `process.stdout.write("tool> "); require("node:readline").createInterface({ input: process.stdin }).on("line", () => { const e = ${envOf}; if (e !== ${JSON.stringify(expected)}) process.stderr.write(e + "\\n"); setTimeout(() => process.stdout.write("tool> "), 20); });`;
    const s = new LineSession({ argv: [process.execPath, "-e", tool], marker: /tool> /, initial: 1, env: { HOME: "/dev/null" } });
    try {
      await s.send("env");
    } finally {
      s.close();
    }
  } finally {
    delete process.env["KNOCK_DOOR_SSH_SEQUENCE"];
  }
});
