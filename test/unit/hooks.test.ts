import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { existsSync } from "node:fs";
import { HOOK_QUEUE_PER_SLOT, boundedHooks, dryRunHooks, runHook, type HookRunner } from "../../src/adapters/hooks.js";
import type { Door } from "../../src/core/types.js";

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

test("a hook gets %IP%, %DOOR% and %PORTS% substituted inside its arguments", async () => {
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
  const r = await runHook({ kind: "on_open", template: [...printArgv, "ip=%IP%", "%DOOR%", "%PORTS%"], ip: "198.18.0.2", door }, 5000, log);
  assert.deepEqual(r, { ok: true, code: 0 });
  const entry = JSON.parse(lines[0] ?? "{}") as { stdout: string; event: string; hook: string };
  assert.equal(entry.event, "hook");
  assert.equal(entry.hook, "on_open");
  assert.deepEqual(JSON.parse(entry.stdout), ["ip=198.18.0.2", "SSH", "22/tcp,2222/tcp"]);
});

test("shell metacharacters in a substituted value stay inside one argument and are never run", async () => {
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
  const evil = "1.2.3.4; touch /tmp/knockgate-pwned $(id) `id` | cat";
  await runHook({ kind: "on_open", template: [...printArgv, "%IP%"], ip: evil, door }, 5000, log);
  const entry = JSON.parse(lines[0] ?? "{}") as { stdout: string };
  assert.deepEqual(JSON.parse(entry.stdout), [evil]);
});

test("a failing hook reports its exit code", async () => {
  const r = await runHook({ kind: "on_close", template: [process.execPath, "-e", "process.exit(3)"], ip: "198.18.0.2", door }, 5000, silent);
  assert.deepEqual(r, { ok: false, code: 3, error: "exit code 3" });
});

test("a hook that outlives the timeout is killed and reported", async () => {
  const started = Date.now();
  const r = await runHook({ kind: "on_open", template: [process.execPath, "-e", "setTimeout(() => {}, 10000)"], ip: "198.18.0.2", door }, 300, silent);
  assert.equal(r.ok, false);
  assert.equal(r.error, "timed out after 300 ms");
  assert.ok(Date.now() - started < 5000);
});

test("a hook whose program does not exist is reported, not thrown", async () => {
  const r = await runHook({ kind: "on_open", template: ["/nonexistent/knockgate-hook"], ip: "198.18.0.2", door }, 1000, silent);
  assert.equal(r.ok, false);
  assert.match(r.error ?? "", /ENOENT/);
});

test("a hook that cannot even start (an empty program name) resolves as a failure and never rejects", async () => {
  const lines: string[] = [];
  const log = pino({ level: "info" }, { write: (l: string) => lines.push(l) });
  const r = await runHook({ kind: "on_open", template: [""], ip: "198.18.0.2", door }, 1000, log);
  assert.equal(r.ok, false);
  assert.match(r.error ?? "", /could not start/);
  const entry = JSON.parse(lines[0] ?? "{}") as { code: string; event: string };
  assert.deepEqual([entry.event, entry.code], ["hook", "KNOCK_E_HOOK"]);
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
