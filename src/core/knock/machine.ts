/**
 * Knock recognition: per (door sequence, source) progress through a port sequence. Pure and
 * clock-injected: every call takes `now` in milliseconds, nothing here reads a clock or a timer.
 *
 * knockd semantics, kept: the timeout runs from the first knock; a knock on a port of the sequence
 * out of place ends the attempt and is then retried as a first knock; TCP packets whose flags don't
 * match are ignored; other ports are ignored.
 * Deliberate improvements: state is per source, so interleaved clients never disturb each other; an
 * exact repeat of the previous knock within REPEAT_WINDOW_MS (a retransmitted SYN) is ignored instead
 * of breaking the sequence; memory is bounded by `maxTracked`, evicting the oldest attempt still on
 * its first knock before any that got further (a flood of first knocks cannot push out a client two
 * knocks in), and by a cap per source prefix.
 */
import { SourceAddress } from "../packet/address.js";
import { AttemptTable } from "./attempt-table.js";
import { PrefixCounts } from "./prefix-counts.js";
import type { Door } from "../types.js";
import type { Family, Knock, PortSpec, Proto, SourcePrefixes } from "../types.js";

/** Linux retransmits an unanswered SYN after 1 s, then 2 s later; each repeat slides the window. */
export const REPEAT_WINDOW_MS = 2000;

export type SequenceKind = "open" | "close";
/** "prefix_full": a first knock not tracked because its source prefix has its share of attempts. */
export type KnockResult = "progressed" | "completed" | "wrong_port" | "timed_out" | "evicted" | "repeated" | "flags_mismatch" | "prefix_full";

export interface TrackingLimits {
  /** Attempts in progress at most, over all sources. */
  maxTracked: number;
  /** Attempts in progress at most from one source prefix. */
  maxTrackedPerPrefix: number;
  /** Prefix lengths that count as one source network. */
  prefixes: SourcePrefixes;
}

/** One object, reused for every event: valid only during the `emit` call; copy what must outlive it. */
export interface KnockEvent {
  readonly result: KnockResult;
  readonly door: Door;
  readonly kind: SequenceKind;
  /** Source text, formatted when first read. */
  readonly src: string;
  readonly family: Family;
  /** Knocks matched so far in this attempt (after the event). */
  readonly stage: number;
}

class EventSlot extends SourceAddress implements KnockEvent {
  result: KnockResult = "progressed";
  kind: SequenceKind = "open";
  stage = 0;
  constructor(public door: Door) {
    super();
  }
}

interface Matcher {
  /** Index in `matchers`: the sequence number attempts are keyed by. */
  id: number;
  door: Door;
  kind: SequenceKind;
  sequence: readonly PortSpec[];
}

/** A number, not a string: this lookup runs for every captured packet. */
const portKey = (port: number, proto: Proto) => port * 2 + (proto === "udp" ? 1 : 0);

export class KnockMachine {
  private readonly table: AttemptTable;
  private readonly prefixes: PrefixCounts;
  private readonly maxPerPrefix: number;
  private readonly matchers: Matcher[] = [];
  private readonly byPort = new Map<number, Matcher[]>();
  /** Shortest sequence timeout of any door: attempts younger than this can't have timed out. */
  private readonly minTimeoutMs: number;
  /** Reused for every event, so the packet path allocates none: valid only during `emit`. */
  private readonly event: EventSlot;

  /** `seed` keys the state table's hash: the daemon passes a random one, so no one can pick colliding sources. */
  constructor(
    doors: readonly Door[],
    limits: TrackingLimits,
    private readonly emit: (event: KnockEvent) => void,
    seed: number,
  ) {
    this.table = new AttemptTable(limits.maxTracked, seed);
    this.prefixes = new PrefixCounts(limits.maxTracked, seed ^ 0x5bd1e995, limits.prefixes);
    this.maxPerPrefix = limits.maxTrackedPerPrefix;
    this.event = new EventSlot(doors[0] as Door);
    this.minTimeoutMs = Math.min(...doors.map((d) => d.seqTimeoutMs));
    for (const door of doors) {
      const sequences: [SequenceKind, readonly PortSpec[] | null][] = [["open", door.sequence], ["close", door.closeSequence]];
      for (const [kind, sequence] of sequences) {
        if (!sequence || sequence.length === 0) continue;
        const matcher: Matcher = { id: this.matchers.length, door, kind, sequence };
        this.matchers.push(matcher);
        for (const key of new Set(sequence.map((p) => portKey(p.port, p.proto)))) {
          const list = this.byPort.get(key) ?? [];
          list.push(matcher);
          this.byPort.set(key, list);
        }
      }
    }
  }

  /** Number of attempts in progress (one per source and sequence). */
  get tracked(): number {
    return this.table.size;
  }

  /** Every port+protocol that takes part in some sequence: what capture has to see. */
  knockPorts(): PortSpec[] {
    return [...this.byPort.keys()].map((k) => ({ port: k >> 1, proto: k & 1 ? "udp" : "tcp" }));
  }

  handle(knock: Knock, now: number): void {
    const matchers = this.byPort.get(portKey(knock.dstPort, knock.proto));
    if (!matchers) return;
    for (const matcher of matchers) this.step(matcher, knock, now);
  }

  private step(matcher: Matcher, knock: Knock, now: number): void {
    const { door, sequence, id } = matcher;
    const t = this.table;
    const is = (p: PortSpec | undefined) => p !== undefined && p.port === knock.dstPort && p.proto === knock.proto;
    let attempt = t.find(id, knock.family, knock.addr);
    if (knock.proto === "tcp") {
      const { set, clear } = door.tcpFlags;
      if ((knock.tcpFlags & set) !== set || (knock.tcpFlags & clear) !== 0) {
        this.sendFor(knock, "flags_mismatch", matcher, attempt < 0 ? 0 : t.stage[attempt]!);
        return;
      }
    }
    if (attempt >= 0 && now - t.startedAt[attempt]! > door.seqTimeoutMs) {
      const stage = t.stage[attempt]!;
      this.forget(attempt, knock.family, knock.addr);
      this.sendFor(knock, "timed_out", matcher, stage);
      attempt = -1;
    }
    if (attempt >= 0) {
      const stage = t.stage[attempt]!;
      if (is(sequence[stage])) {
        if (stage + 1 === sequence.length) {
          this.forget(attempt, knock.family, knock.addr);
          this.sendFor(knock, "completed", matcher, stage + 1);
        } else {
          t.stage[attempt] = stage + 1;
          t.lastAt[attempt] = now;
          t.promote(attempt);
          this.sendFor(knock, "progressed", matcher, stage + 1);
        }
        return;
      }
      if (is(sequence[stage - 1]) && now - t.lastAt[attempt]! <= REPEAT_WINDOW_MS) {
        t.lastAt[attempt] = now;
        this.sendFor(knock, "repeated", matcher, stage);
        return;
      }
      this.forget(attempt, knock.family, knock.addr);
      this.sendFor(knock, "wrong_port", matcher, stage);
    }
    if (!is(sequence[0])) return;
    if (sequence.length === 1) {
      this.sendFor(knock, "completed", matcher, 1);
      return;
    }
    if (this.prefixes.count(knock.family, knock.addr) >= this.maxPerPrefix) {
      this.sendFor(knock, "prefix_full", matcher, 0);
      return;
    }
    while (t.size >= t.maxEntries) this.drop(t.victim, "evicted");
    t.stage[t.add(id, knock.family, knock.addr, now)] = 1;
    this.prefixes.increment(knock.family, knock.addr);
    this.sendFor(knock, "progressed", matcher, 1);
  }

  /** Removes an attempt and reports it under its own source. */
  private drop(entry: number, result: KnockResult): void {
    const t = this.table;
    const e = this.event;
    t.copyAddress(entry, e.addr);
    e.addressChanged(t.family(entry));
    const matcher = this.matchers[t.sequence[entry]!]!;
    const stage = t.stage[entry]!;
    this.forget(entry, t.family(entry), e.addr);
    this.send(result, matcher, stage);
  }

  /** Ends an attempt; `addr` is its source, for the prefix count. */
  private forget(entry: number, family: Family, addr: Uint8Array): void {
    this.prefixes.decrement(family, addr);
    this.table.remove(entry);
  }

  private sendFor(knock: Knock, result: KnockResult, matcher: Matcher, stage: number): void {
    this.event.setAddress(knock.family, knock.addr, 0);
    this.send(result, matcher, stage);
  }

  private send(result: KnockResult, matcher: Matcher, stage: number): void {
    const e = this.event;
    e.result = result;
    e.door = matcher.door;
    e.kind = matcher.kind;
    e.stage = stage;
    this.emit(e);
  }

  /**
   * Drops attempts whose time is up, so the tracked count means "in progress". Walks oldest first
   * and stops at the first attempt younger than the shortest timeout: everything after it is younger.
   */
  sweep(now: number): void {
    const t = this.table;
    for (let e = t.oldest; e !== -1; ) {
      const age = now - t.startedAt[e]!;
      if (age <= this.minTimeoutMs) return;
      const next = t.next(e);
      if (age > this.matchers[t.sequence[e]!]!.door.seqTimeoutMs) this.drop(e, "timed_out");
      e = next;
    }
  }
}
