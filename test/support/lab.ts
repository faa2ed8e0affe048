/**
 * Network-namespace lab for integration tests: a server namespace (knockgate + an echo service) and a
 * client namespace joined by a veth pair, on 198.18.0.0/24 and fd00:198:18::/64. Everything made here
 * lives inside the two namespaces, so deleting them removes chains, sets and tables too.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { RunResult } from "../../src/adapters/firewall/exec.js";
import type { Request } from "./agent.js";
import { explainFailures } from "./failure-report.js";
import { DaemonProcess } from "./daemon-process.js";
import { execIn, killNamespace } from "./netns.js";

export { DaemonProcess, type LogLine } from "./daemon-process.js";

const PREFIX = "kgt-";
const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
export const CLI = `${ROOT}dist/src/cli/main.js`;
const AGENT = `${ROOT}dist/test/support/agent.js`;

export const SERVER_V4 = "198.18.0.1";
export const CLIENT_V4 = "198.18.0.2";
/** A second client address, for "nobody else gets in" and interleaving. */
export const OTHER_V4 = "198.18.0.3";
export const SERVER_V6 = "fd00:198:18::1";
export const CLIENT_V6 = "fd00:198:18::2";
export const SERVICE_PORT = 22;
/** What the acceptance suites run against: each firewall with the capture engine, and the kernel engine (nftables only). */
export const ENGINE_SETUPS = [
  { backend: "iptables", engine: "capture" },
  { backend: "nftables", engine: "capture" },
  { backend: "nftables", engine: "kernel" },
] as const;
export const HTTP_ADDR = `${SERVER_V4}:9180`;
/** Every daemon the lab starts serves its full /metrics to this token (see Lab#metrics). */
const METRICS_TOKEN = `lab-token-${process.pid}`;
/** Where that token is, for a scraper of its own (test/integration/prometheus.test.ts). */
export const METRICS_TOKEN_FILE = join(tmpdir(), `knockgate-lab-${process.pid}.token`);
writeFileSync(METRICS_TOKEN_FILE, METRICS_TOKEN, { mode: 0o600 });
process.on("exit", () => rmSync(METRICS_TOKEN_FILE, { force: true }));

let counter = 0;
const live = new Set<Lab>();
/** Daemons the running test started, whichever lab they ran in. */
let daemonsOfTest: DaemonProcess[] = [];

explainFailures(
  () => {
    daemonsOfTest = [];
  },
  () => daemonsOfTest.flatMap((d, i) => d.lastWords(`daemon ${i + 1}`)),
);

function ns(args: string[]): void {
  execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
}

/** Namespaces left by an earlier run that died before its cleanup. */
export function removeStaleNamespaces(): void {
  const list = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  for (const line of list.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    const pid = Number(name.split("-")[1]);
    if (!name.startsWith(PREFIX) || pid === process.pid) continue;
    try {
      process.kill(pid, 0);
    } catch {
      killNamespace(name);
    }
  }
}

// Last resort if a test process exits without running its cleanup (a thrown error in a hook), or
// is interrupted or timed out: daemons must not outlive the run in a namespace nobody can see.
process.on("exit", () => {
  for (const lab of live) lab.destroySync();
});
for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
  process.once(signal, () => {
    for (const lab of live) lab.destroySync();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1));
  });
}

export class Lab {
  readonly server: string;
  readonly client: string;
  readonly serverIface: string = "kgs0";
  readonly clientIface: string = "kgc0";
  private readonly children = new Set<ChildProcess>();
  private agentProcess: ChildProcess | null = null;
  private agentCalls = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private nextCall = 1;

  /** Subclasses (cluster-lab.ts) lay out a network of their own around the same two namespaces. */
  protected constructor() {
    const n = counter++;
    this.server = `${PREFIX}${process.pid}-${n}-srv`;
    this.client = `${PREFIX}${process.pid}-${n}-cli`;
    live.add(this);
  }

  /** Every namespace of this lab, deleted by destroy. */
  protected namespaces(): string[] {
    return [this.server, this.client];
  }

  static create(): Lab {
    const lab = new Lab();
    ns(["netns", "add", lab.server]);
    ns(["netns", "add", lab.client]);
    for (const name of [lab.server, lab.client]) ns(["-n", name, "link", "set", "lo", "up"]);
    lab.addLink();
    return lab;
  }

  /** The veth pair between the namespaces, addressed and up; made again after removeLink, it has new indexes. */
  addLink(): void {
    const { server, client } = this;
    ns(["link", "add", this.serverIface, "netns", server, "type", "veth", "peer", "name", this.clientIface, "netns", client]);
    for (const [name, iface, addrs] of [
      [server, this.serverIface, [`${SERVER_V4}/24`, `${SERVER_V6}/64`]],
      [client, this.clientIface, [`${CLIENT_V4}/24`, `${OTHER_V4}/24`, `${CLIENT_V6}/64`]],
    ] as const) {
      for (const addr of addrs) ns(["-n", name, "addr", "add", addr, "dev", iface, ...(addr.includes(":") ? ["nodad"] : [])]);
      ns(["-n", name, "link", "set", iface, "up"]);
    }
  }

  /** Deletes the veth pair (both ends go). */
  removeLink(): void {
    ns(["-n", this.server, "link", "del", this.serverIface]);
  }

  /** `ip link set <iface> ...args` in the server namespace: up, down, name. */
  setServerLink(iface: string, ...args: string[]): void {
    ns(["-n", this.server, "link", "set", iface, ...args]);
  }

  /** Runs a command inside a namespace (argv, no shell). */
  exec(where: string, argv: string[], input?: string): Promise<RunResult> {
    return execIn(where, argv, input);
  }

  /** The client's and the server's link addresses: what a raw frame from the client's link carries. */
  async linkMacs(): Promise<{ srcMac: string; dstMac: string }> {
    const mac = async (where: string, iface: string) => (await this.exec(where, ["cat", `/sys/class/net/${iface}/address`])).stdout.trim();
    return { srcMac: await mac(this.client, this.clientIface), dstMac: await mac(this.server, this.serverIface) };
  }

  /** Starts a process inside a namespace (argv, no shell); it is killed when the lab is torn down. */
  spawnIn(where: string, argv: string[], env: Record<string, string> = {}): ChildProcess {
    const child = spawn("ip", ["netns", "exec", where, ...argv], {
      env: { PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin", ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.children.add(child);
    child.on("exit", () => this.children.delete(child));
    return child;
  }

  /** An echo service on SERVICE_PORT (IPv4 and IPv6) in the server namespace: what knockgate protects. */
  async startService(port = SERVICE_PORT, where = this.server): Promise<void> {
    const script = `require("net").createServer((s) => s.pipe(s)).listen(${port}, "::", () => console.log("listening"))`;
    const child = this.spawnIn(where, [process.execPath, "-e", script]);
    await once(createInterface({ input: child.stdout! }), "line");
  }

  /**
   * Starts knockgate in the server namespace and waits until it says it is protecting. The lab's
   * defaults (interface, HTTP address, debug logs) can be overridden, or dropped with `undefined`.
   */
  async startDaemon(env: Record<string, string | undefined>, waitReady = true, where = this.server): Promise<DaemonProcess> {
    // KNOCK_DOCKER=off: the machine's Docker (its socket is visible from every namespace) is no part of a lab.
    const merged = { KNOCK_INTERFACE: this.serverIface, KNOCK_HTTP_ADDR: HTTP_ADDR, KNOCK_LOG_LEVEL: "debug", KNOCK_METRICS_TOKEN_FILE: METRICS_TOKEN_FILE, KNOCK_DOCKER: "off", ...env };
    const defined = Object.fromEntries(Object.entries(merged).filter((e): e is [string, string] => e[1] !== undefined));
    const child = this.spawnIn(where, [process.execPath, CLI, "run"], defined);
    const daemon = new DaemonProcess(child);
    daemonsOfTest.push(daemon);
    if (waitReady) await daemon.waitFor("ready");
    return daemon;
  }

  /** One request to the client agent (started on first use). */
  call<T = Record<string, unknown>>(request: Request): Promise<T> {
    if (!this.agentProcess) {
      const agent = this.spawnIn(this.client, [process.execPath, AGENT]);
      this.agentProcess = agent;
      agent.stderr?.on("data", (d: Buffer) => process.stderr.write(`[agent] ${d.toString()}`));
      agent.on("exit", (code, signal) => {
        for (const call of this.agentCalls.values()) call.reject(new Error(`client agent exited with ${signal ? `signal ${signal}` : `code ${code}`}`));
        this.agentCalls.clear();
      });
      createInterface({ input: agent.stdout! }).on("line", (line) => {
        const reply = JSON.parse(line) as { id: number; result?: unknown; error?: string };
        const call = this.agentCalls.get(reply.id);
        this.agentCalls.delete(reply.id);
        if (reply.error !== undefined) call?.reject(new Error(reply.error));
        else call?.resolve(reply.result);
      });
    }
    const id = this.nextCall++;
    return new Promise<T>((resolve, reject) => {
      this.agentCalls.set(id, { resolve: resolve as (v: unknown) => void, reject });
      this.agentProcess?.stdin?.write(JSON.stringify({ id, ...request }) + "\n");
    });
  }

  async canConnect(host: string, opts: { port?: number; timeoutMs?: number; localAddress?: string } = {}): Promise<boolean> {
    const r = await this.call<{ ok: boolean }>({
      op: "connect",
      host,
      port: opts.port ?? SERVICE_PORT,
      timeoutMs: opts.timeoutMs ?? 400,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    });
    return r.ok;
  }

  async knock(host: string, ports: string, opts: { delayMs?: number; localAddress?: string } = {}): Promise<void> {
    const sequence = ports.split(",").map((p) => {
      const [port, proto] = p.split(":");
      return { port: Number(port), proto: (proto ?? "tcp") as "tcp" | "udp" };
    });
    await this.call({ op: "knock", host, ports: sequence, ...opts });
  }

  /** GET on the daemon's HTTP endpoint, from inside the server namespace (or `where`, at `addr`). */
  async http(path: string, headers: Record<string, string> = {}, where = this.server, addr = HTTP_ADDR): Promise<{ status: number; body: string }> {
    const script = `fetch("http://${addr}${path}", { headers: ${JSON.stringify(headers)} }).then(async (r) => console.log(JSON.stringify({ status: r.status, body: await r.text() })))`;
    const r = await this.exec(where, [process.execPath, "-e", script]);
    if (r.code !== 0) throw new Error(`GET ${path} failed: ${r.stderr}`);
    return JSON.parse(r.stdout) as { status: number; body: string };
  }

  /**
   * /readyz as soon as it answers `status`: a look at the kernel serves probes for up to a second
   * (READ_CACHE_MS), so a change shows within that, not on the very next probe.
   */
  async readyzTurns(status: number, addr = HTTP_ADDR, timeoutMs = 2500): Promise<{ status: number; body: string }> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const r = await this.http("/readyz", {}, this.server, addr);
      if (r.status === status || Date.now() > deadline) {
        if (r.status !== status) throw new Error(`/readyz answered ${r.status}, not ${status}: ${r.body}`);
        return r;
      }
      await sleep(100);
    }
  }

  /** The full /metrics text, as an authenticated scrape sees it. */
  async metrics(where = this.server, addr = HTTP_ADDR): Promise<string> {
    const r = await this.http("/metrics", { authorization: `Bearer ${METRICS_TOKEN}` }, where, addr);
    if (r.status !== 200) throw new Error(`GET /metrics with the lab's token: ${r.status} ${r.body}`);
    return r.body;
  }

  /** The server namespace's whole ruleset as the tools print it (for byte-for-byte comparisons). */
  async firewallSnapshot(): Promise<string> {
    const parts = [];
    for (const argv of [["iptables-save"], ["ip6tables-save"], ["nft", "list", "ruleset"], ["ipset", "save"]]) {
      const r = await this.exec(this.server, argv);
      parts.push(r.stdout.split("\n").filter((l) => !/^# (Generated|Completed)/.test(l)).join("\n"));
    }
    return parts.join("\n----\n");
  }

  async destroy(): Promise<void> {
    this.agentProcess?.stdin?.end();
    for (const child of this.children) child.kill("SIGKILL");
    await Promise.all([...this.children].map((c) => (c.exitCode === null ? once(c, "exit") : undefined)));
    this.destroySync();
  }

  destroySync(): void {
    for (const child of this.children) child.kill("SIGKILL");
    for (const name of this.namespaces()) killNamespace(name);
    live.delete(this);
  }
}

/** Runs a test body in a fresh lab and always tears it down. */
export async function withLab(body: (lab: Lab) => Promise<void>): Promise<void> {
  const lab = Lab.create();
  try {
    await body(lab);
  } finally {
    await lab.destroy();
  }
}

export const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));
