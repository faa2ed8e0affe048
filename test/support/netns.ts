/** Network namespace commands and teardown shared by the test lab and the bench lab. */
import { execFileSync } from "node:child_process";
import { COMMAND_DEADLINE_MS, deadlineRunner, type RunResult } from "../../src/adapters/firewall/exec.js";

/** As a user runs commands: with this process's environment (fwknop needs HOME), not a firewall tool's. */
const userRun = deadlineRunner(COMMAND_DEADLINE_MS, () => process.env);

/** Runs a command inside a namespace (argv, no shell). */
export const execIn = (ns: string, argv: readonly string[], input?: string): Promise<RunResult> => userRun(["ip", "netns", "exec", ns, ...argv], input);

/** Processes in a namespace (`ip netns pids`); none if it is gone. */
export function pidsIn(ns: string): number[] {
  try {
    return execFileSync("ip", ["netns", "pids", ns], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] })
      .split("\n")
      .map(Number)
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

/**
 * Kills every process in the namespace, orphans of killed children included (they would outlive a
 * deleted namespace, unseen), then deletes it.
 */
export function killNamespace(ns: string): void {
  // Bounded: processes that fork while we kill (knockd's command children) get a few more passes.
  for (let pass = 0; pass < 5; pass++) {
    const pids = pidsIn(ns);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone already
      }
    }
    execFileSync("sleep", ["0.05"]);
  }
  try {
    execFileSync("ip", ["netns", "del", ns], { stdio: ["ignore", "ignore", "pipe"] });
  } catch {
    // already gone
  }
}
