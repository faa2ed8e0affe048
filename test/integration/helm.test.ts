/**
 * The Helm chart (helm/knockgate), with the real helm and without a cluster: lint, render with the
 * default and with a full values file, check every rendered object against the Kubernetes API's
 * schemas (test/support/helm-manifests.ts), feed the rendered KNOCK_* variables to the daemon's own
 * configuration parser, and make sure values.schema.json and the templates refuse bad values.
 *
 * Needs `helm` on PATH (CI: bash ../shared/containers/install-helm.sh): fails rather than skips without.
 */
import assert from "node:assert/strict";
import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { before, describe, test } from "node:test";
import * as yaml from "js-yaml";
import { parseConfig } from "../../src/config/config.js";
import type { Config } from "../../src/core/types.js";
import { checkCustomResource, checkManifest, checkManifests, parseManifests, type Manifest } from "../support/helm-manifests.js";
import { ALL_MONITORING, CHART, assertHelm, helm, one, render } from "../support/chart.js";
import { ROOT } from "../support/docker-host.js";

const FULL_VALUES = join(CHART, "ci", "full-values.yaml");

interface SchemaNode {
  $ref?: string;
  properties?: Record<string, SchemaNode>;
  items?: SchemaNode;
}

interface KeyRef {
  name: string;
  key: string;
}
interface EnvVar {
  name: string;
  value?: string;
  valueFrom?: { secretKeyRef?: KeyRef; [source: string]: unknown };
}
interface EnvFromSource {
  secretRef?: { name: string };
  configMapRef?: { name: string };
}
interface Container {
  name: string;
  image: string;
  env: EnvVar[];
  envFrom?: EnvFromSource[];
  securityContext: Record<string, unknown>;
  livenessProbe: { httpGet: { host?: string; path: string; port: string } };
  readinessProbe: { httpGet: { host?: string; path: string; port: string } };
  volumeMounts: { name: string; mountPath: string; readOnly?: boolean }[];
}
interface SecretItems {
  items: { key: string; path: string }[];
}
interface Volume {
  name: string;
  emptyDir?: unknown;
  hostPath?: { path: string };
  secret?: SecretItems & { secretName: string; defaultMode?: number };
  projected?: { defaultMode?: number; sources: { secret: SecretItems & { name: string } }[] };
}
interface PodSpec {
  hostNetwork: boolean;
  dnsPolicy: string;
  containers: Container[];
  tolerations?: { operator?: string; key?: string }[];
  volumes: Volume[];
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

/** Secrets and ConfigMaps as a cluster would hold them, by "Kind/name". */
type Objects = Record<string, Record<string, string>>;

/**
 * The configuration the daemon would start with in the cluster: envFrom sources, then env (which
 * wins), secretKeyRefs resolved from `objects`, and each *_FILE path read by the daemon itself from
 * the Secret key mounted there, so every secret form is checked end to end. A reference to a missing
 * Secret, key or file fails the test: the wiring would not work.
 */
function daemonConfig(spec: PodSpec, objects: Objects): Config {
  const container = spec.containers[0] as Container;
  const lookup = (ref: string, key?: string): Record<string, string> => {
    const object = objects[ref];
    assert.ok(object, `${ref} is referenced but the test has none`);
    assert.ok(key === undefined || key in object, `${ref} has no key ${key}`);
    return object;
  };
  const env: Record<string, string> = {};
  for (const source of container.envFrom ?? []) {
    const ref = source.secretRef ? `Secret/${source.secretRef.name}` : `ConfigMap/${source.configMapRef?.name ?? "?"}`;
    Object.assign(env, lookup(ref));
  }
  for (const e of container.env) {
    const keyRef = e.valueFrom?.secretKeyRef;
    const fieldPath = (e.valueFrom?.["fieldRef"] as { fieldPath?: string } | undefined)?.fieldPath;
    if (e.value !== undefined) env[e.name] = e.value;
    else if (keyRef) env[e.name] = lookup(`Secret/${keyRef.name}`, keyRef.key)[keyRef.key] as string;
    else if (fieldPath !== undefined && fieldPath in POD_FIELDS) env[e.name] = POD_FIELDS[fieldPath] as string;
  }
  // Every mounted Secret key by path, as in the pod (which a missing Secret or key keeps from starting).
  const files = new Map<string, string>();
  for (const mount of container.volumeMounts) {
    const volume = spec.volumes.find((v) => v.name === mount.name);
    const secrets = [
      ...(volume?.secret ? [{ ...volume.secret, name: volume.secret.secretName }] : []),
      ...(volume?.projected?.sources ?? []).map((s) => s.secret),
    ];
    assert.ok(secrets.length === 0 || mount.readOnly, `${mount.name} holds Secret keys but is not mounted read-only`);
    for (const { name, items } of secrets) {
      for (const item of items) files.set(`${mount.mountPath}/${item.path}`, lookup(`Secret/${name}`, item.key)[item.key] as string);
    }
  }
  const readFile = (path: string): string => {
    const content = files.get(path);
    if (content === undefined) throw new Error("no Secret key is mounted there");
    return content;
  };
  return parseConfig(knockEnv(env), readFile);
}

/** What the downward API gives a pod of the release on one node. */
const POD_FIELDS: Record<string, string> = { "spec.nodeName": "node-1", "metadata.namespace": "knockgate" };

/** The Secrets and the ConfigMap that ci/full-values.yaml names. */
const FULL_VALUES_OBJECTS: Objects = {
  "Secret/knockgate-doors": { "ssh-sequence": "7000,8000:udp,9000", "ssh-close-sequence": "9000,8000:udp,7000" },
  "Secret/knockgate-kube-api": { sequence: "7100, 7200, 7300", "close-sequence": "7300,7200,7100" },
  "Secret/knockgate-env": { KNOCK_DOOR_VPN_SEQUENCE: "7400:udp,7500:udp" },
  "Secret/knockgate-metrics": { "scrape-token": "3f9c1e0b7d2a4c6e8f1a3b5d7c9e0f2a" },
  "Secret/knockgate-spa": { key: Buffer.alloc(32, 1).toString("base64"), "hmac-key": Buffer.alloc(64, 2).toString("base64") },
  "ConfigMap/knockgate-settings": { KNOCK_HOOK_TIMEOUT: "3" },
};

async function assertValid(docs: Manifest[]): Promise<void> {
  const { checked, problems } = await checkManifests(docs);
  assert.ok(checked.length > 0, "nothing was checked");
  assert.deepEqual(problems, [], `rendered manifests do not match the Kubernetes API:\n${problems.join("\n")}`);
}

before(assertHelm);

describe("helm chart", { concurrency: false }, () => {
  test("helm lint --strict passes with the default and the full values", () => {
    for (const extra of [[], ["-f", FULL_VALUES]]) {
      const r = helm(["lint", "--strict", CHART, ...extra]);
      assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    }
  });

  test("helm lint --strict has nothing to say, not even the icon recommendation", () => {
    const r = helm(["lint", "--strict", CHART]);
    assert.doesNotMatch(r.stdout, /\[(INFO|WARNING|ERROR)\]/, r.stdout);
  });

  test("the chart README's values table lists every value and every door field", () => {
    const readme = readFileSync(join(CHART, "README.md"), "utf8");
    const schema = JSON.parse(readFileSync(join(CHART, "values.schema.json"), "utf8")) as SchemaNode & { definitions: Record<string, SchemaNode> };
    const resolve = (node: SchemaNode): SchemaNode => (node.$ref ? resolve(schema.definitions[node.$ref.split("/").pop() ?? ""] ?? {}) : node);
    // A value is a leaf of values.yaml, down to where the schema stops naming fields (resources, maps).
    const leaves = (value: unknown, node: SchemaNode, path: string): string[] => {
      const { properties } = resolve(node);
      if (!properties || value === null || typeof value !== "object" || Array.isArray(value)) return [path];
      return Object.entries(value).flatMap(([k, v]) => leaves(v, properties[k] ?? {}, path ? `${path}.${k}` : k));
    };
    const values = yaml.load(readFileSync(join(CHART, "values.yaml"), "utf8"));
    const doorFields = Object.keys(resolve(schema.properties?.["doors"]?.items ?? {}).properties ?? {}).map((f) => `doors[].${f}`);
    const missing = [...leaves(values, schema, ""), ...doorFields].filter((v) => !readme.includes(`| \`${v}\` |`));
    assert.deepEqual(missing, [], "add these to helm/knockgate/README.md's values tables");
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
    assert.deepEqual(Object.keys(env).filter((k) => /MAX_|PREFIX|CONCURRENCY|METRICS_TOKEN/.test(k)), [], "the daemon's defaults apply");
    assert.ok(!spec.volumes.some((v) => v.name === "metrics-token"), "no token, no token volume");
    const config = parseConfig(knockEnv(env));
    assert.deepEqual(config.doors.map((d) => [d.name, d.sequence.map((p) => p.port), d.ports, d.openForMs]), [
      ["SSH", [7000, 8000, 9000], [{ port: 22, proto: "tcp" }], 30_000],
    ]);
  });

  test("full values: every object valid, metrics Service and ServiceMonitor, all door fields reach the daemon", async () => {
    const docs = render(["-f", FULL_VALUES]);
    await assertValid(docs);
    assert.deepEqual(docs.map((d) => d.kind).sort(), ["ConfigMap", "DaemonSet", "PodMonitor", "PrometheusRule", "Service", "ServiceAccount", "ServiceMonitor"]);
    assert.equal(await checkManifest(one(docs, "ServiceMonitor")), null, "custom resources are skipped, not failed");
    const spec = podSpec(docs);
    assert.equal(spec["priorityClassName"], "system-node-critical");
    assert.deepEqual(spec["imagePullSecrets"], [{ name: "registry-credentials" }]);
    const env = envOf(spec);
    assert.equal(env["KNOCK_HTTP_ADDR"], "0.0.0.0:9180");
    const config = daemonConfig(spec, FULL_VALUES_OBJECTS);
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
    assert.deepEqual(
      [config.maxTracked, config.maxTrackedPerPrefix, config.maxGrants, config.maxGrantsPerPrefix, config.sourcePrefixes, config.hookConcurrency],
      [100_000, 4096, 1_000_000, 64, { v4: 32, v6: 56 }, 8],
    );
    assert.equal(config.metricsToken, FULL_VALUES_OBJECTS["Secret/knockgate-metrics"]?.["scrape-token"]);
    assert.ok((spec.containers[0] as Container).env.some((e) => e.name === "NODE_NAME" && e.valueFrom), "extraEnv passes EnvVar objects through");
    const signed = config.doors.find((d) => d.name === "SIGNED")?.spa;
    assert.ok(signed, "the signed door reaches the daemon with its keys");
    assert.deepEqual(
      [signed.port, signed.keys.hmacDigest, signed.maxAgeS, signed.maxOpenForS, signed.requireSourceAddress, signed.username],
      [40001, "sha512", 60, 120, false, "alice"],
    );
    assert.deepEqual(Buffer.from(signed.keys.hmacKey), Buffer.alloc(64, 2), "the HMAC key from its mounted file");
  });

  test("cluster.enabled: the KnockGrant CRD, a Role on knockgrants in the release's namespace only, its binding, and the daemon's cluster settings; a quota on request", async () => {
    const docs = render(["--set", "cluster.enabled=true"]);
    await assertValid(docs);
    assert.deepEqual(docs.map((d) => d.kind).sort(), ["CustomResourceDefinition", "DaemonSet", "Role", "RoleBinding", "ServiceAccount"]);
    const crd = one(docs, "CustomResourceDefinition") as Manifest & { spec: { group: string; scope: string; names: { kind: string; plural: string }; versions: { name: string; schema: { openAPIV3Schema: { properties: { spec: { required: string[]; properties: Record<string, unknown> } } } } }[] } };
    assert.equal(crd.metadata?.name, "knockgrants.knockgate.io");
    assert.deepEqual([crd.spec.group, crd.spec.scope, crd.spec.names.kind, crd.spec.names.plural], ["knockgate.io", "Namespaced", "KnockGrant", "knockgrants"]);
    const spec = crd.spec.versions[0]?.schema.openAPIV3Schema.properties.spec;
    assert.equal(crd.spec.versions[0]?.name, "v1alpha1");
    assert.deepEqual(Object.keys(spec?.properties ?? {}).sort(), ["address", "door", "expiresAt", "family", "grantedAt", "how", "originNode", "ports"]);
    const role = one(docs, "Role") as Manifest & { rules: { apiGroups: string[]; resources: string[]; verbs: string[] }[] };
    assert.equal(role.metadata?.namespace, "knockgate");
    assert.deepEqual(role.rules, [{ apiGroups: ["knockgate.io"], resources: ["knockgrants"], verbs: ["list", "watch", "create", "patch", "delete"] }]);
    const binding = one(docs, "RoleBinding") as Manifest & { roleRef: { kind: string; name: string }; subjects: { kind: string; name: string; namespace: string }[] };
    assert.deepEqual(binding.roleRef, { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata?.name });
    assert.deepEqual(binding.subjects, [{ kind: "ServiceAccount", name: one(docs, "ServiceAccount").metadata?.name, namespace: "knockgate" }]);
    assert.ok(!docs.some((d) => /^Cluster(Role|RoleBinding)$/.test(d.kind)), "no cluster-wide rights");
    const pod = podSpec(docs);
    assert.equal(pod["automountServiceAccountToken"], true, "the in-cluster credentials are the service account's token");
    const config = daemonConfig(pod, {});
    assert.deepEqual(config.cluster, { mode: "kubernetes", nodeName: "node-1", namespace: "knockgate" });
    const withoutCrd = render(["--set", "cluster.enabled=true", "--set", "cluster.installCRD=false", "--set", "cluster.maxObjects=20000"]);
    assert.ok(!withoutCrd.some((d) => d.kind === "CustomResourceDefinition"));
    await assertValid(withoutCrd);
    const quota = one(withoutCrd, "ResourceQuota") as Manifest & { spec: { hard: Record<string, string> } };
    assert.deepEqual(quota.spec.hard, { "count/knockgrants.knockgate.io": "20000" });
    assert.equal(daemonConfig(podSpec(render()), {}).cluster.mode, "off");
  });

  test("full values: image registry and digest, commonLabels everywhere, DaemonSet settings, sequences from Secrets", () => {
    const docs = render(["-f", FULL_VALUES]);
    const ds = one(docs, "DaemonSet") as Manifest & { metadata: { annotations: Record<string, string> }; spec: Record<string, unknown> };
    const spec = podSpec(docs);
    const container = spec.containers[0] as Container;
    assert.equal(container.image, `registry.example.com/infra/knockgate@sha256:${"0123456789abcdef".repeat(4)}`, "the digest wins over the tag");
    for (const doc of docs) assert.equal(doc.metadata?.labels?.["example.com/team"], "infra", `${doc.kind} lacks commonLabels`);
    assert.equal(ds.spec["revisionHistoryLimit"], 3);
    assert.deepEqual(ds.metadata.annotations, { "example.com/owner": "infra" });
    assert.equal(spec["terminationGracePeriodSeconds"], 45);
    assert.deepEqual(container.envFrom, [{ secretRef: { name: "knockgate-env" } }, { configMapRef: { name: "knockgate-settings" } }]);
    const config = daemonConfig(spec, FULL_VALUES_OBJECTS);
    assert.deepEqual(config.doors.map((d) => [d.name, d.sequence.map((p) => `${p.port}:${p.proto}`).join(), d.closeSequence?.length ?? 0]).sort(), [
      ["KUBE_API", "7100:tcp,7200:tcp,7300:tcp", 3],
      ["SIGNED", "", 0],
      ["SSH", "7000:tcp,8000:udp,9000:tcp", 3],
      ["VPN", "7400:udp,7500:udp", 0],
    ]);
    assert.equal(config.hookTimeoutMs, 3000, "envFrom's ConfigMap reaches the daemon");
    const rendered = helm(["template", "kg", CHART, "-f", FULL_VALUES]).stdout;
    const secrets = Object.entries(FULL_VALUES_OBJECTS).filter(([ref]) => ref.startsWith("Secret/"));
    for (const secret of secrets.flatMap(([, o]) => Object.values(o))) {
      assert.ok(!rendered.includes(secret), `${secret} is in the rendered chart`);
    }
  });

  test("existingSecret: envFrom the Secret, doors keep their other fields, no sequence in the rendered chart", () => {
    const objects: Objects = { "Secret/knockgate-env": { KNOCK_DOOR_SSH_SEQUENCE: "7311,7422,7533", KNOCK_DOOR_WEB_SEQUENCE: "7644,7755" } };
    const r = helm(["template", "kg", CHART, "--set", "existingSecret=knockgate-env", "--set-json", 'doors=[{"name":"SSH","ports":"2222/tcp"}]']);
    assert.equal(r.code, 0, r.stderr);
    for (const sequence of ["7311", "7644", "7000,8000,9000"]) assert.ok(!r.stdout.includes(sequence), `${sequence} is in the rendered chart`);
    const spec = podSpec(parseManifests(r.stdout));
    assert.deepEqual((spec.containers[0] as Container).envFrom, [{ secretRef: { name: "knockgate-env" } }]);
    const config = daemonConfig(spec, objects);
    assert.deepEqual(config.doors.map((d) => [d.name, d.sequence.map((p) => p.port), d.ports.map((p) => p.port)]).sort(), [
      ["SSH", [7311, 7422, 7533], [2222]],
      ["WEB", [7644, 7755], [22]],
    ]);
    const allInSecret = render(["--set", "existingSecret=knockgate-env", "--set-json", "doors=[]"]);
    assert.equal(daemonConfig(podSpec(allInSecret), objects).doors.length, 2, "doors may all live in the Secret");
  });

  test("sequenceFrom / closeSequenceFrom: secretKeyRef variables; sequenceFile: a read-only mounted key and *_FILE", async () => {
    const ref = (key: string) => ({ secretKeyRef: { name: "knockgate-doors", key } });
    const objects: Objects = { "Secret/knockgate-doors": { open: "7311,7422,7533", close: "7533,7422,7311", web: "7644,7755" } };
    const doors = [
      { name: "SSH", sequenceFrom: ref("open"), closeSequenceFrom: ref("close"), openFor: 0 },
      { name: "WEB", sequenceFile: ref("web"), ports: "443/tcp" },
    ];
    const r = helm(["template", "kg", CHART, "--set-json", `doors=${JSON.stringify(doors)}`]);
    assert.equal(r.code, 0, r.stderr);
    for (const sequence of Object.values(objects["Secret/knockgate-doors"] ?? {})) assert.ok(!r.stdout.includes(sequence), `${sequence} is rendered`);
    const docs = parseManifests(r.stdout);
    await assertValid(docs);
    const spec = podSpec(docs);
    const container = spec.containers[0] as Container;
    const byName = (name: string) => container.env.find((e) => e.name === name);
    assert.deepEqual(byName("KNOCK_DOOR_SSH_SEQUENCE")?.valueFrom, ref("open"));
    assert.deepEqual(byName("KNOCK_DOOR_SSH_CLOSE_SEQUENCE")?.valueFrom, ref("close"));
    assert.equal(byName("KNOCK_DOOR_WEB_SEQUENCE"), undefined);
    assert.equal(byName("KNOCK_DOOR_WEB_SEQUENCE_FILE")?.value, "/etc/knockgate/sequences/WEB_SEQUENCE");
    assert.deepEqual(container.volumeMounts.find((m) => m.name === "sequences"), { name: "sequences", mountPath: "/etc/knockgate/sequences", readOnly: true });
    assert.deepEqual(spec.volumes.find((v) => v.name === "sequences")?.projected, {
      defaultMode: 0o400,
      sources: [{ secret: { name: "knockgate-doors", items: [{ key: "web", path: "WEB_SEQUENCE" }] } }],
    });
    const config = daemonConfig(spec, objects);
    assert.deepEqual(config.doors.map((d) => [d.name, d.sequence.map((p) => p.port), d.closeSequence?.map((p) => p.port) ?? null]).sort(), [
      ["SSH", [7311, 7422, 7533], [7533, 7422, 7311]],
      ["WEB", [7644, 7755], null],
    ]);
    assert.ok(!podSpec(render()).volumes.some((v) => v.name === "sequences"), "no sequences volume without sequenceFile");
  });

  test("image.registry is prefixed; image.digest wins over the tag", () => {
    const image = (args: string[]) => (podSpec(render(args)).containers[0] as Container).image;
    assert.equal(image([]), "knockgate:0.1.0");
    assert.equal(image(["--set", "image.registry=ghcr.io", "--set", "image.repository=acme/knockgate", "--set", "image.tag=1.2.3"]), "ghcr.io/acme/knockgate:1.2.3");
    const digest = `sha256:${"ab".repeat(32)}`;
    assert.equal(image(["--set", `image.digest=${digest}`, "--set", "image.tag=1.2.3"]), `knockgate@${digest}`);
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
    ["a door with neither a sequence nor a Secret source", door({ sequence: undefined, ports: "22/tcp" }), /doors\.0: sequence is required/],
    ["a secretKeyRef without key", door({ sequence: undefined, sequenceFrom: { secretKeyRef: { name: "s" } } }), /key is required/],
    ["a sequenceFile that is not a secretKeyRef", door({ sequence: undefined, sequenceFile: "/etc/seq" }), /doors\.0\.sequenceFile/],
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

  test("the templates refuse a sequence given in two forms, and an inline sequence beside existingSecret", () => {
    const ref = { secretKeyRef: { name: "s", key: "k" } };
    for (const [extra, both] of [
      [{ sequenceFrom: ref }, "sequence and sequenceFrom"],
      [{ sequenceFile: ref }, "sequence and sequenceFile"],
      [{ closeSequence: "1,2", closeSequenceFile: ref }, "closeSequence and closeSequenceFile"],
    ] as const) {
      const r = helm(["template", "kg", CHART, "--set-json", `doors=${door(extra)}`]);
      assert.notEqual(r.code, 0, `accepted ${JSON.stringify(extra)}`);
      assert.match(r.stderr, new RegExp(`doors\\[SSH\\]: ${both} are set; give the \\w+ in one form only`));
    }
    const shadowed = helm(["template", "kg", CHART, "--set", "existingSecret=knockgate-env"]);
    assert.notEqual(shadowed.code, 0);
    assert.match(shadowed.stderr, /doors\[SSH\]: sequence is set inline while existingSecret "knockgate-env" is set.*would replace KNOCK_DOOR_SSH_SEQUENCE from the Secret.*Remove doors\[SSH\]\.sequence/s);
  });

  test("monitoring: a PodMonitor needs a reachable bind address, the PrometheusRule a monitor; both validate", async () => {
    const loopback = helm(["template", "kg", CHART, "--set", "metrics.podMonitor.enabled=true"]);
    assert.notEqual(loopback.code, 0);
    assert.match(loopback.stderr, /metrics\.podMonitor\.enabled: the daemon listens on http\.bindAddress 127\.0\.0\.1.*or disable metrics\.podMonitor/s);
    const alone = helm(["template", "kg", CHART, "--set", "metrics.prometheusRule.enabled=true", "--set", "http.bindAddress=0.0.0.0"]);
    assert.notEqual(alone.code, 0);
    assert.match(alone.stderr, /enable metrics\.serviceMonitor or metrics\.podMonitor too/);
    const docs = render(["--set", "http.bindAddress=0.0.0.0", "--set", "metrics.podMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true"]);
    const { checked, problems } = await checkManifests(docs);
    assert.deepEqual(problems, []);
    assert.ok(checked.some((id) => id.includes("PodMonitor")) && checked.some((id) => id.includes("PrometheusRule")), checked.join());
    const rule = one(docs, "PrometheusRule") as Manifest & { spec: { groups: { rules: { alert: string; expr: string; for?: string }[] }[] } };
    const alerts = Object.fromEntries(rule.spec.groups.flatMap((g) => g.rules).map((r) => [r.alert, r]));
    const sel = 'namespace="knockgate", job=~"knockgate/kg-knockgate"';
    assert.equal(alerts["KnockgateCaptureDrops"], undefined, "its metric is token-only: no token, no alert");
    assert.equal(alerts["KnockgateFirewallErrors"]?.expr, `increase(knockgate_firewall_errors_total{${sel}}[5m]) > 0`);
    assert.equal(alerts["KnockgateMetricsDown"]?.expr, `up{${sel}} == 0`);
    assert.match(alerts["KnockgateNotReady"]?.expr ?? "", /^kube_pod_container_status_ready\{namespace="knockgate", container="knockgate", pod=~"kg-knockgate-\[a-z0-9\]\{5\}"\} == 0$/);
    assert.equal(alerts["KnockgateNotReady"]?.for, "5m");
  });

  test("metrics.tokenSecret: a read-only mounted key in KNOCK_METRICS_TOKEN_FILE, sent by both monitors, never rendered", async () => {
    const token = "d41d8cd98f00b204e9800998ecf8427e";
    const objects: Objects = { "Secret/knockgate-metrics": { token } };
    const r = helm(["template", "kg", CHART, "--namespace", "knockgate", ...ALL_MONITORING]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(!r.stdout.includes(token), "the Secret is referenced, never read");
    const docs = parseManifests(r.stdout);
    await assertValid(docs);
    const spec = podSpec(docs);
    const container = spec.containers[0] as Container;
    assert.equal(container.env.find((e) => e.name === "KNOCK_METRICS_TOKEN_FILE")?.value, "/etc/knockgate/metrics/token");
    assert.deepEqual(container.volumeMounts.find((m) => m.name === "metrics-token"), { name: "metrics-token", mountPath: "/etc/knockgate/metrics", readOnly: true });
    assert.deepEqual(spec.volumes.find((v) => v.name === "metrics-token")?.secret, {
      secretName: "knockgate-metrics",
      defaultMode: 0o400,
      items: [{ key: "token", path: "token" }],
    });
    const config = daemonConfig(spec, objects);
    assert.equal(config.metricsToken, token);
    assert.deepEqual(config.secretFiles, { KNOCK_METRICS_TOKEN: "/etc/knockgate/metrics/token" });
    const authorization = { type: "Bearer", credentials: { name: "knockgate-metrics", key: "token" } };
    const endpoints = (kind: string, field: string) => (one(docs, kind) as Manifest & { spec: Record<string, { authorization?: unknown }[]> }).spec[field] ?? [];
    for (const [kind, field] of [["ServiceMonitor", "endpoints"], ["PodMonitor", "podMetricsEndpoints"]] as const) {
      assert.deepEqual(endpoints(kind, field).map((e) => e.authorization), [authorization], kind);
    }
    const rule = one(docs, "PrometheusRule") as Manifest & { spec: { groups: { rules: { alert: string; expr: string }[] }[] } };
    const drops = rule.spec.groups.flatMap((g) => g.rules).find((a) => a.alert === "KnockgateCaptureDrops");
    const sel = 'namespace="knockgate", job=~"kg-knockgate-metrics|knockgate/kg-knockgate"';
    assert.equal(drops?.expr, `increase(knockgate_capture_dropped_packets_total{${sel}}[5m]) > 0`);
  });

  test("other values are checked too: firewall, onExit, allow, interface", () => {
    for (const bad of [
      "firewall=pf",
      "onExit=sometimes",
      "allow[0]=not-an-ip",
      "interface=eth0;rm",
      "http.port=0",
      "unknownTopLevel=1",
      "image.digest=sha256:abc",
      "existingSecret=Not_A_Name",
      "revisionHistoryLimit=-1",
      "commonLabels.team=1",
      "limits.sourcePrefixV4=33",
      "limits.maxTracked=0",
      "limits.maxTracked=10000001",
      "metrics.grafanaDashboard.namespace=Not_A_Namespace",
      "metrics.grafanaDashboard.enabled=yes",
      "limits.hookConcurrency=0",
      "limits.maxGrants=1.5",
      "metrics.tokenSecret.name=Not_A_Name",
      "metrics.tokenSecret.key=a/b",
    ]) {
      const r = helm(["template", "kg", CHART, "--set", bad]);
      assert.notEqual(r.code, 0, `helm template accepted --set ${bad}`);
      assert.match(r.stderr, /values don't meet the specifications of the schema/, bad);
    }
  });

  test("resources fit cluster mode: the memory request covers the benchmark's cluster-mode RSS, the limit leaves room above the peak", () => {
    // bench/results/latest.json: two daemons in cluster mode against a real API server, before and
    // with 10,000 live KnockGrants (RSS in MiB). A re-measured figure above the chart's fails here.
    const bench = JSON.parse(readFileSync(join(ROOT, "bench", "results", "latest.json"), "utf8")) as { cluster: { rssBeforeMb: number[]; rssLoadedMb: number[] } };
    const idle = Math.max(...bench.cluster.rssBeforeMb);
    const loaded = Math.max(...bench.cluster.rssLoadedMb);
    assert.ok(idle > 100 && loaded > 100, `implausible figures ${idle}/${loaded}`);
    const { resources } = podSpec(render()).containers[0] as Container & { resources: { requests: Record<string, string>; limits: Record<string, string> } };
    const mib = (q: string | undefined): number => {
      const m = /^(\d+)(Mi|Gi)$/.exec(q ?? "");
      assert.ok(m, `memory ${q} is not in Mi or Gi`);
      return Number(m[1]) * (m[2] === "Gi" ? 1024 : 1);
    };
    assert.ok(mib(resources.requests["memory"]) >= idle, `request ${resources.requests["memory"]} is below the ${idle} MiB a cluster-mode daemon holds idle`);
    assert.ok(mib(resources.limits["memory"]) >= 2 * loaded, `limit ${resources.limits["memory"]} leaves less than twice the ${loaded} MiB peak`);
    assert.equal(resources.limits["cpu"], undefined, "no CPU limit: throttling would delay knocks");
  });

  test("limits.maxTracked sets KNOCK_MAX_TRACKED, which the daemon reads", () => {
    const spec = podSpec(render(["--set", "limits.maxTracked=250000"]));
    assert.equal(envOf(spec)["KNOCK_MAX_TRACKED"], "250000");
    assert.equal(daemonConfig(spec, {}).maxTracked, 250_000);
  });

  test("metrics.grafanaDashboard: a ConfigMap labelled for the Grafana sidecar holding the chart's dashboard file byte for byte", async () => {
    const file = readFileSync(join(CHART, "dashboards", "knockgate.json"), "utf8");
    const dashboard = JSON.parse(file) as { uid: string; panels: unknown[] };
    assert.equal(dashboard.uid, "knockgate");
    assert.ok(!render().some((d) => d.kind === "ConfigMap"), "off by default");
    const docs = render(["--set", "metrics.grafanaDashboard.enabled=true"]);
    await assertValid(docs);
    const map = one(docs, "ConfigMap") as Manifest & { data: Record<string, string> };
    assert.equal(map.metadata?.labels?.["grafana_dashboard"], "1");
    assert.equal(map.metadata?.namespace, "knockgate");
    assert.deepEqual(Object.keys(map.data), ["knockgate.json"]);
    assert.equal(map.data["knockgate.json"], file);
    const elsewhere = one(render(["-f", FULL_VALUES]), "ConfigMap") as Manifest & { metadata: { annotations: Record<string, string> } };
    assert.equal(elsewhere.metadata.namespace, "monitoring");
    assert.equal(elsewhere.metadata.labels?.["release"], "kube-prometheus-stack");
    assert.deepEqual(elsewhere.metadata.annotations, { grafana_folder: "knockgate" });
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

  test("the custom-resource check is not vacuous: a misspelt field, a missing credential key, a bad duration, a missing expr", () => {
    const docs = render(["-f", FULL_VALUES]);
    const podMonitor = structuredClone(one(docs, "PodMonitor")) as Manifest & { spec: Record<string, unknown> };
    podMonitor.spec["podMetricEndpoints"] = podMonitor.spec["podMetricsEndpoints"];
    delete podMonitor.spec["podMetricsEndpoints"];
    assert.deepEqual(checkCustomResource(podMonitor), ["/spec/podMetricEndpoints: unknown field", "/spec/podMetricsEndpoints: required"]);
    const serviceMonitor = structuredClone(one(docs, "ServiceMonitor")) as Manifest & { spec: { endpoints: { authorization: { credentials: Record<string, unknown> } }[] } };
    const credentials = serviceMonitor.spec.endpoints[0]?.authorization.credentials ?? {};
    credentials["secretKey"] = credentials["key"];
    delete credentials["key"];
    assert.deepEqual(checkCustomResource(serviceMonitor), [
      "/spec/endpoints/0/authorization/credentials/secretKey: unknown field",
      "/spec/endpoints/0/authorization/credentials/key: required",
    ]);
    const rule = structuredClone(one(docs, "PrometheusRule")) as Manifest & { spec: { groups: Record<string, unknown>[] } };
    const first = rule.spec.groups[0]?.["rules"] as Record<string, unknown>[];
    Object.assign(first[0] ?? {}, { for: "5 minutes" });
    delete first[1]?.["expr"];
    assert.deepEqual(checkCustomResource(rule), [
      '/spec/groups/0/rules/0/for: expected a duration like 30s or 1h5m, got "5 minutes"',
      "/spec/groups/0/rules/1/expr: required",
    ]);
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
  assert.match(remove, /behind Service knockgate-metrics/);
  assert.doesNotMatch(keep, /KnockGrant/);
  const cluster = renderNotes(["--set", "cluster.enabled=true"]);
  assert.match(cluster, /kubectl -n knockgate get knockgrants/);
  assert.doesNotMatch(keep + remove + cluster, /<no value>|%!/, "no unresolved template values");
});

test("NOTES.txt: where the metrics token is, or how to give one, and the dashboard's ConfigMap", () => {
  const without = renderNotes(["--set", "http.bindAddress=0.0.0.0", "--set", "metrics.podMonitor.enabled=true", "--set", "metrics.prometheusRule.enabled=true"]);
  assert.match(without, /No metrics token \(metrics\.tokenSecret\): \/metrics serves only the public set/);
  assert.match(without, /The KnockgateCaptureDrops alert is left out/);
  assert.match(without, /kubectl -n knockgate create secret generic knockgate-metrics --from-literal=token="\$\(openssl rand -hex 32\)"\n\s+helm upgrade kg <chart> --reuse-values --set metrics\.tokenSecret\.name=knockgate-metrics/);
  assert.match(without, /Allow only your monitoring to reach that port/);
  assert.doesNotMatch(renderNotes(), /Allow only your monitoring/, "loopback: nothing to allow");
  const withToken = renderNotes(["-f", FULL_VALUES]);
  assert.match(withToken, /The metrics token is key scrape-token of Secret knockgate-metrics\./);
  assert.match(withToken, /The chart's monitors send it\./);
  assert.match(withToken, /kubectl -n knockgate rollout restart ds\/knockgate/);
  assert.match(withToken, /Grafana: ConfigMap knockgate-dashboard in namespace monitoring/);
  assert.doesNotMatch(withToken, /No metrics token|3f9c1e0b/, "the token itself is never shown");
  assert.doesNotMatch(without + withToken, /<no value>|%!/);
});

test("NOTES.txt names where a door's sequence is kept, never its value", () => {
  const fromSecret = renderNotes(["--set-json", 'doors=[{"name":"SSH","sequenceFrom":{"secretKeyRef":{"name":"knockgate-doors","key":"ssh"}}}]']);
  assert.match(fromSecret, /SSH: knock <the sequence in Secret knockgate-doors \(key ssh\)> -> opens 22\/tcp/);
  assert.match(fromSecret, /knock NODE_ADDRESS <the sequence in Secret knockgate-doors \(key ssh\)>/);
  const allInSecret = renderNotes(["--set", "existingSecret=knockgate-env", "--set-json", "doors=[]"]);
  assert.match(allInSecret, /all from Secret knockgate-env \(KNOCK_DOOR_<NAME>_\* keys\)/);
  assert.match(allInSecret, /knock NODE_ADDRESS <the sequence in KNOCK_DOOR_NAME_SEQUENCE>/);
  assert.doesNotMatch(fromSecret + allInSecret, /7000|<no value>|%!/);
});

test("NOTES.txt tells a signed door's client to send an SPA datagram, and a door with both paths both ways", () => {
  const ref = (key: string) => ({ secretKeyRef: { name: "knockgate-spa", key } });
  const notes = renderNotes([
    "--set-json",
    JSON.stringify([{ name: "SPA", spaKeyFrom: ref("key"), spaHmacKeyFrom: ref("hmac"), spaPort: 40001 }, { name: "BOTH", sequence: "7000,8000", spaKeyFile: ref("key"), spaHmacKeyFile: ref("hmac") }]).replace(/^/, "doors="),
  ]);
  assert.match(notes, /SPA: fwknop -A PORT -p 40001 \(signed\) -> opens 22\/tcp/);
  assert.match(notes, /BOTH: knock 7000,8000 or fwknop -A PORT -p 62201 \(signed\) -> opens/);
  assert.doesNotMatch(notes, /<no value>|%!/);
});
