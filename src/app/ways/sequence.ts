/**
 * Knock sequences: packets on the doors' knock ports step a per-source state machine (core/knock);
 * a completed sequence asks the grant lifecycle to open the door's ports, a completed close
 * sequence to close what sequences opened.
 */
import { randomInt } from "node:crypto";
import { KnockMachine, type KnockEvent } from "../../core/knock/machine.js";
import type { Decoder } from "../../core/packet/decode.js";
import type { Config, PortSpec } from "../../core/types.js";
import type { Logger } from "../../adapters/log.js";
import type { Metrics } from "../../adapters/metrics/metrics.js";
import type { Grants } from "../grants.js";
import type { PacketWay } from "./way.js";

export interface SequenceDeps {
  config: Config;
  log: Logger;
  metrics: Metrics;
}

export class SequenceWay implements PacketWay {
  private readonly machine: KnockMachine;
  /** Capture time of the packet being handled: knock-to-open runs from here. */
  private packetAt = 0;

  constructor(
    private readonly deps: SequenceDeps,
    private readonly grants: Pick<Grants, "open" | "closeSequence">,
  ) {
    const { doors, maxTracked, maxTrackedPerPrefix, sourcePrefixes } = deps.config;
    this.machine = new KnockMachine(doors, { maxTracked, maxTrackedPerPrefix, prefixes: sourcePrefixes }, (e) => this.onKnockEvent(e), randomInt(2 ** 31));
  }

  /** Attempts in progress. */
  get tracked(): number {
    return this.machine.tracked;
  }

  ports(): PortSpec[] {
    return this.machine.knockPorts();
  }

  /** Every packet the other ways leave: the machine ignores ports of no sequence. */
  takes(): boolean {
    return true;
  }

  handle(decoder: Decoder, _frame: Uint8Array, capturedAt: number): void {
    this.packetAt = capturedAt;
    this.machine.handle(decoder.knock, capturedAt);
  }

  sweep(now: number): void {
    this.machine.sweep(now);
  }

  private onKnockEvent(event: KnockEvent): void {
    const { log, metrics } = this.deps;
    metrics.knock(event.door.name, event.result);
    // Guarded: under a flood this runs per packet, and building the object is the cost.
    if (log.isLevelEnabled("debug")) {
      log.debug({ event: "knock", door: event.door.name, src: event.src, sequence: event.kind, result: event.result, stage: event.stage });
    }
    if (event.result !== "completed") return;
    // The machine reuses `event`; what the grant needs is copied out here.
    const { door, src, family } = event;
    if (event.kind === "open") void this.grants.open({ door, family, src, via: "sequence", openForMs: door.openForMs, capturedAt: this.packetAt });
    else void this.grants.closeSequence(door, family, src);
  }
}
