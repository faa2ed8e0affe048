/**
 * The metrics as exported: docs/metrics.md's table (what users build dashboards and alerts on) against
 * the registries, which set serves what, and the series that exist before the first event.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Registry } from "prom-client";
import { Metrics, type DockerMetricSources } from "../../src/adapters/metrics/metrics.js";
import { parseConfig } from "../../src/config/config.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));

/** A sequence door and a signed one, with the Docker watcher on: every metric there is. */
function everything(docker: DockerMetricSources = { enabled: true, effective: () => [], conflicts: () => [], reconnects: () => 0 }) {
  const config = parseConfig({
    KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000",
    KNOCK_DOOR_WEB_SPA_KEY: Buffer.alloc(32, 1).toString("base64"),
    KNOCK_DOOR_WEB_SPA_HMAC_KEY: Buffer.alloc(32, 2).toString("base64"),
    KNOCK_DOOR_WEB_PORTS: "443/tcp",
    KNOCK_INTERFACE: "eth0",
  });
  return new Metrics(
    config.doors,
    { version: "test", revision: "test", backend: "dry-run" },
    { tracked: () => 0, grants: () => Promise.resolve(new Map()), captureDropped: () => new Map(), docker },
  );
}

interface Described {
  names: string[];
  type: string;
  labels: string[];
  set: "public" | "token";
}

/** The rows of docs/metrics.md's metric table: names, type, label names (backquoted), and the *token* mark. */
function documented(): Described[] {
  const doc = readFileSync(`${ROOT}docs/metrics.md`, "utf8");
  const start = doc.indexOf("## Metrics (`/metrics`");
  assert.ok(start >= 0, "docs/metrics.md has no Metrics section");
  const section = doc.slice(start, doc.indexOf("\n#", start + 1));
  const rows = section.split("\n").filter((l) => l.startsWith("| `"));
  assert.ok(rows.length >= 20, `expected the metric table, found ${rows.length} rows`);
  const quoted = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string);
  return rows.map((row) => {
    const [metric = "", type = "", labels = ""] = row.split("|").slice(1).map((c) => c.trim());
    // Label cells explain some labels in parentheses, with quoted words of their own.
    return { names: quoted(metric), type, labels: quoted(labels.replace(/\([^)]*\)/g, "")), set: metric.includes("*token*") ? "token" : "public" };
  });
}

interface Registered {
  name: string;
  type: string;
  labels: string[];
}

function registered(registry: Registry): Registered[] {
  return registry.getMetricsAsArray().map((m) => {
    // prom-client's typings give the type as an enum; at run time it is the exposition's word.
    const { name, type, labelNames } = m as unknown as { name: string; type: string; labelNames: readonly string[] };
    return { name, type, labels: [...labelNames] };
  });
}

/** A documented name with a `*` covers a family (prom-client's default metrics). */
const covers = (pattern: string, name: string) => (pattern.endsWith("*") ? name.startsWith(pattern.slice(0, -1)) : pattern === name);

test("every registered metric is in docs/metrics.md's table with its type, labels and set, and every documented one is registered", () => {
  const metrics = everything();
  const docs = documented();
  const publicNames = new Set(registered(metrics.publicRegistry).map((m) => m.name));
  const problems: string[] = [];
  for (const m of registered(metrics.registry)) {
    const row = docs.find((d) => d.names.some((n) => covers(n, m.name)));
    if (!row) {
      problems.push(`${m.name}: registered, not documented`);
      continue;
    }
    const set = publicNames.has(m.name) ? "public" : "token";
    if (row.set !== set) problems.push(`${m.name}: documented as ${row.set}, served in the ${set} set`);
    // The default metrics' row stands for a family of types and labels.
    if (row.names.some((n) => n.endsWith("*"))) continue;
    if (row.type !== m.type) problems.push(`${m.name}: documented as a ${row.type}, registered as a ${m.type}`);
    if (row.labels.join(",") !== m.labels.join(",")) problems.push(`${m.name}: documented labels [${row.labels.join(", ")}], registered [${m.labels.join(", ")}]`);
  }
  const names = registered(metrics.registry).map((m) => m.name);
  for (const d of docs) for (const n of d.names) if (!names.some((name) => covers(n, name))) problems.push(`${n}: documented, not registered`);
  assert.deepEqual(problems, []);
});

test("docs/metrics.md's table is read as written: names, type, labels without their explanations, the token mark", () => {
  const docs = documented();
  const build = docs.find((d) => d.names.includes("knockgate_build_info"));
  assert.deepEqual(build, { names: ["knockgate_build_info"], type: "gauge", labels: ["version", "revision", "backend", "nodejs"], set: "public" });
  const knocks = docs.find((d) => d.names.includes("knockgate_knocks_total"));
  assert.deepEqual(knocks, { names: ["knockgate_knocks_total"], type: "counter", labels: ["door", "result"], set: "token" });
});

test("the public set is part of the full one, and what moves before a grant is only in the full one", async () => {
  const metrics = everything();
  const full = new Set(registered(metrics.registry).map((m) => m.name));
  const pub = registered(metrics.publicRegistry).map((m) => m.name);
  assert.deepEqual(
    pub.filter((n) => !full.has(n)),
    [],
  );
  for (const name of ["knockgate_packets_total", "knockgate_knocks_total", "knockgate_spa_packets_total", "knockgate_tracked_sources", "knockgate_capture_dropped_packets_total"]) {
    assert.ok(full.has(name), name);
    assert.ok(!pub.includes(name), `${name} is public`);
  }
  assert.doesNotMatch(await metrics.publicRegistry.metrics(), /knockgate_(packets|knocks|spa_packets)_total/);
});

test("the process and runtime series are only in the full set: CPU time and event-loop lag move with knocks", async () => {
  const metrics = everything();
  const defaults = (registry: Registry) => registered(registry).filter((m) => /^(process|nodejs)_/.test(m.name)).map((m) => m.name);
  assert.deepEqual(defaults(metrics.publicRegistry), []);
  assert.doesNotMatch(await metrics.publicRegistry.metrics(), /^(process|nodejs)_/m);
  const full = defaults(metrics.registry);
  for (const name of ["process_cpu_seconds_total", "process_resident_memory_bytes", "nodejs_eventloop_lag_seconds", "nodejs_heap_size_used_bytes"]) assert.ok(full.includes(name), name);
});

test("series start at zero before the first event: knocks and opens of every door, SPA results of signed doors only", async () => {
  const text = await everything().registry.metrics();
  for (const series of [
    'knockgate_knocks_total{door="SSH",result="completed"} 0',
    'knockgate_knocks_total{door="WEB",result="wrong_port"} 0',
    'knockgate_spa_packets_total{door="WEB",result="accepted"} 0',
    'knockgate_spa_packets_total{door="WEB",result="bad_hmac"} 0',
    'knockgate_spa_packets_total{door="WEB",result="replay"} 0',
    'knockgate_opens_total{door="SSH"} 0',
    'knockgate_closes_total{door="WEB",reason="close_sequence"} 0',
    'knockgate_grants_replaced_total{door="SSH",reason="set_full"} 0',
    'knockgate_firewall_errors_total{operation="remove"} 0',
    'knockgate_packets_total{result="malformed"} 0',
    'knockgate_cluster_grants_rejected_total{reason="bad_ports"} 0',
  ]) {
    assert.ok(text.includes(`\n${series}\n`), `missing ${series}`);
  }
  assert.doesNotMatch(text, /knockgate_spa_packets_total\{door="SSH"/);
});

test("a series bumped on the packet path reads its count at scrape time", async () => {
  const metrics = everything();
  metrics.knock("SSH", "progressed");
  metrics.knock("SSH", "progressed");
  metrics.spa("WEB", "stale");
  metrics.packets.seen.n += 3;
  const text = await metrics.registry.metrics();
  assert.match(text, /\nknockgate_knocks_total\{door="SSH",result="progressed"\} 2\n/);
  assert.match(text, /\nknockgate_spa_packets_total\{door="WEB",result="stale"\} 1\n/);
  assert.match(text, /\nknockgate_packets_total\{result="seen"\} 3\n/);
});

test("the Docker watcher's metrics come with the watcher: protected ports always, containers and reconnects only when it is on", async () => {
  const effective = () => [{ door: "SSH", ports: [], containers: 2 }];
  const on = await everything({ enabled: true, effective, conflicts: () => [], reconnects: () => 3 }).registry.metrics();
  assert.match(on, /\nknockgate_docker_containers\{door="SSH"\} 2\n/);
  assert.match(on, /\nknockgate_docker_reconnects_total 3\n/);
  assert.match(on, /\nknockgate_protected_ports\{door="SSH"\} 0\n/);
  const off = await everything({ enabled: false, effective, conflicts: () => [], reconnects: () => 0 }).registry.metrics();
  assert.doesNotMatch(off, /knockgate_docker_/);
  assert.match(off, /\nknockgate_protected_ports\{door="SSH"\} 0\n/);
});
