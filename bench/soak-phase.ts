/**
 * One soak phase: a fresh bench lab (bench/lab.ts), the real daemon in its server namespace with one
 * backend, and four loops until the phase's end, each bounded in count and time:
 *   traffic  knock rounds from the client namespace, one at a time, rotating over the ways in: raw
 *            SYN sequences (IPv4 and IPv6), the knock client's real connects, the stock `fwknop`
 *            client's signed datagrams, and KnockGrant objects written as another node would. Each
 *            round takes an address whose last grant has ended, checks the port is closed to it and
 *            to an outsider, knocks, and needs a real connect to succeed within OPEN_WITHIN_MS.
 *   faults   the watched veth set down and up, our chain flushed, our chain and sets removed; each
 *            waits for the daemon to recover (capture back and ready, `firewall_repaired`) and runs
 *            while no round is in flight, so a miss is the daemon's and never the fault's.
 *   floods   spoofed SYNs and random datagrams to the SPA port at a bounded rate (bench/flood.ts).
 *   docker   (when Docker answers) labelled containers started and removed; their host port must
 *            be followed and released by the daemon.
 * A sampler reads RSS, fds, children, heap, event-loop lag and kernel set sizes meanwhile.
 */
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync } from "node:fs";
import { grantObject } from "../src/core/cluster/knock-grant.js";
import type { kubeGrants } from "../src/adapters/kube.js";
import { DaemonProcess } from "../test/support/daemon-process.js";
import { ApiServer } from "../test/support/kube-api.js";
import { knockGrantsApi, NAMESPACE } from "./cluster.js";
import { METRICS_TOKEN, SPA_KEYS, metricsTokenFile, parseMetrics } from "./contenders.js";
import { BenchLab, ROOT } from "./lab.js";
import { rssMb } from "./proc.js";
import { flood } from "./scenarios.js";
import { type Sample } from "./soak-judge.js";
import { KNOCK_PORTS, SERVER_V4, SERVER_V6, SERVICE_PORT, UNRELATED_PORT, legitV4, legitV6 } from "./wire.js";

export type Backend = "iptables" | "nftables";
const KINDS = ["raw-v4", "raw-v6", "sockets-v4", "fwknop-v4", "knockgrant-v4"] as const;
export type Kind = (typeof KINDS)[number];

const CLI = `${ROOT}dist/src/cli/main.js`;
const HTTP = "http://127.0.0.1:9180";
const OPEN_FOR_S = 10;
/** A legitimate knock must let a real connect in within this, or it is a miss. */
const OPEN_WITHIN_MS = 5000;
/** An address is used again only this long after its last grant ended. */
const REUSE_AFTER_MS = (OPEN_FOR_S + 3) * 1000;
/** Recovery from a fault must be seen within this, or it is a failure. */
const RECOVER_WITHIN_MS = 15_000;
const DOCKER_WITHIN_MS = 30_000;
/** After the first sign of a mend, time for one more reconcile pass (KNOCK_RECONCILE_INTERVAL=1) and its commands. */
const MEND_GRACE_MS = 2500;
const DOCKER_IMAGE = "debian:bookworm-slim";
/** Addresses per way in (disjoint ranges of the lab's legitimate addresses) and the outsider's. */
const POOL = 40;
const OUTSIDER = legitV4(5 * POOL);
/** The signed door's port: the bench server helper's second echo service. */
const SPA_DOOR_PORT = UNRELATED_PORT;
/** The API server's side of the link into the server namespace (root end .253), inside the server's /20 but past every address the lab uses. */
const KUBE_ROOT = "198.18.15.253";
const KUBE_SERVER = "198.18.15.254";

export interface PhaseOptions {
  backend: Backend;
  durationMs: number;
  docker: boolean;
  kube: boolean;
  sampleEveryMs: number;
  reportEveryMs: number;
  log: (line: string) => void;
}

interface Tally {
  sent: number;
  opened: number;
  ms: number[];
}

export interface PhaseResult {
  backend: Backend;
  durationMs: number;
  samples: Sample[];
  rounds: Record<Kind, Tally>;
  /** Legitimate knocks that did not open. */
  misses: string[];
  /** Everything else that fails the run: leaks, crashes, faults not recovered from, labels not followed. */
  failures: string[];
  /** rewrittenByDocker: flushes and removals mended by a Docker change's rewrite before a reconcile pass came. */
  faults: { flaps: number; chainFlushes: number; firewallRemovals: number; rewrittenByDocker: number };
  floods: { bursts: number; packets: number };
  docker: { started: number; followed: number; released: number; skipped: number } | null;
  kube: boolean;
  crashed: boolean;
  /** warn and error lines the daemon logged (faults cause some: a repair is a warning). */
  warnings: number;
  errors: string[];
}

/** Synchronous cleanups of what lives outside the lab's namespaces (API server, containers), for a Ctrl-C. */
export const outsideCleanups = new Set<() => void>();

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Runs argv in the root namespace, never throwing: the soak reports, it does not stop on a tool's error. */
function tool(argv: string[], timeoutMs = 60_000): { ok: boolean; out: string } {
  try {
    return { ok: true, out: execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: timeoutMs }) };
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    return { ok: false, out: (e.stderr || e.message).trim().split("\n").slice(-2).join(" ") };
  }
}

/** One exclusive side (faults) and one shared side (traffic): a fault waits for the round in flight. */
class Gate {
  private held: Promise<void> | null = null;
  private inFlight: Promise<unknown> | null = null;

  async round<T>(fn: () => Promise<T>): Promise<T> {
    while (this.held) await this.held;
    const p = fn();
    this.inFlight = p.catch(() => undefined);
    try {
      return await p;
    } finally {
      this.inFlight = null;
    }
  }

  async exclusive<T>(fn: () => Promise<T>): Promise<T> {
    let release = () => undefined as void;
    this.held = new Promise<void>((r) => (release = r));
    try {
      await this.inFlight;
      return await fn();
    } finally {
      this.held = null;
      release();
    }
  }
}

/** A veth from the root namespace into the server namespace, for the daemon to reach the API server. */
function kubeLink(lab: BenchLab): void {
  const root = `kgsk${process.pid % 100_000}`;
  const run = (args: string[]) => execFileSync("ip", args, { stdio: ["ignore", "ignore", "pipe"] });
  run(["link", "add", root, "type", "veth", "peer", "name", "kgk0", "netns", lab.server]);
  run(["addr", "add", `${KUBE_ROOT}/30`, "dev", root]);
  run(["link", "set", root, "up"]);
  run(["-n", lab.server, "addr", "add", `${KUBE_SERVER}/30`, "dev", "kgk0"]);
  run(["-n", lab.server, "link", "set", "kgk0", "up"]);
}

/** The faults each backend gets: our chain flushed, and our chain and sets removed. */
function faultCommands(backend: Backend, lab: BenchLab): { flush: string[][]; remove: () => Promise<string[][]> } {
  if (backend === "nftables") {
    return { flush: [["nft", "flush", "chain", "inet", "knockgate", "prerouting"]], remove: async () => [["nft", "delete", "table", "inet", "knockgate"]] };
  }
  const flush = ["iptables", "ip6tables"].map((t) => [t, "-w", "-t", "mangle", "-F", "KNOCKGATE"]);
  return {
    flush,
    remove: async () => {
      const sets = (await lab.exec(lab.server, ["ipset", "list", "-n"])).stdout.split("\n").filter((n) => n.startsWith("knockgate"));
      return [...flush, ...sets.map((s) => ["ipset", "destroy", s])];
    },
  };
}

/** Entries in the daemon's kernel sets, all doors and families. */
async function setEntries(lab: BenchLab, backend: Backend): Promise<number> {
  if (backend === "iptables") {
    const out = (await lab.exec(lab.server, ["ipset", "list", "-t"])).stdout;
    let n = 0;
    for (const block of out.split(/\n(?=Name: )/)) {
      if (/^Name: knockgate/.test(block)) n += Number(/Number of entries: (\d+)/.exec(block)?.[1] ?? 0);
    }
    return n;
  }
  const r = await lab.exec(lab.server, ["nft", "-j", "list", "table", "inet", "knockgate"]);
  if (r.code !== 0) return NaN;
  const parsed = JSON.parse(r.stdout) as { nftables?: { set?: { elem?: unknown[] } }[] };
  return (parsed.nftables ?? []).reduce((n, o) => n + (o.set?.elem?.length ?? 0), 0);
}

function childCount(pid: number): number {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).length;
  } catch {
    return NaN;
  }
}

function fdCount(pid: number): number {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return NaN;
  }
}

export async function runPhase(o: PhaseOptions): Promise<PhaseResult> {
  const { backend, log } = o;
  const result: PhaseResult = {
    backend,
    durationMs: o.durationMs,
    samples: [],
    rounds: Object.fromEntries(KINDS.map((k) => [k, { sent: 0, opened: 0, ms: [] as number[] }])) as Record<Kind, Tally>,
    misses: [],
    failures: [],
    faults: { flaps: 0, chainFlushes: 0, firewallRemovals: 0, rewrittenByDocker: 0 },
    floods: { bursts: 0, packets: 0 },
    docker: o.docker ? { started: 0, followed: 0, released: 0, skipped: 0 } : null,
    kube: o.kube,
    crashed: false,
    warnings: 0,
    errors: [],
  };
  const lab = await BenchLab.create(`soak${backend.slice(0, 3)}`, { legit4: 5 * POOL + 1, legit6: POOL });
  let api: ApiServer | null = null;
  let daemon: DaemonProcess | null = null;
  const containers = new Set<string>();
  const removeContainers = () => {
    if (containers.size > 0) tool(["docker", "rm", "-f", ...containers]);
    containers.clear();
  };
  const stopApi = () => api?.destroy();
  outsideCleanups.add(removeContainers);
  outsideCleanups.add(stopApi);
  try {
    let grants: ReturnType<typeof kubeGrants> | null = null;
    const env: Record<string, string> = {
      KNOCK_INTERFACE: lab.serverIface,
      KNOCK_HTTP_ADDR: HTTP.slice("http://".length),
      KNOCK_METRICS_TOKEN_FILE: metricsTokenFile(),
      KNOCK_FIREWALL: backend,
      KNOCK_RECONCILE_INTERVAL: "1",
      KNOCK_LOG_LEVEL: "info",
      KNOCK_DOOR_SSH_SEQUENCE: KNOCK_PORTS.join(","),
      KNOCK_DOOR_SSH_OPEN_FOR: String(OPEN_FOR_S),
      KNOCK_DOOR_VAULT_SPA_KEY: SPA_KEYS.key,
      KNOCK_DOOR_VAULT_SPA_HMAC_KEY: SPA_KEYS.hmac,
      KNOCK_DOOR_VAULT_PORTS: `${SPA_DOOR_PORT}/tcp`,
      KNOCK_DOOR_VAULT_OPEN_FOR: String(OPEN_FOR_S),
      KNOCK_DOCKER: o.docker ? "on" : "off",
    };
    if (o.kube) {
      kubeLink(lab);
      api = await ApiServer.start(KUBE_ROOT);
      grants = knockGrantsApi(api);
      Object.assign(env, { KNOCK_CLUSTER: "kubernetes", KNOCK_NODE_NAME: "soak-node", KNOCK_CLUSTER_NAMESPACE: NAMESPACE, KUBECONFIG: api.kubeconfig });
    }
    const d = new DaemonProcess(lab.spawnIn(lab.server, [process.execPath, CLI, "run"], env));
    daemon = d;
    await d.waitFor("ready", 30_000).catch((err: unknown) => {
      for (const line of d.lastWords("daemon")) log(line);
      throw err;
    });
    const pid = d.child.pid!;
    const readyAt = performance.now();
    const deadline = readyAt + o.durationMs;

    let stopping = false;
    let wake: () => void = () => undefined;
    const stopped = new Promise<void>((r) => (wake = r));
    const stop = () => {
      stopping = true;
      wake();
    };
    /** Sleeps, cut short when the phase stops. */
    const pause = (ms: number) => Promise.race([sleep(Math.max(0, Math.min(ms, deadline - performance.now()))), stopped]);
    const running = () => !stopping && performance.now() < deadline;
    const fail = (what: string) => {
      result.failures.push(what);
      log(`FAIL ${what}`);
    };
    d.child.once("exit", (code, signal) => {
      if (stopping) return;
      result.crashed = true;
      fail(`the daemon exited during the phase (${signal ?? `code ${code}`})`);
      for (const line of d.lastWords("daemon")) log(line);
      stop();
    });

    const http = (path: string) =>
      lab.helper.call<{ status: number; body: string }>("http", { url: `${HTTP}${path}`, headers: { authorization: `Bearer ${METRICS_TOKEN}` }, timeoutMs: 5000 });
    const probe = async (host: string, port: number, src: string, timeoutMs: number) =>
      (await lab.agent.call<{ ok: boolean }>("probe", { host, port, timeoutMs, localAddress: src })).ok;
    /**
     * ms until a real connect from `src` is accepted, or null. A SYN that arrives before the grant
     * is dropped and would be sent again only after a second: each try gives up after 150 ms, and
     * the first waits 20 ms (a grant takes a few), so the figure has that resolution.
     */
    const opensWithin = async (host: string, port: number, src: string): Promise<number | null> => {
      const t0 = performance.now();
      await sleep(20);
      while (performance.now() - t0 < OPEN_WITHIN_MS) {
        if (await probe(host, port, src, 150)) return performance.now() - t0;
      }
      return null;
    };
    const readyAgain = async (): Promise<boolean> => {
      const until = performance.now() + RECOVER_WITHIN_MS;
      while (performance.now() < until) {
        if ((await http("/readyz")).status === 200) return true;
        await sleep(200);
      }
      return false;
    };
    /** A new `event` line from the daemon within RECOVER_WITHIN_MS. */
    const newEvent = async (event: string, before: number, match: (l: Record<string, unknown>) => boolean = () => true, within = RECOVER_WITHIN_MS) =>
      d.waitFor(event, within, (l) => d.events(event).length > before && match(l)).then(
        () => true,
        () => false,
      );

    const sample = async (): Promise<Sample> => {
      const m = await http("/metrics").then((r) => (r.status === 200 ? parseMetrics(r.body) : new Map<string, number>()));
      const ms = (name: string) => (m.get(name) ?? NaN) * 1000;
      return {
        tMs: Math.round(performance.now() - readyAt),
        rssMb: Math.round(rssMb(pid) * 10) / 10,
        fds: fdCount(pid),
        children: childCount(pid),
        heapUsedMb: Math.round(((m.get("nodejs_heap_size_used_bytes") ?? NaN) / 2 ** 20) * 10) / 10,
        lagP99Ms: Math.round(ms("nodejs_eventloop_lag_p99_seconds") * 10) / 10,
        lagMaxMs: Math.round(ms("nodejs_eventloop_lag_max_seconds") * 10) / 10,
        setEntries: await setEntries(lab, backend),
      };
    };
    const show = (s: Sample, label: string) =>
      log(`${backend} ${label} t=${(s.tMs / 1000).toFixed(0)}s rss=${s.rssMb}MB heap=${s.heapUsedMb}MB fds=${s.fds} children=${s.children} lag_p99=${s.lagP99Ms}ms lag_max=${s.lagMaxMs}ms set_entries=${s.setEntries}`);

    const gate = new Gate();
    const lastGrant = new Map<string, number>();
    const next = new Map<Kind, number>();
    /** The pool's next address whose last grant has ended (pools are disjoint: no two ways in share one). */
    const pick = (kind: Kind, pool: (i: number) => string): string => {
      const i = next.get(kind) ?? 0;
      next.set(kind, i + 1);
      return pool(i % POOL);
    };
    const kinds: { kind: Kind; host: string; port: number; src: (i: number) => string; send: (src: string) => Promise<void> }[] = [
      { kind: "raw-v4", host: SERVER_V4, port: SERVICE_PORT, src: (i) => legitV4(i), send: (src) => lab.agent.call("knock", { sources: [src], dst: SERVER_V4 }).then(() => undefined) },
      { kind: "raw-v6", host: SERVER_V6, port: SERVICE_PORT, src: (i) => legitV6(i), send: (src) => lab.agent.call("knock", { sources: [src], dst: SERVER_V6 }).then(() => undefined) },
      { kind: "sockets-v4", host: SERVER_V4, port: SERVICE_PORT, src: (i) => legitV4(POOL + i), send: (src) => lab.agent.call("knock-sockets", { src, dst: SERVER_V4 }).then(() => undefined) },
      {
        kind: "fwknop-v4",
        host: SERVER_V4,
        port: SPA_DOOR_PORT,
        src: (i) => legitV4(2 * POOL + i),
        send: async (src) => {
          // The stock client, as a user runs it; it sends from the client's main address and names `src`.
          const argv = ["fwknop", "--no-rc-file", "--no-save-args", "-D", SERVER_V4, "--use-hmac", "--key-base64-rijndael", SPA_KEYS.key, "--key-base64-hmac", SPA_KEYS.hmac];
          const r = await lab.exec(lab.client, [...argv, "-A", `tcp/${SPA_DOOR_PORT}`, "-a", src]);
          // stderr only: the keys are on the command line.
          if (r.code !== 0) throw new Error(`fwknop exited ${r.code}: ${r.stderr.trim().slice(0, 300)}`);
        },
      },
    ];
    if (grants) {
      const kube = grants;
      kinds.push({
        kind: "knockgrant-v4",
        host: SERVER_V4,
        port: SERVICE_PORT,
        src: (i) => legitV4(3 * POOL + i),
        send: async (src) => {
          const now = Date.now();
          await kube.create(grantObject({ door: "SSH", address: src, family: 4, expiresAt: now + OPEN_FOR_S * 1000, grantedAt: now, origin: "soak-peer", how: "sequence", ports: null }, NAMESPACE));
        },
      });
    }

    /** One round: closed to `src` and to the outsider, the way in, then a real connect. */
    const round = async (k: (typeof kinds)[number]): Promise<void> => {
      const src = pick(k.kind, k.src);
      const last = lastGrant.get(src);
      const waitMs = last === undefined ? 0 : last + REUSE_AFTER_MS - performance.now();
      if (waitMs > 0) await pause(waitMs);
      if (!running()) return;
      const [early, outsider] = await Promise.all([probe(k.host, k.port, src, 300), probe(SERVER_V4, SERVICE_PORT, OUTSIDER, 300)]);
      if (early) fail(`${k.kind}: ${src} got in before its knock (its last grant ended more than ${REUSE_AFTER_MS / 1000 - OPEN_FOR_S} s ago)`);
      if (outsider) fail(`${OUTSIDER}, which never knocks, got in to port ${SERVICE_PORT}`);
      const tally = result.rounds[k.kind];
      tally.sent++;
      try {
        await k.send(src);
      } catch (err) {
        fail(`${k.kind}: could not send from ${src}: ${(err as Error).message}`);
        return;
      }
      const ms = await opensWithin(k.host, k.port, src);
      lastGrant.set(src, performance.now());
      if (ms === null) {
        if (stopping) return;
        result.misses.push(`${k.kind} from ${src} at t=${((performance.now() - readyAt) / 1000).toFixed(0)}s`);
        log(`MISS ${k.kind}: ${src} could not connect to ${k.host} port ${k.port} within ${OPEN_WITHIN_MS} ms of its knock`);
        return;
      }
      tally.opened++;
      tally.ms.push(Math.round(ms));
    };

    const traffic = async () => {
      for (let i = 0; running() && i < 1_000_000; i++) {
        const k = kinds[i % kinds.length]!;
        await gate.round(() => round(k));
        await pause(200);
      }
    };

    const faults = async () => {
      const { flush, remove } = faultCommands(backend, lab);
      const firstAfter = Math.min(8000, o.durationMs / 4);
      await pause(firstAfter);
      const every = o.durationMs < 2 * 60_000 ? 8000 : 20_000;
      for (let i = 0; running() && i < 100_000; i++) {
        await gate.exclusive(async () => {
          if (!running()) return;
          const kind = (["flap", "flush", "remove"] as const)[i % 3]!;
          if (kind === "flap") {
            const before = d.events("capture_started").length;
            await lab.flapServerLink(1000);
            result.faults.flaps++;
            if (!(await newEvent("capture_started", before))) fail(`flap ${result.faults.flaps}: no capture_started within ${RECOVER_WITHIN_MS} ms of the link coming back`);
            else if (!(await readyAgain())) fail(`flap ${result.faults.flaps}: /readyz not 200 within ${RECOVER_WITHIN_MS} ms`);
            return;
          }
          // A reconcile pass repairs (`firewall_repaired`), unless a Docker change rewrites the
          // firewall first (`protected_ports`), which mends the same: either is a recovery.
          const repairs = d.events("firewall_repaired").length;
          const rewrites = d.events("protected_ports").length;
          for (const argv of kind === "flush" ? flush : await remove()) {
            const r = await lab.exec(lab.server, argv);
            if (r.code !== 0) log(`note: ${argv.join(" ")}: ${r.stderr.trim().slice(0, 200)}`);
          }
          if (kind === "flush") result.faults.chainFlushes++;
          else result.faults.firewallRemovals++;
          const what = kind === "flush" ? "chain flushed" : "chain and sets removed";
          const until = performance.now() + RECOVER_WITHIN_MS;
          while (d.events("firewall_repaired").length === repairs && d.events("protected_ports").length === rewrites && performance.now() < until) await sleep(100);
          if (d.events("firewall_repaired").length === repairs && d.events("protected_ports").length === rewrites) fail(`${what}: not mended within ${RECOVER_WITHIN_MS} ms (no firewall_repaired, no protected_ports)`);
          else if (d.events("firewall_repaired").length === repairs) result.faults.rewrittenByDocker++;
          // A rewrite may mend only part (the sets stay gone), and the next reconcile pass the rest:
          // until then the port is open to everyone (docs/faults.md). Rounds wait that long too.
          await sleep(MEND_GRACE_MS);
          if (await probe(SERVER_V4, SERVICE_PORT, OUTSIDER, 300)) fail(`${what}, then mended: ${OUTSIDER} (no grant) still gets in ${MEND_GRACE_MS} ms later`);
        });
        await pause(every);
      }
    };

    const floods = async () => {
      await pause(2000);
      for (let i = 0; running() && i < 100_000; i++) {
        const mode = i % 2 === 0 ? ("flood" as const) : ("spa" as const);
        const seconds = Math.max(1, Math.min(5, (deadline - performance.now()) / 1000 - 1));
        try {
          const r = await flood(lab, { mode, dst: SERVER_V4, rate: 2000, durationMs: seconds * 1000, maxPackets: 2000 * seconds, seed: 7 + i });
          result.floods.bursts++;
          result.floods.packets += r.sent - r.sendErrors;
        } catch (err) {
          // The sender is the soak's, not the daemon's: a broken burst is noted, the next one runs.
          if (running()) log(`note: flood burst ${i + 1}: ${(err as Error).message.split("\n")[0]}`);
        }
        await pause(o.durationMs < 2 * 60_000 ? 4000 : 15_000);
      }
    };

    const docker = async () => {
      const tally = result.docker;
      if (!tally) return;
      await pause(3000);
      for (let i = 0; running() && i < 100_000; i++) {
        const port = 23400 + (i % 100);
        const name = `kgsoak-${process.pid}-${i}`;
        const portText = `"${port}/tcp"`;
        const hasPort = (l: Record<string, unknown>) => JSON.stringify(l["doors"]).includes(portText);
        const before = d.events("protected_ports").length;
        const started = tool(["docker", "run", "-d", "--init", "--name", name, "--label", "knockgate.door=SSH", "-p", `${port}:8080`, DOCKER_IMAGE, "sleep", "600"]);
        if (!started.ok) {
          // The engine itself is not under test here (an engine restarted by another test, say).
          tally.skipped++;
          log(`note: docker run failed, round skipped: ${started.out}`);
          tool(["docker", "rm", "-f", name]);
          await pause(10_000);
          continue;
        }
        containers.add(name);
        tally.started++;
        if (await newEvent("protected_ports", before, hasPort, DOCKER_WITHIN_MS)) tally.followed++;
        else fail(`docker: ${name}'s host port ${port} not protected within ${DOCKER_WITHIN_MS} ms`);
        await pause(3000);
        const released = d.events("protected_ports").length;
        tool(["docker", "rm", "-f", name]);
        containers.delete(name);
        if (await newEvent("protected_ports", released, (l) => !hasPort(l), DOCKER_WITHIN_MS)) tally.released++;
        else fail(`docker: port ${port} still protected ${DOCKER_WITHIN_MS} ms after ${name} was removed`);
        await pause(o.durationMs < 2 * 60_000 ? 2000 : 10_000);
      }
    };

    const sampler = async () => {
      let lastReport = 0;
      for (let i = 0; running() && i < 1_000_000; i++) {
        await pause(o.sampleEveryMs);
        if (!running()) break;
        const s = await sample();
        result.samples.push(s);
        if (s.tMs - lastReport >= o.reportEveryMs) {
          lastReport = s.tMs;
          const opened = Object.values(result.rounds).reduce((n, t) => n + t.opened, 0);
          const sent = Object.values(result.rounds).reduce((n, t) => n + t.sent, 0);
          show(s, `opened ${opened}/${sent}`);
        }
      }
    };

    const first = await sample();
    result.samples.push(first);
    show(first, "start");
    const loops = [traffic(), faults(), floods(), docker(), sampler()].map((p) =>
      p.catch((err: unknown) => {
        if (!stopping) fail(`a soak loop broke: ${(err as Error).stack ?? String(err)}`);
      }),
    );
    await Promise.race([sleep(o.durationMs), stopped]);
    stop();
    await Promise.all(loops);
    if (!result.crashed) {
      const end = await sample();
      result.samples.push(end);
      show(end, "end");
    }
  } finally {
    if (daemon) {
      if (daemon.child.exitCode === null && daemon.child.signalCode === null) {
        const code = await Promise.race([daemon.stop(), sleep(10_000).then(() => "hung" as const)]);
        if (code !== 0 && !result.crashed) result.failures.push(`the daemon's exit on SIGTERM: ${code}`);
      }
      result.warnings = daemon.logs.filter((l) => l.level === 40).length;
      result.errors = daemon.logs.filter((l) => l.level >= 50).map((l) => JSON.stringify(l).slice(0, 300));
      // A crash printed them as it happened.
      if (!result.crashed && (result.failures.length > 0 || result.misses.length > 0)) for (const line of daemon.lastWords("daemon")) log(line);
    }
    removeContainers();
    stopApi();
    outsideCleanups.delete(removeContainers);
    outsideCleanups.delete(stopApi);
    await lab.destroy();
  }
  return result;
}
