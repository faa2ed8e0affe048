/**
 * A real Prometheus (Debian's package) scraping real daemons in the lab's server namespace:
 * - with the metrics token it stores the full set, without it the public set, with a wrong one the
 *   scrape fails (401), each exactly as the daemon serves it;
 * - every query of the chart's Grafana dashboard (helm/knockgate/dashboards/knockgate.json) is
 *   evaluated by that Prometheus after knocks, and returns series; no query names a metric the
 *   daemons do not export.
 * A second daemon (a dry run, capture on loopback) follows Docker's labels, so the dashboard's Docker
 * panels have their series; cluster-mode metrics are checked against the daemon's metric table.
 *
 * Needs root and Debian's `prometheus` package; fails rather than skips without it.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import * as yaml from "js-yaml";
import { CHART } from "../support/chart.js";
import { ROOT } from "../support/docker-host.js";
import { CLIENT_V4, HTTP_ADDR, Lab, METRICS_TOKEN_FILE, SERVER_V4, SERVICE_PORT, removeStaleNamespaces, sleep } from "../support/lab.js";

const FIXTURE = JSON.parse(readFileSync(join(ROOT, "test", "fixtures", "spa", "vectors.json"), "utf8")) as { keyBase64: string; hmacKeyBase64: string };
const SEQUENCE = "7000,8000,9000";
const SPA_PORT = 62201;
const PROMETHEUS_ADDR = "127.0.0.1:9090";
const DOCKER_HTTP_ADDR = "127.0.0.1:9181";
/** What the scrape jobs are called, and what each sends. */
const JOBS = { full: "full", public: "public", wrongToken: "wrong-token", docker: "docker" } as const;
/** Everything that moves before a grant: for a scrape with the token only (src/adapters/metrics/table.ts). */
const PRE_GRANT = ["knockgate_capture_dropped_packets_total", "knockgate_knocks_total", "knockgate_packets_total", "knockgate_spa_packets_total", "knockgate_tracked_sources"];

interface Panel {
  type: string;
  id: number;
  title: string;
  gridPos: { x: number; w: number };
  datasource?: { uid: string };
  targets?: { expr: string }[];
}
interface Dashboard {
  panels: Panel[];
  templating: { list: { name: string; definition?: string }[] };
}
const dashboard = JSON.parse(readFileSync(join(CHART, "dashboards", "knockgate.json"), "utf8")) as Dashboard;

/** A metric family's name from a sample name (histograms: _bucket, _sum, _count). */
const family = (sample: string) => sample.replace(/_(bucket|sum|count)$/, "");

/** The metric families in an exposition text that have at least one sample. */
function families(text: string): Set<string> {
  const names = text.split("\n").filter((l) => l !== "" && !l.startsWith("#")).map((l) => family(/^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(l)?.[0] ?? ""));
  return new Set(names.filter((n) => n.startsWith("knockgate_")));
}

/** Metric names a PromQL expression names (knockgate_ ones). */
const namedIn = (expr: string) => [...new Set([...expr.matchAll(/\bknockgate_[a-z_]+/g)].map((m) => family(m[0])))];

/** Names the daemon's metric table declares (src/adapters/metrics/table.ts), whichever mode exports them. */
function registered(): Set<string> {
  const table = readFileSync(join(ROOT, "src", "adapters", "metrics", "table.ts"), "utf8");
  return new Set([...table.matchAll(/name: "(knockgate_[a-z_]+)"/g)].map((m) => m[1] as string));
}

/** A dashboard query as Grafana sends it, for the lab: variables by the jobs and nodes scraped here. */
const forLab = (expr: string) => expr.replaceAll("$job", `${JOBS.full}|${JOBS.docker}`).replaceAll("$node", ".*").replaceAll("$__rate_interval", "1m");

interface Series {
  metric: Record<string, string>;
  value: [number, string];
}

let lab: Lab;
let storage = "";
let fullText = "";
let publicText = "";
let dockerText = "";

/** Instant queries against the lab's Prometheus, all in one process inside the server namespace. */
async function query(exprs: string[]): Promise<Series[][]> {
  const script = `const [addr, ...exprs] = process.argv.slice(1);
Promise.all(exprs.map(async (q) => {
  const r = await fetch("http://" + addr + "/api/v1/query?query=" + encodeURIComponent(q));
  const body = await r.json();
  if (body.status !== "success") throw new Error(q + ": " + JSON.stringify(body));
  return body.data.result;
})).then((results) => console.log(JSON.stringify(results)));`;
  const r = await lab.exec(lab.server, [process.execPath, "-e", script, PROMETHEUS_ADDR, ...exprs]);
  assert.equal(r.code, 0, `queries failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as Series[][];
}

async function one(expr: string): Promise<Series[]> {
  return (await query([expr]))[0] ?? [];
}

/** Waits until `expr` returns at least one series (Prometheus has scraped enough). */
async function until(expr: string, what: string, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while ((await one(expr)).length === 0) {
    assert.ok(Date.now() < deadline, `${what}: no result for ${expr} within ${timeoutMs} ms`);
    await sleep(500);
  }
}

before(async () => {
  assert.equal(process.getuid?.(), 0, "the namespace tests need root: run them as root (CI does)");
  const version = spawnSync("prometheus", ["--version"], { encoding: "utf8" });
  assert.ok(!version.error && version.status === 0, "prometheus is not installed: apt-get install prometheus (Debian's package, with promtool)");
  removeStaleNamespaces();
  lab = Lab.create();
  await lab.startService();
  const daemon = await lab.startDaemon({
    KNOCK_DOOR_SSH_SEQUENCE: SEQUENCE,
    KNOCK_DOOR_SSH_OPEN_FOR: "600",
    KNOCK_DOOR_SIGNED_SPA_KEY: FIXTURE.keyBase64,
    KNOCK_DOOR_SIGNED_SPA_HMAC_KEY: FIXTURE.hmacKeyBase64,
    KNOCK_DOOR_SIGNED_PORTS: "2222/tcp",
  });
  // A daemon that has seen knocks: one sequence that opens, one wrong knock, one bad signed datagram.
  await lab.knock(SERVER_V4, "7000,8000,9000");
  await daemon.waitFor("open", 5000, (l) => l["src"] === CLIENT_V4);
  assert.ok(await lab.canConnect(SERVER_V4, { port: SERVICE_PORT }), "the knock did not open the port");
  await lab.knock(SERVER_V4, "7000,9000");
  await lab.call({ op: "udp", host: SERVER_V4, port: SPA_PORT, data: "not a signed datagram" });
  // The Docker panels' series: a daemon following Docker's labels, touching nothing.
  await lab.startDaemon({ KNOCK_DOOR_WEB_SEQUENCE: SEQUENCE, KNOCK_DRY_RUN: "true", KNOCK_DOCKER: "on", KNOCK_INTERFACE: "lo", KNOCK_HTTP_ADDR: DOCKER_HTTP_ADDR }, false);

  storage = mkdtempSync(join(tmpdir(), "knockgate-prometheus-"));
  const target = (addr: string, node: string) => [{ targets: [addr], labels: { node } }];
  const config = {
    global: { scrape_interval: "1s", scrape_timeout: "1s" },
    scrape_configs: [
      { job_name: JOBS.full, static_configs: target(HTTP_ADDR, "lab"), authorization: { credentials_file: METRICS_TOKEN_FILE } },
      { job_name: JOBS.public, static_configs: target(HTTP_ADDR, "lab") },
      { job_name: JOBS.wrongToken, static_configs: target(HTTP_ADDR, "lab"), authorization: { credentials: "not-the-token" } },
      { job_name: JOBS.docker, static_configs: target(DOCKER_HTTP_ADDR, "lab-docker"), authorization: { credentials_file: METRICS_TOKEN_FILE } },
    ],
  };
  writeFileSync(join(storage, "prometheus.yml"), yaml.dump(config));
  // Bounded: coreutils' timeout ends it even if the lab's teardown never runs.
  const prometheus = lab.spawnIn(lab.server, [
    "timeout", "300", "prometheus",
    `--config.file=${join(storage, "prometheus.yml")}`,
    `--storage.tsdb.path=${join(storage, "data")}`,
    `--web.listen-address=${PROMETHEUS_ADDR}`,
    "--log.level=warn",
  ]);
  const stderr: string[] = [];
  prometheus.stderr?.on("data", (d: Buffer) => stderr.push(d.toString()));
  try {
    // Enough samples of every job for rate() over the dashboard's interval (two or more).
    await until(`count_over_time(up{job="${JOBS.full}"}[1m]) >= 3`, "scrapes of the full set", 60_000);
    await until(`count_over_time(up{job="${JOBS.docker}"}[1m]) >= 3`, "scrapes of the Docker daemon");
  } catch (err) {
    throw new Error(`${(err as Error).message}\nprometheus stderr:\n${stderr.join("").slice(-3000)}`);
  }
  fullText = await lab.metrics();
  publicText = (await lab.http("/metrics")).body;
  dockerText = await lab.metrics(lab.server, DOCKER_HTTP_ADDR);
});

after(async () => {
  await lab?.destroy();
  if (storage) rmSync(storage, { recursive: true, force: true });
  removeStaleNamespaces();
});

/** The knockgate metric families Prometheus holds for a job now. */
async function stored(job: string): Promise<Set<string>> {
  const series = await one(`group by (__name__) ({job="${job}", __name__=~"knockgate_.+"})`);
  return new Set(series.map((s) => family(s.metric["__name__"] ?? "")));
}

describe("Prometheus scraping a real daemon", { concurrency: false }, () => {
  test("with the token it stores the full set, without it the public set, with a wrong one nothing (up 0)", async () => {
    const [full, pub] = [await stored(JOBS.full), await stored(JOBS.public)];
    assert.deepEqual([...full].sort(), [...families(fullText)].sort(), "the full scrape holds what the daemon serves to the token");
    assert.deepEqual([...pub].sort(), [...families(publicText)].sort(), "the public scrape holds what the daemon serves without it");
    for (const name of PRE_GRANT) {
      assert.ok(full.has(name), `${name} missing from the full set`);
      assert.ok(!pub.has(name), `${name} is in the public set: it moves before a grant`);
    }
    for (const name of pub) assert.ok(full.has(name), `${name} is public but not in the full set`);
    assert.ok(pub.has("knockgate_opens_total") && pub.has("knockgate_build_info"));
    const up = Object.fromEntries((await one("up")).map((s) => [s.metric["job"], s.value[1]]));
    assert.deepEqual(up, { [JOBS.full]: "1", [JOBS.public]: "1", [JOBS.wrongToken]: "0", [JOBS.docker]: "1" });
    assert.deepEqual(await stored(JOBS.wrongToken), new Set(), "a refused scrape stores no knockgate series");
  });

  test("the scraped values are the daemon's: one open, the knocks by result, the bad signed datagram", async () => {
    const [opens, completed, wrong, spa] = await query([
      `knockgate_opens_total{job="${JOBS.full}", door="SSH"}`,
      `knockgate_knocks_total{job="${JOBS.full}", door="SSH", result="completed"}`,
      `knockgate_knocks_total{job="${JOBS.full}", door="SSH", result="wrong_port"}`,
      `sum(knockgate_spa_packets_total{job="${JOBS.full}", door="SIGNED", result!="accepted"})`,
    ]);
    assert.equal(opens?.[0]?.value[1], "1");
    assert.equal(completed?.[0]?.value[1], "1");
    assert.ok(Number(wrong?.[0]?.value[1]) >= 1, "the wrong knock is counted");
    assert.equal(spa?.[0]?.value[1], "1", "the refused datagram is counted");
    assert.deepEqual(await one(`knockgate_knocks_total{job="${JOBS.public}"}`), [], "no knock counts without the token");
  });
});

describe("the Grafana dashboard against that Prometheus", { concurrency: false }, () => {
  const panels = dashboard.panels.filter((p) => p.type !== "row");
  const targets = panels.flatMap((p) => (p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })));

  test("is well formed: unique panel ids, within the 24-column grid, every panel on the datasource variable", () => {
    assert.equal(new Set(dashboard.panels.map((p) => p.id)).size, dashboard.panels.length);
    for (const p of dashboard.panels) assert.ok(p.gridPos.x + p.gridPos.w <= 24, `${p.title} is off the grid`);
    for (const p of panels) {
      assert.equal(p.datasource?.uid, "${datasource}", p.title);
      assert.ok((p.targets ?? []).length > 0, `${p.title} has no query`);
    }
    assert.deepEqual(dashboard.templating.list.map((v) => v.name), ["datasource", "job", "node"]);
  });

  test("every panel's query returns series after knocks", async () => {
    const results = await query(targets.map((t) => forLab(t.expr)));
    const empty = targets.filter((_, i) => (results[i] ?? []).length === 0).map((t) => `${t.panel}: ${t.expr}`);
    assert.deepEqual(empty, [], "queries without a series");
  });

  test("no query or variable names a metric the daemons do not export, in the mode that exports it", () => {
    const exported = new Set([...families(fullText), ...families(dockerText)]);
    const inSource = registered();
    const named = [...targets.map((t) => t.expr), ...dashboard.templating.list.map((v) => v.definition ?? "")].flatMap(namedIn);
    assert.ok(named.length > 20, "the dashboard names the metrics it shows");
    // Cluster-mode metrics are exported in every mode today; should that change, their registration
    // in the metric table is what the dashboard must match.
    const unknown = [...new Set(named)].filter((n) => !exported.has(n) && !inSource.has(n));
    assert.deepEqual(unknown, [], "metrics neither exported nor registered");
    for (const name of ["knockgate_docker_containers", "knockgate_docker_reconnects_total", "knockgate_label_conflicts"]) {
      assert.ok(families(dockerText).has(name) && !families(fullText).has(name), `${name}: exported with KNOCK_DOCKER on only`);
    }
  });
});
