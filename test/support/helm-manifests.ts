/**
 * Checks rendered Kubernetes manifests against the API's own schemas, offline (there is no cluster
 * here; the recipe is from ../shared/containers/README.md):
 * - kubernetes-models validates each object against the OpenAPI schema of its kind (types, required
 *   fields, enums);
 * - a round trip through @kubernetes/client-node's typed models (Kubernetes 1.34) drops every field
 *   the API does not define, and knows no kind/apiVersion the API no longer serves: a dropped field
 *   is a misspelt or invented one, a missing model a removed API version.
 * Custom resources (ServiceMonitor) have neither: they are skipped by kind.
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
    const problems = await checkManifest(doc);
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
  for (const id of skipped) console.log(`skip ${id} (custom resource)`);
  for (const p of problems) console.log(`FAIL ${p}`);
  const failed = new Set(problems.map((p) => p.slice(0, p.indexOf(": "))));
  console.log(`${checked.length - failed.size} passed, ${failed.size} failed`);
  process.exitCode = failed.size > 0 ? 1 : 0;
}
