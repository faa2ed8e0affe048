/**
 * The four namespace scenarios. Each takes a contender and builds its own fresh lab (or labs), so
 * contenders never share state; every lab is destroyed in a finally.
 */
import { createInterface } from "node:readline";
import { once } from "node:events";
import type { Contender, Running } from "./contenders.js";
import { MAX_TRACKED, SPA_KEYS } from "./contenders.js";
import type { FloodJob, FloodResult } from "./flood.js";
import { hidingProblems } from "./grant-hiding.js";
import { BenchLab, ROOT } from "./lab.js";
import type { SetFill } from "./nft-sets.js";
import { ProcSampler } from "./proc.js";
import { bootstrapDiff, median, percentile, round, slope, trimmedMean, type Difference } from "./stats.js";
import { KNOCK_PORTS, SERVER_V4, SERVER_V6, SERVICE_PORT, UNRELATED_PORT, isSpoofed, legitV4, legitV6 } from "./wire.js";

export interface Params {
  idleSeconds: number;
  latencyRounds: number;
  fineRounds: number;
  floodRates: number[];
  floodSeconds: number;
  knockEveryMs: number;
  /** A legitimate knock counts as opened when the port accepts within this. */
  openTimeoutMs: number;
  sweepSources: number;
  sweepPps: number;
  grants: number;
  grantKnockPps: number;
  grantOpenForS: number;
  grantInstallBudgetS: number;
  connectN: number;
  /** Pairs of blocks (grants hidden, present) in the per-connection cost measurement. */
  costPairs: number;
  /** Raw SYNs per block for the kernel per-packet cost. */
  synCostN: number;
  /** Further pairs of blocks measuring the per-SYN cost alone, and their raw SYNs per block. */
  synPairs: number;
  synOnlyN: number;
  decoderFrames: number;
}

export const FULL: Params = {
  idleSeconds: 20,
  latencyRounds: 200,
  fineRounds: 40,
  floodRates: [0, 5_000, 20_000, 50_000],
  floodSeconds: 8,
  knockEveryMs: 200,
  openTimeoutMs: 2000,
  sweepSources: 1_000_000,
  sweepPps: 50_000,
  grants: 10_000,
  grantKnockPps: 30_000,
  // Longer than install (1-3 s), booking and the blocks (30-40 s here) together: grants must not expire during the blocks.
  grantOpenForS: 60,
  grantInstallBudgetS: 30,
  connectN: 3000,
  costPairs: 16,
  synCostN: 20_000,
  synPairs: 48,
  synOnlyN: 5000,
  decoderFrames: 2_000_000,
};

export const SMOKE: Params = {
  idleSeconds: 2,
  latencyRounds: 5,
  fineRounds: 3,
  floodRates: [0, 5_000],
  floodSeconds: 1.2,
  knockEveryMs: 200,
  openTimeoutMs: 2000,
  sweepSources: 10_000,
  sweepPps: 10_000,
  grants: 200,
  grantKnockPps: 20_000,
  grantOpenForS: 6,
  grantInstallBudgetS: 3,
  connectN: 100,
  costPairs: 4,
  synCostN: 2000,
  synPairs: 2,
  synOnlyN: 1000,
  decoderFrames: 100_000,
};

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/**
 * How every contender's opening is probed (bench/client.ts knockToOpen): a raw SYN at once and one
 * every 1 ms, and for the first 5 ms one after each pause of 0.05 ms (0.15 ms in practice on these
 * VMs). The dense start tells a door that opens in 0.13 ms from one that takes 0.3 ms, which a 1 ms
 * grid alone reads as about 1.1 ms.
 */
const PROBES = { denseMs: 5, denseStepMs: 0.05, probeEveryMs: 1 };

export interface IdleResult {
  seconds: number;
  /** Of one core, the daemon and its children (reaped ones included); null without a daemon. */
  cpuPct: number | null;
  rssMb: number | null;
}

/** What a contender costs while nobody knocks: its own timers, reconcile loops, helpers. */
export async function idle(contender: Contender, p: Params): Promise<IdleResult> {
  return withContender("idle", contender, { legit4: 0, legit6: 0 }, 30, async (_lab, running) => {
    if (running.pid === null) return { seconds: p.idleSeconds, cpuPct: null, rssMb: null };
    await sleep(2000); // past start-up
    const sampler = new ProcSampler(running.pid, 1000);
    await sleep(p.idleSeconds * 1000);
    const r = sampler.stop();
    return { seconds: p.idleSeconds, cpuPct: round(r.cpuPct, 2), rssMb: round(r.rssEndMb, 0) };
  });
}

export interface Summary {
  n: number;
  opened: number;
  openedPct: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export function summarize(samples: readonly (number | null)[]): Summary {
  const ok = samples.filter((s): s is number => s !== null);
  return {
    n: samples.length,
    opened: ok.length,
    openedPct: samples.length ? round((100 * ok.length) / samples.length, 1) : NaN,
    p50: round(percentile(ok, 50), 3),
    p90: round(percentile(ok, 90), 3),
    p99: round(percentile(ok, 99), 3),
    max: round(ok.length ? Math.max(...ok) : NaN, 3),
  };
}

async function withContender<T>(
  tag: string,
  contender: Contender,
  labOpts: { legit4: number; legit6: number },
  openForS: number,
  body: (lab: BenchLab, running: Running) => Promise<T>,
): Promise<T> {
  const lab = await BenchLab.create(`${contender.id}-${tag}`, labOpts);
  let running: Running | null = null;
  try {
    // The agent's knocks become SPA datagrams under the run's keys.
    if (contender.door === "spa") await lab.agent.call("spa-keys", SPA_KEYS);
    running = await contender.start(lab, { openForS });
    const result = await body(lab, running);
    // Readings are dated on the wire (bench/client.ts); one the wire cannot date (its knock frame missed, or the wall clock stepped) is read by the agent's clock, and said so.
    const agentClock = await lab.agent.call<number>("agent-clock-readings", {});
    if (agentClock > 0 && hasNotes(result)) result.notes.push(`${agentClock} knock-to-open readings by the agent's clock (their knock frame was not seen on the wire, or the wall clock stepped)`);
    return result;
  } finally {
    await running?.stop().catch(() => undefined);
    await lab.destroy();
  }
}

function hasNotes(x: unknown): x is { notes: string[] } {
  return typeof x === "object" && x !== null && Array.isArray((x as { notes?: unknown }).notes);
}

/** Spawns the flood sender in the client namespace; resolves with its report. */
export async function flood(lab: BenchLab, job: Omit<FloodJob, "iface" | "srcMac" | "dstMac">): Promise<FloodResult> {
  const full: FloodJob = { ...job, iface: lab.clientIface, srcMac: lab.clientMac, dstMac: lab.serverMac };
  const child = lab.spawnIn(lab.client, [process.execPath, `${ROOT}dist/bench/flood.js`, JSON.stringify(full)]);
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout! });
  const first = once(lines, "line") as Promise<[string]>;
  const exited = once(child, "exit").then(() => {
    throw new Error(`flood sender exited without a report: ${stderr.trim()}`);
  });
  const [line] = await Promise.race([first, exited]);
  return JSON.parse(line) as FloodResult;
}

const SEEN = 'knockgate_packets_total{result="seen"}';
const OPENS = "knockgate_opens_total";

/** Knock-port frames sent that knockgate's capture never saw, in %; undefined for the other contenders and for the kernel engine (no capture). */
function captureLossPct(contender: Contender, before: Map<string, number> | null, after: Map<string, number> | null, expected: number): number | undefined {
  if (contender.engine === "kernel") return undefined;
  const seen = knockgateMetric(after, SEEN) - knockgateMetric(before, SEEN);
  return Number.isFinite(seen) ? round(Math.max(0, (100 * (expected - seen)) / expected), 2) : undefined;
}

function knockgateMetric(m: Map<string, number> | null, name: string): number {
  if (!m) return NaN;
  let total = 0;
  let found = false;
  for (const [k, v] of m) {
    if (k === name || k.startsWith(`${name}{`)) {
      total += v;
      found = true;
    }
  }
  return found ? total : NaN;
}

// ---------------------------------------------------------------------------------------------
// 1. knock-to-open latency

export interface LatencyResult extends Summary {
  /** The first knock after start (knockgate spawns its firewall helper on it). */
  coldMs: number | null;
  samples: (number | null)[];
  /** knockgate's own histogram: capture of the last knock -> kernel confirmed, mean in ms. */
  daemonMeanMs?: number;
  /** Diagnosis: the same with a probe every ~0.1 ms (Atomics.wait), for a true opening time. */
  fine?: { n: number; opened: number; p50: number; p90: number; p99: number; stepMs: number; samples: (number | null)[] };
  notes: string[];
}

export async function latency(contender: Contender, p: Params): Promise<LatencyResult> {
  const rounds = p.latencyRounds;
  return withContender("lat", contender, { legit4: rounds + 1 + p.fineRounds, legit6: 0 }, 60, async (lab, running) => {
    const args = { dst: SERVER_V4, port: SERVICE_PORT, ...PROBES, timeoutMs: 3000, gapMs: 5 };
    const [cold] = await lab.agent.call<(number | null)[]>("latency", { ...args, sources: [legitV4(0)] });
    const before = await running.metrics();
    const samples = await lab.agent.call<(number | null)[]>("latency", { ...args, sources: Array.from({ length: rounds }, (_, i) => legitV4(i + 1)) });
    const after = await running.metrics();
    const windowMs = Math.min(150, Math.max(5, 3 * percentile(samples.filter((x): x is number => x !== null), 99)));
    const fineRounds = await lab.agent.call<{ ms: number | null; stepMs: number }[]>("latency-fine", {
      ...args,
      windowMs,
      stepMs: 0.05,
      sources: Array.from({ length: p.fineRounds }, (_, i) => legitV4(rounds + 1 + i)),
    });
    const fineOk = fineRounds.map((x) => x.ms).filter((x): x is number => x !== null);
    const fine = {
      n: fineRounds.length,
      opened: fineOk.length,
      p50: round(percentile(fineOk, 50), 3),
      p90: round(percentile(fineOk, 90), 3),
      p99: round(percentile(fineOk, 99), 3),
      stepMs: round(median(fineRounds.map((x) => x.stepMs)), 3),
      samples: fineRounds.map((x) => (x.ms === null ? null : round(x.ms, 3))),
    };
    const result: LatencyResult = { ...summarize(samples), fine, coldMs: cold === undefined || cold === null ? null : round(cold, 3), samples: samples.map((s) => (s === null ? null : round(s, 3))), notes: running.notes() };
    const sum = knockgateMetric(after, "knockgate_knock_to_open_seconds_sum") - knockgateMetric(before, "knockgate_knock_to_open_seconds_sum");
    const count = knockgateMetric(after, "knockgate_knock_to_open_seconds_count") - knockgateMetric(before, "knockgate_knock_to_open_seconds_count");
    if (count > 0) result.daemonMeanMs = round((1000 * sum) / count, 3);
    return result;
  });
}

// ---------------------------------------------------------------------------------------------
// 2. spoofed flood

export interface FloodStage extends Summary {
  requestedPps: number;
  achievedPps: number;
  sent: number;
  cpuPct: number | null;
  /** Spoofed sources holding a grant at the end: sequences completed by chance. */
  chanceGrants: number;
  /** knockgate only: frames on knock ports sent vs captured. */
  captureLossPct?: number;
  samples: (number | null)[];
  notes: string[];
}

export async function floodStage(contender: Contender, p: Params, rate: number, seed: number): Promise<FloodStage> {
  const knocks = Math.ceil((p.floodSeconds * 1000) / p.knockEveryMs) + 2;
  return withContender(`fl${rate / 1000}k`, contender, { legit4: knocks, legit6: 0 }, 60, async (lab, running) => {
    const before = await running.metrics();
    const sampler = running.pid ? new ProcSampler(running.pid) : null;
    const floodMs = p.floodSeconds * 1000 + 1000;
    const sender =
      rate > 0
        ? flood(lab, { mode: contender.door === "spa" ? "spa" : "flood", dst: SERVER_V4, rate, durationMs: floodMs, maxPackets: Math.ceil((rate * floodMs) / 1000), seed })
        : Promise.resolve(null);
    if (rate > 0) await sleep(300);
    const rounds = await lab.agent.call<{ atMs: number; ms: number | null }[]>("legit-loop", {
      sources: Array.from({ length: knocks }, (_, i) => legitV4(i)),
      dst: SERVER_V4,
      port: SERVICE_PORT,
      everyMs: p.knockEveryMs,
      durationMs: p.floodSeconds * 1000,
      ...PROBES,
      timeoutMs: p.openTimeoutMs,
    });
    const sent = await sender;
    const cpu = sampler?.stop() ?? null;
    const after = await running.metrics();
    const grants = await running.grantAddresses();
    const samples = rounds.map((r) => (r.ms === null ? null : round(r.ms, 3)));
    const stage: FloodStage = {
      ...summarize(samples),
      requestedPps: rate,
      achievedPps: sent?.achievedPps ?? 0,
      sent: sent?.sent ?? 0,
      cpuPct: cpu ? round(cpu.cpuPct, 1) : null,
      chanceGrants: grants.filter(isSpoofed).length,
      samples,
      notes: running.notes(),
    };
    const framesPerKnock = contender.door === "spa" ? 1 : KNOCK_PORTS.length;
    const loss = sent ? captureLossPct(contender, before, after, sent.onKnockPorts + rounds.length * framesPerKnock) : undefined;
    if (loss !== undefined) stage.captureLossPct = loss;
    return stage;
  });
}

// ---------------------------------------------------------------------------------------------
// 3. IPv6 source sweep

export interface SweepResult extends Summary {
  sources: number;
  achievedPps: number;
  sent: number;
  cpuPct: number | null;
  rssStartMb: number | null;
  rssMaxMb: number | null;
  rssEndMb: number | null;
  /** RSS growth from the moment the tracked count hit its cap (or from 25% of the run) to the end. */
  rssGrowthAfterCapMb: number | null;
  rssSlopeMbPerMin: number | null;
  trackedMax: number | null;
  capReachedAtS: number | null;
  /** Kernel-side doors: how full their knock sets were at the end, against the state budget (KNOCK_MAX_TRACKED). */
  knockSets?: { bound: number; sets: SetFill[] };
  /** knockgate only: frames sent (sweep + legitimate knocks) vs captured. */
  captureLossPct?: number;
  rss: { tMs: number; mb: number }[];
  tracked: { tMs: number; n: number }[];
  notes: string[];
}

export async function sweep(contender: Contender, p: Params): Promise<SweepResult> {
  const seconds = p.sweepSources / p.sweepPps;
  const knocks = Math.ceil((seconds * 1000) / p.knockEveryMs) + 2;
  return withContender("sweep", contender, { legit4: 0, legit6: knocks }, 60, async (lab, running) => {
    const before = await running.metrics();
    const sampler = running.pid ? new ProcSampler(running.pid, 250) : null;
    const t0 = performance.now();
    const tracked: { tMs: number; n: number }[] = [];
    let polling = true;
    const poller = (async () => {
      while (polling) {
        const m = await running.metrics();
        const n = knockgateMetric(m, "knockgate_tracked_sources");
        if (Number.isFinite(n)) tracked.push({ tMs: Math.round(performance.now() - t0), n });
        await sleep(1000);
      }
    })();
    const sender = flood(lab, {
      mode: "sweep",
      dst: SERVER_V6,
      rate: p.sweepPps,
      sources: p.sweepSources,
      maxPackets: p.sweepSources,
      durationMs: seconds * 1000 * 1.5 + 2000,
      seed: 7,
    });
    await sleep(200);
    const rounds = await lab.agent.call<{ atMs: number; ms: number | null }[]>("legit-loop", {
      sources: Array.from({ length: knocks }, (_, i) => legitV6(i)),
      dst: SERVER_V6,
      port: SERVICE_PORT,
      everyMs: p.knockEveryMs,
      durationMs: seconds * 1000,
      ...PROBES,
      timeoutMs: p.openTimeoutMs,
    });
    const sent = await sender;
    polling = false;
    await poller;
    const cpu = sampler?.stop() ?? null;
    const samples = rounds.map((r) => (r.ms === null ? null : round(r.ms, 3)));
    const rss = sampler?.rss ?? [];
    // The kernel engine tracks nothing in the daemon (its gauge stays 0): no cap to find there.
    const trackedPeak = Math.max(0, ...tracked.map((x) => x.n));
    const cap = trackedPeak > 0 ? tracked.find((t) => t.n >= trackedPeak * 0.99) : undefined;
    const fromMs = cap?.tMs ?? (rss.at(-1)?.tMs ?? 0) * 0.25;
    const tail = rss.filter((r) => r.tMs >= fromMs && Number.isFinite(r.mb));
    const result: SweepResult = {
      ...summarize(samples),
      sources: p.sweepSources,
      achievedPps: sent.achievedPps,
      sent: sent.sent,
      cpuPct: cpu ? round(cpu.cpuPct, 1) : null,
      rssStartMb: rss[0] ? round(rss[0].mb, 1) : null,
      rssMaxMb: cpu ? round(cpu.rssMaxMb, 1) : null,
      rssEndMb: cpu ? round(cpu.rssEndMb, 1) : null,
      rssGrowthAfterCapMb: tail.length >= 2 ? round(tail.at(-1)!.mb - tail[0]!.mb, 1) : null,
      rssSlopeMbPerMin: tail.length >= 4 ? round(60_000 * slope(tail.map((r) => ({ x: r.tMs, y: r.mb }))), 1) : null,
      trackedMax: tracked.length ? Math.max(...tracked.map((t) => t.n)) : null,
      capReachedAtS: cap ? round(cap.tMs / 1000, 1) : null,
      rss: rss.map((r) => ({ tMs: r.tMs, mb: round(r.mb, 1) })),
      tracked,
      notes: running.notes(),
    };
    if (running.knockSets) result.knockSets = { bound: MAX_TRACKED, sets: await running.knockSets() };
    const loss = captureLossPct(contender, before, await running.metrics(), sent.onKnockPorts + rounds.length * 3);
    if (loss !== undefined) result.captureLossPct = loss;
    return result;
  });
}

// ---------------------------------------------------------------------------------------------
// 4. grant scale

export interface ConnectBlock {
  label: string;
  n: number;
  medianUs: number;
  trimmedMeanUs: number;
  p90Us: number;
}

export interface GrantsResult {
  requested: number;
  knockFramesSent: number;
  knockPps: number;
  /** Spoofed-source grants present at the end of the install phase. */
  installed: number;
  /** From the first knock frame until every grant was in the kernel (null: not all within the budget). */
  allInstalledS: number | null;
  /** From the first knock frame until the last grant that did go in (the count stopped growing). */
  lastInstalledS: number | null;
  installRatePerS: number | null;
  timeline: { tS: number; n: number }[];
  /** Interleaved blocks: with grants (B) and with them hidden (A), alternating, same client. */
  connect: ConnectBlock[];
  /** Added cost per new connection to an unrelated port, grants present vs hidden: median over block pairs of the trimmed-mean difference. */
  addedCostUs: Difference | null;
  /** Kernel path per SYN to an unrelated closed port (raw sends, ns/packet), hidden vs present, and the added cost in ns. */
  synPathNs?: { hidden: number; present: number; added: Difference };
  /**
   * knockgate: grants its book took (knockgate_opens_total) and by when, from the first knock frame
   * (polled from the end of the install phase on: never earlier than that).
   */
  booked?: { grants: number; byS: number };
  /** Seconds the interleaved blocks took (the daemon stopped meanwhile). */
  blocksS: number;
  /** Why the hidden/present comparison does not hold (grants left in hidden blocks, lost from present ones, put back by the daemon); empty when it does. */
  invalid: string[];
  legitOpenWithGrants: string;
  /** Knock frames sent but never seen by knockgate's capture (knockgate only). */
  captureLossPct?: number;
  expiry?: {
    openForS: number;
    /** Seconds after the first / last grant went in at which the first / last one disappeared. */
    firstGoneAfterFirstInS: number | null;
    allGoneAfterLastInS: number | null;
    onTime: boolean;
    legitClosedAfter: string;
  };
  notes: string[];
}

function block(label: string, us: number[]): ConnectBlock {
  return { label, n: us.length, medianUs: round(median(us), 1), trimmedMeanUs: round(trimmedMean(us), 1), p90Us: round(percentile(us, 90), 1) };
}

function synPath(a: number[], b: number[]): GrantsResult["synPathNs"] {
  const pairs = a.map((x, k) => (b[k] ?? NaN) - x).filter(Number.isFinite);
  const d = bootstrapDiff([0], pairs, (v) => median(v), 2000);
  return { hidden: round(median(a), 0), present: round(median(b), 0), added: { estimate: round(d.estimate, 1), lo: round(d.lo, 1), hi: round(d.hi, 1) } };
}

export async function grantScale(contender: Contender, p: Params): Promise<GrantsResult> {
  const LEGIT = 4;
  const openForS = p.grantOpenForS;
  // legit 0..3 knock among the spoofed crowd; legit 4 is the connect-cost client.
  return withContender("grants", contender, { legit4: LEGIT + 1, legit6: 0 }, openForS, async (lab, running) => {
    const target = p.grants + LEGIT;
    const before = await running.metrics();
    const t0 = process.hrtime.bigint();
    const sinceS = () => Number(process.hrtime.bigint() - t0) / 1e9;
    const sender = flood(lab, {
      mode: "grants",
      dst: SERVER_V4,
      rate: p.grantKnockPps,
      sources: p.grants,
      maxPackets: p.grants * 3,
      durationMs: ((p.grants * 3) / p.grantKnockPps) * 1000 * 2 + 2000,
      seed: 3,
    });
    await lab.agent.call("knock", { sources: Array.from({ length: LEGIT }, (_, i) => legitV4(i)), dst: SERVER_V4 });
    let senderDone = false;
    void sender.then(() => (senderDone = true), () => (senderDone = true));
    // Install phase: until every grant is in, or the count has stopped growing for 3 s after the
    // last knock was sent, or the budget is spent.
    const timeline: { tS: number; n: number }[] = [];
    let installed = 0;
    let allAt: number | null = null;
    let lastGrowth: number | null = null;
    let firstInAt: number | null = null;
    while (sinceS() < p.grantInstallBudgetS) {
      const n = await running.grantCount();
      const t = sinceS();
      timeline.push({ tS: round(t, 3), n });
      if (n > 0 && firstInAt === null) firstInAt = t;
      if (n > installed) lastGrowth = t;
      installed = Math.max(installed, n);
      if (n >= target) {
        allAt = t;
        break;
      }
      if (senderDone && lastGrowth !== null && t - lastGrowth > 3) break;
      await sleep(50);
    }
    const sent = await sender;
    // The kernel engine's rules put grants in the kernel at once and the daemon books them as it
    // reads the reports: wait for its book (knockgate_opens_total), or its writes would land after
    // the blocks below, where they would push expiry back.
    const opens = (m: Map<string, number> | null) => knockgateMetric(m, OPENS) - knockgateMetric(before, OPENS);
    let after = await running.metrics();
    let booked = opens(after);
    let bookedAt = sinceS();
    while (booked < installed && sinceS() < p.grantInstallBudgetS && sinceS() - bookedAt < 3) {
      await sleep(100);
      after = await running.metrics();
      if (opens(after) > booked) bookedAt = sinceS();
      booked = opens(after);
    }
    const present = await running.grantAddresses();
    const legitOpen = await Promise.all(Array.from({ length: LEGIT }, (_, i) => lab.agent.call<{ ok: boolean }>("probe", { host: SERVER_V4, port: SERVICE_PORT, timeoutMs: 500, localAddress: legitV4(i) })));

    // Per-connection cost, grants present (B) vs hidden (A), in alternating blocks. The daemon is
    // stopped for all of them, A and B alike: its reconcile would put hidden grants back.
    const costClient = legitV4(LEGIT);
    const cost = (n: number, warmup = 0) =>
      lab.agent.call<number[]>("connect-cost", { host: SERVER_V4, port: UNRELATED_PORT, n, warmup, localAddress: costClient });
    const perBlock = Math.max(20, Math.round(p.connectN / p.costPairs));
    await cost(0, Math.min(300, p.connectN));
    const aBlocks: number[][] = [];
    const bBlocks: number[][] = [];
    const aSyn: number[] = [];
    const bSyn: number[] = [];
    const hiddenLeft: number[] = [];
    const blocksAt = performance.now();
    const thaw = running.freeze?.();
    let presentAfter: number;
    try {
      // Strictly alternating A B A B ...: every block follows exactly one toggle (a few commands run
      // in the namespace), then a pause and discarded warm-up connects, so both conditions see the
      // same disturbance and drift cancels.
      const toggledBlock = async (k: number, measure: (hidden: boolean) => Promise<void>) => {
        const hidden = k % 2 === 0;
        if (hidden) await running.hideGrants();
        else await running.showGrants();
        await sleep(50);
        await measure(hidden);
        // Counted at the block's end: empty then means empty all along (nothing refills a set meanwhile).
        if (hidden) hiddenLeft.push(await running.grantCount());
      };
      const synCost = async (hidden: boolean, n: number) => {
        (hidden ? aSyn : bSyn).push(await lab.agent.call<number>("syn-cost", { dst: SERVER_V4, port: UNRELATED_PORT + 1, src: costClient, n }));
      };
      for (let k = 0; k < 2 * p.costPairs; k++) {
        await toggledBlock(k, async (hidden) => {
          (hidden ? aBlocks : bBlocks).push(await cost(perBlock, 30));
          await synCost(hidden, p.synCostN);
        });
      }
      // The per-SYN cost alone, in more and shorter pairs: blocks drift by a microsecond or more
      // against a difference near zero, and only more pairs narrow its interval.
      for (let k = 0; k < 2 * p.synPairs; k++) await toggledBlock(k, (hidden) => synCost(hidden, p.synOnlyN));
      presentAfter = (await running.grantAddresses()).length;
    } finally {
      thaw?.();
    }
    const blocksS = (performance.now() - blocksAt) / 1000;
    const a = aBlocks.flat();
    const b = bBlocks.flat();
    // Per pair of adjacent blocks, B - A of their trimmed means; the estimate is the median pair
    // difference and its interval a bootstrap over pairs: a burst of outside load hits one pair,
    // not the estimate.
    const pairDiffs = Array.from({ length: p.costPairs }, (_, k) => trimmedMean(bBlocks[k]!) - trimmedMean(aBlocks[k]!));
    const d = bootstrapDiff([0], pairDiffs, (v) => median(v), 2000);
    const result: GrantsResult = {
      requested: p.grants,
      knockFramesSent: sent.sent,
      knockPps: sent.achievedPps,
      installed: present.filter(isSpoofed).length,
      allInstalledS: allAt === null ? null : round(allAt, 3),
      lastInstalledS: lastGrowth === null ? null : round(lastGrowth, 3),
      installRatePerS: lastGrowth ? round(installed / lastGrowth, 0) : null,
      timeline,
      connect: [block("grants hidden (A blocks)", a), block(`${present.length} grants present (B blocks)`, b)],
      addedCostUs: { estimate: round(d.estimate, 2), lo: round(d.lo, 2), hi: round(d.hi, 2) },
      synPathNs: synPath(aSyn, bSyn),
      legitOpenWithGrants: `${legitOpen.filter((r) => r.ok).length}/${LEGIT}`,
      blocksS: round(blocksS, 1),
      ...(Number.isFinite(booked) ? { booked: { grants: booked, byS: round(bookedAt, 3) } } : {}),
      invalid: [],
      notes: running.notes(),
    };
    const loss = captureLossPct(contender, before, after, sent.sent + LEGIT * KNOCK_PORTS.length);
    if (loss !== undefined) result.captureLossPct = loss;
    if (contender.expires) {
      // Expiry: elements vanish from listings once their timeout passes.
      const lastIn = allAt ?? lastGrowth ?? sinceS();
      const deadline = lastIn + openForS + 15;
      let firstGone: number | null = null;
      let allGone: number | null = null;
      let peak = Math.max(present.length, installed);
      while (sinceS() < deadline) {
        const n = (await running.grantAddresses()).length;
        const t = sinceS();
        if (n > peak) peak = n;
        if (firstGone === null && n < peak) firstGone = t;
        if (n === 0) {
          allGone = t;
          break;
        }
        await sleep(firstInAt !== null && t < firstInAt + openForS - 2 ? 500 : 100);
      }
      const legitClosed = await Promise.all(Array.from({ length: LEGIT }, (_, i) => lab.agent.call<{ ok: boolean }>("probe", { host: SERVER_V4, port: SERVICE_PORT, timeoutMs: 300, localAddress: legitV4(i) })));
      if (allGone === null) result.notes.push(`grants still present ${round(deadline, 0)} s after the first knock (still being installed, or not expiring)`);
      result.expiry = {
        openForS,
        firstGoneAfterFirstInS: firstGone === null || firstInAt === null ? null : round(firstGone - firstInAt, 2),
        allGoneAfterLastInS: allGone === null ? null : round(allGone - lastIn, 2),
        // Whole-second kernel timeouts and 100 ms polling: allow 1.5 s early and 2.5 s late.
        onTime: allGone !== null && firstGone !== null && firstInAt !== null && firstGone - firstInAt >= openForS - 1.5 && allGone - lastIn <= openForS + 2.5,
        legitClosedAfter: `${legitClosed.filter((r) => !r.ok).length}/${LEGIT}`,
      };
    }
    // Judged at the end: a repair during expiry would spoil 4c as a repair during the blocks spoils 4b.
    result.invalid = hidingProblems({ hiddenLeft, presentBefore: present.length, presentAfter, restoredLogged: running.grantsRestored?.() ?? 0 });
    return result;
  });
}
