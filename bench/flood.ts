/**
 * Spoofed-traffic sender, run inside the client namespace as a process of its own (never the
 * legitimate knocker's process). Injects raw SYN frames with npm cap at a token-bucket rate, bounded
 * in packets and time, and prints one JSON line with what it really sent.
 *
 *   node dist/bench/flood.js '<json Job>'
 *
 * Modes:
 *   flood  random IPv4 sources from 198.18.16.0-198.19.255.255, half on the knock ports, half on
 *          ports 20000-59999 (no listener there)
 *   sweep  distinct IPv6 sources in fd00:198:18:8000::/49 (source i in /64 number i mod 32768), all on the first knock port
 *   grants complete knock sequences from distinct IPv4 sources 198.19.0.1 + i
 *   spa    random IPv4 sources as in flood, every datagram to the SPA port: random base64 text of a
 *          real datagram's length (180-260 bytes), which passes every check before the HMAC
 */
import { createRequire } from "node:module";
import { KNOCK_PORTS, Rng, SPA_PORT, SPOOF_V4_COUNT, SPOOF_V4_FIRST, SynFrame, UdpFrame, grantSourceV4, type CapSender } from "./wire.js";

export interface FloodJob {
  mode: "flood" | "sweep" | "grants" | "spa";
  iface: string;
  srcMac: string;
  dstMac: string;
  dst: string;
  /** Packets per second asked for. */
  rate: number;
  /** Hard limits: whichever comes first ends the run. */
  durationMs: number;
  maxPackets: number;
  /** sweep: number of distinct sources; grants: number of sequences. */
  sources?: number;
  seed?: number;
}

export interface FloodResult {
  mode: FloodJob["mode"];
  requestedPps: number;
  sent: number;
  onKnockPorts: number;
  elapsedMs: number;
  achievedPps: number;
  /** hrtime (ns, CLOCK_MONOTONIC, comparable across processes) of the first and last frame. */
  firstAtNs: string;
  lastAtNs: string;
  /** Ticks in which the sender was behind its schedule by more than 5 ms of traffic. */
  lateTicks: number;
  /** Frames the kernel would not take (ENOBUFS, ENETDOWN: the interface went down meanwhile). */
  sendErrors: number;
}

/** Frames per event-loop turn at most: keeps a stall from turning into one giant burst. */
const MAX_BATCH = 2000;

function main(): void {
  const job = JSON.parse(process.argv[2] ?? "{}") as FloodJob;
  const { Cap } = createRequire(import.meta.url)("cap") as { Cap: new () => CapSender };
  const cap = new Cap();
  // Only sending: a filter for an unused EtherType keeps the handle from receiving anything.
  cap.open(job.iface, "ether proto 0x88b5", 1 << 20, Buffer.alloc(65535));
  const frame = new SynFrame(job.srcMac, job.dstMac, job.dst);
  const udp = job.mode === "spa" ? new UdpFrame(job.srcMac, job.dstMac, job.dst) : null;
  const rng = new Rng(job.seed ?? 1);
  const v6src = new Uint8Array([0xfd, 0x00, 0x01, 0x98, 0x00, 0x18, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const limit = Math.max(0, Math.min(job.maxPackets, job.mode === "grants" ? (job.sources ?? 0) * KNOCK_PORTS.length : Infinity));
  let sent = 0;
  let onKnock = 0;
  let lateTicks = 0;
  let sendErrors = 0;
  const send = (buf: Buffer, n: number): void => {
    try {
      cap.send(buf, n);
    } catch {
      sendErrors++;
    }
  };
  let first = 0n;
  let last = 0n;

  const sendOne = (): void => {
    let buf: Buffer;
    const sport = 1024 + rng.below(64000);
    if (udp) {
      const length = 180 + rng.below(81);
      udp.randomB64(rng, length);
      const n = udp.set((SPOOF_V4_FIRST + rng.below(SPOOF_V4_COUNT)) >>> 0, sport, SPA_PORT, length, sent);
      send(udp.buf, n);
      onKnock++;
      sent++;
      return;
    }
    if (job.mode === "flood") {
      const src = (SPOOF_V4_FIRST + rng.below(SPOOF_V4_COUNT)) >>> 0;
      const r = rng.next();
      let dport: number;
      if (r & 1) {
        dport = KNOCK_PORTS[(r >>> 1) % KNOCK_PORTS.length]!;
        onKnock++;
      } else {
        dport = 20000 + ((r >>> 1) % 40000);
      }
      buf = frame.setV4(src, sport, dport, 0x02, sent);
    } else if (job.mode === "sweep") {
      const i = sent;
      v6src[6] = 0x80 | ((i >>> 8) & 0x7f);
      v6src[7] = i & 0xff;
      v6src[12] = (i >>> 24) & 0xff;
      v6src[13] = (i >>> 16) & 0xff;
      v6src[14] = (i >>> 8) & 0xff;
      v6src[15] = i & 0xff;
      buf = frame.setV6(v6src, sport, KNOCK_PORTS[0]);
      onKnock++;
    } else {
      const seq = Math.floor(sent / KNOCK_PORTS.length);
      buf = frame.setV4(grantSourceV4(seq), sport, KNOCK_PORTS[sent % KNOCK_PORTS.length]!, 0x02, sent);
      onKnock++;
    }
    send(buf, buf.length);
    sent++;
  };

  const start = process.hrtime.bigint();
  let stopped = false;
  const finish = (): void => {
    if (stopped) return;
    stopped = true;
    const elapsedMs = Number((last || process.hrtime.bigint()) - start) / 1e6;
    const result: FloodResult = {
      mode: job.mode,
      requestedPps: job.rate,
      sent,
      onKnockPorts: onKnock,
      elapsedMs: Math.round(elapsedMs),
      achievedPps: elapsedMs > 0 ? Math.round(sent / (elapsedMs / 1000)) : 0,
      firstAtNs: first.toString(),
      lastAtNs: last.toString(),
      lateTicks,
      sendErrors,
    };
    cap.close();
    process.stdout.write(JSON.stringify(result) + "\n", () => process.exit(0));
  };
  process.on("SIGTERM", finish);
  process.on("SIGINT", finish);

  const tick = (): void => {
    if (stopped) return;
    const now = process.hrtime.bigint();
    const elapsedMs = Number(now - start) / 1e6;
    if (elapsedMs >= job.durationMs || sent >= limit) {
      finish();
      return;
    }
    const due = Math.min(limit, Math.floor((job.rate * elapsedMs) / 1000) + 1);
    const owed = due - sent;
    if (owed * 1000 > job.rate * 5) lateTicks++;
    const n = Math.min(owed, MAX_BATCH);
    if (n > 0 && first === 0n) first = now;
    for (let i = 0; i < n; i++) sendOne();
    if (n > 0) last = process.hrtime.bigint();
    // Behind schedule: go again at once; on schedule: sleep until the next millisecond.
    if (owed > MAX_BATCH) setImmediate(tick);
    else setTimeout(tick, 1);
  };
  tick();
}

main();
