/**
 * The bench's namespace lab: a server namespace (contender + services) and a client namespace
 * (knocker, flood sender) joined by one veth pair. Unlike test/support/lab.ts it gives the client
 * many addresses (a fresh source per round), pins neighbour entries (no ARP/NDP in the timings) and
 * blackholes the spoofed ranges on the server (replies to spoofed sources go nowhere, no ARP storm).
 *
 * Address plan (all inside 198.18.0.0/15 and fd00:198:18::/48):
 *   server 198.18.0.1/20, fd00:198:18::1/64; client 198.18.0.2/20, fd00:198:18::2/64
 *   legitimate sources 198.18.1.1.. and fd00:198:18::1:1..  (on the client veth)
 *   spoofed sources    198.18.16.0-198.19.255.255 and fd00:198:18:8000::/49 (blackholed on the server)
 *
 * Every process runs inside one of the two namespaces; deleting them removes every firewall object.
 * Cleanup: destroy() kills every process in the namespaces (ip netns pids) and deletes them; the
 * registry below lets a SIGINT handler or process exit do the same for whatever is still alive.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import type { RunResult } from "../src/adapters/firewall/exec.js";
import { execIn, killNamespace, pidsIn } from "../test/support/netns.js";
import { RpcClient } from "./rpc.js";
import { SERVICE_PORT, CLIENT_V4, CLIENT_V6, SERVER_PREFIX_V4, SERVER_V4, SERVER_V6, SPOOF_V6_PREFIX, legitV4, legitV6 } from "./wire.js";

const PREFIX = "kgb-";
export const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const DIST = `${ROOT}dist/`;
const PATH = process.env["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

let counter = 0;
const live = new Set<BenchLab>();

function ip(args: string[], input?: string): void {
  execFileSync("ip", args, { stdio: ["pipe", "ignore", "pipe"], input });
}

/** Namespaces of an earlier bench run that died before its cleanup (its pid is in the name). */
export function removeStaleNamespaces(): string[] {
  const removed: string[] = [];
  const list = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
  for (const line of list.split("\n")) {
    const name = line.split(" ")[0] ?? "";
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number(name.split("-")[1]);
    if (pid === process.pid) continue;
    try {
      process.kill(pid, 0);
      continue; // its owner is alive
    } catch {
      killNamespace(name);
      removed.push(name);
    }
  }
  return removed;
}

/** Synchronous last resort (exit handler, second Ctrl-C). */
export function destroyAllSync(): void {
  for (const lab of [...live]) lab.destroySync();
}

export function liveLabs(): number {
  return live.size;
}

export interface LabOptions {
  /** Legitimate client addresses to put on the client veth, per family. */
  legit4: number;
  legit6: number;
}

export class BenchLab {
  readonly server: string;
  readonly client: string;
  readonly serverIface = "kgs0";
  readonly clientIface = "kgc0";
  serverMac = "";
  clientMac = "";
  private readonly children = new Set<ChildProcess>();
  /** `ip neigh` lines pinning the client's addresses on the server side (a link set down drops them). */
  private serverNeighbours: string[] = [];
  private serverHelper: RpcClient | null = null;
  private clientAgent: RpcClient | null = null;
  private destroyed = false;

  private constructor(tag: string) {
    const n = counter++;
    this.server = `${PREFIX}${process.pid}-${n}-${tag}-s`;
    this.client = `${PREFIX}${process.pid}-${n}-${tag}-c`;
  }

  static async create(tag: string, opts: LabOptions): Promise<BenchLab> {
    const lab = new BenchLab(tag.replace(/[^a-z0-9]/gi, "").slice(0, 8));
    live.add(lab);
    try {
      lab.build(opts);
      await lab.startHelpers();
    } catch (err) {
      await lab.destroy();
      throw err;
    }
    return lab;
  }

  private build(opts: LabOptions): void {
    const { server, client, serverIface: si, clientIface: ci } = this;
    ip(["netns", "add", server]);
    ip(["netns", "add", client]);
    ip(["link", "add", si, "netns", server, "type", "veth", "peer", "name", ci, "netns", client]);
    const sysctl = (ns: string, ...kv: string[]) => execFileSync("ip", ["netns", "exec", ns, "sysctl", "-qw", ...kv], { stdio: "ignore" });
    // Spoofed sources have a blackhole route back: keep reverse-path filtering out of the way so
    // every contender sees them (knockd and knockgate capture before routing; the kernel door must too).
    sysctl(server, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0");
    // The soak sets the server's veth down and up: its IPv6 address must survive that, as IPv4's does.
    sysctl(server, "net.ipv6.conf.all.keep_addr_on_down=1", "net.ipv6.conf.default.keep_addr_on_down=1");
    sysctl(client, "net.ipv4.tcp_tw_reuse=1", "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf.default.accept_dad=0");
    this.serverMac = execFileSync("ip", ["netns", "exec", server, "cat", `/sys/class/net/${si}/address`], { encoding: "utf8" }).trim();
    this.clientMac = execFileSync("ip", ["netns", "exec", client, "cat", `/sys/class/net/${ci}/address`], { encoding: "utf8" }).trim();

    const srv = [
      `addr add ${SERVER_V4}/${SERVER_PREFIX_V4} dev ${si}`,
      `addr add ${SERVER_V6}/64 dev ${si} nodad`,
      `link set ${si} up`,
      `link set lo up`,
      // Replies to spoofed sources: dropped at routing, never ARPed for.
      `route add blackhole 198.18.0.0/15`,
      `route add blackhole ${SPOOF_V6_PREFIX}`,
      `neigh replace ${CLIENT_V4} lladdr ${this.clientMac} dev ${si} nud permanent`,
      `neigh replace ${CLIENT_V6} lladdr ${this.clientMac} dev ${si} nud permanent`,
    ];
    const cli = [
      `addr add ${CLIENT_V4}/${SERVER_PREFIX_V4} dev ${ci}`,
      `addr add ${CLIENT_V6}/64 dev ${ci} nodad`,
      `link set ${ci} up`,
      `link set lo up`,
      `neigh replace ${SERVER_V4} lladdr ${this.serverMac} dev ${ci} nud permanent`,
      `neigh replace ${SERVER_V6} lladdr ${this.serverMac} dev ${ci} nud permanent`,
    ];
    for (let i = 0; i < opts.legit4; i++) {
      cli.push(`addr add ${legitV4(i)}/32 dev ${ci}`);
      srv.push(`neigh replace ${legitV4(i)} lladdr ${this.clientMac} dev ${si} nud permanent`);
    }
    for (let i = 0; i < opts.legit6; i++) {
      cli.push(`addr add ${legitV6(i)}/128 dev ${ci} nodad`);
      srv.push(`neigh replace ${legitV6(i)} lladdr ${this.clientMac} dev ${si} nud permanent`);
    }
    this.serverNeighbours = srv.filter((l) => l.startsWith("neigh "));
    ip(["-n", server, "-batch", "-"], srv.join("\n") + "\n");
    ip(["-n", client, "-batch", "-"], cli.join("\n") + "\n");
  }

  private async startHelpers(): Promise<void> {
    this.serverHelper = new RpcClient(this.spawnIn(this.server, [process.execPath, `${DIST}bench/server.js`]), "server-helper");
    // A young generation of 64 MB from the start (V8 starts it small): with that, about 2 rounds in
    // 200 had a scavenge of the agent's heap inside them (1-8 ms, the client's time, not the
    // door's), which set the p99 of the doors that open in 0.1 ms; now a run has none. docs/bench.md.
    this.clientAgent = new RpcClient(
      this.spawnIn(this.client, [process.execPath, "--min-semi-space-size=64", "--max-semi-space-size=64", `${DIST}bench/client.js`]),
      "client-agent",
    );
    await this.serverHelper.call("ping");
    await this.clientAgent.call("init", { iface: this.clientIface, srcMac: this.clientMac, dstMac: this.serverMac, probePort: SERVICE_PORT });
  }

  get agent(): RpcClient {
    if (!this.clientAgent) throw new Error("lab has no client agent");
    return this.clientAgent;
  }

  get helper(): RpcClient {
    if (!this.serverHelper) throw new Error("lab has no server helper");
    return this.serverHelper;
  }

  /** Runs a command inside a namespace (argv, no shell). */
  exec(where: string, argv: string[], input?: string): Promise<RunResult> {
    return execIn(where, argv, input);
  }

  /** Spawns a long-lived process inside a namespace; `ip netns exec` execs, so child.pid is the process itself. */
  spawnIn(where: string, argv: string[], env: Record<string, string> = {}): ChildProcess {
    if (this.destroyed) throw new Error("lab destroyed");
    const child = spawn("ip", ["netns", "exec", where, ...argv], {
      env: { PATH, ...env },
      stdio: ["pipe", "pipe", "pipe"],
    });
    this.children.add(child);
    child.on("exit", () => this.children.delete(child));
    child.on("error", () => this.children.delete(child));
    return child;
  }

  /**
   * Sets the server's veth down for `downMs`, then up again with its neighbour entries pinned anew
   * (setting a link down flushes them, permanent ones included).
   */
  async flapServerLink(downMs: number): Promise<void> {
    ip(["-n", this.server, "link", "set", this.serverIface, "down"]);
    await new Promise((r) => setTimeout(r, downMs));
    ip(["-n", this.server, "-batch", "-"], [`link set ${this.serverIface} up`, ...this.serverNeighbours].join("\n") + "\n");
  }

  /** Processes in the server namespace right now (knockd forks one per grant). */
  serverPids(): number[] {
    return pidsIn(this.server);
  }

  async destroy(): Promise<void> {
    if (this.destroyed) return;
    for (const child of this.children) child.kill("SIGKILL");
    await Promise.race([
      Promise.all([...this.children].map((c) => (c.exitCode === null && c.signalCode === null ? once(c, "exit") : undefined))),
      new Promise((r) => setTimeout(r, 2000)),
    ]);
    this.destroySync();
  }

  destroySync(): void {
    this.destroyed = true;
    for (const child of this.children) child.kill("SIGKILL");
    killNamespace(this.server);
    killNamespace(this.client);
    live.delete(this);
  }
}
