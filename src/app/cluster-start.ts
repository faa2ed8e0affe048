/** KNOCK_CLUSTER=kubernetes: the Kubernetes client, found before anything starts, and the sync built on it. */
import { randomInt } from "node:crypto";
import type { Clock } from "../core/clock.js";
import { errorFields } from "../core/errors.js";
import type { Config } from "../core/types.js";
import type { KubeGrants } from "../adapters/kube.js";
import type { ClusterMetrics } from "../adapters/metrics/metrics.js";
import type { Logger } from "../adapters/log.js";
import { ClusterSync } from "./cluster-sync.js";
import type { DoorPorts } from "./protection.js";

/** The client, and where it shares grants. */
export interface ClusterClient {
  kube: KubeGrants;
  nodeName: string;
  namespace: string;
}

/**
 * null when KNOCK_CLUSTER=off; "failed" (logged) when no credentials are found: neither in-cluster
 * service account files nor a usable KUBECONFIG.
 */
export async function clusterClient(config: Config, log: Logger): Promise<ClusterClient | null | "failed"> {
  const { cluster } = config;
  if (cluster.mode === "off") return null;
  let kube;
  try {
    // Loaded only here: the client takes over a second to import, which no other command should pay.
    const { kubeGrants } = await import("../adapters/kube.js");
    kube = kubeGrants(cluster.namespace);
  } catch (err) {
    log.error(
      { event: "config_refused", ...errorFields(err, "KNOCK_E_CONFIG") },
      "KNOCK_CLUSTER=kubernetes: no Kubernetes credentials (no service account in this pod and no usable KUBECONFIG)",
    );
    return "failed";
  }
  log.info({ event: "cluster", node: cluster.nodeName, namespace: cluster.namespace }, `sharing grants through KnockGrants in namespace ${cluster.namespace}`);
  return { kube, nodeName: cluster.nodeName, namespace: cluster.namespace };
}

export function clusterSync(client: ClusterClient, config: Config, ports: DoorPorts, log: Logger, metrics: ClusterMetrics, clock: Clock): ClusterSync {
  return new ClusterSync({
    ...client,
    doors: config.doors,
    ports,
    clock,
    log,
    metrics,
    random: () => randomInt(1_000_000) / 1_000_000,
    dryRun: config.dryRun,
  });
}
