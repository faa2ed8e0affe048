/**
 * The bench's client agent, inside the client namespace: knocks with raw frames (exact "last knock
 * sent" time, any of the client's addresses as source) and probes the protected port with real
 * sockets. JSON-lines RPC on stdin/stdout (bench/rpc.ts). test/support/agent.ts has no source choice
 * for knock-to-open and no concurrent rounds, hence this one.
 */
import { randomBytes, randomInt } from "node:crypto";
import { createRequire } from "node:module";
import { connect } from "node:net";
import { performance } from "node:perf_hooks";
import { ipBytes } from "../test/support/frames.js";
import { serveRpc } from "./rpc.js";
import { KNOCK_PORTS, LEGIT_NET_V4, LEGIT_NET_V6, Rng, SPA_PORT, readListenedFrame, SynFrame, UdpFrame, type CapSender } from "./wire.js";
import { accessPlaintext, encodeSpa } from "../src/core/spa/encode.js";
import type { SpaKeys } from "../src/core/spa/verify.js";
import { tryConnect } from "../test/support/connect.js";
import { knock as knockWithSockets } from "../src/cli/knock-client.js";

let cap: CapSender | null = null;
const frames = new Map<string, SynFrame>();
let srcMac = "";
let dstMac = "";
const rng = new Rng(4242);

function frameFor(dst: string): SynFrame {
  let f = frames.get(dst);
  if (!f) {
    f = new SynFrame(srcMac, dstMac, dst);
    frames.set(dst, f);
  }
  return f;
}

/** Set by init for the signed-door contenders: a knock is then one SPA datagram. */
let spaKeys: SpaKeys | null = null;
let udpFrame: UdpFrame | null = null;

/** One SPA datagram from `src` asking to open the service port for `src`, fresh randomness each time. */
function spaKnock(src: string, dst: string, keys: SpaKeys): number {
  if (!cap) throw new Error("init first");
  udpFrame ??= new UdpFrame(srcMac, dstMac, dst);
  const rand = `${randomInt(1e8)}`.padStart(8, "0") + `${randomInt(1e8)}`.padStart(8, "0");
  const plaintext = accessPlaintext({ rand, username: "bench", timestamp: Math.floor(Date.now() / 1000), address: src, ports: [{ proto: "tcp", port: 22 }], clientTimeoutS: null });
  const payload = encodeSpa(plaintext, keys, randomBytes(8));
  const length = udpFrame.payload().write(payload, "latin1");
  const n = udpFrame.set(ipBytes(src).readUInt32BE(0), 20000 + rng.below(40000), SPA_PORT, length);
  cap.send(udpFrame.buf, n);
  return performance.now();
}

/** Sends the whole sequence back to back (or one SPA datagram); returns performance.now() right after the last frame. */
function knock(src: string, dst: string): number {
  if (!cap) throw new Error("init first");
  if (spaKeys) return spaKnock(src, dst, spaKeys);
  const f = frameFor(dst);
  for (const port of KNOCK_PORTS) {
    const buf = f.setText(src, 20000 + rng.below(40000), port);
    cap.send(buf, buf.length);
  }
  return performance.now();
}

interface ProbeArgs {
  dst: string;
  port: number;
  /** For the first denseMs after the knock a probe every denseStepMs, then one every probeEveryMs. */
  denseMs: number;
  denseStepMs: number;
  probeEveryMs: number;
  timeoutMs: number;
}

/**
 * Probes are raw SYNs too, answered (or not) by the server's kernel: a SYN-ACK seen by our capture
 * handle means the port accepted that SYN. No sockets: no per-probe allocation, no TIME_WAIT, and
 * none of Node's socket overhead in the measurement (a cold net.connect costs ~0.3 ms more here).
 * Each probe has its own source port; the SYN-ACK's destination port names the probe.
 */
const probes = new Map<number, { src: Buffer; resolve: (wireMs: number) => void }>();
/** Atomics.wait's cell: the dense probes' pause. */
const PAUSE = new Int32Array(new SharedArrayBuffer(4));
let nextProbePort = 0;

/**
 * Knock-to-open is dated on the wire: from the kernel's timestamp of the last knock frame leaving
 * this namespace to that of the SYN-ACK coming in, both taken at the listener's packet socket. Read
 * by the agent's clock it also held the agent's own time between the knock and the first probe
 * (~0.05 ms) and a turn of the event loop before the answer was read (~0.03 ms): for a door that
 * opens in the last knock's own packet path, most of the reading.
 */
const LAST_KNOCK_PORT = KNOCK_PORTS[KNOCK_PORTS.length - 1]!;
/** The listener's filter: the server's answers from the service port, and the legitimate sources' last knock frames (never the spoofed floods'). */
function listenerFilter(probePort: number): string {
  return `(tcp and src port ${probePort}) or ((src net ${LEGIT_NET_V4} or src net ${LEGIT_NET_V6}) and (tcp dst port ${LAST_KNOCK_PORT} or udp dst port ${SPA_PORT}))`;
}
/** Wire time (ms) of the last knock frame seen leaving each source, by sourceKey. */
const knockSeenAt = new Map<number | string, number>();
function sourceKey(addr: Buffer): number | string {
  return addr.length === 4 ? addr.readUInt32BE(0) : addr.toString("latin1");
}
/** patches/cap.mjs's level that passes the packet timestamps the readings are dated with. */
const CAP_PATCH_LEVEL = 5;
/** Rounds read by the agent's clock: their knock frame was not seen on the wire (the listener's ring overran), or the wall clock stepped. */
let agentClockReadings = 0;

function onFrame(buf: Buffer, n: number, wireMs: number): void {
  const seen = readListenedFrame(buf, n, LAST_KNOCK_PORT);
  if (seen?.kind === "knock") knockSeenAt.set(sourceKey(seen.source), wireMs);
  else if (seen?.kind === "syn-ack") {
    const p = probes.get(seen.port);
    // The answer must go to the probe's source (a socket of ours may use the same port number).
    if (p && p.src.equals(seen.destination)) p.resolve(wireMs);
  }
}

/**
 * Knock, then a raw SYN probe from the same source at once (its frame made before the knock) and
 * every probeEveryMs, and for the first denseMs one after each pause of denseStepMs, until one is
 * answered with a SYN-ACK: ms from the last knock frame to that answer, on the wire, or null after
 * timeoutMs. Timers wait 1 ms at least, so the pause is an Atomics.wait, which gives the CPU up (a
 * busy loop here held back a daemon woken on the same core: the capture engine read 0.5 ms later
 * behind a 0.5 ms busy window), followed by a turn of the event loop, which reads the capture handle.
 */
function knockToOpen(src: string, a: ProbeArgs): Promise<number | null> {
  if (!cap) throw new Error("init first");
  const sender = cap;
  const f = frameFor(a.dst);
  const srcBytes = ipBytes(src);
  const key = sourceKey(srcBytes);
  knockSeenAt.delete(key);
  return new Promise((resolve) => {
    const mine: number[] = [];
    let finished = false;
    let t0 = 0;
    const finish = (ms: number | null): void => {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      clearTimeout(deadline);
      for (const port of mine) probes.delete(port);
      knockSeenAt.delete(key);
      resolve(ms);
    };
    const answered = (wireMs: number): void => {
      const knockMs = knockSeenAt.get(key);
      // A wall clock stepped during the round (the timestamps are CLOCK_REALTIME) reads as the agent's clock too.
      const onWire = knockMs === undefined ? -1 : wireMs - knockMs;
      if (onWire >= 0 && onWire <= a.timeoutMs) return finish(onWire);
      agentClockReadings++;
      finish(performance.now() - t0);
    };
    const next = (): Buffer => {
      const sport = 20000 + (nextProbePort++ % 40000);
      probes.set(sport, { src: srcBytes, resolve: answered });
      mine.push(sport);
      return f.setText(src, sport, a.port);
    };
    const probe = (): void => {
      if (finished) return;
      const buf = next();
      sender.send(buf, buf.length);
    };
    // Pause (the CPU given up: on two cores, the daemon may be waiting for this one), a turn of the
    // event loop (answers read), a probe; again until denseMs.
    const dense = (): void => {
      if (finished || performance.now() - t0 >= a.denseMs) return;
      Atomics.wait(PAUSE, 0, 0, a.denseStepMs);
      setImmediate(() => {
        probe();
        dense();
      });
    };
    const first = Buffer.from(next());
    t0 = knock(src, a.dst);
    sender.send(first, first.length);
    const timer = setInterval(probe, a.probeEveryMs);
    const deadline = setTimeout(() => finish(null), a.timeoutMs);
    setImmediate(dense);
  });
}

/**
 * Fine-grained variant for the diagnosis: after the knock, a raw SYN probe every ~stepMs (the wait
 * is Atomics.wait, so the CPU is given up between probes) for windowMs, then the captured SYN-ACKs
 * are read. The send of each probe is synchronous through both veth ends, so the earliest accepted
 * probe dates the opening to within one step. Returns ms from the last knock to that probe's send,
 * or null, and the step actually achieved.
 */
async function knockToOpenFine(src: string, a: ProbeArgs & { windowMs: number; stepMs: number }): Promise<{ ms: number | null; stepMs: number }> {
  if (!cap) throw new Error("init first");
  const t0 = knock(src, a.dst);
  const f = frameFor(a.dst);
  const srcBytes = ipBytes(src);
  const sent = new Map<number, number>();
  let accepted: number | null = null;
  const wait = new Int32Array(new SharedArrayBuffer(4));
  let now = performance.now();
  let n = 0;
  while (now - t0 < a.windowMs) {
    const sport = 20000 + (nextProbePort++ % 40000);
    probes.set(sport, {
      src: srcBytes,
      resolve: () => {
        const at = sent.get(sport);
        if (at !== undefined && (accepted === null || at < accepted)) accepted = at;
      },
    });
    const buf = f.setText(src, sport, a.port);
    sent.set(sport, performance.now());
    cap.send(buf, buf.length);
    n++;
    Atomics.wait(wait, 0, 0, a.stepMs);
    now = performance.now();
  }
  // Let the capture handle deliver the answers.
  await new Promise((r) => setTimeout(r, 20));
  for (const port of sent.keys()) probes.delete(port);
  return { ms: accepted === null ? null : (accepted as number) - t0, stepMs: (now - t0) / Math.max(1, n) };
}

/** One connect: microseconds from connect() to the "connect" event (SYN out, SYN-ACK handled). */
function timedConnect(host: string, port: number, localAddress: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t = process.hrtime.bigint();
    const s = connect({ host, port, localAddress });
    s.once("connect", () => {
      const us = Number(process.hrtime.bigint() - t) / 1000;
      s.destroy();
      resolve(us);
    });
    s.once("error", reject);
    setTimeout(() => reject(new Error("connect timed out")), 2000).unref();
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

serveRpc(async (r) => {
  switch (r.op) {
    case "init": {
      const { Cap, knockgatePatch } = createRequire(import.meta.url)("cap") as { Cap: new () => CapSender; knockgatePatch?: number };
      if ((knockgatePatch ?? 0) < CAP_PATCH_LEVEL) throw new Error(`npm cap lacks knockgate's patch level ${CAP_PATCH_LEVEL} (packet timestamps): run npm ci, or node patches/cap.mjs`);
      cap = new Cap();
      cap.open(r["iface"] as string, "ether proto 0x88b5", 1 << 20, Buffer.alloc(65535));
      // Second handle: the server's answers to probes (immediate mode, as npm cap opens it).
      const listener = new Cap() as CapSender & { on(e: "packet", f: (n: number, truncated: boolean, sec: number, usec: number) => void): void };
      const rx = Buffer.alloc(65535);
      listener.open(r["iface"] as string, listenerFilter(r["probePort"] as number), 4 << 20, rx);
      // cap patched (patches/cap.mjs) adds the kernel's timestamp: seconds, microseconds.
      listener.on("packet", (n, _truncated, sec, usec) => onFrame(rx, n, sec * 1000 + usec / 1000));
      srcMac = r["srcMac"] as string;
      dstMac = r["dstMac"] as string;
      return { ok: true };
    }
    case "spa-keys": {
      const k = r as unknown as { key: string; hmac: string };
      spaKeys = { encryptionKey: Buffer.from(k.key, "base64"), hmacKey: Buffer.from(k.hmac, "base64"), hmacDigest: "sha256" };
      return { ok: true };
    }
    case "knock": {
      for (const src of r["sources"] as string[]) knock(src, r["dst"] as string);
      return { ok: true };
    }
    case "knock-sockets":
      // The knock client's way: one real connect per port, from the source asked for.
      await knockWithSockets({ host: r["dst"] as string, sequence: KNOCK_PORTS.map((port) => ({ port, proto: "tcp" as const })), delayMs: 0, localAddress: r["src"] as string });
      return { ok: true };
    case "probe":
      return { ok: await tryConnect(r["host"] as string, r["port"] as number, r["timeoutMs"] as number, r["localAddress"] as string | undefined) };
    case "latency": {
      // Sequential rounds, each from its own source address.
      // Random pauses between rounds, so rounds do not lock onto a daemon's own period (knockd's
      // capture wakes every 50 ms) and sample every phase of it.
      const out: (number | null)[] = [];
      for (const src of r["sources"] as string[]) {
        out.push(await knockToOpen(src, r as unknown as ProbeArgs));
        await sleep((r["gapMs"] as number) + rng.below(50));
      }
      return out;
    }
    case "agent-clock-readings":
      return agentClockReadings;
    case "latency-fine": {
      const out: { ms: number | null; stepMs: number }[] = [];
      for (const src of r["sources"] as string[]) {
        out.push(await knockToOpenFine(src, r as unknown as ProbeArgs & { windowMs: number; stepMs: number }));
        await sleep((r["gapMs"] as number) + rng.below(50));
      }
      return out;
    }
    case "legit-loop": {
      // A knock every everyMs for durationMs, rounds overlapping if an open is slow.
      const sources = r["sources"] as string[];
      const everyMs = r["everyMs"] as number;
      const durationMs = r["durationMs"] as number;
      const rounds: Promise<{ atMs: number; ms: number | null }>[] = [];
      const start = performance.now();
      for (let i = 0; i < sources.length && performance.now() - start < durationMs; i++) {
        const atMs = performance.now() - start;
        rounds.push(knockToOpen(sources[i]!, r as unknown as ProbeArgs).then((ms) => ({ atMs: Math.round(atMs), ms })));
        // Jitter: a fixed 200 ms period would lock onto knockd's 50 ms capture timeout.
        const next = start + (i + 1) * everyMs + rng.below(50);
        await sleep(Math.max(0, next - performance.now()));
      }
      return Promise.all(rounds);
    }
    case "syn-cost": {
      // Raw SYNs back to back from one fixed 5-tuple to a closed port: each send runs the server's
      // whole receive path (conntrack, every netfilter hook, the RST) synchronously in softirq, so
      // the loop time per packet is the kernel's per-packet cost, averaged over thousands.
      if (!cap) throw new Error("init first");
      const f = frameFor(r["dst"] as string);
      const buf = Buffer.from(f.setText(r["src"] as string, 40000, r["port"] as number));
      const n = r["n"] as number;
      for (let i = 0; i < 200; i++) cap.send(buf, buf.length);
      const t = process.hrtime.bigint();
      for (let i = 0; i < n; i++) cap.send(buf, buf.length);
      return Number(process.hrtime.bigint() - t) / n;
    }
    case "connect-cost": {
      const host = r["host"] as string;
      const port = r["port"] as number;
      const localAddress = r["localAddress"] as string;
      const n = r["n"] as number;
      const warmup = r["warmup"] as number;
      const out: number[] = [];
      for (let i = 0; i < warmup + n; i++) {
        const us = await timedConnect(host, port, localAddress);
        if (i >= warmup) out.push(us);
      }
      return out;
    }
    default:
      throw new Error(`unknown op ${r.op}`);
  }
});
