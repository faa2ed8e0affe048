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
import type { Family, Knock, PortSpec } from "./types.js";

/** Linux retransmits an unanswered SYN after 1 s, then 2 s later; each repeat slides the window. */
export const REPEAT_WINDOW_MS = 2000;

export type SequenceKind = "open" | "close";
export type KnockResult = "progressed" | "completed" | "wrong_port" | "timed_out" | "evicted" | "repeated" | "flags_mismatch";

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
  id: number;
  door: Door;
  kind: SequenceKind;
  sequence: readonly PortSpec[];
}

interface Attempt {
  matcher: Matcher;
  src: string;
  family: Family;
  stage: number;
  startedAt: number;
  lastAt: number;
}

const portKey = (port: number, proto: string) => `${port}/${proto}`;

export class KnockMachine {
  /** Insertion order is start order, which makes oldest-first eviction O(1). */
  private readonly attempts = new Map<string, Attempt>();
  private readonly byPort = new Map<string, Matcher[]>();

  constructor(
    doors: readonly Door[],
    private readonly maxTracked: number,
    private readonly emit: (event: KnockEvent) => void,
  ) {
    let id = 0;
    for (const door of doors) {
      const sequences: [SequenceKind, readonly PortSpec[] | null][] = [["open", door.sequence], ["close", door.closeSequence]];
      for (const [kind, sequence] of sequences) {
        if (!sequence || sequence.length === 0) continue;
        const matcher: Matcher = { id: id++, door, kind, sequence };
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
    return this.attempts.size;
  }

  /** Every port+protocol that takes part in some sequence: what capture has to see. */
  knockPorts(): PortSpec[] {
    return [...this.byPort.keys()].map((k) => {
      const [port, proto] = k.split("/");
      return { port: Number(port), proto: proto as PortSpec["proto"] };
    });
  }

  handle(knock: Knock, now: number): void {
    const matchers = this.byPort.get(portKey(knock.dstPort, knock.proto));
    if (!matchers) return;
    for (const matcher of matchers) this.step(matcher, knock, now);
  }

  private step(matcher: Matcher, knock: Knock, now: number): void {
    const { door, kind, sequence } = matcher;
    const event = (result: KnockResult, stage: number) =>
      this.emit({ result, door, kind, src: knock.src, family: knock.family, stage });
    const key = `${matcher.id}|${knock.src}`;
    if (knock.proto === "tcp") {
      const { set, clear } = door.tcpFlags;
      if ((knock.tcpFlags & set) !== set || (knock.tcpFlags & clear) !== 0) {
        event("flags_mismatch", this.attempts.get(key)?.stage ?? 0);
        return;
      }
    }
    const is = (p: PortSpec | undefined) => p !== undefined && p.port === knock.dstPort && p.proto === knock.proto;
    let attempt = this.attempts.get(key);
    if (attempt && now - attempt.startedAt > door.seqTimeoutMs) {
      this.attempts.delete(key);
      event("timed_out", attempt.stage);
      attempt = undefined;
    }
    if (attempt) {
      if (is(sequence[attempt.stage])) {
        attempt.stage++;
        attempt.lastAt = now;
        if (attempt.stage === sequence.length) {
          this.attempts.delete(key);
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
      this.attempts.delete(key);
      event("wrong_port", attempt.stage);
    }
    if (!is(sequence[0])) return;
    if (sequence.length === 1) {
      event("completed", 1);
      return;
    }
    this.evictFor(1);
    this.attempts.set(key, { matcher, src: knock.src, family: knock.family, stage: 1, startedAt: now, lastAt: now });
    event("progressed", 1);
  }

  private evictFor(incoming: number): void {
    while (this.attempts.size + incoming > this.maxTracked) {
      const oldest = this.attempts.entries().next();
      if (oldest.done) return;
      const [key, a] = oldest.value;
      this.attempts.delete(key);
      this.emit({ result: "evicted", door: a.matcher.door, kind: a.matcher.kind, src: a.src, family: a.family, stage: a.stage });
    }
  }

  /** Drops attempts whose time is up, so the tracked count means "in progress". O(tracked). */
  sweep(now: number): void {
    for (const [key, a] of this.attempts) {
      if (now - a.startedAt > a.matcher.door.seqTimeoutMs) {
        this.attempts.delete(key);
        this.emit({ result: "timed_out", door: a.matcher.door, kind: a.matcher.kind, src: a.src, family: a.family, stage: a.stage });
      }
    }
  }
}
