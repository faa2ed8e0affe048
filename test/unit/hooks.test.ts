import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { HOOK_QUEUE_PER_SLOT, boundedHooks, dryRunHooks, hookRunner, runHook, type HookRequest, type HookRunner } from "../../src/adapters/hooks.js";
import type { Door } from "../../src/core/types.js";
import { systemClock } from "../../src/adapters/clock.js";
import { FakeClock } from "../support/fake-clock.js";

const door: Door = {
  name: "SSH",
  sequence: [{ port: 7000, proto: "tcp" }],
  closeSequence: null,
  ports: [
    { port: 22, proto: "tcp" },
    { port: 2222, proto: "tcp" },
  ],
  seqTimeoutMs: 5000,
  openForMs: 30000,
  tcpFlags: { set: 2, clear: 16 },
  onOpen: null,
  onClose: null,
  spa: null,
};
const silent = pino({ level: "silent" });
const printArgv = [process.execPath, "-e", "process.stdout.write(JSON.stringify(process.argv.slice(1)))"];

/** A logger at `level` and the lines it wrote, parsed. */
function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  /** What the hook printed, from its debug line. */
  const stdout = () => String(lines.find((l) => l["msg"] === "on_open command output" || l["msg"] === "on_close command output")?.["stdout"]);
  return { log, lines, stdout };
}

test("a hook gets %IP%, %DOOR% and %PORTS% substituted inside its arguments", async () => {
  const { log, lines, stdout } = capture("debug");
  const r = await runHook({ kind: "on_open", template: [...printArgv, "ip=%IP%", "%DOOR%", "%PORTS%"], ip: "198.18.0.2", door }, 5000, log, systemClock);
  assert.deepEqual(r, { ok: true, code: 0 });
  assert.deepEqual(
    lines.map((l) => [l["event"], l["hook"], l["level"]]),
    [
      ["hook", "on_open", 20],
      ["hook", "on_open", 30],
    ],
  );
  assert.deepEqual(JSON.parse(stdout()), ["ip=198.18.0.2", "SSH", "22/tcp,2222/tcp"]);
});

test("shell metacharacters in a substituted value stay inside one argument and are never run", async () => {
  const { log, stdout } = capture("debug");
  const evil = "1.2.3.4; touch /tmp/knockgate-pwned $(id) `id` | cat";
  await runHook({ kind: "on_open", template: [...printArgv, "%IP%"], ip: evil, door }, 5000, log, systemClock);
  assert.deepEqual(JSON.parse(stdout()), [evil]);
});

test("a hook's environment is PATH and what its arguments say, never the daemon's variables", async () => {
  const { log, stdout } = capture("debug");
  process.env["KNOCK_DOOR_SSH_SPA_HMAC_KEY"] = "a-secret-the-hook-must-not-see";
  try {
    const printEnv = [process.execPath, "-e", "process.stdout.write(JSON.stringify(process.env))"];
    await runHook({ kind: "on_close", template: printEnv, ip: "198.18.0.2", door }, 5000, log, systemClock);
  } finally {
    delete process.env["KNOCK_DOOR_SSH_SPA_HMAC_KEY"];
  }
  assert.deepEqual(JSON.parse(stdout()), {
    PATH: process.env["PATH"],
    KNOCK_HOOK_EVENT: "close",
    KNOCK_HOOK_DOOR: "SSH",
    KNOCK_HOOK_IP: "198.18.0.2",
    KNOCK_HOOK_PORTS: "22/tcp,2222/tcp",
  });
});

test("a hook's output and argv are logged at debug only, and bounded", async () => {
  const info = capture("info");
  const chatty = [process.execPath, "-e", "process.stdout.write('secret-output '.repeat(100000)); process.stderr.write('x'.repeat(100000))", "%IP%"];
  assert.equal((await runHook({ kind: "on_open", template: chatty, ip: "198.18.0.2", door }, 5000, info.log, systemClock)).ok, true);
  assert.equal(info.lines.length, 1);
  assert.doesNotMatch(JSON.stringify(info.lines), /secret-output|-e/, "no output, no command line at info");
  const debug = capture("debug");
  await runHook({ kind: "on_open", template: chatty, ip: "198.18.0.2", door }, 5000, debug.log, systemClock);
  const out = debug.lines.find((l) => "stdout" in l);
  assert.ok(out && String(out["stdout"]).length <= 4096 && String(out["stderr"]).length <= 4096 && String(out["stdout"]).startsWith("secret-output"));
});

test("a failing hook reports its exit code", async () => {
  const r = await runHook({ kind: "on_close", template: [process.execPath, "-e", "process.exit(3)"], ip: "198.18.0.2", door }, 5000, silent, systemClock);
  assert.deepEqual(r, { ok: false, code: 3, error: "exit code 3" });
});

// The bound only turns a timeout that ignores the clock (an hour, in real time) into a failure.
test("a hook that outlives the timeout is killed and reported, at the time the clock says", { timeout: 20_000 }, async () => {
  const clock = new FakeClock();
  const hour = 3_600_000;
  const report = runHook({ kind: "on_open", template: [process.execPath, "-e", "setInterval(() => {}, 1000)"], ip: "198.18.0.2", door }, hour, silent, clock);
  await clock.advance(hour);
  const r = await report;
  assert.equal(r.ok, false);
  assert.equal(r.error, `timed out after ${hour} ms`);
});

/** No such process, or only its zombie (killed, waiting for whoever inherited it to reap it). */
const gone = (pid: number): boolean => {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return true;
  }
};

test("a hook that outlives the timeout is killed with everything it started (its process group)", async (t) => {
  const { log, stdout } = capture("debug");
  // The hook starts a child of its own, tells its pid, and hangs.
  const script = "const c = require('child_process').spawn('sleep', ['30'], { stdio: 'ignore' }); process.stdout.write(String(c.pid)); setInterval(() => {}, 1000)";
  const r = await runHook({ kind: "on_open", template: [process.execPath, "-e", script], ip: "198.18.0.2", door }, 500, log, systemClock);
  const grandchild = Number(stdout());
  t.after(() => !gone(grandchild) && process.kill(grandchild, "SIGKILL"));
  assert.equal(r.error, "timed out after 500 ms");
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.ok(grandchild > 0 && gone(grandchild), `the hook's own child ${grandchild} was killed too`);
});

test("stop: hooks not started yet are dropped; a running one is waited for, and killed at its timeout", async () => {
  const dir = mkdtempSync(join(tmpdir(), "knockgate-hooks-"));
  try {
    const run = boundedHooks(hookRunner(1000, silent, systemClock), 1, silent);
    // The first finishes on its own after 200 ms; the second would hang for 30 s.
    const finishes = [process.execPath, "-e", `setTimeout(() => require('fs').writeFileSync(${JSON.stringify(join(dir, "done"))}, ''), 200)`];
    const hangs = [process.execPath, "-e", `require('fs').writeFileSync(${JSON.stringify(join(dir, "pid"))}, String(process.pid)); setInterval(() => {}, 1000)`];
    const first = run({ kind: "on_open", template: finishes, ip: "198.18.0.2", door });
    const queued = run({ kind: "on_open", template: finishes, ip: "198.18.0.3", door });
    await run.stop();
    assert.ok(existsSync(join(dir, "done")), "the running hook was waited for");
    assert.equal((await first).ok, true);
    assert.equal((await queued).dropped, true, "the one not started is dropped");
    assert.equal((await run({ kind: "on_open", template: finishes, ip: "198.18.0.4", door })).dropped, true, "nothing starts once stopping");

    const clock = new FakeClock();
    const again = boundedHooks(hookRunner(500, silent, clock), 1, silent);
    const hung = again({ kind: "on_open", template: hangs, ip: "198.18.0.2", door });
    while (!existsSync(join(dir, "pid"))) await new Promise((resolve) => setTimeout(resolve, 20));
    const stopped = again.stop();
    await clock.advance(500);
    await stopped;
    assert.equal((await hung).error, "timed out after 500 ms");
    assert.ok(gone(Number(readFileSync(join(dir, "pid"), "utf8"))), "killed, not left behind");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a hook whose program does not exist is reported, not thrown", async () => {
  const r = await runHook({ kind: "on_open", template: ["/nonexistent/knockgate-hook"], ip: "198.18.0.2", door }, 1000, silent, systemClock);
  assert.equal(r.ok, false);
  assert.match(r.error ?? "", /ENOENT/);
});

test("a hook that cannot even start (an empty program name) resolves as a failure and never rejects", async () => {
  const { log, lines } = capture("info");
  const r = await runHook({ kind: "on_open", template: [""], ip: "198.18.0.2", door }, 1000, log, systemClock);
  assert.equal(r.ok, false);
  assert.match(r.error ?? "", /could not start/);
  assert.deepEqual([lines[0]?.["event"], lines[0]?.["code"]], ["hook", "KNOCK_E_HOOK"]);
});

test("in a dry run a hook is logged with its argv and not run", async () => {
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
  const marker = `/tmp/knockgate-dry-hook-${process.pid}`;
  const r = await dryRunHooks(log)({ kind: "on_open", template: ["/usr/bin/touch", `${marker}-%IP%`], ip: "198.18.0.2", door });
  assert.equal(r.ok, true);
  assert.equal(existsSync(`${marker}-198.18.0.2`), false);
  const entry = JSON.parse(lines[0] ?? "{}") as { argv: string[]; event: string };
  assert.deepEqual([entry.event, entry.argv], ["dry_run_hook", ["/usr/bin/touch", `${marker}-198.18.0.2`]]);
});

test("bounded hooks: at most `concurrency` run at once, the queue drains in order, and overflow is dropped, not run", async () => {
  const started: string[] = [];
  const finish: (() => void)[] = [];
  const slow: HookRunner = (request) =>
    new Promise((resolve) => {
      started.push(request.ip);
      finish.push(() => resolve({ ok: true, code: 0 }));
    });
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
  const run = boundedHooks(slow, 2, log);
  const limit = 2 * HOOK_QUEUE_PER_SLOT;
  const request = (i: number) => ({ kind: "on_open" as const, template: ["/bin/true"], ip: `198.18.1.${i}`, door });
  const reports = Array.from({ length: 2 + limit + 5 }, (_, i) => run(request(i)));
  assert.deepEqual(started, ["198.18.1.0", "198.18.1.1"], "two run, the rest wait");
  const settled = await Promise.all(reports.slice(-5));
  assert.ok(settled.every((r) => r.dropped === true && !r.ok), "the five beyond the queue are dropped");
  assert.equal(lines.filter((l) => l.includes('"hook_dropped"')).length, 1, "one warning per burst of drops");
  while (finish.length > 0) {
    finish.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  assert.equal(started.length, 2 + limit, "every queued hook ran, none of the dropped ones");
  assert.deepEqual(started.slice(0, 5), ["198.18.1.0", "198.18.1.1", "198.18.1.2", "198.18.1.3", "198.18.1.4"], "oldest first");
  assert.ok((await Promise.all(reports.slice(0, -5))).every((r) => r.ok));
});

test("bounded hooks: a runner that rejects frees its slot and reports a failure", async () => {
  const run = boundedHooks(() => Promise.reject(new Error("boom")), 1, silent);
  const request = { kind: "on_close" as const, template: ["/bin/true"], ip: "198.18.0.2", door };
  assert.deepEqual(await run(request), { ok: false, code: null, error: "Error: boom" });
  assert.equal((await run(request)).ok, false, "the slot was freed");
});

test("under a flood of replaced grants' ON_CLOSEs, real clients' ON_OPENs still find a place and run, in order", async () => {
  const started: HookRequest[] = [];
  const finish: (() => void)[] = [];
  const slow: HookRunner = (request) =>
    new Promise((resolve) => {
      started.push(request);
      finish.push(() => resolve({ ok: true, code: 0 }));
    });
  const run = boundedHooks(slow, 1, silent);
  const limit = HOOK_QUEUE_PER_SLOT;
  const close = (i: number): HookRequest => ({ kind: "on_close", template: ["/bin/true"], ip: `198.18.2.${i % 256}`, door, replaced: true });
  const open = (i: number): HookRequest => ({ kind: "on_open", template: ["/bin/true"], ip: `198.18.3.${i}`, door });
  const reports: Promise<unknown>[] = [];
  // A flood of replacements, real clients among it, the flood going on while the queue drains.
  for (let i = 0; i < 1000; i++) reports.push(run(close(i)));
  const opens = Array.from({ length: limit / 2 }, (_, i) => run(open(i)));
  for (let round = 0; round < 20; round++) {
    for (let i = 0; i < 50; i++) reports.push(run(close(i)));
    finish.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  // With the queue full, one more real client takes the place of the newest waiting ON_CLOSE.
  const late = run(open(200));
  while (finish.length > 0) {
    finish.shift()?.();
    await new Promise((resolve) => setImmediate(resolve));
  }
  const opened = await Promise.all([...opens, late]);
  assert.ok(opened.every((r) => r.ok), "every real ON_OPEN ran");
  const ranOpens = started.filter((r) => r.kind === "on_open").map((r) => r.ip);
  assert.deepEqual(ranOpens, [...Array.from({ length: limit / 2 }, (_, i) => `198.18.3.${i}`), "198.18.3.200"], "in the order they came");
  assert.ok(started.filter((r) => r.replaced).length <= limit / 2 + 20 + 1, "replaced grants' ON_CLOSEs never held more than half the queue");
  await Promise.all(reports);
});
