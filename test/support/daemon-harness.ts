/**
 * The daemon on the dry-run firewall, a fake capture and a fake clock: the one harness of the
 * daemon's unit tests. Frames go in through the capture handler; time moves only when a test
 * advances the clock; faults are injected by replacing a method of the dry-run backend.
 */
import { pino } from "pino";
import { parseConfig } from "../../src/config/config.js";
import { Daemon, type Deps } from "../../src/app/daemon.js";
import type { DryRunFirewall } from "../../src/adapters/firewall/dry-run.js";
import type { Firewall } from "../../src/adapters/firewall/firewall.js";
import { countPerDoor } from "../../src/adapters/firewall/firewall.js";
import type { FrameHandler, InterfaceState } from "../../src/adapters/capture.js";
import type { HookRequest } from "../../src/adapters/hooks.js";
import { Metrics } from "../../src/adapters/metrics/metrics.js";
import { FakeClock } from "./fake-clock.js";
import { envPorts } from "./protection.js";
import { dryRunFirewall } from "./dry-run.js";
import { buildFrame, macBytes } from "./frames.js";

export const CLIENT = "198.18.0.2";

export interface HarnessOptions {
  /** KNOCK_* variables; KNOCK_INTERFACE=eth0 and a 0.1 s reconcile interval unless set here. */
  env?: Record<string, string>;
  clock?: FakeClock;
  /** Wraps the dry-run backend (to inject a fault) before the daemon gets it. */
  firewallOf?: (f: DryRunFirewall) => DryRunFirewall;
  /** Each door's replay set, in the daemon and the dry-run kernel alike (REPLAY_SET_SIZE by default). */
  replaySetSize?: number;
  overrides?: Partial<Deps>;
}

export function daemonHarness(opts: HarnessOptions = {}) {
  const config = parseConfig({ KNOCK_INTERFACE: "eth0", KNOCK_RECONCILE_INTERVAL: "0.1", ...opts.env });
  const clock = opts.clock ?? new FakeClock();
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "debug" }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  const dryRun = dryRunFirewall(config, log, clock, { replaySetSize: opts.replaySetSize });
  const firewall = opts.firewallOf?.(dryRun) ?? dryRun;
  let daemon: Daemon | null = null;
  const metrics = new Metrics(
    config.doors,
    { version: "test", revision: "test", backend: firewall.backend },
    { tracked: () => 0, grants: async () => countPerDoor(await firewall.grants()), captureDropped: () => daemon?.captureDropped() ?? new Map() },
  );
  let onFrame: FrameHandler = () => undefined;
  let alive = true;
  /** The watched interface as the kernel shows it; undefined: it does not exist. */
  const link: { state: InterfaceState | undefined } = { state: { index: 2, up: true, linkType: "ETHERNET" } };
  /** Interfaces captured, in order, and each capture's filter and snap length. */
  const opened: string[] = [];
  const filters: { filter: string; snaplen: number }[] = [];
  const closed: string[] = [];
  /** What the capture opened last reports as dropped by the kernel. */
  const ring = { dropped: 0 };
  const hooks: HookRequest[] = [];
  const { overrides = {} } = opts;
  daemon = new Daemon({
    config,
    interfaces: ["eth0"],
    firewall,
    log,
    metrics,
    clock,
    runHook: (request) => {
      hooks.push(request);
      return Promise.resolve({ ok: true, code: 0 });
    },
    interfaceState: () => link.state,
    openCapture: (iface, filter, handler, snaplen) => {
      onFrame = handler;
      opened.push(iface);
      filters.push({ filter, snaplen });
      alive = true;
      ring.dropped = 0;
      return { iface, linkType: "ETHERNET", alive: () => alive, stats: () => ({ received: 0, dropped: ring.dropped }), close: () => void closed.push(iface) };
    },
    ...(opts.replaySetSize ? { replaySetSize: opts.replaySetSize } : {}),
    ...overrides,
    protection: overrides.protection ?? envPorts(config),
  });
  /** One frame from `src` to `port`, cut short by `cut` bytes of its captured length. */
  const frame = (proto: "tcp" | "udp", port: number, opts: { src?: string; payload?: Buffer; cut?: number } = {}) => {
    const src = opts.src ?? CLIENT;
    const f = buildFrame({
      srcMac: macBytes("02:00:00:00:00:02"),
      dstMac: macBytes("02:00:00:00:00:01"),
      src,
      dst: src.includes(":") ? "fd00:198:18::1" : "198.18.0.1",
      proto,
      srcPort: 40000,
      dstPort: port,
      ...(opts.payload ? { payload: opts.payload } : {}),
    });
    onFrame(f, f.length - (opts.cut ?? 0));
  };
  const knock = (port: number, src = CLIENT) => frame("tcp", port, { src });
  const knockAll = async (ports: number[], src = CLIENT) => {
    for (const port of ports) knock(port, src);
    await clock.advance(0);
  };
  /** `payload` as a UDP datagram from `src` to `port` (62201 unless given), then the daemon's promises settle. */
  const send = async (payload: Buffer, o: { src?: string; port?: number; cut?: number } = {}) => {
    frame("udp", o.port ?? 62201, { ...o, payload });
    await clock.advance(0);
  };
  const raw = (f: Buffer) => onFrame(f, f.length);
  const events = (name: string) => lines.filter((l) => l["event"] === name);
  return { config, daemon, firewall, lines, events, metrics, clock, hooks, knock, knockAll, send, raw, ring, link, opened, filters, closed, kill: () => (alive = false) };
}

/** The names of the readiness checks that fail. */
export const failing = async (d: Daemon): Promise<string[]> => (await d.readiness()).filter((c) => !c.ok).map((c) => c.name);

/** The next repair pass reports `changes` (a set made again, say) and the later ones nothing; checks see the dry run as it is. */
export function repairsOnce(firewall: Firewall, changes: string[]): void {
  const reconcile = firewall.reconcile.bind(firewall);
  let missing = changes;
  firewall.reconcile = (mode) => {
    if (mode === "check") return reconcile(mode);
    const found = missing;
    missing = [];
    return Promise.resolve(found);
  };
}
