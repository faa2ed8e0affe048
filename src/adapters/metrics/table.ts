/**
 * Every metric knockgate exports, declared once: name, type, help, labels, which set serves it, and
 * the series that exist at zero from the start. metrics.ts builds the registries from this table;
 * docs/metrics.md (Metrics) documents it, and a test holds the two together. Names, labels and meanings
 * are what users' dashboards and alerts query: change none of them lightly.
 *
 * Labels are doors, results and reasons only, never addresses, so cardinality stays bounded however
 * many sources knock.
 *
 * Two sets. `token`: what moves with knock traffic (packets, knocks and their results, attempts
 * tracked, capture drops, and the process and runtime series) tells an observer which ports are in a
 * sequence and in what order, so it is served only to a scrape with the bearer token. `public`: what
 * moves only after a grant, or never on a packet.
 */
import type { KnockResult } from "../../core/knock/machine.js";
import { REJECT_REASONS } from "../../core/cluster/knock-grant.js";
import type { ReplaceReason } from "../../core/grants/grant-book.js";
import type { SpaRefusal } from "../../core/spa/verify.js";

export const PACKET_RESULTS = ["seen", "decoded", "ignored", "bogus_source", "malformed"] as const;
export type PacketResult = (typeof PACKET_RESULTS)[number];
export const CLOSE_REASONS = ["expired", "close_sequence", "replaced"] as const;
export type CloseReason = (typeof CLOSE_REASONS)[number];
const REPLACE_REASONS = ["prefix_full", "set_full"] as const satisfies readonly ReplaceReason[];
export const FIREWALL_OPERATIONS = ["grant", "revoke", "reconcile", "remove"] as const;
export type FirewallOperation = (typeof FIREWALL_OPERATIONS)[number];
/**
 * What became of a datagram: verifySpa's refusals, and those of this path: `truncated` (the
 * capture or the IP packet cut it short), `busy` (MAX_PENDING_RECORDS of the door's datagrams were
 * waiting for their kernel write), `replay_set_full` (the kernel replay set had no room:
 * refused, fail closed), `replay_check_failed` (the kernel could not be asked: refused).
 */
export type SpaResult = "accepted" | SpaRefusal | "truncated" | "busy" | "replay_set_full" | "replay_check_failed";

/** public: anyone who reaches the port; token: only a scrape with KNOCK_METRICS_TOKEN_FILE's token. */
export type MetricSet = "public" | "token";

export interface MetricSpec {
  readonly name: string;
  readonly type: "counter" | "gauge" | "histogram";
  readonly help: string;
  readonly labels: readonly string[];
  readonly set: MetricSet;
  readonly buckets?: readonly number[];
  /**
   * Series at zero from the start, so rate() and absent() work before the first event: the values
   * of each label, all combinations; "doors" is every door's name, "signed doors" those with SPA.
   */
  readonly zero?: Readonly<Record<string, readonly string[] | "doors" | "signed doors">>;
  /** Bumped on the packet path: counted in plain cells and read at scrape time (see metrics.ts). */
  readonly cells?: true;
  /** Registered only when the Docker watcher is on (KNOCK_DOCKER). */
  readonly docker?: true;
}

export const METRICS = {
  packets: {
    name: "knockgate_packets_total",
    type: "counter",
    help: "Captured packets: seen by capture, decoded as TCP/UDP, ignored (not a candidate), bogus_source (a sender no client has: loopback, link-local, multicast, broadcast, unspecified, IPv4-mapped, or NAT64 of such an IPv4 address), malformed (truncated or invalid).",
    labels: ["result"],
    set: "token",
    cells: true,
    zero: { result: PACKET_RESULTS },
  },
  knocks: {
    name: "knockgate_knocks_total",
    type: "counter",
    help: "Knocks on sequence ports by door and what they did to the sender's attempt.",
    labels: ["door", "result"],
    set: "token",
    cells: true,
    zero: { door: "doors", result: ["completed", "wrong_port", "timed_out", "evicted"] satisfies KnockResult[] },
  },
  // Token-only like the knocks: refusal counts answer a prober's "did that reach a signed door?".
  spaPackets: {
    name: "knockgate_spa_packets_total",
    type: "counter",
    help: "Datagrams on signed doors' SPA ports by door and what became of them: accepted (granted), or the reason refused (bad_hmac, replay, stale, future, bad_format, port_not_allowed, address_refused, command_refused, nat_refused, too_short, too_long, truncated, ...).",
    labels: ["door", "result"],
    set: "token",
    cells: true,
    zero: { door: "signed doors", result: ["accepted", "bad_hmac", "replay"] satisfies SpaResult[] },
  },
  opens: {
    name: "knockgate_opens_total",
    type: "counter",
    help: "Grants opened (or refreshed) by a completed sequence.",
    labels: ["door"],
    set: "public",
    zero: { door: "doors" },
  },
  closes: {
    name: "knockgate_closes_total",
    type: "counter",
    help: "Grants closed, by reason: expired (OPEN_FOR elapsed), close_sequence, or replaced (to make room under KNOCK_MAX_GRANTS or KNOCK_MAX_GRANTS_PER_PREFIX).",
    labels: ["door", "reason"],
    set: "public",
    zero: { door: "doors", reason: CLOSE_REASONS },
  },
  knockToOpen: {
    name: "knockgate_knock_to_open_seconds",
    type: "histogram",
    help: "From capturing the last knock of a sequence to the kernel confirming the grant.",
    labels: [],
    set: "public",
    buckets: [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
  },
  firewallRepairs: {
    name: "knockgate_firewall_repairs_total",
    type: "counter",
    help: "Firewall objects created or put back by reconcile.",
    labels: [],
    set: "public",
  },
  grantsRestored: {
    name: "knockgate_grants_restored_total",
    type: "counter",
    help: "Grants the kernel lost (a set or table removed underneath) and reconcile put back from the daemon's books, with the time they had left.",
    labels: ["door"],
    set: "public",
    zero: { door: "doors" },
  },
  firewallErrors: {
    name: "knockgate_firewall_errors_total",
    type: "counter",
    help: "Failed firewall operations, by operation: grant, revoke, reconcile (the initial install included) or remove.",
    labels: ["operation"],
    set: "public",
    zero: { operation: FIREWALL_OPERATIONS },
  },
  hookErrors: {
    name: "knockgate_hook_errors_total",
    type: "counter",
    help: "ON_OPEN/ON_CLOSE commands that failed, timed out or could not start.",
    labels: ["door", "hook"],
    set: "public",
  },
  grantsReplaced: {
    name: "knockgate_grants_replaced_total",
    type: "counter",
    help: "Grants taken out to make room for a new one: prefix_full (the source prefix had KNOCK_MAX_GRANTS_PER_PREFIX) or set_full (the door had KNOCK_MAX_GRANTS).",
    labels: ["door", "reason"],
    set: "public",
    zero: { door: "doors", reason: REPLACE_REASONS },
  },
  hookDropped: {
    name: "knockgate_hook_dropped_total",
    type: "counter",
    help: "ON_OPEN/ON_CLOSE commands never run because KNOCK_HOOK_CONCURRENCY were running and the queue behind them was full.",
    labels: ["door", "hook"],
    set: "public",
  },
  captureDropped: {
    name: "knockgate_capture_dropped_packets_total",
    type: "counter",
    help: "Packets the kernel dropped because a capture ring was full (libpcap's count): knocks among them were missed.",
    labels: ["interface"],
    set: "token",
  },
  // Token-only like the packets: a count that moves with one crafted packet tells its sender so.
  packetErrors: {
    name: "knockgate_packet_errors_total",
    type: "counter",
    help: "Captured packets dropped because handling them failed (an exception in the decoder, the knock machine, the signed-door path or metrics); each is a bug worth reporting.",
    labels: [],
    set: "token",
  },
  trackedSources: {
    name: "knockgate_tracked_sources",
    type: "gauge",
    help: "Knock attempts in progress (one per source and sequence), bounded by KNOCK_MAX_TRACKED.",
    labels: [],
    set: "token",
  },
  grants: {
    name: "knockgate_grants",
    type: "gauge",
    help: "Grants present in the kernel sets right now, by door (a signed grant once per port it opened).",
    labels: ["door"],
    set: "public",
  },
  buildInfo: {
    name: "knockgate_build_info",
    type: "gauge",
    help: "Version, source revision, firewall backend and Node.js runtime of this knockgate; always 1.",
    labels: ["version", "revision", "backend", "nodejs"],
    set: "public",
  },
  // Docker: they move on container changes, never on a packet.
  protectedPorts: {
    name: "knockgate_protected_ports",
    type: "gauge",
    help: "Ports a door protects right now: its KNOCK_DOOR_<NAME>_PORTS joined with the host ports of labelled containers.",
    labels: ["door"],
    set: "public",
  },
  dockerContainers: {
    name: "knockgate_docker_containers",
    type: "gauge",
    help: "Containers (running or not) whose knockgate.door/knockgate.doors labels name the door.",
    labels: ["door"],
    set: "public",
    docker: true,
  },
  dockerReconnects: {
    name: "knockgate_docker_reconnects_total",
    type: "counter",
    help: "Times the Docker event stream was followed again after it broke or the engine was away; each one re-lists every container.",
    labels: [],
    set: "public",
    docker: true,
  },
  dockerConnected: {
    name: "knockgate_docker_connected",
    type: "gauge",
    help: "1 while the Docker event stream is followed, else 0 (the last known ports stay protected meanwhile).",
    labels: [],
    set: "public",
    docker: true,
  },
  labelConflicts: {
    name: "knockgate_label_conflicts",
    type: "gauge",
    help: "Docker label claims refused right now because another door owns the target (label_conflict in the log), by the door the label named.",
    labels: ["door"],
    set: "public",
    docker: true,
  },
  // Clusters (KNOCK_CLUSTER): they move only after a grant on some node, or when someone writes
  // KnockGrant objects, never on a packet of a knock.
  clusterPublished: {
    name: "knockgate_cluster_grants_published_total",
    type: "counter",
    help: "Grants of this node written to the API as KnockGrant objects.",
    labels: [],
    set: "public",
  },
  clusterPublishErrors: {
    name: "knockgate_cluster_publish_errors_total",
    type: "counter",
    help: "Failed writes of KnockGrant objects (each is retried with backoff).",
    labels: [],
    set: "public",
  },
  clusterPublishDropped: {
    name: "knockgate_cluster_publish_dropped_total",
    type: "counter",
    help: "Writes of KnockGrant objects given up because the queue of unsent writes was full (the API was away for long).",
    labels: [],
    set: "public",
  },
  clusterApplied: {
    name: "knockgate_cluster_grants_applied_total",
    type: "counter",
    help: "Grants of other nodes put into this node's kernel sets.",
    labels: [],
    set: "public",
  },
  clusterRevoked: {
    name: "knockgate_cluster_grants_revoked_total",
    type: "counter",
    help: "Grants taken out of this node's kernel sets because their KnockGrant was deleted (a close sequence on some node).",
    labels: [],
    set: "public",
  },
  clusterRejected: {
    name: "knockgate_cluster_grants_rejected_total",
    type: "counter",
    help: `KnockGrant objects of other nodes ignored, by reason: ${REJECT_REASONS.join(", ")} (too_long: more than the door allows).`,
    labels: ["reason"],
    set: "public",
    zero: { reason: REJECT_REASONS },
  },
  clusterWatchRestarts: {
    name: "knockgate_cluster_watch_restarts_total",
    type: "counter",
    help: "Times the watch of KnockGrant objects ended and was started again (a full re-list after 410 Gone counts too).",
    labels: [],
    set: "public",
  },
  clusterConnected: {
    name: "knockgate_cluster_connected",
    type: "gauge",
    help: "1 while this node follows the KnockGrant objects on the API server (KNOCK_CLUSTER=kubernetes), else 0.",
    labels: [],
    set: "public",
  },
  clusterLag: {
    name: "knockgate_cluster_lag_seconds",
    type: "histogram",
    help: "From a grant on its origin node (grantedAt in the object) to this node's kernel holding it; includes the clock difference of the two nodes.",
    labels: [],
    set: "public",
    buckets: [0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  },
} as const satisfies Record<string, MetricSpec>;

/**
 * prom-client's default metrics: process_* (CPU, memory, file descriptors), nodejs_* (heap, GC, event
 * loop). Token-only: the capture filter lets only knock ports through, so CPU time and event-loop
 * lag move with packets on them, and a scrape before and after a few thousand SYNs tells which ports
 * those are.
 */
export const DEFAULT_METRICS_SET: MetricSet = "token";
