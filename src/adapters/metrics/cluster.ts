/**
 * Metrics of grants shared between nodes (KNOCK_CLUSTER). All public: they move only after a grant
 * on some node, or when someone writes KnockGrant objects, never on a packet of a knock.
 */
import { Counter, Histogram, type Registry } from "prom-client";
import { REJECT_REASONS, type RejectReason } from "../../core/cluster/knock-grant.js";

export class ClusterMetrics {
  readonly published: Counter;
  readonly publishErrors: Counter;
  readonly publishDropped: Counter;
  readonly applied: Counter;
  readonly revoked: Counter;
  private readonly rejectedBy: Counter<"reason">;
  readonly watchRestarts: Counter;
  readonly lag: Histogram;

  constructor(registers: Registry[]) {
    this.published = new Counter({ name: "knockgate_cluster_grants_published_total", help: "Grants of this node written to the API as KnockGrant objects.", registers });
    this.publishErrors = new Counter({
      name: "knockgate_cluster_publish_errors_total",
      help: "Failed writes of KnockGrant objects (each is retried with backoff).",
      registers,
    });
    this.publishDropped = new Counter({
      name: "knockgate_cluster_publish_dropped_total",
      help: "Writes of KnockGrant objects given up because the queue of unsent writes was full (the API was away for long).",
      registers,
    });
    this.applied = new Counter({ name: "knockgate_cluster_grants_applied_total", help: "Grants of other nodes put into this node's kernel sets.", registers });
    this.revoked = new Counter({
      name: "knockgate_cluster_grants_revoked_total",
      help: "Grants taken out of this node's kernel sets because their KnockGrant was deleted (a close sequence on some node).",
      registers,
    });
    this.rejectedBy = new Counter({
      name: "knockgate_cluster_grants_rejected_total",
      help: `KnockGrant objects of other nodes ignored, by reason: ${REJECT_REASONS.join(", ")} (too_long: more than the door allows).`,
      labelNames: ["reason"],
      registers,
    });
    for (const reason of REJECT_REASONS) this.rejectedBy.labels(reason).inc(0);
    this.watchRestarts = new Counter({
      name: "knockgate_cluster_watch_restarts_total",
      help: "Times the watch of KnockGrant objects ended and was started again (a full re-list after 410 Gone counts too).",
      registers,
    });
    this.lag = new Histogram({
      name: "knockgate_cluster_lag_seconds",
      help: "From a grant on its origin node (grantedAt in the object) to this node's kernel holding it; includes the clock difference of the two nodes.",
      buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers,
    });
  }

  rejected(reason: RejectReason): void {
    this.rejectedBy.labels(reason).inc();
  }
}
