/** The bench's pause of a daemon and its children (bench/proc.ts freezeTree). */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import { freezeTree } from "../../bench/proc.js";

/** The process's state letter (R, S, T, ...) from /proc/PID/stat. */
const state = (pid: number) => {
  const text = readFileSync(`/proc/${pid}/stat`, "utf8");
  return text.slice(text.lastIndexOf(")") + 2, text.lastIndexOf(")") + 3);
};
const children = (pid: number) =>
  readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8")
    .trim()
    .split(" ")
    .filter(Boolean)
    .map(Number);

describe("freezeTree", () => {
  test("stops a process and its children until thawed, then lets them run on", async (t) => {
    const parent = spawn("sh", ["-c", "sleep 30 & wait"], { stdio: "ignore" });
    t.after(() => {
      for (const pid of children(parent.pid!)) process.kill(pid, "SIGKILL");
      parent.kill("SIGKILL");
    });
    const pid = parent.pid!;
    for (let i = 0; i < 100 && children(pid).length === 0; i++) await sleep(10);
    const [child] = children(pid);
    assert.ok(child, "the shell started its child");
    // A signal reaches a process when the kernel next schedules it: on a busy machine, not at once.
    const within1s = async (done: () => boolean) => {
      for (let i = 0; i < 100 && !done(); i++) await sleep(10);
    };
    const thaw = freezeTree(pid);
    await within1s(() => state(pid) === "T" && state(child) === "T");
    assert.equal(state(pid), "T");
    assert.equal(state(child), "T");
    thaw();
    await within1s(() => state(pid) !== "T" && state(child) !== "T");
    assert.notEqual(state(pid), "T");
    assert.notEqual(state(child), "T");
  });
});
