/**
 * The chart's PrometheusRule against Prometheus' own tools: the rendered rules pass
 * `promtool check rules`, and each alert has `promtool test rules` cases that fire when they should
 * and stay quiet when they should not (another release's series, a condition that passes, one too
 * short for the alert's `for`).
 *
 * Needs `helm` (bash ../shared/containers/install-helm.sh) and Debian's `prometheus` package (promtool);
 * fails rather than skips without them.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { promisify } from "node:util";
import * as yaml from "js-yaml";
import { ALL_MONITORING, assertHelm, one, render } from "../support/chart.js";
import type { Manifest } from "../support/helm-manifests.js";

interface Rule {
  alert: string;
  expr: string;
  for?: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
}
type Labels = Record<string, string>;

const dir = mkdtempSync(join(tmpdir(), "knockgate-alerts-"));
after(() => rmSync(dir, { recursive: true, force: true }));

async function promtool(args: string[]): Promise<{ code: number; output: string }> {
  try {
    const { stdout, stderr } = await promisify(execFile)("promtool", args, { cwd: dir, timeout: 60_000 });
    return { code: 0, output: stdout + stderr };
  } catch (err) {
    const e = err as { code?: number | string; stdout?: string; stderr?: string };
    if (typeof e.code !== "number") throw err;
    return { code: e.code, output: `${e.stdout ?? ""}${e.stderr ?? ""}` };
  }
}

/** The job labels the chart's ServiceMonitor and PodMonitor give their targets. */
const SERVICE_JOB = "kg-knockgate-metrics";
const POD_JOB = "knockgate/kg-knockgate";
const NODE = { namespace: "knockgate", node: "node-1", pod: "kg-knockgate-x7k2p" };

let rules: Map<string, Rule>;
const RULES_FILE = "rules.yaml";

before(() => {
  assertHelm();
  // Every alert: both monitors (two job labels) and the token (the capture-drop alert needs it).
  const rule = one(render(ALL_MONITORING), "PrometheusRule") as Manifest & { spec: { groups: { rules: Rule[] }[] } };
  rules = new Map(rule.spec.groups.flatMap((g) => g.rules).map((r) => [r.alert, r]));
  // A PrometheusRule's spec is a Prometheus rule file.
  writeFileSync(join(dir, RULES_FILE), yaml.dump({ groups: rule.spec.groups }));
});

/** What Prometheus makes of an annotation for an alert with these labels ({{ $labels.x }} only). */
function expand(text: string, labels: Labels): string {
  return text.replace(/\{\{ \$labels\.(\w+) \}\}/g, (_, name: string) => labels[name] ?? `<label ${name} missing>`);
}

/** An alert as promtool expects it: the series' labels, the rule's, and the annotations expanded. */
function firing(alert: string, series: Labels): { exp_labels: Labels; exp_annotations: Labels } {
  const rule = rules.get(alert);
  assert.ok(rule, `no alert ${alert}`);
  const labels = { ...series, ...rule.labels };
  return { exp_labels: labels, exp_annotations: Object.fromEntries(Object.entries(rule.annotations).map(([k, v]) => [k, expand(v, labels)])) };
}

const seriesText = (name: string, labels: Labels) => `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(", ")}}`;

interface Case {
  /** Series by name and labels, values in promtool's notation, one per minute. */
  series: { name: string; labels: Labels; values: string }[];
  /** Minute -> the labels of each series the alert fires for then ([] = quiet). */
  expect: [number, Labels[]][];
}

async function testAlert(alert: string, c: Case): Promise<{ code: number; output: string }> {
  const file = `${alert}.test.yaml`;
  const tests = {
    rule_files: [RULES_FILE],
    evaluation_interval: "1m",
    tests: [
      {
        interval: "1m",
        input_series: c.series.map((s) => ({ series: seriesText(s.name, s.labels), values: s.values })),
        alert_rule_test: c.expect.map(([minute, fired]) => ({ eval_time: `${minute}m`, alertname: alert, exp_alerts: fired.map((labels) => firing(alert, labels)) })),
      },
    ],
  };
  writeFileSync(join(dir, file), yaml.dump(tests));
  return promtool(["test", "rules", file]);
}

async function assertAlert(alert: string, c: Case): Promise<void> {
  const r = await testAlert(alert, c);
  assert.equal(r.code, 0, `promtool test rules for ${alert}:\n${r.output}`);
}

describe("the chart's alerts in promtool", { concurrency: false }, () => {
  test("promtool check rules accepts the rendered PrometheusRule, every alert in it", async () => {
    assert.deepEqual([...rules.keys()].sort(), ["KnockgateCaptureDrops", "KnockgateFirewallErrors", "KnockgateMetricsDown", "KnockgateNotReady"]);
    const r = await promtool(["check", "rules", RULES_FILE]);
    assert.equal(r.code, 0, r.output);
    assert.match(r.output, /SUCCESS: 4 rules found/);
  });

  test("promtool check rules is not vacuous: it refuses a broken expression", async () => {
    writeFileSync(join(dir, "broken.yaml"), yaml.dump({ groups: [{ name: "broken", rules: [{ alert: "Broken", expr: "increase(knockgate_firewall_errors_total[5m] > 0" }] }] }));
    const r = await promtool(["check", "rules", "broken.yaml"]);
    assert.notEqual(r.code, 0);
    assert.match(r.output, /parse error/);
  });

  test("KnockgateCaptureDrops fires while drops are within 5 minutes, for this release's series only", async () => {
    const mine = { ...NODE, job: POD_JOB, interface: "eth0" };
    await assertAlert("KnockgateCaptureDrops", {
      series: [
        { name: "knockgate_capture_dropped_packets_total", labels: mine, values: "0 0 0 7 7 7 7 7 7 7 7" },
        // Another release, and this one's job in another namespace: not ours to alert on.
        { name: "knockgate_capture_dropped_packets_total", labels: { ...mine, job: "knockgate/other-knockgate" }, values: "0 5 10 15 20 25 30 35 40 45 50" },
        { name: "knockgate_capture_dropped_packets_total", labels: { ...mine, namespace: "elsewhere" }, values: "0 5 10 15 20 25 30 35 40 45 50" },
      ],
      expect: [
        [2, []],
        [4, [mine]],
        [7, [mine]],
        // Five minutes after the last drop.
        [9, []],
      ],
    });
  });

  test("KnockgateFirewallErrors fires per failing operation, through either monitor's job, and not when the counters stand still", async () => {
    const grant = { ...NODE, job: SERVICE_JOB, operation: "grant" };
    const revoke = { ...NODE, job: POD_JOB, operation: "revoke" };
    const reconcile = { ...NODE, job: POD_JOB, operation: "reconcile" };
    await assertAlert("KnockgateFirewallErrors", {
      series: [
        { name: "knockgate_firewall_errors_total", labels: grant, values: "0 1 1 1 1 1 1 1 1 1" },
        { name: "knockgate_firewall_errors_total", labels: revoke, values: "0 0 0 0 2 2 2 2 2 2" },
        // Errors from before the window (a counter that starts high) are old news.
        { name: "knockgate_firewall_errors_total", labels: reconcile, values: "3x9" },
      ],
      expect: [
        [0, []],
        [2, [grant]],
        [5, [grant, revoke]],
        [8, [revoke]],
      ],
    });
  });

  test("KnockgateNotReady fires after 5 minutes not ready, not for a flapping container or another DaemonSet's pod", async () => {
    const ksm = { job: "kube-state-metrics", namespace: "knockgate", container: "knockgate" };
    const stuck = { ...ksm, pod: "kg-knockgate-x7k2p" };
    const flapping = { ...ksm, pod: "kg-knockgate-b8n4q" };
    const other = { ...ksm, pod: "other-knockgate-x7k2p" };
    await assertAlert("KnockgateNotReady", {
      series: [
        { name: "kube_pod_container_status_ready", labels: stuck, values: "1 0 0 0 0 0 0 0 0 0 0" },
        { name: "kube_pod_container_status_ready", labels: flapping, values: "0 0 0 0 1 0 0 0 0 1 0" },
        { name: "kube_pod_container_status_ready", labels: other, values: "0x10" },
      ],
      expect: [
        // Not ready since minute 1: pending until minute 6.
        [5, []],
        [6, [stuck]],
        [10, [stuck]],
      ],
    });
  });

  test("KnockgateMetricsDown fires after 5 minutes of failed scrapes of this release, and not for a scrape that recovered", async () => {
    const down = { ...NODE, job: POD_JOB, instance: "10.0.0.1:9180" };
    const blip = { ...NODE, job: SERVICE_JOB, instance: "10.0.0.2:9180", node: "node-2" };
    const other = { ...NODE, job: "knockgate/other-knockgate", instance: "10.0.0.3:9180" };
    await assertAlert("KnockgateMetricsDown", {
      series: [
        { name: "up", labels: down, values: "1 1 0 0 0 0 0 0 0 0" },
        { name: "up", labels: blip, values: "1 0 0 0 1 1 1 1 1 1" },
        { name: "up", labels: other, values: "0x9" },
      ],
      expect: [
        [6, []],
        [7, [down]],
        [9, [down]],
      ],
    });
  });

  test("promtool test rules is not vacuous: a wrong expectation fails", async () => {
    const mine = { ...NODE, job: POD_JOB, operation: "grant" };
    const r = await testAlert("KnockgateFirewallErrors", {
      series: [{ name: "knockgate_firewall_errors_total", labels: mine, values: "0 1 1" }],
      expect: [[2, []]],
    });
    assert.notEqual(r.code, 0);
    assert.match(r.output, /alertname: KnockgateFirewallErrors/);
  });
});
