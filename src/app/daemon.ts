/**
 * The daemon: capture -> decode -> knock machine -> firewall, plus the reconcile loop and the
 * readiness it reports. Adapters, the clock and timers come in through Deps, so this wiring is
 * tested in isolation with a fake clock and the dry-run firewall.
 */
import type { Clock, Cancel } from "../core/clock.js";
import { errorFields } from "../core/errors.js";
import { buildBpfFilter } from "../core/packet/bpf.js";
import type { Decoder } from "../core/packet/decode.js";
import type { Firewall } from "../adapters/firewall/firewall.js";
import type { HookRunner } from "../adapters/hooks.js";
import type { Check } from "../adapters/http.js";
import { Reconciler } from "./reconcile.js";
import { Grants, type GrantPublisher } from "./grants.js";
import { waysIn, type Ways } from "./ways/index.js";
import { guard } from "./guard.js";
import { sharedRead, type SharedRead } from "./shared-read.js";
import type { DoorPorts } from "./protection.js";
import { Captures, type CapturesDeps } from "./captures.js";
import type { KernelDeps } from "./ways/kernel/kernel-way.js";

export interface Deps extends CapturesDeps, Pick<KernelDeps, "openNflog"> {
  firewall: Firewall;
  runHook: HookRunner;
  /** Each door's ports now (configuration and Docker labels): what a grant opens, what a datagram may ask for. */
  protection: DoorPorts;
  /** KNOCK_CLUSTER: where grants made here go, after the kernel has them. */
  cluster?: ClusterLink;
  /** Datagrams each signed door's replay set holds: REPLAY_SET_SIZE, as the kernel set is made, unless a test makes both small. */
  replaySetSize?: number;
}

/** Publishing to other nodes (ways/cluster/cluster-sync.ts); never awaited, so the API is not in a knock's path. */
export interface ClusterLink extends GrantPublisher {
  check(): Check;
}

/** How long a look at the kernel for /readyz serves later probes. */
export const READ_CACHE_MS = 1000;
/** How often timed-out attempts and expired grants are swept (for the metrics and audit log). */
const SWEEP_MS = 1000;
/** At most one "capture dropped packets" warning per this long; the metric has every count. */
const DROP_WARN_MS = 60_000;

export class Daemon {
  private readonly clock: Clock;
  private readonly reconciler: Reconciler;
  /** Every way in's grants, one lifecycle. */
  readonly grants: Grants;
  private readonly ways: Ways;
  private readonly captures: Captures;
  private cancelReconcile: Cancel | null = null;
  private cancelSweep: Cancel | null = null;
  private stopped = false;
  /** Probes share one look at the kernel per READ_CACHE_MS. */
  private readonly liveCheck: SharedRead<string[]>;
  private droppedWarned = 0;
  private dropWarnedAt = -Infinity;

  constructor(private readonly deps: Deps) {
    this.clock = deps.clock;
    const { maxGrants, maxGrantsPerPrefix, sourcePrefixes } = deps.config;
    this.grants = new Grants({
      ...deps,
      doors: deps.config.doors,
      limits: { maxGrants, maxPerPrefix: maxGrantsPerPrefix, prefixes: sourcePrefixes },
      ...(deps.cluster ? { publisher: deps.cluster } : {}),
    });
    this.ways = waysIn(deps, this.grants);
    this.reconciler = new Reconciler(deps.firewall, deps.log, deps.metrics, this.grants, deps.config.reconcileIntervalMs);
    this.liveCheck = sharedRead(() => deps.firewall.reconcile("check"), READ_CACHE_MS, deps.clock);
    // No way listens on the interfaces (the kernel engine, no signed door): nothing to capture there.
    const listening = this.ways.all.some((w) => w.ports().length > 0);
    const quiet: CapturesDeps = { ...deps, interfaces: [] };
    delete quiet.followDefaultRoutes;
    this.captures = new Captures(
      listening ? deps : quiet,
      (linkType) => buildBpfFilter(this.ways.all.flatMap((w) => w.ports()), linkType),
      (decoder, frame, length) => this.onPacket(decoder, frame, length),
      () => deps.log.info({ event: "ready", backend: deps.firewall.backend }, "knockgate is protecting"),
    );
  }

  get tracked(): number {
    return this.ways.sequence.tracked;
  }

  /** Packets the kernel dropped because a capture ring was full, per interface, since start. */
  captureDropped(): Map<string, number> {
    return this.captures.dropped();
  }

  /**
   * Installs the firewall (failure is fatal: we cannot protect), adopts its grants, then captures;
   * logs `ready` once every capture is open, now or later.
   */
  async start(): Promise<void> {
    await this.reconciler.run(true);
    if (this.reconciler.error !== null) throw new Error(this.reconciler.error);
    await this.grants.adopt();
    for (const way of this.ways.all) await way.start?.();
    this.captures.start();
    this.scheduleReconcile();
    this.cancelSweep = this.clock.every(SWEEP_MS, () => this.sweep());
  }

  /**
   * Ready means protecting right now: every capture live, the firewall objects in place as the
   * kernel showed them within the last READ_CACHE_MS (not as of the last reconcile), the last
   * reconcile and grant succeeded.
   */
  async readiness(): Promise<Check[]> {
    const check = (name: string, problem: string | null | undefined): Check =>
      problem ? { name, ok: false, detail: problem } : { name, ok: true };
    const checks = this.captures.checks();
    const problems = await this.liveCheck().catch((err: Error) => [err.message]);
    checks.push(check("firewall", problems.join("; ")));
    checks.push(check("reconcile", this.reconciler.error));
    checks.push(check("grants", this.grants.error));
    for (const way of this.ways.all) checks.push(...(way.checks?.() ?? []));
    if (this.deps.cluster) checks.push(this.deps.cluster.check());
    return checks;
  }

  /**
   * Stops capturing and timers; with KNOCK_ON_EXIT=remove also takes the firewall objects away.
   * Resolves false when that removal failed (logged and counted here).
   */
  async stop(): Promise<boolean> {
    this.stopped = true;
    this.cancelReconcile?.();
    this.cancelSweep?.();
    this.captures.stop();
    const { firewall, log, metrics } = this.deps;
    const remove = this.deps.config.onExit === "remove";
    try {
      await firewall.shutdown(remove);
      if (!remove) {
        log.info({ event: "firewall_kept", grants: this.grants.size }, "protection stays in place; grants expire on their own");
        return true;
      }
    } catch (err) {
      metrics.firewallFailed("remove");
      const fields = errorFields(err, "KNOCK_E_FIREWALL");
      log.error({ event: "remove_failed", ...fields }, `could not remove the firewall objects: ${fields.err}; run knockgate cleanup`);
      return false;
    }
    log.info({ event: "firewall_removed" }, "removed every knockgate firewall object");
    return true;
  }

  /** One captured frame; a throw here is caught, counted and logged by Captures. */
  private onPacket(decoder: Decoder, frame: Buffer, length: number): void {
    const { metrics } = this.deps;
    const capturedAt = this.clock.now();
    metrics.packets.seen.n++;
    const outcome = decoder.decode(frame, length);
    if (outcome !== "knock") {
      metrics.packets[outcome].n++;
      return;
    }
    metrics.packets.decoded.n++;
    for (const way of this.ways.all) {
      if (!way.takes(decoder.knock)) continue;
      way.handle(decoder, frame, capturedAt);
      return;
    }
  }

  /**
   * A timer callback: a throw here (a logger, metrics or hook bug) would end the process and its
   * protection, so each step is caught, and one grant's failure never skips the others' close lines.
   */
  private sweep(): void {
    const now = this.clock.now();
    const { log } = this.deps;
    for (const way of this.ways.all) guard(log, "sweep", {}, () => way.sweep?.(now));
    guard(log, "sweep", {}, () => this.grants.sweep(now));
    guard(log, "sweep", {}, () => this.warnOfDrops(now));
  }

  private warnOfDrops(now: number): void {
    if (now - this.dropWarnedAt < DROP_WARN_MS) return;
    let total = 0;
    for (const n of this.captureDropped().values()) total += n;
    if (total <= this.droppedWarned) return;
    this.deps.log.warn(
      { event: "capture_dropped", dropped: total - this.droppedWarned, total },
      `capture dropped ${total - this.droppedWarned} packets (ring full): knocks among them were missed`,
    );
    this.droppedWarned = total;
    this.dropWarnedAt = now;
  }

  private scheduleReconcile(): void {
    if (this.stopped) return;
    this.cancelReconcile = this.clock.after(this.deps.config.reconcileIntervalMs, () => {
      void this.reconcile().then(() => this.scheduleReconcile());
    });
  }

  /** The periodic pass: the firewall as planned (Captures keeps the captures open). */
  private async reconcile(): Promise<void> {
    await this.reconciler.run(false);
    // What /readyz last saw may predate a repair just made.
    this.liveCheck.invalidate();
  }
}
