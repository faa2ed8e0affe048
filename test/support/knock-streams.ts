/**
 * Random knock streams for the kernel engine's model tests: many sources, ports in and out of the
 * sequences, repeats, gaps around the sequence timeout and the repeat window. Seeded, so a failure
 * is replayed from its seed.
 */
import { KnockMachine, REPEAT_WINDOW_MS } from "../../src/core/knock/machine.js";
import { TcpFlag, type Door, type PortSpec, type Proto } from "../../src/core/types.js";
import { ipBytes } from "./frames.js";

export interface StreamKnock {
  /** Milliseconds since the stream's start. */
  at: number;
  src: string;
  port: number;
  proto: Proto;
}

/** mulberry32: small, seeded, good enough to pick knocks. */
export function random(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` knocks from `sources`, mostly on the doors' sequence ports, each after a gap of a few
 * milliseconds or (now and then) one well inside or well past the door's timeout or the repeat
 * window.
 */
export function knockStream(seed: number, doors: readonly Door[], sources: readonly string[], count: number, unrelated: readonly { port: number; proto: Proto }[]): StreamKnock[] {
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const ports = doors.flatMap((d) => [...d.sequence, ...(d.closeSequence ?? [])]);
  const timeout = Math.min(...doors.map((d) => d.seqTimeoutMs));
  const knocks: StreamKnock[] = [];
  let at = 0;
  for (let i = 0; i < count; i++) {
    const r = next();
    // Gaps: mostly short; sometimes past the repeat window, half a timeout, or past the timeout.
    // Fractional, so that no attempt's age lands exactly on a boundary (where the kernel's
    // "expired at" and the machine's "older than" differ by that one instant).
    at += r < 0.9 ? 1 + next() * 20 : r < 0.94 ? REPEAT_WINDOW_MS + 500 : r < 0.97 ? timeout / 2 : timeout + 1500;
    const p = next() < 0.9 ? pick(ports) : pick(unrelated);
    knocks.push({ at, src: pick(sources), port: p.port, proto: p.proto });
  }
  return knocks;
}

/**
 * Knock streams dense in what timing decides, for the real kernel where a stream costs real time:
 * each source mostly goes on with an attempt at one of the doors' sequences (its next knock in
 * order), now and then repeats its last knock or knocks a port out of place, and waits between
 * knocks either a few milliseconds or a time well to one side of the door's timeout or the repeat
 * window (20% or more from either, so that sent times decide it, not the kernel's clock). The
 * sources' timelines are merged, so their knocks interleave.
 */
export function attemptStream(seed: number, doors: readonly Door[], sources: readonly string[], count: number): StreamKnock[] {
  const next = random(seed);
  const pick = <T>(items: readonly T[]): T => items[Math.floor(next() * items.length)] as T;
  const sequences = doors.flatMap((d) => [d.sequence, ...(d.closeSequence ? [d.closeSequence] : [])].map((sequence) => ({ sequence, timeout: d.seqTimeoutMs })));
  const knocks: StreamKnock[] = [];
  for (const src of sources) {
    let at = next() * 50;
    let current = pick(sequences);
    let step = 0;
    let last: PortSpec | null = null;
    for (let i = 0; i < Math.ceil(count / sources.length); i++) {
      const r = next();
      // A repeat goes on with the attempt (as a retransmission would); a stray knock gives it up.
      const repeat = r < 0.15 && last !== null;
      const port: PortSpec = repeat ? (last as PortSpec) : r < 0.25 ? pick(sequences.flatMap((s) => s.sequence)) : (current.sequence[step] as PortSpec);
      knocks.push({ at, src, port: port.port, proto: port.proto });
      last = port;
      if (!repeat) step = port === current.sequence[step] ? step + 1 : 0;
      if (step >= current.sequence.length) {
        current = pick(sequences);
        step = 0;
      }
      const g = next();
      const T = current.timeout;
      // Long gaps vary by up to 10% either way, so that no sum of them lands exactly on a timeout.
      at += g < 0.6 ? 5 + next() * 40 : pick([0.3 * T, 0.6 * T, 1.4 * T, 0.6 * REPEAT_WINDOW_MS, 1.4 * REPEAT_WINDOW_MS]) * (0.9 + 0.2 * next());
    }
  }
  return knocks.sort((a, b) => a.at - b.at);
}

/** What the capture engine's machine completes from `knocks`, in order, as "DOOR kind src" (TCP knocks are SYNs). */
export function machineCompletions(doors: readonly Door[], knocks: readonly StreamKnock[]): string[] {
  const out: string[] = [];
  const m = new KnockMachine(doors, { maxTracked: 100_000, maxTrackedPerPrefix: 100_000, prefixes: { v4: 24, v6: 64 } }, (e) => {
    if (e.result === "completed") out.push(`${e.door.name} ${e.kind} ${e.src}`);
  }, 1);
  for (const k of knocks) m.handle({ family: k.src.includes(":") ? 6 : 4, addr: ipBytes(k.src), src: k.src, proto: k.proto, dstPort: k.port, tcpFlags: k.proto === "tcp" ? TcpFlag.syn : 0 }, k.at);
  return out;
}
