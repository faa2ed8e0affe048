/**
 * `npm run bench`: knockgate (capture and kernel engines) against knockd and a kernel-only nftables
 * door, and knockgate's signed doors against fwknopd, side by side in one run, each in fresh network namespaces. Writes
 * bench/results/latest.{json,md,svg} (smoke mode: smoke.*) and prints a table.
 *
 *   node dist/bench/run.js [--smoke] [--only=knockgate,knockd,...] [--scenarios=latency,flood,...]
 *
 * Exit status: 0 when every contender that ran opened its door at least once in the latency
 * scenario; 1 otherwise (or when a contender could not run); 130 on Ctrl-C. Targets missed do not
 * fail the run: it reports them.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readFileSync, readdirSync } from "node:fs";
import { mkdir, writeFile } from "node:fs/promises";
import { cpus, release } from "node:os";
import { join } from "node:path";
import { CONTENDERS, type ContenderId, type ScenarioName } from "./contenders.js";
import { decoderBench } from "./decoder.js";
import { ROOT, destroyAllSync, removeStaleNamespaces } from "./lab.js";
import { consoleTable, evaluateTargets, markdown, svg, type ContenderReport, type Report } from "./report.js";
import { FULL, SMOKE, floodStage, grantScale, idle, latency, sweep } from "./scenarios.js";
import { CLUSTER_FULL, CLUSTER_SMOKE, clusterBench } from "./cluster.js";

const USAGE = `usage: node dist/bench/run.js [--smoke] [--only=ID,...] [--scenarios=NAME,...] [--out=DIR]

  --smoke        tiny sizes (about 40 s): checks the benchmark works, not the numbers (CI)
  --only         contenders: knockgate, knockgate-nft, knockgate-kernel, knockd, kernel,
                 knockgate-spa, knockgate-spa-nft, fwknopd (default: all)
  --scenarios    idle, latency, flood, sweep, grants, decoder, cluster (default: all; cluster
                 starts a real kube-apiserver, built on first use: about 3.5 min once)
  --out          report directory (default: bench/results)

Runs as root; the full run takes about 11 minutes. See docs/bench.md.
`;
const args = process.argv.slice(2);
if (args.includes("--help") || args.includes("-h")) {
  process.stdout.write(USAGE);
  process.exit(0);
}
const unknown = args.filter((a) => a !== "--smoke" && !/^--(only|scenarios|out)=/.test(a));
if (unknown.length > 0) {
  process.stderr.write(`bench: unknown argument ${unknown.join(" ")}\n${USAGE}`);
  process.exit(2);
}
const smoke = args.includes("--smoke");
const option = (name: string) => args.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3);
const only = option("only")?.split(",") as ContenderId[] | undefined;
const scenarios = (option("scenarios")?.split(",") ?? ["idle", "latency", "flood", "sweep", "grants", "decoder", "cluster"]) as (ScenarioName | "decoder" | "cluster")[];
const outDir = option("out") ?? join(ROOT, "bench", "results");
const params = smoke ? SMOKE : FULL;

// Ctrl-C / SIGTERM: kill what we started, delete the namespaces, exit. A second signal exits at once.
let interrupted = false;
for (const signal of ["SIGINT", "SIGTERM"] as const) {
  process.on(signal, () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    process.stderr.write(`\n${signal}: cleaning up namespaces...\n`);
    destroyAllSync();
    process.exit(130);
  });
}
process.on("exit", () => destroyAllSync());

function version(argv: string[]): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).split("\n")[0]!.trim();
  } catch {
    return `${argv[0]} unavailable`;
  }
}

/** Digest of the knockgate sources measured (no git here): ties a report to the code it ran. */
function srcDigest(): string {
  const hash = createHash("sha256");
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
      const path = join(dir, name.name);
      if (name.isDirectory()) walk(path);
      else if (name.name.endsWith(".ts")) hash.update(path.slice(ROOT.length)).update(readFileSync(path));
    }
  };
  try {
    walk(join(ROOT, "src"));
    return hash.digest("hex").slice(0, 12);
  } catch {
    return "unknown";
  }
}

const log = (s: string) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${s}\n`);

async function main(): Promise<number> {
  if (process.getuid?.() !== 0) {
    process.stderr.write("bench: needs root (network namespaces, raw sockets, firewalls)\n");
    return 1;
  }
  const stale = removeStaleNamespaces();
  if (stale.length) log(`removed stale namespaces: ${stale.join(", ")}`);
  const started = performance.now();
  const report: Report = {
    mode: smoke ? "smoke" : "full",
    startedAt: new Date().toISOString().replace(/\.\d+Z$/, "Z"),
    durationS: 0,
    host: {
      cpus: cpus().length,
      cpuModel: cpus()[0]?.model.trim() ?? "?",
      kernel: release(),
      node: process.version,
      knockd: version(["/usr/sbin/knockd", "-V"]),
      fwknopd: version(["/usr/sbin/fwknopd", "--version"]),
      nft: version(["nft", "--version"]),
      iptables: version(["iptables", "--version"]),
      srcDigest: srcDigest(),
    },
    params,
    contenders: [],
    targets: [],
  };

  for (const contender of CONTENDERS) {
    if (only && !only.includes(contender.id)) continue;
    const cr: ContenderReport = { id: contender.id, label: contender.label, status: "ok", errors: [] };
    report.contenders.push(cr);
    const why = await contender.unavailable();
    if (why) {
      cr.status = "unavailable";
      cr.errors.push(why);
      log(`${contender.id}: unavailable: ${why}`);
      continue;
    }
    const want = (s: ScenarioName) => scenarios.includes(s) && contender.scenarios.includes(s);
    const step = async (name: string, fn: () => Promise<void>) => {
      const t = performance.now();
      log(`${contender.id}: ${name}...`);
      try {
        await fn();
        log(`${contender.id}: ${name} done in ${((performance.now() - t) / 1000).toFixed(1)} s`);
      } catch (err) {
        if (interrupted) throw err;
        cr.errors.push(`${name}: ${(err as Error).message}`);
        log(`${contender.id}: ${name} FAILED: ${(err as Error).stack ?? String(err)}`);
      }
    };
    if (want("idle")) {
      await step("idle", async () => {
        cr.idle = await idle(contender, params);
        log(`${contender.id}: idle: cpu ${cr.idle.cpuPct}% over ${cr.idle.seconds} s, rss ${cr.idle.rssMb} MB`);
      });
    }
    if (want("latency")) {
      await step("latency", async () => {
        cr.latency = await latency(contender, params);
        log(`${contender.id}: p50 ${cr.latency.p50} ms p99 ${cr.latency.p99} ms, ${cr.latency.opened}/${cr.latency.n} opened, first ${cr.latency.coldMs} ms`);
      });
      // Nothing else is worth measuring for a door that never opens.
      if (!cr.latency || cr.latency.opened === 0) {
        cr.status = "failed";
        cr.errors.push("the door never opened in the latency scenario");
        continue;
      }
    }
    if (want("flood")) {
      cr.flood = [];
      for (const [i, rate] of params.floodRates.entries()) {
        await step(`flood ${rate} pps`, async () => {
          const s = await floodStage(contender, params, rate, 100 + i);
          cr.flood!.push(s);
          log(`${contender.id}: flood ${rate}: sent ${s.achievedPps} pps, opened ${s.opened}/${s.n}, p99 ${s.p99} ms, cpu ${s.cpuPct}%, chance ${s.chanceGrants}`);
        });
      }
    }
    if (want("sweep")) {
      await step("sweep", async () => {
        cr.sweep = await sweep(contender, params);
        const s = cr.sweep;
        log(`${contender.id}: sweep: sent ${s.sent} at ${s.achievedPps} pps, opened ${s.opened}/${s.n}, rss ${s.rssStartMb}->${s.rssMaxMb} MB, tracked max ${s.trackedMax}`);
      });
    }
    if (want("grants")) {
      await step("grants", async () => {
        cr.grants = await grantScale(contender, params);
        const g = cr.grants;
        // The figures stay in the report; the error says they compare nothing.
        for (const problem of g.invalid) cr.errors.push(`grants: ${problem}`);
        log(`${contender.id}: grants: ${g.installed} in ${g.allInstalledS} s, added cost ${JSON.stringify(g.addedCostUs)}${g.invalid.length ? `; hiding did not hold: ${g.invalid.join("; ")}` : ""}`);
      });
    }
  }
  if (scenarios.includes("decoder") && (!only || only.includes("knockgate"))) {
    log("decoder micro-benchmark...");
    report.decoder = await decoderBench(params.decoderFrames);
  }
  if (scenarios.includes("cluster") && (!only || only.includes("knockgate"))) {
    log("cluster: cross-node grants through a real kube-apiserver...");
    try {
      report.cluster = await clusterBench(smoke ? CLUSTER_SMOKE : CLUSTER_FULL, log);
      const c = report.cluster;
      const mb = (m: number[]) => m.map((x) => x.toFixed(0)).join("/");
      log(`cluster: lag p50 ${c.lagP50Ms} ms p99 ${c.lagP99Ms} ms; ${c.liveGrants} live: rss ${mb(c.rssBeforeMb)} -> ${mb(c.rssLoadedMb)} MB, lag p99 ${c.loadedLagP99Ms} ms, relist ${c.relistS.toFixed(1)} s`);
    } catch (err) {
      if (interrupted) throw err;
      log(`cluster FAILED: ${(err as Error).stack ?? String(err)}`);
    }
  }

  report.durationS = (performance.now() - started) / 1000;
  report.targets = evaluateTargets(report);
  const base = smoke ? "smoke" : "latest";
  await mkdir(outDir, { recursive: true });
  await writeFile(join(outDir, `${base}.json`), JSON.stringify(report, null, 1) + "\n");
  await writeFile(join(outDir, `${base}.md`), markdown(report).replace("latest.svg", `${base}.svg`));
  await writeFile(join(outDir, `${base}.svg`), svg(report));
  process.stdout.write(consoleTable(report) + "\n");
  log(`report: ${join(outDir, base)}.{json,md,svg}`);

  const bad = report.contenders.filter((c) => c.status !== "ok");
  for (const c of bad) process.stderr.write(`bench: ${c.id} ${c.status}: ${c.errors.join("; ")}\n`);
  return bad.length > 0 ? 1 : 0;
}

main().then(
  (code) => {
    destroyAllSync();
    process.exit(code);
  },
  (err: unknown) => {
    process.stderr.write(`bench: ${(err as Error).stack ?? String(err)}\n`);
    destroyAllSync();
    process.exit(interrupted ? 130 : 1);
  },
);
