/**
 * Runs the built CLI with a controlled environment, and PATH holding only shims of the firewall tools
 * that log their argv and do nothing: a test sees every firewall command the CLI ran, and the host's
 * firewall is never touched, whatever the command under test does.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const CLI = fileURLToPath(new URL("../../src/cli/main.js", import.meta.url));

const TOOLS = [
  "nft",
  "ipset",
  ...["iptables", "ip6tables"].flatMap((base) =>
    ["", "-nft", "-legacy"].flatMap((variant) => ["", "-save", "-restore"].map((suffix) => `${base}${variant}${suffix}`)),
  ),
];

export interface CliResult {
  status: number | null;
  stdout: string;
  stderr: string;
  /** One line per firewall tool run: the tool's name, then its arguments. */
  calls: string[];
}

export class ShimmedCli {
  readonly dir = mkdtempSync(join(tmpdir(), "knockgate-cli-"));
  private readonly log = join(this.dir, "calls.log");

  constructor() {
    for (const tool of TOOLS) {
      const path = join(this.dir, tool);
      writeFileSync(path, `#!/bin/sh\nprintf '%s %s\\n' "\${0##*/}" "$*" >> '${this.log}'\n`);
      chmodSync(path, 0o755);
    }
  }

  /** `knockgate ARGS` with exactly `env` (plus PATH): nothing of the test runner's environment leaks in. */
  run(args: readonly string[], env: Record<string, string> = {}): CliResult {
    writeFileSync(this.log, "");
    // A timeout, so a command that wrongly starts the daemon fails the test instead of hanging it.
    const r = spawnSync(process.execPath, [CLI, ...args], { env: { ...env, PATH: this.dir }, encoding: "utf8", timeout: 10_000, killSignal: "SIGKILL" });
    const calls = readFileSync(this.log, "utf8").split("\n").filter(Boolean);
    return { status: r.status, stdout: r.stdout, stderr: r.stderr, calls };
  }

  /** Writes `text` to a file in the shim directory and returns its path. */
  file(name: string, text: string): string {
    const path = join(this.dir, name);
    writeFileSync(path, text);
    return path;
  }

  remove(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}
