/**
 * Cross-node grants through a real kube-apiserver (../shared/kube): two knockgate daemons in cluster
 * mode play two other nodes, and the benchmark plays the origin, writing KnockGrant objects as a
 * node does after its own grant. Measured: the lag from the object's grantedAt to each daemon's
 * grant (its "open" log line), p50/p99; then with `liveGrants` objects alive, each daemon's memory,
 * the time to apply them all, the lag of new grants on top, and a restarted daemon's full list.
 *
 * The daemons run in this namespace with KNOCK_DRY_RUN (no firewall change, capture on loopback
 * only): what is measured is API, watch, checks and the grant book; the kernel's add, about 1 ms
 * (the latency scenario), is left out.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";
import { KubeConfig } from "@kubernetes/client-node";
import { grantObject } from "../src/core/cluster/knock-grant.js";
import { kubeGrants } from "../src/adapters/kube.js";
import { ApiServer } from "../test/support/kube-api.js";
import { freePort } from "../test/support/connect.js";
import { parseManifests } from "../test/support/helm-manifests.js";
import { ROOT } from "./lab.js";
import { rssMb } from "./proc.js";
import { percentile } from "./stats.js";

export interface ClusterParams {
  lagRounds: number;
  liveGrants: number;
}
export const CLUSTER_FULL: ClusterParams = { lagRounds: 200, liveGrants: 10_000 };
export const CLUSTER_SMOKE: ClusterParams = { lagRounds: 20, liveGrants: 300 };

export interface ClusterResult {
  rounds: number;
  lagP50Ms: number;
  lagP99Ms: number;
  liveGrants: number;
  /** From the first write to every daemon holding every grant. */
  applyAllS: number;
  rssBeforeMb: number[];
  rssLoadedMb: number[];
  /** New grants while liveGrants are alive. */
  loadedLagP50Ms: number;
  loadedLagP99Ms: number;
  /** A daemon started with liveGrants present: from start to every grant applied. */
  relistS: number;
  notes: string[];
}

export const NAMESPACE = "knockgate";
const CLI = `${ROOT}dist/src/cli/main.js`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One daemon: its "open" lines' times by address. */
class Node {
  readonly opened = new Map<string, number>();
  private constructor(readonly child: ChildProcess) {
    createInterface({ input: child.stdout! }).on("line", (line) => {
      try {
        const l = JSON.parse(line) as { event?: string; src?: string; time?: number; origin?: string };
        if (l.event === "open" && l.origin !== undefined && l.src) this.opened.set(l.src, l.time ?? 0);
      } catch {
        // not a log line
      }
    });
  }

  static async start(name: string, kubeconfig: string): Promise<Node> {
    const env = {
      PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
      KUBECONFIG: kubeconfig,
      KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000",
      KNOCK_DOOR_SSH_OPEN_FOR: "3600",
      KNOCK_DRY_RUN: "true",
      KNOCK_INTERFACE: "lo",
      KNOCK_HTTP_ADDR: `127.0.0.1:${await freePort()}`,
      KNOCK_MAX_GRANTS_PER_PREFIX: "1000000",
      KNOCK_CLUSTER: "kubernetes",
      KNOCK_NODE_NAME: name,
      KNOCK_CLUSTER_NAMESPACE: NAMESPACE,
    };
    const node = new Node(spawn(process.execPath, [CLI, "run"], { env, stdio: ["ignore", "pipe", "inherit"] }));
    return node;
  }

  async waitFor(srcs: readonly string[], timeoutMs: number): Promise<boolean> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (srcs.every((s) => this.opened.has(s))) return true;
      await sleep(5);
    }
    return false;
  }

  get rss(): number {
    return rssMb(this.child.pid ?? 0);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    this.child.kill("SIGTERM");
    await once(this.child, "exit");
  }
}

/**
 * The chart's KnockGrant CRD (as `helm template` renders it) and the namespace, applied to `api`;
 * returns a client for the objects, as another node writes them.
 */
export function knockGrantsApi(api: ApiServer): ReturnType<typeof kubeGrants> {
  const rendered = spawnSync("helm", ["template", "kg", `${ROOT}helm/knockgate`, "--namespace", NAMESPACE, "--set", "cluster.enabled=true"], { encoding: "utf8" });
  if (rendered.status !== 0) throw new Error(`helm template: ${rendered.stderr}`);
  const crd = parseManifests(rendered.stdout).filter((d) => d.kind === "CustomResourceDefinition");
  api.must(["create", "namespace", NAMESPACE]);
  api.must(["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: crd }));
  api.must(["wait", "--for=condition=Established", "crd/knockgrants.knockgate.io", "--timeout=30s"]);
  const kc = new KubeConfig();
  kc.loadFromFile(api.kubeconfig);
  return kubeGrants(NAMESPACE, kc);
}

const address = (i: number) => `198.18.${(i >> 8) & 255}.${i & 255}`;

export async function clusterBench(p: ClusterParams, log: (s: string) => void): Promise<ClusterResult> {
  const notes: string[] = [];
  const api = await ApiServer.start("127.0.0.1");
  const nodes: Node[] = [];
  try {
    const kube = knockGrantsApi(api);
    const write = (i: number) => {
      const now = Date.now();
      const body = grantObject({ door: "SSH", address: address(i), family: 4, expiresAt: now + 3_000_000, grantedAt: now, origin: "bench-origin", how: "sequence", ports: null }, NAMESPACE);
      return kube.create(body).then(() => now);
    };

    for (const name of ["node-b", "node-c"]) nodes.push(await Node.start(name, api.kubeconfig));
    // Ready: one object reaches both.
    await write(1);
    for (const n of nodes) if (!(await n.waitFor([address(1)], 30_000))) throw new Error("a daemon never applied the first grant");
    const rssBeforeMb = nodes.map((n) => n.rss);

    const lags = async (from: number, rounds: number): Promise<number[]> => {
      const out: number[] = [];
      for (let i = from; i < from + rounds; i++) {
        const at = await write(i);
        for (const n of nodes) {
          if (!(await n.waitFor([address(i)], 5000))) notes.push(`grant ${address(i)} not applied within 5 s`);
          else out.push((n.opened.get(address(i)) ?? 0) - at);
        }
        await sleep(10);
      }
      return out;
    };
    log(`cluster: lag, ${p.lagRounds} rounds`);
    const idleLags = await lags(2, p.lagRounds);

    log(`cluster: ${p.liveGrants} live KnockGrants`);
    const base = 1000;
    const t0 = Date.now();
    let next = 0;
    const worker = async () => {
      while (next < p.liveGrants) await write(base + next++);
    };
    await Promise.all(Array.from({ length: 16 }, worker));
    const all = Array.from({ length: p.liveGrants }, (_, i) => address(base + i));
    for (const n of nodes) if (!(await n.waitFor(all, 120_000))) notes.push("not every live grant was applied within 120 s");
    const applyAllS = (Date.now() - t0) / 1000;
    await sleep(1000);
    const rssLoadedMb = nodes.map((n) => n.rss);
    const loadedLags = await lags(base + p.liveGrants, Math.min(50, p.lagRounds));

    log("cluster: a daemon restarted with the live grants present");
    await nodes[1]?.stop();
    const t1 = Date.now();
    const fresh = await Node.start("node-c", api.kubeconfig);
    nodes[1] = fresh;
    if (!(await fresh.waitFor(all, 120_000))) notes.push("the restarted daemon did not apply every grant within 120 s");
    const relistS = (Date.now() - t1) / 1000;

    return {
      rounds: p.lagRounds,
      lagP50Ms: percentile(idleLags, 50),
      lagP99Ms: percentile(idleLags, 99),
      liveGrants: p.liveGrants,
      applyAllS,
      rssBeforeMb,
      rssLoadedMb,
      loadedLagP50Ms: percentile(loadedLags, 50),
      loadedLagP99Ms: percentile(loadedLags, 99),
      relistS,
      notes,
    };
  } finally {
    await Promise.all(nodes.map((n) => n.stop()));
    api.destroy();
  }
}
