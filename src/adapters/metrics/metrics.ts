/**
 * Prometheus metrics, built from the table in table.ts: each metric's set picks its registry, and
 * the series the table starts at zero are made here, in one place, when the registries are built.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { EffectiveDoor } from "../../core/docker/desired.js";
import type { Conflict } from "../../core/protection/targets.js";
import type { KnockResult } from "../../core/knock/machine.js";
import type { RejectReason } from "../../core/cluster/knock-grant.js";
import type { Door } from "../../core/types.js";
import {
  DEFAULT_METRICS_SET,
  METRICS,
  PACKET_RESULTS,
  type CloseReason,
  type FirewallOperation,
  type MetricSet,
  type MetricSpec,
  type PacketResult,
  type SpaResult,
} from "./table.js";

/** A counter the packet path bumps with `cell.n++`; its Prometheus counter reads it at scrape time. */
export interface Cell {
  n: number;
}

type Labels<S extends MetricSpec> = S["labels"][number];

/**
 * A counter (of one or two labels) whose values live in plain cells. prom-client's inc() hashes the
 * label set on every call, which at flood rates was a sixth of the packet path; here the cost moves
 * to the scrape. A cell is found with a lookup in a small map per label, made on first use.
 */
class CellCounter {
  private readonly cells = new Map<string, Cell | Map<string, Cell>>();
  private readonly all: { labels: Record<string, string>; cell: Cell }[] = [];

  constructor(
    private readonly spec: MetricSpec,
    registry: Registry,
  ) {
    const all = this.all;
    new Counter({
      name: spec.name,
      help: spec.help,
      labelNames: spec.labels,
      registers: [registry],
      collect() {
        this.reset();
        for (const { labels, cell } of all) this.inc(labels, cell.n);
      },
    });
  }

  /** The cell of the series with these label values, in the table's label order. */
  at(first: string, second?: string): Cell {
    let holder = this.cells;
    if (second !== undefined) {
      let inner = holder.get(first) as Map<string, Cell> | undefined;
      if (!inner) holder.set(first, (inner = new Map()));
      holder = inner;
    }
    const key = second ?? first;
    let cell = holder.get(key) as Cell | undefined;
    if (!cell) {
      holder.set(key, (cell = { n: 0 }));
      const values = second === undefined ? [first] : [first, second];
      this.all.push({ labels: Object.fromEntries(this.spec.labels.map((l, i) => [l, values[i] as string])), cell });
    }
    return cell;
  }
}

export interface DockerMetricSources {
  readonly enabled: boolean;
  effective(): EffectiveDoor[];
  /** Label claims refused right now (another door owns the target). */
  conflicts(): readonly Conflict[];
  /** Following the engine's event stream now. */
  connected(): boolean;
  reconnects(): number;
}

export interface MetricSources {
  tracked(): number;
  grants(): Promise<Map<string, number>>;
  /** Per interface, since start. */
  captureDropped(): Map<string, number>;
  /** The Docker label watcher; without it, no Docker metrics (tests, the bench). */
  docker?: DockerMetricSources;
}

/** What the cluster sync counts (KNOCK_CLUSTER). */
export interface ClusterMetrics {
  readonly published: Counter;
  readonly publishErrors: Counter;
  readonly publishDropped: Counter;
  readonly applied: Counter;
  readonly revoked: Counter;
  rejected(reason: RejectReason): void;
  readonly watchRestarts: Counter;
  /** 1 while the watch of KnockGrants is up. */
  readonly connected: Gauge;
  readonly lag: Histogram;
}

/** Each label set a spec starts at zero: all combinations of its `zero` values. */
export function zeroSeries(spec: MetricSpec, doors: readonly Pick<Door, "name" | "spa">[]): Record<string, string>[] {
  if (!spec.zero) return [];
  let series: Record<string, string>[] = [{}];
  for (const [label, values] of Object.entries(spec.zero)) {
    const list =
      values === "doors" ? doors.map((d) => d.name) : values === "signed doors" ? doors.filter((d) => d.spa !== null).map((d) => d.name) : values;
    series = series.flatMap((s) => list.map((v) => ({ ...s, [label]: v })));
  }
  return series;
}

export class Metrics {
  /** Everything: for an authenticated scrape. */
  readonly registry: Registry;
  /** Only what moves after a grant or never on a packet: for anyone who can reach the port. */
  readonly publicRegistry = new Registry();
  /** What moves with knock traffic. */
  private readonly tokenRegistry = new Registry();
  /** How each metric made so far starts a series at zero. */
  private readonly starts: [MetricSpec, (labels: Record<string, string>) => void][] = [];
  readonly packets: Record<PacketResult, Cell>;
  /** Packets dropped because handling them threw (a bug, never a packet's fault): rare, so a plain counter. */
  readonly packetErrors: Counter;
  private readonly knocks: CellCounter;
  private readonly spaPackets: CellCounter;
  private readonly opens: Counter<Labels<typeof METRICS.opens>>;
  private readonly closes: Counter<Labels<typeof METRICS.closes>>;
  readonly knockToOpen: Histogram;
  readonly firewallRepairs: Counter;
  readonly grantsRestored: Counter<Labels<typeof METRICS.grantsRestored>>;
  private readonly firewallErrors: Counter<Labels<typeof METRICS.firewallErrors>>;
  readonly hookErrors: Counter<Labels<typeof METRICS.hookErrors>>;
  readonly hookDropped: Counter<Labels<typeof METRICS.hookDropped>>;
  readonly grantsReplaced: Counter<Labels<typeof METRICS.grantsReplaced>>;
  readonly cluster: ClusterMetrics;

  constructor(
    doors: readonly Pick<Door, "name" | "spa">[],
    info: { version: string; revision: string; backend: string },
    sources: MetricSources,
  ) {
    // The event-loop-lag monitor samples on a timer: at prom-client's default 10 ms it woke the
    // idle daemon 100 times a second (~1% of a core). Each sample still measures the lag exactly.
    collectDefaultMetrics({ register: this.registryOf(DEFAULT_METRICS_SET), eventLoopMonitoringPrecision: 200 });
    const packets = this.cellCounter(METRICS.packets);
    this.knocks = this.cellCounter(METRICS.knocks);
    this.spaPackets = this.cellCounter(METRICS.spaPackets);
    this.opens = this.counter(METRICS.opens);
    this.closes = this.counter(METRICS.closes);
    this.knockToOpen = this.histogram(METRICS.knockToOpen);
    this.firewallRepairs = this.counter(METRICS.firewallRepairs);
    this.grantsRestored = this.counter(METRICS.grantsRestored);
    this.firewallErrors = this.counter(METRICS.firewallErrors);
    this.hookErrors = this.counter(METRICS.hookErrors);
    this.grantsReplaced = this.counter(METRICS.grantsReplaced);
    this.hookDropped = this.counter(METRICS.hookDropped);
    this.counter(METRICS.captureDropped, function () {
      this.reset();
      for (const [iface, n] of sources.captureDropped()) this.inc({ interface: iface }, n);
    });
    this.packetErrors = this.counter(METRICS.packetErrors);
    this.gauge(METRICS.trackedSources, function () {
      this.set(sources.tracked());
    });
    this.gauge(METRICS.grants, async function () {
      const counts = await sources.grants().catch(() => new Map<string, number>());
      this.reset();
      for (const [door, n] of counts) this.set({ door }, n);
    });
    this.gauge(METRICS.buildInfo).set({ version: info.version, revision: info.revision, backend: info.backend, nodejs: process.version }, 1);
    const { docker } = sources;
    if (docker) {
      this.gauge(METRICS.protectedPorts, function () {
        for (const d of docker.effective()) this.set({ door: d.door }, d.ports.length);
      });
      if (docker.enabled) {
        this.gauge(METRICS.dockerContainers, function () {
          for (const d of docker.effective()) this.set({ door: d.door }, d.containers);
        });
        this.counter(METRICS.dockerReconnects, function () {
          this.reset();
          this.inc(docker.reconnects());
        });
        this.gauge(METRICS.dockerConnected, function () {
          this.set(docker.connected() ? 1 : 0);
        });
        this.gauge(METRICS.labelConflicts, function () {
          this.reset();
          for (const d of docker.effective()) this.set({ door: d.door }, 0);
          for (const c of docker.conflicts()) this.inc({ door: c.claim.door });
        });
      }
    }
    const rejected = this.counter(METRICS.clusterRejected);
    this.cluster = {
      published: this.counter(METRICS.clusterPublished),
      publishErrors: this.counter(METRICS.clusterPublishErrors),
      publishDropped: this.counter(METRICS.clusterPublishDropped),
      applied: this.counter(METRICS.clusterApplied),
      revoked: this.counter(METRICS.clusterRevoked),
      rejected: (reason) => rejected.labels(reason).inc(),
      watchRestarts: this.counter(METRICS.clusterWatchRestarts),
      connected: this.gauge(METRICS.clusterConnected),
      lag: this.histogram(METRICS.clusterLag),
    };
    this.registry = Registry.merge([this.publicRegistry, this.tokenRegistry]);
    // Zero series from the start, so rate() and absent() work before the first event.
    for (const [spec, start] of this.starts) for (const labels of zeroSeries(spec, doors)) start(labels);
    this.packets = Object.fromEntries(PACKET_RESULTS.map((r) => [r, packets.at(r)])) as Record<PacketResult, Cell>;
  }

  knock(door: string, result: KnockResult): void {
    this.knocks.at(door, result).n++;
  }
  spa(door: string, result: SpaResult): void {
    this.spaPackets.at(door, result).n++;
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

  private registryOf(set: MetricSet): Registry {
    return set === "public" ? this.publicRegistry : this.tokenRegistry;
  }

  private cellCounter(spec: MetricSpec): CellCounter {
    const counter = new CellCounter(spec, this.registryOf(spec.set));
    this.starts.push([spec, (labels) => counter.at(...(spec.labels.map((l) => labels[l] as string) as [string, string?]))]);
    return counter;
  }

  private counter<S extends MetricSpec>(spec: S, collect?: (this: Counter<Labels<S>>) => void): Counter<Labels<S>> {
    const { name, help, labels } = spec;
    const counter = new Counter<Labels<S>>({ name, help, labelNames: labels, registers: [this.registryOf(spec.set)], ...(collect ? { collect } : {}) });
    // .labels() alone does not export a series; inc(0) does.
    this.starts.push([spec, (values) => counter.labels(values as Partial<Record<Labels<S>, string>>).inc(0)]);
    return counter;
  }

  private gauge<S extends MetricSpec>(spec: S, collect?: (this: Gauge<Labels<S>>) => void | Promise<void>): Gauge<Labels<S>> {
    const { name, help, labels } = spec;
    return new Gauge<Labels<S>>({ name, help, labelNames: labels, registers: [this.registryOf(spec.set)], ...(collect ? { collect } : {}) });
  }

  private histogram(spec: MetricSpec): Histogram {
    const { name, help, labels, buckets } = spec;
    return new Histogram({ name, help, labelNames: labels, registers: [this.registryOf(spec.set)], ...(buckets ? { buckets: [...buckets] } : {}) });
  }
}
