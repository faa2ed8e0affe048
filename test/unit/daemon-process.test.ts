/** The integration tests' daemon handle: waiting for log lines, several waits at once. */
import { test } from "node:test";
import assert from "node:assert/strict";
import { EventEmitter } from "node:events";
import { PassThrough } from "node:stream";
import type { ChildProcess } from "node:child_process";
import { DaemonProcess } from "../support/daemon-process.js";

function fakeDaemon(): { daemon: DaemonProcess; log: (event: string) => void; end: () => void } {
  const child = Object.assign(new EventEmitter(), { stdout: new PassThrough(), stderr: new PassThrough(), kill: () => true });
  const daemon = new DaemonProcess(child as unknown as ChildProcess);
  return {
    daemon,
    log: (event) => void child.stdout.write(`${JSON.stringify({ event })}\n`),
    end: () => void child.emit("exit", 0, null),
  };
}

test("a wait that ends (here by its timeout) leaves the others waiting for lines: a line wakes them at once", async () => {
  const { daemon, log, end } = fakeDaemon();
  const started = Date.now();
  const short = daemon.waitFor("never", 100);
  const long = daemon.waitFor("late", 20_000);
  await assert.rejects(short, /no "never" log within 100 ms/);
  log("late");
  assert.equal((await long).event, "late");
  assert.ok(Date.now() - started < 10_000, "the long wait ended with its line, not at its deadline");
  end();
});
