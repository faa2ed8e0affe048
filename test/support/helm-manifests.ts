/**
 * Checks rendered Kubernetes manifests against the API's own schemas, offline (there is no cluster
 * here; the recipe is from ../shared/containers/README.md):
 * - kubernetes-models validates each object against the OpenAPI schema of its kind (types, required
 *   fields, enums);
 * - a round trip through @kubernetes/client-node's typed models (Kubernetes 1.34) drops every field
 *   the API does not define, and knows no kind/apiVersion the API no longer serves: a dropped field
 *   is a misspelt or invented one, a missing model a removed API version.
 * Custom resources (the Prometheus Operator's ServiceMonitor, PodMonitor, PrometheusRule) have
 * neither, and kubernetes-models has no model for them: checkCustomResource holds them to a small
 * explicit schema of the CRD fields the chart uses (types, required fields, no unknown fields,
 * durations), written from the monitoring.coreos.com/v1 CRDs.
 *
 * Also usable by hand: helm template rel helm/knockgate | node dist/test/support/helm-manifests.js /dev/stdin
 */
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import * as yaml from "js-yaml";
import { ObjectSerializer } from "@kubernetes/client-node/dist/gen/models/ObjectSerializer.js";

export interface Manifest {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

/** Kinds from CustomResourceDefinitions: no built-in schema to check them against. */
export const CUSTOM_KINDS = new Set(["ServiceMonitor", "PodMonitor", "PrometheusRule"]);

/**
 * A structure: a scalar type, a list of one structure, or an object's fields (a "?" suffix marks an
 * optional one; any other key is refused). "map" is an object of strings (labels, annotations).
 */
type Shape = "string" | "boolean" | "integer" | "duration" | "map" | [Shape] | { [field: string]: Shape };

// The CRDs' Duration pattern (monitoring.coreos.com/v1 Duration).
const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;

const metadata: Shape = { name: "string", "namespace?": "string", "labels?": "map", "annotations?": "map" };
const labelSelector: Shape = { "matchLabels?": "map", "matchExpressions?": [{ key: "string", operator: "string", "values?": ["string"] }] };
const relabeling: Shape = {
  "sourceLabels?": ["string"],
  "separator?": "string",
  "targetLabel?": "string",
  "regex?": "string",
  "modulus?": "integer",
  "replacement?": "string",
  "action?": "string",
};
// SafeAuthorization: credentials from a Secret key (the operator refuses authorization without them).
const authorization: Shape = { "type?": "string", credentials: { "name?": "string", key: "string", "optional?": "boolean" } };
const endpoint: Shape = {
  "port?": "string",
  "path?": "string",
  "scheme?": "string",
  "interval?": "duration",
  "scrapeTimeout?": "duration",
  "honorLabels?": "boolean",
  "authorization?": authorization,
  "relabelings?": [relabeling],
  "metricRelabelings?": [relabeling],
};
const monitor = (endpoints: string): Shape => ({
  "jobLabel?": "string",
  selector: labelSelector,
  "namespaceSelector?": { "any?": "boolean", "matchNames?": ["string"] },
  [endpoints]: [endpoint],
});
const rule: Shape = {
  "alert?": "string",
  "record?": "string",
  expr: "string",
  "for?": "duration",
  "keep_firing_for?": "duration",
  "labels?": "map",
  "annotations?": "map",
};
const CUSTOM_SHAPES: Record<string, Shape> = {
  ServiceMonitor: monitor("endpoints"),
  PodMonitor: monitor("podMetricsEndpoints"),
  PrometheusRule: { groups: [{ name: "string", "interval?": "duration", rules: [rule] }] },
};

function shapeProblems(value: unknown, shape: Shape, path: string): string[] {
  const is = (ok: boolean, what: string) => (ok ? [] : [`${path}: expected ${what}, got ${JSON.stringify(value)}`]);
  if (shape === "string") return is(typeof value === "string", "a string");
  if (shape === "boolean") return is(typeof value === "boolean", "a boolean");
  if (shape === "integer") return is(Number.isInteger(value), "an integer");
  if (shape === "duration") return is(typeof value === "string" && DURATION.test(value), "a duration like 30s or 1h5m");
  if (shape === "map") {
    const entries = value !== null && typeof value === "object" && !Array.isArray(value) ? Object.values(value) : [null];
    return is(entries.every((v) => typeof v === "string"), "a map of strings");
  }
  if (Array.isArray(shape)) {
    if (!Array.isArray(value)) return is(false, "a list");
    return value.flatMap((item, i) => shapeProblems(item, shape[0], `${path}/${i}`));
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return is(false, "an object");
  const fields = new Map(Object.entries(shape).map(([k, v]) => [k.replace(/\?$/, ""), { shape: v, required: !k.endsWith("?") }]));
  const record = value as Record<string, unknown>;
  return [
    ...Object.keys(record).filter((k) => !fields.has(k)).map((k) => `${path}/${k}: unknown field`),
    ...[...fields].flatMap(([k, f]) =>
      record[k] === undefined ? (f.required ? [`${path}/${k}: required`] : []) : shapeProblems(record[k], f.shape, `${path}/${k}`),
    ),
  ];
}

/** Problems with a monitoring.coreos.com/v1 resource against CUSTOM_SHAPES; null for other kinds. */
export function checkCustomResource(doc: Manifest): string[] | null {
  const spec = CUSTOM_SHAPES[doc.kind];
  if (!spec) return null;
  return shapeProblems(doc, { apiVersion: "string", kind: "string", metadata, spec }, "").concat(
    doc.apiVersion === "monitoring.coreos.com/v1" ? [] : [`apiVersion ${doc.apiVersion}: the Prometheus Operator serves monitoring.coreos.com/v1`],
  );
}

export function parseManifests(text: string): Manifest[] {
  return (yaml.loadAll(text) as (Manifest | null | undefined)[]).filter((d): d is Manifest => d != null && typeof d === "object");
}

/** Paths of fields in `a` that are absent from `b` (what the typed round trip dropped). */
function dropped(a: unknown, b: unknown, path = ""): string[] {
  if (a === null || typeof a !== "object") return [];
  const other = b as Record<string, unknown> | null | undefined;
  return Object.entries(a as Record<string, unknown>).flatMap(([k, v]) =>
    other == null || !(k in other) ? [`${path}/${k}`] : dropped(v, other[k], `${path}/${k}`),
  );
}

type ModelClass = new (data: unknown) => { validate(): void };

/** Problems with one manifest; [] when it is valid. Custom kinds return null (not checked). */
export async function checkManifest(doc: Manifest): Promise<string[] | null> {
  if (CUSTOM_KINDS.has(doc.kind)) return null;
  const [group, version = ""] = doc.apiVersion.includes("/") ? doc.apiVersion.split("/") : ["", doc.apiVersion];
  const type = `${version.charAt(0).toUpperCase()}${version.slice(1)}${doc.kind}`;
  const problems: string[] = [];
  const typed: unknown = ObjectSerializer.deserialize(doc, type, "");
  if (typed === null || typeof typed !== "object" || typed.constructor === Object) {
    return [`not a kind this Kubernetes version serves (${doc.apiVersion} ${doc.kind})`];
  }
  const unknown = dropped(doc, ObjectSerializer.serialize(typed, type, ""));
  if (unknown.length > 0) problems.push(`unknown fields ${unknown.join(", ")}`);
  try {
    const module = (await import(`kubernetes-models/${group ? `${group}/` : ""}${version}/${doc.kind}`)) as Record<string, ModelClass>;
    const Model = module[doc.kind];
    if (!Model) throw new Error(`kubernetes-models has no ${doc.kind}`);
    new Model(doc).validate();
  } catch (err) {
    problems.push((err as Error).message);
  }
  return problems;
}

export function manifestId(doc: Manifest): string {
  return `${doc.apiVersion} ${doc.kind}/${doc.metadata?.name ?? "?"}`;
}

/** Every problem in a rendered chart, as "id: problem" lines. */
export async function checkManifests(docs: readonly Manifest[]): Promise<{ checked: string[]; skipped: string[]; problems: string[] }> {
  const result = { checked: [] as string[], skipped: [] as string[], problems: [] as string[] };
  for (const doc of docs) {
    const problems = (await checkManifest(doc)) ?? checkCustomResource(doc);
    if (problems === null) result.skipped.push(manifestId(doc));
    else {
      result.checked.push(manifestId(doc));
      result.problems.push(...problems.map((p) => `${manifestId(doc)}: ${p}`));
    }
  }
  return result;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const docs = parseManifests(readFileSync(process.argv[2] ?? "/dev/stdin", "utf8"));
  const { checked, skipped, problems } = await checkManifests(docs);
  for (const id of skipped) console.log(`skip ${id} (custom resource of unknown structure)`);
  for (const p of problems) console.log(`FAIL ${p}`);
  const failed = new Set(problems.map((p) => p.slice(0, p.indexOf(": "))));
  console.log(`${checked.length - failed.size} passed, ${failed.size} failed`);
  process.exitCode = failed.size > 0 ? 1 : 0;
}
