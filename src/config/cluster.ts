/**
 * KNOCK_CLUSTER, KNOCK_NODE_NAME, KNOCK_CLUSTER_NAMESPACE -> where this node shares its grants.
 * Problems join the rest of the configuration's, so they are all reported at once.
 */
import type { ConfigProblem } from "../core/errors.js";
import type { ClusterConfig } from "../core/types.js";
import type { ReadFile } from "./secret-files.js";

export const CLUSTER_VARIABLES = ["KNOCK_CLUSTER", "KNOCK_NODE_NAME", "KNOCK_CLUSTER_NAMESPACE"] as const;

/** Where Kubernetes puts the pod's own namespace (with its service account token). */
export const POD_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/** A DNS label (RFC 1123), as Kubernetes names namespaces; node names are DNS subdomains. */
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function parseClusterConfig(env: Readonly<Record<string, string | undefined>>, readFile: ReadFile, problems: ConfigProblem[]): ClusterConfig {
  const mode = env["KNOCK_CLUSTER"] ?? "off";
  if (mode !== "off" && mode !== "kubernetes") {
    problems.push({ variable: "KNOCK_CLUSTER", message: `"${mode}" is not one of off, kubernetes` });
    return { mode: "off" };
  }
  if (mode === "off") {
    for (const variable of ["KNOCK_NODE_NAME", "KNOCK_CLUSTER_NAMESPACE"] as const) {
      if (env[variable] !== undefined) problems.push({ variable, message: "is only used with KNOCK_CLUSTER=kubernetes, which is not set" });
    }
    return { mode: "off" };
  }
  const nodeName = env["KNOCK_NODE_NAME"] ?? "";
  if (nodeName === "") {
    problems.push({ variable: "KNOCK_NODE_NAME", message: "is required with KNOCK_CLUSTER=kubernetes; the chart sets it from spec.nodeName (downward API)" });
  } else if (!DNS_SUBDOMAIN.test(nodeName)) {
    problems.push({ variable: "KNOCK_NODE_NAME", message: `"${nodeName}" is not a Kubernetes node name (lowercase DNS subdomain)` });
  }
  let namespace = env["KNOCK_CLUSTER_NAMESPACE"];
  if (namespace === undefined) {
    try {
      namespace = readFile(POD_NAMESPACE_FILE).trim();
    } catch {
      problems.push({
        variable: "KNOCK_CLUSTER_NAMESPACE",
        message: `is not set and ${POD_NAMESPACE_FILE} cannot be read (not in a pod); set the namespace that holds the KnockGrants`,
      });
      return { mode: "off" };
    }
  }
  if (!DNS_LABEL.test(namespace)) {
    problems.push({ variable: "KNOCK_CLUSTER_NAMESPACE", message: `"${namespace}" is not a namespace name (lowercase DNS label)` });
  }
  return { mode: "kubernetes", nodeName, namespace };
}
