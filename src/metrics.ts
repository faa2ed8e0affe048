/**
 * Prometheus metrics. Labels are doors, results and reasons only: never addresses, so cardinality
 * stays bounded however many sources knock.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { KnockResult } from "./knock-machine.js";

export type PacketResult = "seen" | "decoded" | "ignored" | "malformed";
export type CloseReason = "expired" | "close_sequence";

export interface MetricSources {
  tracked(): number;
  grants(): Promise<Map<string, number>>;
}

export class Metrics {
  readonly registry = new Registry();
  readonly packets: Record<PacketResult, Counter.Internal>;
  private readonly knocks: Counter<"door" | "result">;
  private readonly opens: Counter<"door">;
  private readonly closes: Counter<"door" | "reason">;
  readonly knockToOpen: Histogram;
  readonly firewallRepairs: Counter;
  readonly firewallErrors: Counter;
  readonly hookErrors: Counter<"door" | "hook">;

  constructor(
    doors: readonly string[],
    info: { version: string; backend: string },
    sources: MetricSources,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const packets = new Counter({
      name: "knockgate_packets_total",
      help: "Captured packets: seen by capture, decoded as TCP/UDP, ignored (not a candidate), malformed (truncated or invalid).",
      labelNames: ["result"],
      registers,
    });
    this.packets = {
      seen: packets.labels("seen"),
      decoded: packets.labels("decoded"),
      ignored: packets.labels("ignored"),
      malformed: packets.labels("malformed"),
    };
    this.knocks = new Counter({
      name: "knockgate_knocks_total",
      help: "Knocks on sequence ports by door and what they did to the sender's attempt.",
      labelNames: ["door", "result"],
      registers,
    });
    this.opens = new Counter({ name: "knockgate_opens_total", help: "Grants opened (or refreshed) by a completed sequence.", labelNames: ["door"], registers });
    this.closes = new Counter({
      name: "knockgate_closes_total",
      help: "Grants closed, by reason: expired (OPEN_FOR elapsed) or close_sequence.",
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
    this.firewallErrors = new Counter({ name: "knockgate_firewall_errors_total", help: "Failed firewall changes (grant, revoke, reconcile, remove).", registers });
    this.hookErrors = new Counter({
      name: "knockgate_hook_errors_total",
      help: "ON_OPEN/ON_CLOSE commands that failed, timed out or could not start.",
      labelNames: ["door", "hook"],
      registers,
    });
    new Gauge({
      name: "knockgate_tracked_sources",
      help: "Knock attempts in progress (one per source and sequence), bounded by KNOCK_MAX_TRACKED.",
      registers,
      collect() {
        this.set(sources.tracked());
      },
    });
    new Gauge({
      name: "knockgate_grants",
      help: "Grants present in the kernel sets right now, by door.",
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
      help: "Version and firewall backend of this knockgate; always 1.",
      labelNames: ["version", "backend", "nodejs"],
      registers,
    }).set({ version: info.version, backend: info.backend, nodejs: process.version }, 1);
    // Zero series from the start, so rate() and absent() work before the first knock.
    // (.labels() alone does not export a series; inc(0) does.)
    for (const child of Object.values(this.packets)) child.inc(0);
    for (const door of doors) {
      this.opens.labels(door).inc(0);
      for (const reason of ["expired", "close_sequence"] as const) this.closes.labels(door, reason).inc(0);
      for (const result of ["completed", "wrong_port", "timed_out", "evicted"] as const) this.knocks.labels(door, result).inc(0);
    }
  }

  knock(door: string, result: KnockResult): void {
    this.knocks.labels(door, result).inc();
  }
  opened(door: string): void {
    this.opens.labels(door).inc();
  }
  closed(door: string, reason: CloseReason): void {
    this.closes.labels(door, reason).inc();
  }
}
