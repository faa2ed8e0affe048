/**
 * Scenario 5, in process on one core: packets/s through (a) the decoder alone and (b) knockgate's
 * real per-frame path - the Daemon's capture handler with its metrics, decoder, knock machine and
 * event handling - fed generated frames instead of libpcap (a stub capture, dry-run firewall,
 * silent logger). Frames are what the BPF filter lets through under a flood: SYNs on knock ports
 * from spoofed sources (IPv4 random, IPv6 all distinct), the worst case for the state table.
 */
import { parseConfig } from "../src/config/config.js";
import { ProtectionService } from "../src/app/protection.js";
import { Daemon } from "../src/app/daemon.js";
import { Decoder } from "../src/core/packet/decode.js";
import { countPerDoor, createFirewall } from "../src/adapters/firewall/index.js";
import { systemClock } from "../src/adapters/clock.js";
import { dryRunHooks } from "../src/adapters/hooks.js";
import { createLogger } from "../src/adapters/log.js";
import { Metrics } from "../src/adapters/metrics/metrics.js";
import type { FrameHandler } from "../src/adapters/capture.js";
import { KNOCK_PORTS, Rng, SPOOF_V4_COUNT, SPOOF_V4_FIRST, SynFrame } from "./wire.js";

export interface DecoderResult {
  frames: number;
  decodeOnlyPps: number;
  /** Full capture-handler path, IPv4 flood mix (random spoofed sources, random knock ports). */
  pathFloodPps: number;
  /** Full path, IPv6 sweep mix (every source new, all on the first knock port: state churn). */
  pathSweepPps: number;
  trackedAfterSweep: number;
  maxTracked: number;
}

const POOL = 1 << 16;

function pool(kind: "flood" | "sweep"): Buffer[] {
  const rng = new Rng(kind === "flood" ? 11 : 13);
  const f4 = new SynFrame("02:00:00:00:00:02", "02:00:00:00:00:01", "198.18.0.1");
  const f6 = new SynFrame("02:00:00:00:00:02", "02:00:00:00:00:01", "fd00:198:18::1");
  const src6 = new Uint8Array([0xfd, 0, 1, 0x98, 0, 0x18, 0, 0, 0x80, 0, 0, 0, 0, 0, 0, 0]);
  const out: Buffer[] = [];
  for (let i = 0; i < POOL; i++) {
    if (kind === "flood") {
      const src = (SPOOF_V4_FIRST + rng.below(SPOOF_V4_COUNT)) >>> 0;
      out.push(Buffer.from(f4.setV4(src, 1024 + rng.below(60000), KNOCK_PORTS[rng.below(3)]!)));
    } else {
      src6[12] = (i >>> 24) & 255;
      src6[13] = (i >>> 16) & 255;
      src6[14] = (i >>> 8) & 255;
      src6[15] = i & 255;
      src6[11] = rng.below(256); // differs per pass through the pool as well
      out.push(Buffer.from(f6.setV6(src6, 1024 + rng.below(60000), KNOCK_PORTS[0])));
    }
  }
  return out;
}

function time(frames: number, frame: (i: number) => void): number {
  for (let i = 0; i < Math.min(200_000, frames); i++) frame(i); // warm-up: let the JIT optimize
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < frames; i++) frame(i);
  const s = Number(process.hrtime.bigint() - t0) / 1e9;
  return Math.round(frames / s);
}

export async function decoderBench(frames: number): Promise<DecoderResult> {
  const flood = pool("flood");
  const sweep = pool("sweep");
  // Sweep frames need fresh sources on every pass: rewrite one byte per pass.
  const sweepFrame = (i: number): Buffer => {
    const f = sweep[i & (POOL - 1)]!;
    if ((i & (POOL - 1)) === 0) for (const b of sweep) b[14 + 8 + 10] = (i >>> 16) & 255;
    return f;
  };

  const decoder = new Decoder("ETHERNET");
  let knocks = 0;
  const decodeOnlyPps = time(frames, (i) => {
    const f = flood[i & (POOL - 1)]!;
    if (decoder.decode(f, f.length) === "knock") knocks++;
  });
  if (knocks === 0) throw new Error("decoder rejected every frame");

  const env = {
    KNOCK_DOOR_SSH_SEQUENCE: KNOCK_PORTS.join(","),
    KNOCK_INTERFACE: "bench0",
    KNOCK_DRY_RUN: "true",
    KNOCK_LOG_LEVEL: "silent",
  };
  const run = async (frameOf: (i: number) => Buffer) => {
    const config = parseConfig(env);
    const log = createLogger(config);
    const protection = new ProtectionService({ config, log, clock: systemClock });
    const firewall = createFirewall(config, { backend: "dry-run", renders: "iptables" }, protection.targets(), log, systemClock);
    let handler: FrameHandler | null = null;
    let daemon: Daemon | null = null;
    const metrics = new Metrics(config.doors, { version: "bench", revision: "bench", backend: firewall.backend }, {
      tracked: () => daemon?.tracked ?? 0,
      grants: async () => countPerDoor(await firewall.grants()),
      captureDropped: () => new Map(),
    });
    daemon = new Daemon({
      config,
      interfaces: ["bench0"],
      firewall,
      protection,
      log,
      metrics,
      openCapture: (iface, _filter, onFrame) => {
        handler = onFrame;
        return { iface, linkType: "ETHERNET", alive: () => true, stats: () => ({ received: 0, dropped: 0 }), close: () => undefined };
      },
      interfaceState: () => ({ index: 2, up: true, linkType: "ETHERNET" }),
      clock: systemClock,
      runHook: dryRunHooks(log),
    });
    await daemon.start();
    const onFrame = handler as FrameHandler | null;
    if (!onFrame) throw new Error("the daemon opened no capture");
    const pps = time(frames, (i) => {
      const f = frameOf(i);
      onFrame(f, f.length);
    });
    const tracked = daemon.tracked;
    await daemon.stop();
    return { pps, tracked, maxTracked: config.maxTracked };
  };
  const floodPath = await run((i) => flood[i & (POOL - 1)]!);
  const sweepPath = await run(sweepFrame);
  return {
    frames,
    decodeOnlyPps,
    pathFloodPps: floodPath.pps,
    pathSweepPps: sweepPath.pps,
    trackedAfterSweep: sweepPath.tracked,
    maxTracked: sweepPath.maxTracked,
  };
}
