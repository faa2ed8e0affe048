/**
 * The contenders, each started inside a lab's server namespace:
 *   knockgate      this project, default backend (KNOCK_FIREWALL=auto: iptables + ipset here)
 *   knockgate-nft  this project, nftables backend
 *   knockgate-kernel  this project, kernel engine (the door's sequence as nftables rules, the daemon reads their reports)
 *   knockd         Debian's knockd, configured like its tutorial (iptables -I grants)
 *   kernel         no daemon: the door compiled to an nftables ruleset with dynamic stage sets
 *   knockgate-spa  this project, a signed door (one SPA datagram opens it), default backend
 *   knockgate-spa-nft  the same door on nftables, where its replay record and grant are one transaction
 *   fwknopd        Debian's fwknopd, set up as its documentation says (pcap, iptables grants)
 */
import type { ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { rmSync, writeFileSync } from "node:fs";
import { access, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import type { BenchLab } from "./lab.js";
import { ROOT } from "./lab.js";
import { HTTP_PORT, KNOCK_PORTS, SERVER_V4, SERVICE_PORT } from "./wire.js";
import { ipsetSpaName } from "../src/adapters/firewall/iptables/sets.js";
import { freezeTree } from "./proc.js";
import { nftDurationMs, nftSetFill, type SetFill } from "./nft-sets.js";
import { nftElements } from "../src/adapters/firewall/nftables/listing.js";

export type ContenderId = "knockgate" | "knockgate-nft" | "knockgate-kernel" | "knockd" | "kernel" | "knockgate-spa" | "knockgate-spa-nft" | "fwknopd";
export type ScenarioName = "idle" | "latency" | "flood" | "sweep" | "grants";

export interface StartOptions {
  /** Grant lifetime in seconds (knockd's tutorial config has none: its grants stay). */
  openForS: number;
}

export interface Running {
  /** Main process, for CPU and RSS; null when there is no daemon. */
  readonly pid: number | null;
  /** Grants present in the kernel right now (source addresses, both families), expired ones excluded. */
  grantAddresses(): Promise<string[]>;
  /** Cheap count for tight polling (may include entries expired but not yet garbage-collected). */
  grantCount(): Promise<number>;
  /**
   * Takes every grant out of the kernel's reach, keeping it aside, and puts it back (timeouts
   * preserved): lets the per-connection cost be measured in interleaved blocks with and without
   * grants, so drift over time cancels. Measurement only; the contender is not told.
   */
  hideGrants(): Promise<void>;
  showGrants(): Promise<void>;
  /** knockgate's /metrics as name{labels} -> value; null for the others. */
  metrics(): Promise<Map<string, number> | null>;
  /**
   * Stops the daemon (SIGSTOP of its process tree) until the function returned is called: its
   * reconcile must not undo a measurement's hiding of grants. Absent: nothing to stop.
   */
  freeze?(): () => void;
  /** How many times the daemon logged putting back grants it found missing (grants_restored). */
  grantsRestored?(): number;
  /** How full the sets are in which the kernel recognises knocks (kernel-side doors only). */
  knockSets?(): Promise<SetFill[]>;
  /** Anything the reader of the report must know (throttling, errors seen). */
  notes(): string[];
  stop(): Promise<void>;
}

export interface Contender {
  id: ContenderId;
  label: string;
  /** Whether grants expire by themselves (knockd's tutorial config: no). */
  expires: boolean;
  scenarios: readonly ScenarioName[];
  /** How a client opens it: a knock sequence, or one SPA datagram under SPA_KEYS. */
  door: "sequence" | "spa";
  /** Who recognises the knocks: a process capturing packets, or the kernel's rules (no capture loss to measure). */
  engine: "capture" | "kernel";
  /** Why it cannot run here, or null. */
  unavailable(): Promise<string | null>;
  start(lab: BenchLab, opts: StartOptions): Promise<Running>;
}

/**
 * Diagnosis only (never in a reported run without saying so): KNOCKGATE_BENCH_CLI runs another build
 * of knockgate, KNOCKGATE_BENCH_NODE_OPTIONS passes NODE_OPTIONS to the daemon.
 */
const CLI = process.env["KNOCKGATE_BENCH_CLI"] ?? `${ROOT}dist/src/cli/main.js`;

export const METRICS_TOKEN = `bench-${process.pid}`;
let tokenFile: string | null = null;
/** A file holding METRICS_TOKEN, written once per run and removed when the process exits. */
export function metricsTokenFile(): string {
  if (tokenFile === null) {
    const path = join(tmpdir(), `knockgate-bench-${process.pid}.token`);
    writeFileSync(path, METRICS_TOKEN, { mode: 0o600 });
    process.on("exit", () => rmSync(path, { force: true }));
    tokenFile = path;
  }
  return tokenFile;
}
const DAEMON_NODE_OPTIONS = process.env["KNOCKGATE_BENCH_NODE_OPTIONS"];
export const DIAGNOSTIC_OVERRIDES = [
  process.env["KNOCKGATE_BENCH_CLI"] ? `KNOCKGATE_BENCH_CLI=${CLI}` : "",
  DAEMON_NODE_OPTIONS ? `KNOCKGATE_BENCH_NODE_OPTIONS=${DAEMON_NODE_OPTIONS}` : "",
].filter(Boolean);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Every contender's state budget: knockgate's KNOCK_MAX_TRACKED (its default) and the kernel door's set size. */
export const MAX_TRACKED = 65536;

/** The signed doors' keys for this run, as `fwknop --key-gen` makes them (32 and 64 random bytes). */
export const SPA_KEYS = { key: randomBytes(32).toString("base64"), hmac: randomBytes(64).toString("base64") };

async function exists(path: string): Promise<boolean> {
  try {
    await access(path);
    return true;
  } catch {
    return false;
  }
}

/** Keeps the last lines of a child's output (and keeps its pipes drained so it never blocks); each line also goes to onLine. */
function tail(child: ChildProcess, keep = 50, onLine: (line: string) => void = () => undefined): string[] {
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    createInterface({ input: stream }).on("line", (l) => {
      lines.push(l);
      if (lines.length > keep) lines.shift();
      onLine(l);
    });
  }
  return lines;
}

export async function stopChild(child: ChildProcess, graceMs = 3000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  child.kill("SIGTERM");
  const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
  await exited;
  clearTimeout(timer);
}

export function parseMetrics(text: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split("\n")) {
    if (!line || line.startsWith("#")) continue;
    const at = line.lastIndexOf(" ");
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

/** Elements of an nft set. */
async function nftSetMembers(lab: BenchLab, family: string, table: string, set: string): Promise<string[]> {
  const r = await lab.exec(lab.server, ["nft", "-j", "list", "set", family, table, set]);
  if (r.code !== 0) throw new Error(`nft list set ${set}: ${r.stderr.trim()}`);
  return nftElements(r.stdout).map((e) => e.src);
}

/** How full the sets of an inet table whose names start with `prefix` are (one listing of the whole table). */
async function nftTableFill(lab: BenchLab, table: string, prefix: string): Promise<SetFill[]> {
  const r = await lab.exec(lab.server, ["nft", "-j", "list", "table", "inet", table]);
  if (r.code !== 0) throw new Error(`nft list table ${table}: ${r.stderr.trim()}`);
  return nftSetFill(r.stdout, table, prefix);
}

/**
 * Hide/show for grants in nft timeout sets. The first hide lists the elements with their remaining
 * times (the text listing has millisecond precision, JSON only whole seconds) and dates each one's
 * end; every hide flushes the sets and every show adds the elements back for the time left to that
 * end. Ends come from that one listing, so hiding again and again neither shortens nor lengthens a
 * grant (nobody writes the sets meanwhile: the daemon is stopped and nobody knocks).
 */
function nftGrantToggle(lab: BenchLab, table: string, sets: readonly string[]): { hide(): Promise<void>; show(): Promise<void> } {
  let ends: { set: string; elems: { addr: string; endAt: number }[] }[] | null = null;
  // How long the last re-add took to reach the kernel, charged to the next one.
  let applyMs = 50;
  return {
    async hide() {
      if (ends === null) {
        ends = [];
        for (const set of sets) {
          // The kernel computes "expires" at the dump, a few ms into this exec (nft then spends
          // ~170 ms formatting 10k elements), so dating from the exec's start makes ends early by
          // those few ms. Early is what must not happen: a grant gone from the kernel before the
          // daemon's book ends is one it finds lost and puts back. Hence the margin, late.
          const listedAt = performance.now() + NFT_END_MARGIN_MS;
          const r = await lab.exec(lab.server, ["nft", "list", "set", "inet", table, set]);
          if (r.code !== 0) throw new Error(`nft list set ${set}: ${r.stderr.trim()}`);
          const elems = [...r.stdout.matchAll(/([0-9a-f.:]+) timeout \S+ expires (\S+?)[,\s}]/g)].map((m) => ({ addr: m[1]!, endAt: listedAt + nftDurationMs(m[2]!) }));
          ends.push({ set, elems });
        }
      }
      for (const set of sets) {
        const r = await lab.exec(lab.server, ["nft", "flush", "set", "inet", table, set]);
        if (r.code !== 0) throw new Error(`nft flush set ${set}: ${r.stderr.trim()}`);
      }
    },
    async show() {
      const start = performance.now();
      const lines = (ends ?? [])
        .map(({ set, elems }) => {
          const left = (e: { endAt: number }) => Math.round(e.endAt - start - applyMs);
          const live = elems.filter((e) => left(e) > 1);
          return live.length ? `add element inet ${table} ${set} { ${live.map((e) => `${e.addr} timeout ${left(e)}ms`).join(", ")} }` : "";
        })
        .filter(Boolean);
      if (lines.length === 0) return;
      const r = await lab.exec(lab.server, ["nft", "-f", "-"], lines.join("\n") + "\n");
      if (r.code !== 0) throw new Error(`nft restore grants: ${r.stderr.slice(0, 300)}`);
      applyMs = performance.now() - start;
    },
  };
}

/** How much later than listed the grants hidden from nft sets end (see nftGrantToggle). */
const NFT_END_MARGIN_MS = 100;

// ---------------------------------------------------------------------------------------------
// knockgate

/** One way of running knockgate: its backend, engine and door. */
interface KnockgateVariant {
  id: "knockgate" | "knockgate-nft" | "knockgate-kernel" | "knockgate-spa" | "knockgate-spa-nft";
  label: string;
  backend: "auto" | "nftables";
  engine: "capture" | "kernel";
  door: "sequence" | "spa";
  scenarios: readonly ScenarioName[];
}

function knockgate({ id, label, backend, engine, door, scenarios }: KnockgateVariant): Contender {
  const signed = door === "spa";
  return {
    id,
    label,
    expires: true,
    door,
    engine,
    scenarios,
    async unavailable() {
      if (!(await exists(CLI))) return `${CLI} missing: run npm run build`;
      if (backend === "auto" && !((await exists("/usr/sbin/ipset")) || (await exists("/sbin/ipset")))) return "ipset not installed";
      if (!(await exists("/usr/sbin/nft"))) return "nft not installed";
      return null;
    },
    async start(lab, opts) {
      const env: Record<string, string> = {
        KNOCK_INTERFACE: lab.serverIface,
        ...(signed ? { KNOCK_DOOR_SSH_SPA_KEY: SPA_KEYS.key, KNOCK_DOOR_SSH_SPA_HMAC_KEY: SPA_KEYS.hmac } : { KNOCK_DOOR_SSH_SEQUENCE: KNOCK_PORTS.join(",") }),
        KNOCK_DOOR_SSH_OPEN_FOR: String(opts.openForS),
        KNOCK_MAX_TRACKED: String(MAX_TRACKED),
        // Logging costs: warn keeps per-knock lines out of the measured path.
        KNOCK_LOG_LEVEL: "warn",
        KNOCK_HTTP_ADDR: `${SERVER_V4}:${HTTP_PORT}`,
        KNOCK_FIREWALL: backend,
        KNOCK_ENGINE: engine,
        // The machine's Docker is no contender's business (its socket is visible in every namespace).
        KNOCK_DOCKER: "off",
        // The bench reads counters that only an authenticated scrape gets (capture drops, packets).
        KNOCK_METRICS_TOKEN_FILE: metricsTokenFile(),
        ...(DAEMON_NODE_OPTIONS ? { NODE_OPTIONS: DAEMON_NODE_OPTIONS } : {}),
      };
      const child = lab.spawnIn(lab.server, [process.execPath, CLI, "run"], env);
      let restored = 0;
      const output = tail(child, 50, (line) => {
        if (line.includes('"event":"grants_restored"')) restored++;
      });
      const url = `http://${SERVER_V4}:${HTTP_PORT}`;
      const deadline = Date.now() + 20_000;
      for (;;) {
        if (child.exitCode !== null) throw new Error(`knockgate exited with ${child.exitCode}: ${output.join("\n")}`);
        const r = await lab.helper.call<{ status: number; body: string }>("http", { url: `${url}/readyz`, timeoutMs: 1000 });
        if (r.status === 200) break;
        if (Date.now() > deadline) throw new Error(`knockgate not ready in 20 s: ${r.body} ${output.join("\n")}`);
        await sleep(50);
      }
      const pid = child.pid ?? null;
      const useIpset = backend === "auto";
      // A signed door's grants are (address, port) entries of a set of their own.
      const grantSet = (fam: 4 | 6) => (signed ? ipsetSpaName("SSH", fam) : `knockgate-SSH-${fam}`);
      const ipsetMembers = async (): Promise<string[]> => {
        const out: string[] = [];
        for (const fam of [4, 6] as const) {
          const r = await lab.exec(lab.server, ["ipset", "list", grantSet(fam)]);
          if (r.code !== 0) throw new Error(`ipset list: ${r.stderr}`);
          const at = r.stdout.indexOf("Members:\n");
          for (const l of r.stdout.slice(at + 9).split("\n")) if (l.trim()) out.push(l.trim().split(/[ ,]/)[0]!);
        }
        return out;
      };
      const nftMembers = async (): Promise<string[]> => [
        ...(await nftSetMembers(lab, "inet", "knockgate", "door_SSH_v4")),
        ...(await nftSetMembers(lab, "inet", "knockgate", "door_SSH_v6")),
      ];
      // ipset: swap the door sets with empty twins of the same type (timeouts keep running inside).
      const ipsetToggle = {
        async hide() {
          for (const fam of [4, 6]) {
            const twin = `kgb-hidden-${fam}`;
            // The same size as knockgate's own set, or its reconcile would see a set of the wrong size and rebuild it.
            const header = await lab.exec(lab.server, ["ipset", "list", "-t", `knockgate-SSH-${fam}`]);
            const maxelem = /maxelem (\d+)/.exec(header.stdout)?.[1] ?? "65536";
            await lab.exec(lab.server, ["ipset", "create", twin, "hash:ip", "family", fam === 4 ? "inet" : "inet6", "timeout", "0", "maxelem", maxelem, "-exist"]);
            // Empty at every hide: whatever reached the twin while it stood in for the door's set stays out.
            await lab.exec(lab.server, ["ipset", "flush", twin]);
            await lab.exec(lab.server, ["ipset", "swap", `knockgate-SSH-${fam}`, twin]);
          }
        },
        async show() {
          for (const fam of [4, 6]) await lab.exec(lab.server, ["ipset", "swap", `knockgate-SSH-${fam}`, `kgb-hidden-${fam}`]);
        },
      };
      const toggle = useIpset ? ipsetToggle : nftGrantToggle(lab, "knockgate", ["door_SSH_v4", "door_SSH_v6"]);
      return {
        pid,
        hideGrants: () => toggle.hide(),
        showGrants: () => toggle.show(),
        grantAddresses: useIpset ? ipsetMembers : nftMembers,
        async grantCount() {
          if (!useIpset) return (await nftMembers()).length;
          let n = 0;
          for (const fam of [4, 6] as const) {
            const r = await lab.exec(lab.server, ["ipset", "list", "-t", grantSet(fam)]);
            n += Number(/Number of entries: (\d+)/.exec(r.stdout)?.[1] ?? 0);
          }
          return n;
        },
        async metrics() {
          const r = await lab.helper.call<{ status: number; body: string }>("http", { url: `${url}/metrics`, headers: { authorization: `Bearer ${METRICS_TOKEN}` }, timeoutMs: 5000 });
          return r.status === 200 ? parseMetrics(r.body) : null;
        },
        ...(pid === null ? {} : { freeze: () => freezeTree(pid) }),
        grantsRestored: () => restored,
        ...(engine === "kernel" ? { knockSets: () => nftTableFill(lab, "knockgate", "knock_") } : {}),
        notes() {
          const warnings = output.filter((l) => /"level":(40|50|60)/.test(l));
          return warnings.length ? [`${warnings.length} warning/error log lines, last: ${warnings.at(-1)?.slice(0, 300)}`] : [];
        },
        stop: () => stopChild(child),
      };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// knockd

/** knockd forks a shell + iptables per grant; past this many processes in the namespace we pause it. */
const KNOCKD_MAX_PROCS = 256;

const knockdContender: Contender = {
  id: "knockd",
  label: "knockd 0.8 (Debian, tutorial config)",
  expires: false,
  door: "sequence",
  engine: "capture",
  scenarios: ["idle", "latency", "flood", "sweep", "grants"],
  async unavailable() {
    if (!(await exists("/usr/sbin/knockd"))) return "/usr/sbin/knockd missing (apt-get install knockd)";
    if (!(await exists("/usr/sbin/iptables"))) return "iptables missing";
    return null;
  },
  async start(lab) {
    // The tutorial's INPUT chain, for both families (knockd 0.8 takes command_6 for IPv6 knockers).
    for (const tool of ["iptables", "ip6tables"]) {
      const rules = `*filter\n-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A INPUT -p tcp --dport ${SERVICE_PORT} -j DROP\nCOMMIT\n`;
      const r = await lab.exec(lab.server, [`${tool}-restore`], rules);
      if (r.code !== 0) throw new Error(`${tool}-restore: ${r.stderr}`);
    }
    const dir = await mkdtemp(join(tmpdir(), `${lab.server}-knockd-`));
    const conf = join(dir, "knockd.conf");
    const logFile = join(dir, "knockd.log");
    await writeFile(
      conf,
      [
        "[options]",
        `    LogFile = ${logFile}`,
        `    Interface = ${lab.serverIface}`,
        "",
        "[openSSH]",
        `    sequence    = ${KNOCK_PORTS.join(",")}`,
        "    seq_timeout = 5",
        "    tcpflags    = syn",
        `    command     = /usr/sbin/iptables -I INPUT -s %IP% -p tcp --dport ${SERVICE_PORT} -j ACCEPT`,
        `    command_6   = /usr/sbin/ip6tables -I INPUT -s %IP% -p tcp --dport ${SERVICE_PORT} -j ACCEPT`,
        "",
      ].join("\n"),
    );
    const child = lab.spawnIn(lab.server, ["/usr/sbin/knockd", "-c", conf, "-i", lab.serverIface]);
    const output = tail(child);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`knockd exited with ${child.exitCode}: ${output.join("\n")}`);
      const log = await readFile(logFile, "utf8").catch(() => "");
      if (log.includes("starting up")) break;
      if (Date.now() > deadline) throw new Error(`knockd did not start in 10 s: ${output.join("\n")}`);
      await sleep(20);
    }
    const pid = child.pid ?? null;
    // Safety valve: a flood of completed sequences makes knockd fork a shell + iptables per grant;
    // unbounded, that can exhaust memory. Pause knockd while too many of its children run.
    let paused = false;
    let pausedMs = 0;
    let pausedAt = 0;
    let maxProcs = 0;
    let pauses = 0;
    const watchdog = setInterval(() => {
      if (pid === null) return;
      const n = lab.serverPids().length;
      maxProcs = Math.max(maxProcs, n);
      if (!paused && n > KNOCKD_MAX_PROCS) {
        paused = true;
        pauses++;
        pausedAt = performance.now();
        process.kill(pid, "SIGSTOP");
      } else if (paused && n < KNOCKD_MAX_PROCS / 2) {
        paused = false;
        pausedMs += performance.now() - pausedAt;
        process.kill(pid, "SIGCONT");
      }
    }, 100);
    const members = async (): Promise<string[]> => {
      const out: string[] = [];
      for (const tool of ["iptables", "ip6tables"]) {
        const r = await lab.exec(lab.server, [tool, "-w", "-S", "INPUT"]);
        for (const l of r.stdout.split("\n")) {
          const m = /^-A INPUT -s (\S+?)(?:\/(?:32|128))? -p tcp -m tcp --dport \d+ -j ACCEPT$/.exec(l);
          if (m) out.push(m[1]!);
        }
      }
      return out;
    };
    let savedRules: string[] = [];
    const tutorial = `*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A INPUT -p tcp --dport ${SERVICE_PORT} -j DROP\nCOMMIT\n`;
    return {
      pid,
      async hideGrants() {
        savedRules = [];
        for (const tool of ["iptables", "ip6tables"]) {
          savedRules.push((await lab.exec(lab.server, [`${tool}-save`, "-t", "filter"])).stdout);
          await lab.exec(lab.server, [`${tool}-restore`], tutorial);
        }
      },
      async showGrants() {
        for (const [i, tool] of ["iptables", "ip6tables"].entries()) {
          if (savedRules[i]) await lab.exec(lab.server, [`${tool}-restore`], savedRules[i]);
        }
        savedRules = [];
      },
      grantAddresses: members,
      grantCount: async () => (await members()).length,
      metrics: () => Promise.resolve(null),
      notes() {
        const notes: string[] = [];
        if (pauses > 0 || paused) {
          const ms = pausedMs + (paused ? performance.now() - pausedAt : 0);
          notes.push(`safety valve: knockd paused ${pauses}x for ${(ms / 1000).toFixed(1)} s in total (> ${KNOCKD_MAX_PROCS} processes in its namespace; peak ${maxProcs})`);
        } else if (maxProcs > 20) {
          notes.push(`peak ${maxProcs} processes in the server namespace (knockd's command children)`);
        }
        return notes;
      },
      async stop() {
        clearInterval(watchdog);
        if (paused && pid !== null) process.kill(pid, "SIGCONT");
        // knockd's SIGTERM handler waits for a child: do not wait long.
        await stopChild(child, 1000);
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
};

// ---------------------------------------------------------------------------------------------
// kernel-only

const NFT_TABLE = "kgbench";

export function kernelRuleset(openForS: number): string {
  const [p1, p2, p3] = KNOCK_PORTS;
  const syn = "tcp flags & (syn | ack) == syn";
  const lines = [`table inet ${NFT_TABLE} {`];
  for (const [fam, type] of [["v4", "ipv4_addr"], ["v6", "ipv6_addr"]] as const) {
    for (const set of ["stage2", "stage3", "grant"]) {
      lines.push(`  set ${set}_${fam} { type ${type}; flags dynamic, timeout; size ${MAX_TRACKED}; }`);
    }
  }
  lines.push("  chain prerouting {", "    type filter hook prerouting priority -150; policy accept;", '    iifname "lo" accept', "    ct state established,related accept");
  for (const [fam, saddr] of [["v4", "ip saddr"], ["v6", "ip6 saddr"]] as const) {
    lines.push(`    tcp dport ${p1} ${syn} add @stage2_${fam} { ${saddr} timeout 5s }`);
    lines.push(`    tcp dport ${p2} ${syn} ${saddr} @stage2_${fam} add @stage3_${fam} { ${saddr} timeout 5s }`);
    lines.push(`    tcp dport ${p3} ${syn} ${saddr} @stage3_${fam} add @grant_${fam} { ${saddr} timeout ${openForS}s }`);
    lines.push(`    tcp dport ${SERVICE_PORT} ${saddr} @grant_${fam} accept`);
  }
  lines.push(`    tcp dport ${SERVICE_PORT} drop`, "  }", "}", "");
  return lines.join("\n");
}

const kernelContender: Contender = {
  id: "kernel",
  label: "kernel-only nftables door",
  expires: true,
  door: "sequence",
  engine: "kernel",
  scenarios: ["latency", "flood", "sweep", "grants"],
  async unavailable() {
    return (await exists("/usr/sbin/nft")) ? null : "nft not installed";
  },
  async start(lab, opts) {
    const r = await lab.exec(lab.server, ["nft", "-f", "-"], kernelRuleset(opts.openForS));
    if (r.code !== 0) throw new Error(`nft -f: ${r.stderr}`);
    const members = async (): Promise<string[]> => [
      ...(await nftSetMembers(lab, "inet", NFT_TABLE, "grant_v4")),
      ...(await nftSetMembers(lab, "inet", NFT_TABLE, "grant_v6")),
    ];
    const toggle = nftGrantToggle(lab, NFT_TABLE, ["grant_v4", "grant_v6"]);
    return {
      pid: null,
      hideGrants: () => toggle.hide(),
      showGrants: () => toggle.show(),
      grantAddresses: members,
      grantCount: async () => (await members()).length,
      metrics: () => Promise.resolve(null),
      knockSets: () => nftTableFill(lab, NFT_TABLE, "stage"),
      notes: () => [],
      stop: () => Promise.resolve(),
    };
  },
};

// ---------------------------------------------------------------------------------------------
// fwknopd

/**
 * Debian's fwknopd 2.6 as its documentation sets it up: fwknopd.conf names the interface and keeps
 * every other default (pcap on udp port 62201, iptables FWKNOP_INPUT chain jumped to from INPUT),
 * access.conf holds one stanza with the run's keys, and INPUT drops the service port except for
 * established connections. Grants are ACCEPT rules in FWKNOP_INPUT that fwknopd removes on expiry.
 */
const fwknopdContender: Contender = {
  id: "fwknopd",
  label: "fwknopd 2.6 (Debian, documented config)",
  expires: true,
  door: "spa",
  engine: "capture",
  scenarios: ["idle", "latency", "flood"],
  async unavailable() {
    if (!(await exists("/usr/sbin/fwknopd"))) return "/usr/sbin/fwknopd missing (apt-get install fwknop-server)";
    if (!(await exists("/usr/sbin/iptables"))) return "iptables missing";
    return null;
  },
  async start(lab, opts) {
    const rules = `*filter\n-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT\n-A INPUT -p tcp --dport ${SERVICE_PORT} -j DROP\nCOMMIT\n`;
    const r = await lab.exec(lab.server, ["iptables-restore"], rules);
    if (r.code !== 0) throw new Error(`iptables-restore: ${r.stderr}`);
    const dir = await mkdtemp(join(tmpdir(), `${lab.server}-fwknopd-`));
    const conf = join(dir, "fwknopd.conf");
    const accessConf = join(dir, "access.conf");
    // fwknopd warns about configuration files others can read: the documentation's 0600.
    await writeFile(conf, `PCAP_INTF ${lab.serverIface}\n`, { mode: 0o600 });
    await writeFile(
      accessConf,
      [`SOURCE ANY`, `OPEN_PORTS tcp/${SERVICE_PORT}`, `KEY_BASE64 ${SPA_KEYS.key}`, `HMAC_KEY_BASE64 ${SPA_KEYS.hmac}`, `FW_ACCESS_TIMEOUT ${opts.openForS}`, ""].join("\n"),
      { mode: 0o600 },
    );
    const argv = ["/usr/sbin/fwknopd", "-f", "-c", conf, "-a", accessConf, "-d", join(dir, "digest.cache"), "-p", join(dir, "fwknopd.pid"), "-r", join(dir, "run")];
    const child = lab.spawnIn(lab.server, argv);
    const output = tail(child);
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`fwknopd exited with ${child.exitCode}: ${output.join("\n")}`);
      // Ready once its chain is jumped to (it sets up the firewall before it opens pcap).
      const input = await lab.exec(lab.server, ["iptables", "-w", "-S", "INPUT"]);
      if (input.stdout.includes("-j FWKNOP_INPUT") && output.some((l) => /Starting fwknopd/.test(l))) break;
      if (Date.now() > deadline) throw new Error(`fwknopd not ready in 10 s: ${output.join("\n")}`);
      await sleep(50);
    }
    await sleep(300); // pcap opens after the firewall set-up
    const members = async (): Promise<string[]> => {
      const rules = await lab.exec(lab.server, ["iptables", "-w", "-S", "FWKNOP_INPUT"]);
      return [...rules.stdout.matchAll(/^-A FWKNOP_INPUT -s (\S+?)\/32 .*-j ACCEPT$/gm)].map((m) => m[1]!);
    };
    const notSupported = () => Promise.reject(new Error("fwknopd runs the latency and flood scenarios only"));
    return {
      pid: child.pid ?? null,
      hideGrants: notSupported,
      showGrants: notSupported,
      grantAddresses: members,
      grantCount: async () => (await members()).length,
      metrics: () => Promise.resolve(null),
      notes() {
        const errors = output.filter((l) => /error|fail/i.test(l));
        return errors.length ? [`${errors.length} error lines from fwknopd, last: ${errors.at(-1)?.slice(0, 300)}`] : [];
      },
      async stop() {
        await stopChild(child);
        await rm(dir, { recursive: true, force: true });
      },
    };
  },
};

const EVERY_SCENARIO: readonly ScenarioName[] = ["idle", "latency", "flood", "sweep", "grants"];

export const CONTENDERS: readonly Contender[] = [
  knockgate({ id: "knockgate", label: "knockgate (iptables+ipset)", backend: "auto", engine: "capture", door: "sequence", scenarios: EVERY_SCENARIO }),
  // Idle, latency and grant scale only, to keep the run short.
  knockgate({ id: "knockgate-nft", label: "knockgate (nftables)", backend: "nftables", engine: "capture", door: "sequence", scenarios: ["idle", "latency", "grants"] }),
  knockgate({ id: "knockgate-kernel", label: "knockgate kernel engine (nftables)", backend: "nftables", engine: "kernel", door: "sequence", scenarios: EVERY_SCENARIO }),
  knockdContender,
  kernelContender,
  knockgate({ id: "knockgate-spa", label: "knockgate signed door (iptables+ipset)", backend: "auto", engine: "capture", door: "spa", scenarios: ["idle", "latency", "flood"] }),
  // Latency only: what the one-transaction write buys, beside the sequence door on the same backend.
  knockgate({ id: "knockgate-spa-nft", label: "knockgate signed door (nftables)", backend: "nftables", engine: "capture", door: "spa", scenarios: ["latency"] }),
  fwknopdContender,
];
