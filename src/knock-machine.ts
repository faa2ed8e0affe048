/**
 * Knock recognition: per (door sequence, source) progress through a port sequence. Pure and
 * clock-injected: every call takes `now` in milliseconds, nothing here reads a clock or a timer.
 *
 * knockd semantics, kept: the timeout runs from the first knock; a knock on a port of the sequence
 * out of place ends the attempt and is then retried as a first knock; TCP packets whose flags don't
 * match are ignored; other ports are ignored.
 * Deliberate improvements: state is per source, so interleaved clients never disturb each other; an
 * exact repeat of the previous knock within REPEAT_WINDOW_MS (a retransmitted SYN) is ignored instead
 * of breaking the sequence; memory is bounded by `maxTracked` with oldest-first eviction.
 */
import type { Door } from "./config.js";
import type { Family, Knock, PortSpec, Proto } from "./types.js";

/** Linux retransmits an unanswered SYN after 1 s, then 2 s later; each repeat slides the window. */
export const REPEAT_WINDOW_MS = 2000;

export type SequenceKind = "open" | "close";
export type KnockResult = "progressed" | "completed" | "wrong_port" | "timed_out" | "evicted" | "repeated" | "flags_mismatch";

/** One object, reused for every event: valid only during the `emit` call; copy what must outlive it. */
export interface KnockEvent {
  result: KnockResult;
  door: Door;
  kind: SequenceKind;
  src: string;
  family: Family;
  /** Knocks matched so far in this attempt (after the event). */
  stage: number;
}

interface Matcher {
  door: Door;
  kind: SequenceKind;
  sequence: readonly PortSpec[];
  /** Attempts on this sequence by source address. */
  attempts: Map<string, Attempt>;
}

interface Attempt {
  matcher: Matcher;
  src: string;
  family: Family;
  stage: number;
  startedAt: number;
  lastAt: number;
  /** Neighbours in start order. */
  older: Attempt | null;
  newer: Attempt | null;
}

/** A number, not a string: this lookup runs for every captured packet. */
const portKey = (port: number, proto: Proto) => port * 2 + (proto === "udp" ? 1 : 0);

export class KnockMachine {
  private count = 0;
  /**
   * Attempts in start order, linked through the attempts themselves: finding the oldest is O(1).
   * (A Map's own order would do in theory, but V8 skips deleted slots from the front on every
   * `entries().next()`, which made eviction under a source sweep O(n).)
   */
  private oldest: Attempt | null = null;
  private newest: Attempt | null = null;
  private readonly byPort = new Map<number, Matcher[]>();
  /** Reused for every event, so the packet path allocates none: valid only during `emit`. */
  private readonly event: KnockEvent;

  constructor(
    doors: readonly Door[],
    private readonly maxTracked: number,
    private readonly emit: (event: KnockEvent) => void,
  ) {
    this.event = { result: "progressed", door: doors[0] as Door, kind: "open", src: "", family: 4, stage: 0 };
    for (const door of doors) {
      const sequences: [SequenceKind, readonly PortSpec[] | null][] = [["open", door.sequence], ["close", door.closeSequence]];
      for (const [kind, sequence] of sequences) {
        if (!sequence || sequence.length === 0) continue;
        const matcher: Matcher = { door, kind, sequence, attempts: new Map() };
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
    return this.count;
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
    const { door, sequence, attempts } = matcher;
    const event = (result: KnockResult, stage: number) => this.send(result, matcher, knock.src, knock.family, stage);
    if (knock.proto === "tcp") {
      const { set, clear } = door.tcpFlags;
      if ((knock.tcpFlags & set) !== set || (knock.tcpFlags & clear) !== 0) {
        event("flags_mismatch", attempts.get(knock.src)?.stage ?? 0);
        return;
      }
    }
    const is = (p: PortSpec | undefined) => p !== undefined && p.port === knock.dstPort && p.proto === knock.proto;
    let attempt = attempts.get(knock.src);
    if (attempt && now - attempt.startedAt > door.seqTimeoutMs) {
      this.remove(attempt);
      event("timed_out", attempt.stage);
      attempt = undefined;
    }
    if (attempt) {
      if (is(sequence[attempt.stage])) {
        attempt.stage++;
        attempt.lastAt = now;
        if (attempt.stage === sequence.length) {
          this.remove(attempt);
          event("completed", attempt.stage);
        } else {
          event("progressed", attempt.stage);
        }
        return;
      }
      if (is(sequence[attempt.stage - 1]) && now - attempt.lastAt <= REPEAT_WINDOW_MS) {
        attempt.lastAt = now;
        event("repeated", attempt.stage);
        return;
      }
      this.remove(attempt);
      event("wrong_port", attempt.stage);
    }
    if (!is(sequence[0])) return;
    if (sequence.length === 1) {
      event("completed", 1);
      return;
    }
    while (this.count >= this.maxTracked && this.oldest) {
      const evicted = this.oldest;
      this.remove(evicted);
      this.emitFor(evicted, "evicted");
    }
    this.add({ matcher, src: knock.src, family: knock.family, stage: 1, startedAt: now, lastAt: now, older: null, newer: null });
    event("progressed", 1);
  }

  private add(a: Attempt): void {
    a.matcher.attempts.set(a.src, a);
    this.count++;
    a.older = this.newest;
    if (this.newest) this.newest.newer = a;
    else this.oldest = a;
    this.newest = a;
  }

  private remove(a: Attempt): void {
    a.matcher.attempts.delete(a.src);
    this.count--;
    if (a.older) a.older.newer = a.newer;
    else this.oldest = a.newer;
    if (a.newer) a.newer.older = a.older;
    else this.newest = a.older;
    a.older = a.newer = null;
  }

  private emitFor(a: Attempt, result: KnockResult): void {
    this.send(result, a.matcher, a.src, a.family, a.stage);
  }

  private send(result: KnockResult, matcher: Matcher, src: string, family: Family, stage: number): void {
    const e = this.event;
    e.result = result;
    e.door = matcher.door;
    e.kind = matcher.kind;
    e.src = src;
    e.family = family;
    e.stage = stage;
    this.emit(e);
  }

  /** Drops attempts whose time is up, so the tracked count means "in progress". O(tracked). */
  sweep(now: number): void {
    for (let a = this.oldest; a !== null; ) {
      const next = a.newer;
      if (now - a.startedAt > a.matcher.door.seqTimeoutMs) {
        this.remove(a);
        this.emitFor(a, "timed_out");
      }
      a = next;
    }
  }
}
