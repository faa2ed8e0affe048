/**
 * Random knock streams for the kernel engine's model tests: many sources, ports in and out of the
 * sequences, repeats, gaps around the sequence timeout and the repeat window. Seeded, so a failure
 * is replayed from its seed.
 */
import { KnockMachine, REPEAT_WINDOW_MS } from "../../src/core/knock/machine.js";
import { TcpFlag, type Door, type Proto } from "../../src/core/types.js";
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

/** What the capture engine's machine completes from `knocks`, in order, as "DOOR kind src" (TCP knocks are SYNs). */
export function machineCompletions(doors: readonly Door[], knocks: readonly StreamKnock[]): string[] {
  const out: string[] = [];
  const m = new KnockMachine(doors, { maxTracked: 100_000, maxTrackedPerPrefix: 100_000, prefixes: { v4: 24, v6: 64 } }, (e) => {
    if (e.result === "completed") out.push(`${e.door.name} ${e.kind} ${e.src}`);
  }, 1);
  for (const k of knocks) m.handle({ family: k.src.includes(":") ? 6 : 4, addr: ipBytes(k.src), src: k.src, proto: k.proto, dstPort: k.port, tcpFlags: k.proto === "tcp" ? TcpFlag.syn : 0 }, k.at);
  return out;
}
