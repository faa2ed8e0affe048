/**
 * Prometheus metrics. Labels are doors, results and reasons only: never addresses, so cardinality
 * stays bounded however many sources knock.
 *
 * Two sets. What moves before a grant (packets, knocks and their results, attempts tracked, capture
 * drops) tells an observer which ports are in the sequence and in what order, so it is served only
 * to an authenticated scrape (`registry`, the full set). The public set (`publicRegistry`) holds
 * what moves only after a grant or never on a packet: opens, closes, grants, errors, build and
 * process metrics.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { KnockResult } from "../../core/knock/machine.js";
import type { SpaRefusal } from "../../core/spa/verify.js";
import { ClusterMetrics } from "./cluster.js";

export type PacketResult = "seen" | "decoded" | "ignored" | "bogus_source" | "malformed";
export type CloseReason = "expired" | "close_sequence" | "replaced";
/**
 * What became of a datagram: verifySpa's refusals, and those of this path: `truncated` (the
 * capture or the IP packet cut it short), `replay_set_full` (the kernel replay set had no room:
 * refused, fail closed), `replay_check_failed` (the kernel could not be asked: refused).
 */
export type SpaResult = "accepted" | SpaRefusal | "truncated" | "replay_set_full" | "replay_check_failed";

/** A counter the packet path bumps with `cell.n++`; its Prometheus counter reads it at scrape time. */
export interface Cell {
  n: number;
}

/**
 * A counter whose values live in plain cells. prom-client's inc() hashes the label set on every
 * call, which at flood rates was a sixth of the packet path; here the cost moves to the scrape.
 */
function cellCounter<L extends string>(registry: Registry, name: string, help: string, labelNames: readonly L[]) {
  const cells: { labels: Record<L, string>; cell: Cell }[] = [];
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      this.reset();
      for (const { labels, cell } of cells) this.inc(labels, cell.n);
    },
  });
  return (labels: Record<L, string>): Cell => {
    const cell = { n: 0 };
    cells.push({ labels, cell });
    return cell;
  };
}

/** The cell of one (door, result) series, made on first use: a lookup in two small maps per packet. */
function doorResultCell<R extends string>(
  cells: Map<string, Map<R, Cell>>,
  make: (labels: Record<"door" | "result", string>) => Cell,
  door: string,
  result: R,
): Cell {
  let byResult = cells.get(door);
  if (!byResult) cells.set(door, (byResult = new Map()));
  let cell = byResult.get(result);
  if (!cell) byResult.set(result, (cell = make({ door, result })));
  return cell;
}

export interface MetricSources {
  tracked(): number;
  grants(): Promise<Map<string, number>>;
  /** Per interface, since start. */
  captureDropped(): Map<string, number>;
}

export const FIREWALL_OPERATIONS = ["grant", "revoke", "reconcile", "remove"] as const;
export type FirewallOperation = (typeof FIREWALL_OPERATIONS)[number];

export class Metrics {
  /** Everything: for an authenticated scrape. */
  readonly registry: Registry;
  /** Only what a packet cannot move before a grant: for anyone who can reach the port. */
  readonly publicRegistry = new Registry();
  /** What moves before a grant. */
  private readonly preGrant = new Registry();
  readonly packets: Record<PacketResult, Cell>;
  private readonly knockCell: (labels: Record<"door" | "result", string>) => Cell;
  /** door -> result -> cell, filled on first use. */
  private readonly knockCells = new Map<string, Map<KnockResult, Cell>>();
  private readonly spaCell: (labels: Record<"door" | "result", string>) => Cell;
  private readonly spaCells = new Map<string, Map<SpaResult, Cell>>();
  private readonly opens: Counter<"door">;
  private readonly closes: Counter<"door" | "reason">;
  readonly knockToOpen: Histogram;
  readonly firewallRepairs: Counter;
  private readonly firewallErrors: Counter<"operation">;
  readonly hookErrors: Counter<"door" | "hook">;
  readonly hookDropped: Counter<"door" | "hook">;
  readonly grantsReplaced: Counter<"door" | "reason">;
  readonly cluster: ClusterMetrics;

  constructor(
    doors: readonly string[],
    info: { version: string; revision: string; backend: string },
    sources: MetricSources,
  ) {
    const registers = [this.publicRegistry];
    const preGrant = [this.preGrant];
    // The event-loop-lag monitor samples on a timer: at prom-client's default 10 ms it woke the
    // idle daemon 100 times a second (~1% of a core). Each sample still measures the lag exactly.
    collectDefaultMetrics({ register: this.publicRegistry, eventLoopMonitoringPrecision: 200 });
    const packet = cellCounter(
      this.preGrant,
      "knockgate_packets_total",
      "Captured packets: seen by capture, decoded as TCP/UDP, ignored (not a candidate), bogus_source (loopback, multicast, broadcast, unspecified or IPv4-mapped sender), malformed (truncated or invalid).",
      ["result"],
    );
    this.packets = {
      seen: packet({ result: "seen" }),
      decoded: packet({ result: "decoded" }),
      ignored: packet({ result: "ignored" }),
      bogus_source: packet({ result: "bogus_source" }),
      malformed: packet({ result: "malformed" }),
    };
    this.knockCell = cellCounter(
      this.preGrant,
      "knockgate_knocks_total",
      "Knocks on sequence ports by door and what they did to the sender's attempt.",
      ["door", "result"],
    );
    // Pre-grant like the knocks: refusal counts answer a prober's "did that reach a signed door?".
    this.spaCell = cellCounter(
      this.preGrant,
      "knockgate_spa_packets_total",
      "Datagrams on signed doors' SPA ports by door and what became of them: accepted (granted), or the reason refused (bad_hmac, replay, stale, future, bad_format, port_not_allowed, address_refused, command_refused, nat_refused, too_short, too_long, truncated, ...).",
      ["door", "result"],
    );
    this.opens = new Counter({ name: "knockgate_opens_total", help: "Grants opened (or refreshed) by a completed sequence.", labelNames: ["door"], registers });
    this.closes = new Counter({
      name: "knockgate_closes_total",
      help: "Grants closed, by reason: expired (OPEN_FOR elapsed), close_sequence, or replaced (to make room under KNOCK_MAX_GRANTS or KNOCK_MAX_GRANTS_PER_PREFIX).",
      labelNames: ["door", "reason"],
      registers,
    });
    this.knockToOpen = new Histogram({
      name: "knockgate_knock_to_open_seconds",
      help: "From capturing the last knock of a sequence to the kernel confirming the grant.",
      buckets: [0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 1],
      registers,
    });
    this.firewallRepairs = new Counter({ name: "knockgate_firewall_repairs_total", help: "Firewall objects created or put back by reconcile.", registers });
    this.firewallErrors = new Counter({
      name: "knockgate_firewall_errors_total",
      help: "Failed firewall operations, by operation: grant, revoke, reconcile (the initial install included) or remove.",
      labelNames: ["operation"],
      registers,
    });
    for (const operation of FIREWALL_OPERATIONS) this.firewallErrors.labels(operation).inc(0);
    this.hookErrors = new Counter({
      name: "knockgate_hook_errors_total",
      help: "ON_OPEN/ON_CLOSE commands that failed, timed out or could not start.",
      labelNames: ["door", "hook"],
      registers,
    });
    this.grantsReplaced = new Counter({
      name: "knockgate_grants_replaced_total",
      help: "Grants taken out to make room for a new one: prefix_full (the source prefix had KNOCK_MAX_GRANTS_PER_PREFIX) or set_full (the door had KNOCK_MAX_GRANTS).",
      labelNames: ["door", "reason"],
      registers,
    });
    this.hookDropped = new Counter({
      name: "knockgate_hook_dropped_total",
      help: "ON_OPEN/ON_CLOSE commands never run because KNOCK_HOOK_CONCURRENCY were running and the queue behind them was full.",
      labelNames: ["door", "hook"],
      registers,
    });
    new Counter({
      name: "knockgate_capture_dropped_packets_total",
      help: "Packets the kernel dropped because a capture ring was full (libpcap's count): knocks among them were missed.",
      labelNames: ["interface"],
      registers: preGrant,
      collect() {
        this.reset();
        for (const [iface, n] of sources.captureDropped()) this.inc({ interface: iface }, n);
      },
    });
    new Gauge({
      name: "knockgate_tracked_sources",
      help: "Knock attempts in progress (one per source and sequence), bounded by KNOCK_MAX_TRACKED.",
      registers: preGrant,
      collect() {
        this.set(sources.tracked());
      },
    });
    new Gauge({
      name: "knockgate_grants",
      help: "Grants present in the kernel sets right now, by door (a signed grant once per port it opened).",
      labelNames: ["door"],
      registers,
      async collect() {
        const counts = await sources.grants().catch(() => new Map<string, number>());
        this.reset();
        for (const [door, n] of counts) this.set({ door }, n);
      },
    });
    new Gauge({
      name: "knockgate_build_info",
      help: "Version, source revision, firewall backend and Node.js runtime of this knockgate; always 1.",
      labelNames: ["version", "revision", "backend", "nodejs"],
      registers,
    }).set({ version: info.version, revision: info.revision, backend: info.backend, nodejs: process.version }, 1);
    this.cluster = new ClusterMetrics(registers);
    this.registry = Registry.merge([this.publicRegistry, this.preGrant]);
    // Zero series from the start, so rate() and absent() work before the first knock.
    // (.labels() alone does not export a series; inc(0) does.)
    for (const door of doors) {
      this.opens.labels(door).inc(0);
      for (const reason of ["expired", "close_sequence", "replaced"] as const) this.closes.labels(door, reason).inc(0);
      for (const reason of ["prefix_full", "set_full"] as const) this.grantsReplaced.labels(door, reason).inc(0);
      for (const result of ["completed", "wrong_port", "timed_out", "evicted"] as const) this.knockCellFor(door, result);
    }
  }

  knock(door: string, result: KnockResult): void {
    this.knockCellFor(door, result).n++;
  }

  private knockCellFor(door: string, result: KnockResult): Cell {
    return doorResultCell(this.knockCells, this.knockCell, door, result);
  }
  /** `by` 0 makes the series exist before the first datagram, so rate() and absent() work from the start. */
  spa(door: string, result: SpaResult, by = 1): void {
    doorResultCell(this.spaCells, this.spaCell, door, result).n += by;
  }

  opened(door: string): void {
    this.opens.labels(door).inc();
  }
  firewallFailed(operation: FirewallOperation): void {
    this.firewallErrors.labels(operation).inc();
  }
  closed(door: string, reason: CloseReason): void {
    this.closes.labels(door, reason).inc();
  }
}
