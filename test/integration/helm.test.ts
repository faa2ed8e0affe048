/**
 * The Helm chart (helm/knockgate), with the real helm and without a cluster: lint, render with the
 * default and with a full values file, check every rendered object against the Kubernetes API's
 * schemas (test/support/helm-manifests.ts), feed the rendered KNOCK_* variables to the daemon's own
 * configuration parser, and make sure values.schema.json and the templates refuse bad values.
 *
 * Needs `helm` on PATH (CI: bash ../shared/containers/install-helm.sh): fails rather than skips without.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import * as yaml from "js-yaml";
import { parseConfig } from "../../src/config/config.js";
import { checkManifest, checkManifests, parseManifests, type Manifest } from "../support/helm-manifests.js";
import { ROOT } from "../support/docker-host.js";

const CHART = join(ROOT, "helm", "knockgate");
const FULL_VALUES = join(CHART, "ci", "full-values.yaml");

interface Helm {
  code: number;
  stdout: string;
  stderr: string;
}

function helm(args: string[]): Helm {
  const r = spawnSync("helm", args, { encoding: "utf8", timeout: 60_000 });
  if (r.error) throw r.error;
  return { code: r.status ?? 1, stdout: r.stdout, stderr: r.stderr };
}

function render(args: string[] = []): Manifest[] {
  const r = helm(["template", "kg", CHART, "--namespace", "knockgate", ...args]);
  assert.equal(r.code, 0, `helm template ${args.join(" ")} failed:\n${r.stderr}`);
  return parseManifests(r.stdout);
}

function one(docs: Manifest[], kind: string): Manifest {
  const found = docs.filter((d) => d.kind === kind);
  assert.equal(found.length, 1, `expected one ${kind}, got ${found.length}`);
  return found[0] as Manifest;
}

interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: unknown;
}
interface Container {
  name: string;
  env: EnvVar[];
  securityContext: Record<string, unknown>;
  livenessProbe: { httpGet: { host?: string; path: string; port: string } };
  readinessProbe: { httpGet: { host?: string; path: string; port: string } };
  volumeMounts: { name: string; mountPath: string }[];
}
interface PodSpec {
  hostNetwork: boolean;
  dnsPolicy: string;
  containers: Container[];
  tolerations?: { operator?: string; key?: string }[];
  volumes: { name: string; emptyDir?: unknown; hostPath?: { path: string } }[];
  [field: string]: unknown;
}

function podSpec(docs: Manifest[]): PodSpec {
  const ds = one(docs, "DaemonSet") as Manifest & { spec: { template: { spec: PodSpec } } };
  return ds.spec.template.spec;
}

/** The container's literal env as a record (what the daemon would see, less the valueFrom ones). */
function envOf(spec: PodSpec): Record<string, string> {
  const container = spec.containers[0];
  assert.ok(container);
  return Object.fromEntries(container.env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]));
}

function knockEnv(env: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(env).filter(([k]) => k.startsWith("KNOCK_")));
}

async function assertValid(docs: Manifest[]): Promise<void> {
  const { checked, problems } = await checkManifests(docs);
  assert.ok(checked.length > 0, "nothing was checked");
  assert.deepEqual(problems, [], `rendered manifests do not match the Kubernetes API:\n${problems.join("\n")}`);
}

before(() => {
  const r = spawnSync("helm", ["version", "--short"], { encoding: "utf8" });
  assert.ok(!r.error && r.status === 0, "helm is not on PATH: run bash ../shared/containers/install-helm.sh");
});

describe("helm chart", { concurrency: false }, () => {
  test("helm lint --strict passes with the default and the full values", () => {
    for (const extra of [[], ["-f", FULL_VALUES]]) {
      const r = helm(["lint", "--strict", CHART, ...extra]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    }
  });

  test("Chart.yaml's appVersion is package.json's version", () => {
    const chart = yaml.load(readFileSync(join(CHART, "Chart.yaml"), "utf8")) as { appVersion: string };
    const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
    assert.equal(chart.appVersion, pkg.version);
  });

  test("default values: a valid, locked-down host-network DaemonSet whose env the daemon accepts", async () => {
    const docs = render();
    await assertValid(docs);
    assert.deepEqual(docs.map((d) => d.kind).sort(), ["DaemonSet", "ServiceAccount"]);
    const ds = one(docs, "DaemonSet") as Manifest & { spec: { updateStrategy: { type: string } } };
    assert.equal(ds.spec.updateStrategy.type, "RollingUpdate");
    const spec = podSpec(docs);
    assert.equal(spec.hostNetwork, true);
    assert.equal(spec.dnsPolicy, "ClusterFirstWithHostNet");
    assert.equal(spec["automountServiceAccountToken"], false);
    assert.deepEqual(spec.tolerations, [{ operator: "Exists" }], "must reach every node, tainted ones too");
    const container = spec.containers[0] as Container;
    assert.deepEqual(container.securityContext, {
      runAsUser: 0,
      runAsNonRoot: false,
      privileged: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["NET_ADMIN", "NET_RAW"] },
    });
    assert.deepEqual(container.livenessProbe.httpGet, { host: "127.0.0.1", path: "/healthz", port: "http" });
    assert.deepEqual(container.readinessProbe.httpGet, { host: "127.0.0.1", path: "/readyz", port: "http" });
    assert.ok(container.volumeMounts.some((m) => m.mountPath === "/run"), "a writable /run for a read-only root");
    assert.ok(spec.volumes.some((v) => v.hostPath?.path === "/run/xtables.lock"), "the node's xtables lock is shared");
    const env = envOf(spec);
    assert.equal(env["KNOCK_HTTP_ADDR"], "127.0.0.1:9180");
    assert.equal(env["KNOCK_ON_EXIT"], "keep");
    const config = parseConfig(knockEnv(env));
    assert.deepEqual(config.doors.map((d) => [d.name, d.sequence.map((p) => p.port), d.ports, d.openForMs]), [
      ["SSH", [7000, 8000, 9000], [{ port: 22, proto: "tcp" }], 30_000],
    ]);
  });

  test("full values: every object valid, metrics Service and ServiceMonitor, all door fields reach the daemon", async () => {
    const docs = render(["-f", FULL_VALUES]);
    await assertValid(docs);
    assert.deepEqual(docs.map((d) => d.kind).sort(), ["DaemonSet", "Service", "ServiceAccount", "ServiceMonitor"]);
    assert.equal(await checkManifest(one(docs, "ServiceMonitor")), null, "custom resources are skipped, not failed");
    const spec = podSpec(docs);
    assert.equal(spec["priorityClassName"], "system-node-critical");
    assert.deepEqual(spec["imagePullSecrets"], [{ name: "registry-credentials" }]);
    const env = envOf(spec);
    assert.equal(env["KNOCK_HTTP_ADDR"], "0.0.0.0:9180");
    const config = parseConfig(knockEnv(env));
    const api = config.doors.find((d) => d.name === "KUBE_API");
    assert.ok(api);
    assert.equal(api.seqTimeoutMs, 2500);
    assert.equal(api.openForMs, 0);
    assert.deepEqual(api.closeSequence?.map((p) => p.port), [7300, 7200, 7100]);
    assert.deepEqual(api.tcpFlags, { set: 0, clear: 0 });
    assert.deepEqual(config.interfaces, ["eth0", "wg0"]);
    assert.equal(config.firewall, "nftables");
    assert.equal(config.onExit, "remove");
    assert.equal(config.allow.length, 3);
    assert.ok((spec.containers[0] as Container).env.some((e) => e.name === "NODE_NAME" && e.valueFrom), "extraEnv passes EnvVar objects through");
  });

  test("http.bindAddress=hostIP: the node IP from the downward API, probes on the pod (= node) IP", async () => {
    const docs = render(["--set", "http.bindAddress=hostIP", "--set", "metrics.service.enabled=true"]);
    await assertValid(docs);
    const container = podSpec(docs).containers[0] as Container;
    const hostIp = container.env.find((e) => e.name === "HOST_IP");
    assert.deepEqual(hostIp?.valueFrom, { fieldRef: { fieldPath: "status.hostIP" } });
    const addr = container.env.find((e) => e.name === "KNOCK_HTTP_ADDR");
    assert.equal(addr?.value, "$(HOST_IP):9180");
    assert.ok(container.env.indexOf(hostIp as EnvVar) < container.env.indexOf(addr as EnvVar), "HOST_IP must come first for $(HOST_IP)");
    assert.equal(container.readinessProbe.httpGet.host, undefined);
    assert.equal(parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "1,2,3", KNOCK_HTTP_ADDR: "10.1.2.3:9180" }).httpAddr.port, 9180);
  });

  test("the metrics Service is refused while the daemon listens on loopback only, with a clear message", () => {
    const r = helm(["template", "kg", CHART, "--set", "metrics.service.enabled=true"]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /metrics\.service\.enabled: the daemon listens on http\.bindAddress 127\.0\.0\.1.*Set http\.bindAddress to 0\.0\.0\.0 or hostIP/s);
    const monitor = helm(["template", "kg", CHART, "--set", "metrics.serviceMonitor.enabled=true", "--set", "http.bindAddress=0.0.0.0"]);
    assert.notEqual(monitor.code, 0);
    assert.match(monitor.stderr, /set metrics\.service\.enabled=true/);
  });

  const door = (extra: Record<string, unknown>) => JSON.stringify([{ name: "SSH", sequence: "7000,8000,9000", ...extra }]);
  const badDoors: [string, string, RegExp][] = [
    ["a lower-case name with a dash", door({ name: "bad-name" }), /doors\.0\.name/],
    ["a name longer than 19 characters", door({ name: "A".repeat(20) }), /doors\.0\.name/],
    ["a knock port out of range", door({ sequence: "70000" }), /doors\.0\.sequence/],
    ["a knock with a bad protocol", door({ sequence: "7000:sctp,8000" }), /doors\.0\.sequence/],
    ["ports in sequence syntax", door({ ports: "22:tcp" }), /doors\.0\.ports/],
    ["a negative openFor", door({ openFor: -1 }), /doors\.0\.openFor/],
    ["a fractional openFor", door({ openFor: 1.5 }), /doors\.0\.openFor/],
    ["a zero seqTimeout", door({ seqTimeout: 0 }), /doors\.0\.seqTimeout/],
    ["an unknown tcp flag", door({ tcpFlags: "syn,bogus" }), /doors\.0\.tcpFlags/],
    ["a misspelt field", door({ sequense: "1,2,3" }), /sequense/],
    ["a door without sequence", JSON.stringify([{ name: "SSH" }]), /sequence/],
    ["no door at all", "[]", /doors/],
  ];
  for (const [what, doors, where] of badDoors) {
    test(`values.schema.json refuses ${what}`, () => {
      const r = helm(["template", "kg", CHART, "--set-json", `doors=${doors}`]);
      assert.notEqual(r.code, 0, `helm template accepted doors=${doors}`);
      assert.match(r.stderr, /values don't meet the specifications of the schema/);
      assert.match(r.stderr, where);
    });
  }

  test("the templates refuse two doors of the same name, a name ending in _CLOSE, and openFor 0 without closeSequence", () => {
    const ambiguous = helm(["template", "kg", CHART, "--set-json", `doors=${door({ name: "SSH_CLOSE" })}`]);
    assert.notEqual(ambiguous.code, 0);
    assert.match(ambiguous.stderr, /"SSH_CLOSE" ends in _CLOSE, so KNOCK_DOOR_SSH_CLOSE_SEQUENCE would read as the CLOSE_SEQUENCE of door "SSH"/);
    const twice = helm(["template", "kg", CHART, "--set-json", `doors=${JSON.stringify([{ name: "SSH", sequence: "1,2,3" }, { name: "SSH", sequence: "4,5,6" }])}`]);
    assert.notEqual(twice.code, 0);
    assert.match(twice.stderr, /door name "SSH" is used twice/);
    const forever = helm(["template", "kg", CHART, "--set-json", `doors=${door({ openFor: 0 })}`]);
    assert.notEqual(forever.code, 0);
    assert.match(forever.stderr, /openFor 0 means "open until the close sequence"/);
  });

  test("other values are checked too: firewall, onExit, allow, interface", () => {
    for (const bad of ["firewall=pf", "onExit=sometimes", "allow[0]=not-an-ip", "interface=eth0;rm", "http.port=0", "unknownTopLevel=1"]) {
      const r = helm(["template", "kg", CHART, "--set", bad]);
      assert.notEqual(r.code, 0, `helm template accepted --set ${bad}`);
      assert.match(r.stderr, /values don't meet the specifications of the schema/, bad);
    }
  });

  test("the manifest check is not vacuous: it catches a misspelt field, a wrong type, a removed API", async () => {
    const ds = one(render(), "DaemonSet");
    const spec = (d: Manifest) => (d as unknown as { spec: { template: { spec: Record<string, unknown> } } }).spec.template.spec;
    const misspelt = structuredClone(ds);
    delete spec(misspelt)["hostNetwork"];
    spec(misspelt)["hostNetwrok"] = true;
    assert.match((await checkManifest(misspelt))?.join() ?? "", /unknown fields .*hostNetwrok/);
    const wrongType = structuredClone(ds);
    spec(wrongType)["hostNetwork"] = "yes";
    assert.ok(((await checkManifest(wrongType)) ?? []).length > 0, "a string for a boolean must fail");
    assert.match((await checkManifest({ ...ds, apiVersion: "apps/v1beta2" }))?.join() ?? "", /not a kind this Kubernetes version serves/);
  });
});

/**
 * `helm template` does not render NOTES.txt (only an install does). So: a copy of the chart where the
 * same text is a named template, printed into a ConfigMap that `helm template` does render.
 */
function renderNotes(args: string[] = []): string {
  const dir = mkdtempSync(join(tmpdir(), "knockgate-chart-"));
  try {
    const copy = join(dir, "knockgate");
    cpSync(CHART, copy, { recursive: true });
    const notes = readFileSync(join(copy, "templates", "NOTES.txt"), "utf8");
    rmSync(join(copy, "templates", "NOTES.txt"));
    writeFileSync(join(copy, "templates", "_notes.tpl"), `{{- define "test.notes" -}}\n${notes}{{- end }}\n`);
    writeFileSync(
      join(copy, "templates", "notes.yaml"),
      'apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: notes\ndata:\n  notes: {{ include "test.notes" . | quote }}\n',
    );
    const r = helm(["template", "kg", copy, "--namespace", "knockgate", "--show-only", "templates/notes.yaml", ...args]);
    assert.equal(r.code, 0, r.stderr);
    return (yaml.load(r.stdout) as { data: { notes: string } }).data.notes;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("NOTES.txt: Pod Security, how to knock, and the exit policy in force", () => {
  const keep = renderNotes();
  assert.match(keep, /kubectl label namespace knockgate pod-security\.kubernetes\.io\/enforce=privileged/);
  assert.match(keep, /knock NODE_ADDRESS 7000 8000 9000/);
  assert.match(keep, /knockgate knock --wait 22 NODE_ADDRESS/);
  assert.match(keep, /onExit=keep/);
  assert.match(keep, /helm uninstall` leaves the protection on every node/);
  const remove = renderNotes(["-f", FULL_VALUES]);
  assert.match(remove, /onExit=remove/);
  assert.match(remove, /open to everybody/);
  assert.match(remove, /Metrics: Service knockgate-metrics/);
  assert.doesNotMatch(keep + remove, /<no value>|%!/, "no unresolved template values");
});
