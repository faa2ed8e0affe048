/**
 * Helpers for test/docker.test.ts, which runs the image as in production: `--network host`, i.e. in
 * this machine's root network namespace. What keeps that safe:
 * - knocks come from a client namespace joined to the root namespace by one veth pair on
 *   198.18.200.0/24 (RFC 2544 benchmarking range), and knockgate only sniffs that veth;
 * - the protected port is a test-only port (22222/tcp) whose only listener is the test itself, and the
 *   knock ports are only sniffed, never blocked: nothing else on the machine is affected;
 * - the test refuses to start when the root namespace already holds knockgate objects (a knockgate of
 *   the developer's, e.g. the compose demo), and afterwards removes exactly what it made: our jumps,
 *   chains and sets, and the empty mangle tables that iptables-nft created if they were not there.
 * Containers are named `${RUN_NAME}-...` (compose's too: RUN_NAME is the project), so that a failing
 * test can print the last log lines of the containers it started.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { explainFailures, tail } from "./failure-report.js";

export const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
export const CLI = `${ROOT}dist/src/cli/main.js`;

/**
 * The host's end of the client's link, named like a Docker bridge on purpose: an uplink called
 * br-something must give no way around a door (knockgate trusts no interface by its name).
 */
export const HOST_IFACE = "br-kglan";
export const PEER_IFACE = "kgdock1";
export const HOST_V4 = "198.18.200.1";
export const CLIENT_V4 = "198.18.200.2";
export const OTHER_V4 = "198.18.200.3";
export const NETNS_PREFIX = "kgdock-";
/** Prefix of this run's container names, and its compose project name. */
export const RUN_NAME = `kgtest-${process.pid}`;
/** The door name marks the test's own firewall objects (sets knockgate-KGDOCKERTEST-4/6). */
export const TEST_DOOR = "KGDOCKERTEST";

export interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs argv (no shell) with a time limit; never throws for a non-zero exit. */
export function run(argv: readonly string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Result> {
  const [file = "", ...args] = argv;
  return new Promise((resolve) => {
    const child = execFile(
      file,
      args,
      { timeout: opts.timeoutMs ?? 60_000, killSignal: "SIGKILL", maxBuffer: 64 * 1024 * 1024, env: opts.env ?? process.env },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : err.killed ? 124 : 127) : 0;
        resolve({ code, stdout, stderr: err && code !== err.code ? `${stderr}\n${err.message}` : stderr });
      },
    );
    child.stdin?.on("error", () => undefined);
    child.stdin?.end(opts.input);
  });
}

/** Like run, but a non-zero exit is an error that shows the command and its output. */
export async function must(argv: readonly string[], opts: { timeoutMs?: number; input?: string; env?: NodeJS.ProcessEnv } = {}): Promise<string> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.join(" ")} exited ${r.code}\n${r.stdout}\n${r.stderr}`);
  return r.stdout;
}

function quiet(argv: string[]): void {
  try {
    execFileSync(argv[0] ?? "", argv.slice(1), { stdio: "ignore", timeout: 20_000 });
  } catch {
    // best effort
  }
}

export const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls until check() returns a value (not undefined) or the time is up. */
export async function waitUntil<T>(what: string, timeoutMs: number, check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(200);
  }
}

// ---------------------------------------------------------------------------------------------
// The root namespace's firewall

export type Variant = "nft" | "legacy";

/** The variant whose `iptables` this machine uses (the daemon must pick the same one). */
export function hostVariant(): Variant {
  const version = execFileSync("iptables", ["--version"], { encoding: "utf8" });
  return version.includes("nf_tables") ? "nft" : "legacy";
}

/** Every knockgate object in the root namespace, one per line ("" when there is none). */
export async function knockgateObjects(): Promise<string> {
  const lines: string[] = [];
  for (const tool of ["iptables-nft-save", "ip6tables-nft-save", "iptables-legacy-save", "ip6tables-legacy-save"]) {
    // -t mangle: do not make the tools load tables that are not there.
    const r = await run([tool, "-t", "mangle"]);
    if (r.code === 0) lines.push(...r.stdout.split("\n").filter((l) => /knockgate/i.test(l)).map((l) => `${tool}: ${l}`));
  }
  const sets = await run(["ipset", "list", "-n"]);
  lines.push(...sets.stdout.split("\n").filter((n) => n.startsWith("knockgate-")).map((n) => `ipset: ${n}`));
  const tables = await run(["nft", "list", "tables"]);
  lines.push(...tables.stdout.split("\n").filter((l) => /knockgate/.test(l)).map((l) => `nft: ${l}`));
  return lines.join("\n");
}

/** True when every knockgate object present is one this test makes (a leftover of a killed run). */
export function onlyOurs(objects: string): boolean {
  return objects.split("\n").every((l) => {
    if (l === "") return true;
    if (l.startsWith("ipset: ")) return /^ipset: knockgate-(allow|KGDOCKERTEST)-[46]$/.test(l);
    if (l.startsWith("nft: ")) return false;
    // Chain rules: only the test door's sets and port, the plan marker, the fixed preamble.
    return !/--dports (?!22222\b)/.test(l) && !/knockgate-(?!allow|KGDOCKERTEST)/.test(l);
  });
}

export function nftTables(): Set<string> {
  try {
    return new Set(execFileSync("nft", ["list", "tables"], { encoding: "utf8" }).split("\n").filter(Boolean));
  } catch {
    return new Set();
  }
}

/**
 * Removes the test's knockgate objects from the root namespace (iptables variant `variant` only:
 * touching the other variant's mangle table would make the kernel create it), then the mangle
 * tables that iptables-nft created for them if they did not exist before and hold no rule.
 */
export async function removeTestFirewall(variant: Variant, tablesBefore: ReadonlySet<string>): Promise<void> {
  for (const tool of [`iptables-${variant}`, `ip6tables-${variant}`]) {
    for (let i = 0; i < 20; i++) {
      if ((await run([tool, "-w", "-t", "mangle", "-D", "PREROUTING", "-j", "KNOCKGATE"])).code !== 0) break;
    }
    for (const chain of ["KNOCKGATE", "KNOCKGATE-KEPT"]) {
      if ((await run([tool, "-w", "-t", "mangle", "-S", chain])).code !== 0) continue;
      await run([tool, "-w", "-t", "mangle", "-F", chain]);
      await run([tool, "-w", "-t", "mangle", "-X", chain]);
    }
  }
  const sets = await run(["ipset", "list", "-n"]);
  for (const name of sets.stdout.split("\n")) if (name.startsWith("knockgate-")) await run(["ipset", "destroy", name]);
  if (variant === "nft") {
    for (const table of nftTables()) {
      if (tablesBefore.has(table) || !/^table (ip|ip6) mangle$/.test(table)) continue;
      const listing = await run(["nft", "list", ...table.split(" ")]);
      const hasRules = listing.stdout.split("\n").some((l) => {
        const t = l.trim();
        return t !== "" && t !== "}" && !/^(table|chain|type) /.test(t);
      });
      if (!hasRules) await run(["nft", "delete", ...table.split(" ")]);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// The client namespace

export class ClientNet {
  readonly ns = `${NETNS_PREFIX}${process.pid}`;
  private readonly children = new Set<ChildProcess>();

  /** Namespaces and the veth left by a run that died before its cleanup. */
  static removeStale(): void {
    quiet(["ip", "link", "del", HOST_IFACE]);
    const list = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
    for (const line of list.split("\n")) {
      const name = line.split(" ")[0] ?? "";
      if (!name.startsWith(NETNS_PREFIX)) continue;
      const pid = Number(name.slice(NETNS_PREFIX.length));
      try {
        process.kill(pid, 0);
        if (pid !== process.pid) continue;
      } catch {
        // its test process is gone
      }
      quiet(["ip", "netns", "del", name]);
    }
  }

  create(): void {
    const ip = (...args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
    ip("netns", "add", this.ns);
    ip("link", "add", HOST_IFACE, "type", "veth", "peer", "name", PEER_IFACE, "netns", this.ns);
    ip("addr", "add", `${HOST_V4}/24`, "dev", HOST_IFACE);
    ip("link", "set", HOST_IFACE, "up");
    ip("-n", this.ns, "addr", "add", `${CLIENT_V4}/24`, "dev", PEER_IFACE);
    ip("-n", this.ns, "addr", "add", `${OTHER_V4}/24`, "dev", PEER_IFACE);
    ip("-n", this.ns, "link", "set", PEER_IFACE, "up");
    ip("-n", this.ns, "link", "set", "lo", "up");
  }

  exec(argv: string[], timeoutMs = 20_000): Promise<Result> {
    return run(["ip", "netns", "exec", this.ns, ...argv], { timeoutMs });
  }

  /** A TCP connection from the client namespace; `banner` waits for the server's first line too. */
  async connect(host: string, port: number, opts: { from?: string; timeoutMs?: number; banner?: boolean } = {}): Promise<{ ok: boolean; banner: string }> {
    const script = `
      const s = require("net").connect({ host: ${JSON.stringify(host)}, port: ${port}, localAddress: ${JSON.stringify(opts.from ?? CLIENT_V4)} });
      const done = (ok, banner = "") => { console.log(JSON.stringify({ ok, banner })); process.exit(0); };
      setTimeout(() => done(false), ${opts.timeoutMs ?? 700});
      s.on("error", () => done(false));
      s.on("connect", () => { if (!${opts.banner ? "true" : "false"}) done(true); });
      s.on("data", (d) => done(true, d.toString().split("\\n")[0].trim()));`;
    const r = await this.exec([process.execPath, "-e", script]);
    if (r.code !== 0) throw new Error(`connect helper failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as { ok: boolean; banner: string };
  }

  /** The repository's own client, run in the client namespace. */
  knock(args: string[]): Promise<Result> {
    return this.exec([process.execPath, CLI, "knock", ...args]);
  }

  /** A TCP and UDP listener on CLIENT_V4:port in the client namespace; resolves with what it saw. */
  async listen(port: number): Promise<{ seen: string[]; stop: () => Promise<void> }> {
    const script = `
      const say = (what) => console.log(what);
      require("net").createServer((s) => { say("tcp " + s.remoteAddress); s.destroy(); }).listen(${port}, "${CLIENT_V4}", () => {
        const u = require("dgram").createSocket("udp4");
        u.on("message", (m, r) => say("udp " + r.address));
        u.bind(${port}, "${CLIENT_V4}", () => say("listening"));
      });`;
    const child = spawn("ip", ["netns", "exec", this.ns, process.execPath, "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
    this.children.add(child);
    const seen: string[] = [];
    const lines = createInterface({ input: child.stdout });
    const ready = new Promise<void>((resolve, reject) => {
      lines.on("line", (l) => (l === "listening" ? resolve() : seen.push(l)));
      child.once("exit", (code) => reject(new Error(`listener exited with ${code}`)));
    });
    await ready;
    return {
      seen,
      stop: async () => {
        child.kill("SIGKILL");
        if (child.exitCode === null && child.signalCode === null) await once(child, "exit");
        this.children.delete(child);
      },
    };
  }

  destroy(): void {
    for (const child of this.children) child.kill("SIGKILL");
    quiet(["ip", "netns", "del", this.ns]);
    quiet(["ip", "link", "del", HOST_IFACE]);
  }
}

// ---------------------------------------------------------------------------------------------
// Containers

export interface LogLine {
  event?: string;
  [key: string]: unknown;
}

/** The daemon's JSON log lines from `docker logs` (all runs of the container, oldest first). */
export async function containerLogs(name: string): Promise<LogLine[]> {
  const r = await run(["docker", "logs", name], { timeoutMs: 20_000 });
  const out: LogLine[] = [];
  for (const line of `${r.stdout}\n${r.stderr}`.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as LogLine);
    } catch {
      // not one of ours
    }
  }
  // stdout and stderr arrive separately: order by pino's time field.
  return out.sort((a, b) => Number(a["time"] ?? 0) - Number(b["time"] ?? 0));
}

/** Waits until the container has logged `count` lines with this event (and matching fields). */
export function waitForEvent(name: string, event: string, opts: { count?: number; timeoutMs?: number; match?: (l: LogLine) => boolean } = {}): Promise<LogLine> {
  const count = opts.count ?? 1;
  return waitUntil(
    `"${event}" #${count} in the logs of ${name}`,
    opts.timeoutMs ?? 20_000,
    async () => {
      const found = (await containerLogs(name)).filter((l) => l.event === event && (opts.match?.(l) ?? true));
      return found.length >= count ? found[count - 1] : undefined;
    },
  );
}

export async function inspect(name: string, format: string): Promise<string> {
  return (await must(["docker", "inspect", "-f", format, name], { timeoutMs: 20_000 })).trim();
}

async function runContainers(): Promise<string[]> {
  const r = await run(["docker", "ps", "-a", "--filter", `name=^${RUN_NAME}-`, "--format", "{{.Names}}"], { timeoutMs: 20_000 });
  return r.stdout.split("\n").filter(Boolean);
}

/** Containers of this run from before the running test: a failed test leaves its own behind. */
let containersBefore = new Set<string>();

explainFailures(
  async () => {
    containersBefore = new Set(await runContainers());
  },
  async () => {
    const lines: string[] = [];
    for (const name of await runContainers()) {
      if (containersBefore.has(name)) continue;
      const state = await run(["docker", "inspect", "-f", "{{.State.Status}}, exit code {{.State.ExitCode}}", name], { timeoutMs: 20_000 });
      const logs = await run(["docker", "logs", name], { timeoutMs: 20_000 });
      const split = (text: string) => text.split("\n").filter(Boolean);
      lines.push(...tail(`container ${name} (${state.stdout.trim()}), stdout`, split(logs.stdout)), ...tail(`container ${name}, stderr`, split(logs.stderr)));
    }
    return lines;
  },
);
