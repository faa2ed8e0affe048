/**
 * `npm run soak -- --minutes N [--firewall iptables|nftables]`: the real daemon in network
 * namespaces, driven for N minutes by legitimate knocks of every kind, spoofed floods, interface
 * flaps, firewall flushes, Docker containers and KnockGrant objects (bench/soak-phase.ts). Without
 * --firewall the run is two halves, iptables then nftables, each with a fresh lab and daemon.
 *
 * Reports at start, every reportEvery and at the end: RSS, heap, fds, children, event-loop lag,
 * kernel set sizes, and every knock that did not open. Exit status 1 on a missed legitimate knock,
 * a crash, anything else the phase counts as a failure, or RSS/fd growth over 5% after warm-up
 * (bench/soak-judge.ts: judged on phases of 2 minutes or more only); 2 on bad arguments; 130 on
 * Ctrl-C. Docs: docs/soak.md.
 */
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { destroyAllSync, removeStaleNamespaces } from "./lab.js";
import { outsideCleanups, runPhase, type Backend, type PhaseResult } from "./soak-phase.js";
import { GROWTH_LIMIT_PCT, MIN_JUDGED_MS, growth, warmUpMs } from "./soak-judge.js";
import { percentile } from "./stats.js";

const USAGE = `usage: npm run soak -- --minutes N [--firewall iptables|nftables]

  --minutes N    how long to drive the daemon (default 1; may be fractional)
  --firewall     one backend for the whole run (default: iptables for the first half, nftables
                 for the second)

Needs root. Docker containers are started when \`docker info\` answers; KnockGrant objects are
written when a phase lasts 2 minutes or more and ../shared/kube's API server is built. See docs/soak.md.
`;

const log = (s: string) => process.stdout.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

function parseArgs(argv: string[]): { minutes: number; firewall: Backend | null } | string {
  let minutes = 1;
  let firewall: Backend | null = null;
  for (let i = 0; i < argv.length; i++) {
    const [flag, inline] = argv[i]!.split("=", 2) as [string, string | undefined];
    const value = () => inline ?? argv[++i] ?? "";
    if (flag === "--minutes") {
      minutes = Number(value());
      if (!(minutes > 0 && minutes <= 24 * 60)) return "--minutes takes a number of minutes, more than 0 and at most 1440";
    } else if (flag === "--firewall") {
      const v = value();
      if (v !== "iptables" && v !== "nftables") return "--firewall takes iptables or nftables";
      firewall = v;
    } else {
      return `unknown argument ${argv[i]}`;
    }
  }
  return { minutes, firewall };
}

/** Containers of an earlier soak whose process is gone (its pid is in the name). */
function removeStaleContainers(): void {
  try {
    const names = execFileSync("docker", ["ps", "-a", "--format", "{{.Names}}", "--filter", "name=^kgsoak-"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"], timeout: 20_000 });
    const stale = names.split("\n").filter((n) => {
      const pid = Number(n.split("-")[1]);
      if (!n || pid === process.pid) return false;
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    });
    if (stale.length > 0) execFileSync("docker", ["rm", "-f", ...stale], { stdio: "ignore", timeout: 60_000 });
  } catch {
    // no Docker: nothing of ours there
  }
}

function dockerState(): string | null {
  try {
    execFileSync("docker", ["info", "--format", "{{.ServerVersion}}"], { stdio: "ignore", timeout: 20_000 });
  } catch {
    return "no Docker engine answers `docker info`";
  }
  try {
    execFileSync("docker", ["image", "inspect", "debian:bookworm-slim"], { stdio: "ignore", timeout: 20_000 });
  } catch {
    return "image debian:bookworm-slim missing (bash ../shared/containers/base-images.sh)";
  }
  return null;
}

function kubeState(phaseMs: number): string | null {
  if (phaseMs < MIN_JUDGED_MS) return "phases shorter than 2 minutes skip it (the API server takes ~5 s and ~400 MB to start)";
  const cache = process.env["KUBE_CACHE"] ?? "/var/cache/kube-apiserver-debian";
  if (!existsSync(`${cache}/bin/kube-apiserver`)) return `no API server built in ${cache} (bash ../shared/kube/build-apiserver.sh)`;
  for (const bin of ["helm", "kubectl"]) {
    try {
      execFileSync(bin, ["version", "--client"], { stdio: "ignore", timeout: 20_000 });
    } catch {
      return `${bin} missing (bash ../shared/containers/install-helm.sh)`;
    }
  }
  return null;
}

function cleanupSync(): void {
  for (const c of outsideCleanups) {
    try {
      c();
    } catch {
      // best effort on the way out
    }
  }
  destroyAllSync();
}

let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\n${signal}: removing namespaces, containers and the API server...\n`);
    cleanupSync();
    process.exit(130);
  });
}
process.on("exit", () => cleanupSync());

function summary(r: PhaseResult): { lines: string[]; failed: boolean } {
  const lines: string[] = [];
  const failures = [...r.failures, ...r.misses.map((m) => `missed: ${m}`)];
  // A sample taken as the daemon died has no figures.
  const read = r.samples.filter((s) => Number.isFinite(s.rssMb));
  const first = read[0];
  const last = read.at(-1);
  lines.push(`== ${r.backend}: ${(r.durationMs / 60_000).toFixed(1)} min`);
  if (first && last) {
    const lag = r.samples.map((s) => s.lagP99Ms).filter(Number.isFinite);
    lines.push(`   rss ${first.rssMb} -> ${last.rssMb} MB, heap ${first.heapUsedMb} -> ${last.heapUsedMb} MB, fds ${first.fds} -> ${last.fds}, children ${first.children} -> ${last.children}, set entries ${first.setEntries} -> ${last.setEntries}, event-loop lag p99 max ${lag.length ? Math.max(...lag) : NaN} ms`);
  }
  const g = growth(read, r.durationMs);
  if (g === null) {
    lines.push(`   growth: not judged (phase under ${MIN_JUDGED_MS / 60_000} minutes: only crashes, misses and failures count)`);
  } else {
    const warm = warmUpMs(r.durationMs) ?? 0;
    for (const x of g) {
      lines.push(`   growth after ${(warm / 60_000).toFixed(1)} min warm-up: ${x.metric} ${x.baseline} -> ${x.end} (${x.pct.toFixed(1)}%, limit ${GROWTH_LIMIT_PCT}%)${x.ok ? "" : " FAIL"}`);
      if (!x.ok) failures.push(`${x.metric} grew ${x.pct.toFixed(1)}% after warm-up`);
    }
  }
  for (const [kind, t] of Object.entries(r.rounds)) {
    if (t.sent === 0) continue;
    lines.push(`   ${kind.padEnd(14)} sent ${t.sent}, opened ${t.opened}, connect after knock p50 ${percentile(t.ms, 50)} ms p99 ${percentile(t.ms, 99)} ms`);
  }
  if (!r.kube) lines.push("   knockgrant-v4  skipped (see the start of the run)");
  lines.push(`   faults: ${r.faults.flaps} interface flaps, ${r.faults.chainFlushes} chain flushes, ${r.faults.firewallRemovals} chain+set removals (${r.faults.rewrittenByDocker} mended by a Docker change before the reconcile pass); floods: ${r.floods.bursts} bursts, ${r.floods.packets} packets`);
  if (r.docker) lines.push(`   docker: ${r.docker.started} containers started, ports followed ${r.docker.followed}, released ${r.docker.released}; ${r.docker.skipped} rounds skipped (docker run failed)`);
  lines.push(`   daemon: ${r.crashed ? "CRASHED" : "ran throughout"}; ${r.warnings} warning lines, ${r.errors.length} error lines${r.errors.length ? `, last: ${r.errors.at(-1)}` : ""}`);
  for (const f of failures) lines.push(`   FAIL ${f}`);
  return { lines, failed: failures.length > 0 };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (process.argv.includes("--help") || process.argv.includes("-h")) {
    process.stdout.write(USAGE);
    return 0;
  }
  if (typeof args === "string") {
    process.stderr.write(`soak: ${args}\n${USAGE}`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write("soak: needs root (network namespaces, raw sockets, firewalls)\n");
    return 1;
  }
  const removed = removeStaleNamespaces();
  if (removed.length) log(`removed stale namespaces: ${removed.join(", ")}`);
  removeStaleContainers();
  const totalMs = args.minutes * 60_000;
  const backends: Backend[] = args.firewall ? [args.firewall] : ["iptables", "nftables"];
  const phaseMs = totalMs / backends.length;
  const docker = dockerState();
  const kube = kubeState(phaseMs);
  log(`${args.minutes} min: ${backends.map((b) => `${b} ${(phaseMs / 60_000).toFixed(1)} min`).join(", ")}`);
  log(docker === null ? "docker: labelled containers started and removed" : `docker: skipped: ${docker}`);
  log(kube === null ? "knockgrants: objects written through a real API server" : `knockgrants: skipped: ${kube}`);
  const judged = warmUpMs(phaseMs);
  log(judged === null ? `growth: not judged (phases under ${MIN_JUDGED_MS / 60_000} min): this run fails only on crashes, misses and failed recoveries` : `growth: RSS and fds judged after ${(judged / 60_000).toFixed(1)} min of warm-up per phase, limit ${GROWTH_LIMIT_PCT}%`);
  log("lag_p99/lag_max: the daemon's nodejs_eventloop_lag_* (docs/metrics.md), timed every 200 ms, so 200 ms means no lag");
  let failed = false;
  const results: PhaseResult[] = [];
  for (const backend of backends) {
    const r = await runPhase({
      backend,
      durationMs: phaseMs,
      docker: docker === null,
      kube: kube === null,
      sampleEveryMs: phaseMs < MIN_JUDGED_MS ? 5000 : 10_000,
      reportEveryMs: phaseMs < MIN_JUDGED_MS ? 10_000 : 60_000,
      log,
    });
    results.push(r);
    if (r.crashed) {
      failed = true;
      break;
    }
  }
  for (const r of results) {
    const s = summary(r);
    failed ||= s.failed;
    for (const line of s.lines) log(line);
  }
  log(failed ? "soak FAILED" : "soak passed");
  return failed ? 1 : 0;
}

main().then(
  (code) => {
    cleanupSync();
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`soak: ${(err as Error).stack ?? String(err)}\n`);
    cleanupSync();
    process.exit(interrupted ? 130 : 1);
  },
);
