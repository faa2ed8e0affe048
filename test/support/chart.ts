/** The chart (helm/knockgate) through the real helm binary, for the chart, alert and dashboard tests. */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { join } from "node:path";
import { parseManifests, type Manifest } from "./helm-manifests.js";
import { ROOT } from "./docker-host.js";

export const CHART = join(ROOT, "helm", "knockgate");

export interface Helm {
  code: number;
  stdout: string;
  stderr: string;
}

export function helm(args: string[]): Helm {
  const r = spawnSync("helm", args, { encoding: "utf8", timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

/** `helm template kg CHART --namespace knockgate ARGS`, parsed; fails the test when helm refuses. */
export function render(args: string[] = []): Manifest[] {
  const r = helm(["template", "kg", CHART, "--namespace", "knockgate", ...args]);
  assert.equal(r.code, 0, `helm template ${args.join(" ")} failed:\n${r.stderr}`);
  return parseManifests(r.stdout);
}

/** Values for every monitoring object: the Service with its ServiceMonitor, the PodMonitor, the rules and the token. */
export const ALL_MONITORING = [
  "--set", "http.bindAddress=0.0.0.0",
  "--set", "metrics.service.enabled=true",
  "--set", "metrics.serviceMonitor.enabled=true",
  "--set", "metrics.podMonitor.enabled=true",
  "--set", "metrics.prometheusRule.enabled=true",
  "--set", "metrics.tokenSecret.name=knockgate-metrics",
];

export function one(docs: Manifest[], kind: string): Manifest {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}, got ${found.length}`);
  return found[0] as Manifest;
}

/** Fails with how to install helm when it is not on PATH (for a before hook). */
export function assertHelm(): void {
  const r = spawnSync("helm", ["version", "--short"], { encoding: "utf8" });
  assert.ok(!r.error && r.status === 0, "helm is not on PATH: run bash ../shared/containers/install-helm.sh");
}
