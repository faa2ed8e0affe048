import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { existsSync } from "node:fs";
import { dryRunHooks, runHook } from "../../src/adapters/hooks.js";
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
