/** KNOCK_CLUSTER=kubernetes: the Kubernetes client and the sync, built before the daemon starts. */
import { randomInt } from "node:crypto";
import { errorFields } from "../core/errors.js";
import type { Config } from "../core/types.js";
import type { ClusterMetrics } from "../adapters/metrics/metrics.js";
import type { Logger } from "../adapters/log.js";
import { systemClock } from "../adapters/clock.js";
import { ClusterSync, type RemoteGrants } from "./cluster-sync.js";
import type { DoorPorts } from "./protection.js";

/**
 * null when KNOCK_CLUSTER=off; "failed" (logged) when no credentials are found: neither in-cluster
 * service account files nor a usable KUBECONFIG. `daemon` is read only once grants arrive.
 */
export async function startClusterSync(config: Config, ports: DoorPorts, log: Logger, metrics: ClusterMetrics, daemon: () => RemoteGrants): Promise<ClusterSync | null | "failed"> {
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
  return new ClusterSync({
    kube,
    nodeName: cluster.nodeName,
    namespace: cluster.namespace,
    doors: config.doors,
    ports,
    target: {
      open: (request) => daemon().open(request),
      close: (request) => daemon().close(request),
    },
    clock: systemClock,
    log,
    metrics,
    random: () => randomInt(1_000_000) / 1_000_000,
    dryRun: config.dryRun,
  });
}
