/**
 * The daemon: capture -> decode -> knock machine -> firewall, plus the reconcile loop and the
 * readiness it reports. Adapters come in through Deps, so this wiring is testable in isolation.
 */
import { randomInt } from "node:crypto";
import { performance } from "node:perf_hooks";
import { portsText, type Config, type Door, type Family } from "../core/types.js";
import { buildBpfFilter } from "../core/packet/bpf.js";
import type { Capture, FrameHandler } from "../adapters/capture.js";
import { Decoder, type LinkType } from "../core/packet/decode.js";
import type { Firewall } from "../adapters/firewall/firewall.js";
import { GrantBook } from "../core/grants/grant-book.js";
import { runHook, type HookKind } from "../adapters/hooks.js";
import type { Check } from "../adapters/http.js";
import { KnockMachine, type KnockEvent } from "../core/knock/machine.js";
import type { Logger } from "../adapters/log.js";
import type { Metrics } from "../adapters/metrics.js";

export interface Deps {
  config: Config;
  interfaces: readonly string[];
  firewall: Firewall;
  log: Logger;
  metrics: Metrics;
  openCapture(iface: string, filter: string, onFrame: FrameHandler): Capture;
  interfaceLinkType(iface: string): LinkType | undefined;
  /** Monotonic milliseconds. */
  now?: () => number;
}

/** How often timed-out attempts and expired grants are swept (for the metrics and audit log). */
const SWEEP_MS = 1000;
/** At most one "capture dropped packets" warning per this long; the metric has every count. */
const DROP_WARN_MS = 60_000;


export class Daemon {
  private readonly now: () => number;
  private readonly machine: KnockMachine;
  private readonly grants = new GrantBook();
  private readonly captures = new Map<string, Capture>();
  private readonly captureErrors = new Map<string, string>();
  private firewallError: string | null = "not reconciled yet";
  private grantError: string | null = null;
  private reconcileTimer: NodeJS.Timeout | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  /** Capture time of the packet being handled: knock-to-open runs from here. */
  private packetAt = 0;
  private stopped = false;
  /** Concurrent probes share one look at the kernel. */
  private liveCheck: Promise<string[]> | null = null;
  /** Drop counts of closed captures per interface (a reopened capture counts from zero). */
  private readonly droppedBefore = new Map<string, number>();
  private droppedWarned = 0;
  private dropWarnedAt = -Infinity;

  constructor(private readonly deps: Deps) {
    this.now = deps.now ?? (() => performance.now());
    this.machine = new KnockMachine(deps.config.doors, deps.config.maxTracked, (e) => this.onKnockEvent(e), randomInt(2 ** 31));
  }

  get tracked(): number {
    return this.machine.tracked;
  }

  /** Packets the kernel dropped because a capture ring was full, per interface, since start. */
  captureDropped(): Map<string, number> {
    const dropped = new Map(this.droppedBefore);
    for (const [iface, capture] of this.captures) dropped.set(iface, (dropped.get(iface) ?? 0) + capture.stats().dropped);
    return dropped;
  }

  private closeCapture(iface: string, capture: Capture): void {
    capture.close();
    this.droppedBefore.set(iface, (this.droppedBefore.get(iface) ?? 0) + capture.stats().dropped);
    this.captures.delete(iface);
  }

  /** Installs the firewall (failure is fatal: we cannot protect), then starts capturing. */
  async start(): Promise<void> {
    await this.reconcile(true);
    if (this.firewallError !== null) throw new Error(this.firewallError);
    for (const iface of this.deps.interfaces) this.openCaptureOn(iface);
    this.scheduleReconcile();
    this.sweepTimer = setInterval(() => this.sweep(), SWEEP_MS);
    this.sweepTimer.unref();
  }

  /**
   * Ready means protecting right now: every capture live, the firewall objects in place as seen in
   * the kernel at this moment (not as of the last reconcile), the last reconcile and grant succeeded.
   */
  async readiness(): Promise<Check[]> {
    const check = (name: string, problem: string | null | undefined): Check =>
      problem ? { name, ok: false, detail: problem } : { name, ok: true };
    const checks = this.deps.interfaces.map((iface) =>
      check(`capture:${iface}`, this.captureErrors.get(iface) ?? (this.captures.get(iface)?.alive() === false ? "interface went away" : null)),
    );
    this.liveCheck ??= this.deps.firewall.check().finally(() => (this.liveCheck = null));
    const problems = await this.liveCheck.catch((err: Error) => [err.message]);
    checks.push(check("firewall", problems.join("; ")));
    checks.push(check("reconcile", this.firewallError));
    checks.push(check("grants", this.grantError));
    return checks;
  }

  /** Stops capturing and timers; with KNOCK_ON_EXIT=remove also takes the firewall objects away. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.reconcileTimer) clearTimeout(this.reconcileTimer);
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const [iface, capture] of this.captures) this.closeCapture(iface, capture);
    this.deps.firewall.close();
    if (this.deps.config.onExit === "remove") {
      await this.deps.firewall.remove();
      this.deps.log.info({ event: "firewall_removed" }, "removed every knockgate firewall object");
    } else {
      this.deps.log.info({ event: "firewall_kept", grants: this.grants.size }, "protection stays in place; grants expire on their own");
    }
  }

  private openCaptureOn(iface: string): void {
    const { log, metrics } = this.deps;
    try {
      const linkType = this.deps.interfaceLinkType(iface);
      const filter = buildBpfFilter(this.machine.knockPorts(), linkType);
      let decoder: Decoder | null = null;
      const capture = this.deps.openCapture(iface, filter, (frame, length) => {
        this.packetAt = this.now();
        metrics.packets.seen.n++;
        if (decoder === null) return;
        const outcome = decoder.decode(frame, length);
        if (outcome !== "knock") {
          metrics.packets[outcome].n++;
          return;
        }
        metrics.packets.decoded.n++;
        this.machine.handle(decoder.knock, this.packetAt);
      });
      decoder = new Decoder(capture.linkType);
      this.captures.set(iface, capture);
      this.captureErrors.delete(iface);
      log.info({ event: "capture_started", iface, linkType: capture.linkType, filter }, `capturing knocks on ${iface}`);
    } catch (err) {
      const message = (err as Error).message;
      if (this.captureErrors.get(iface) !== message) log.error({ event: "capture_failed", iface, err: message }, message);
      this.captureErrors.set(iface, message);
    }
  }

  private onKnockEvent(event: KnockEvent): void {
    const { log, metrics } = this.deps;
    metrics.knock(event.door.name, event.result);
    // Guarded: under a flood this runs per packet, and building the object is the cost.
    if (log.isLevelEnabled("debug")) {
      log.debug({ event: "knock", door: event.door.name, src: event.src, sequence: event.kind, result: event.result, stage: event.stage });
    }
    if (event.result !== "completed") return;
    // The machine reuses `event`; what the firewall calls need is copied out here.
    const { door, src, family } = event;
    if (event.kind === "open") this.open(door, family, src, this.packetAt);
    else this.close(door, family, src);
  }

  private open(door: Door, family: Family, src: string, capturedAt: number): void {
    const { log, metrics } = this.deps;
    this.deps.firewall.grant(door, family, src).then(
      () => {
        const seconds = (this.now() - capturedAt) / 1000;
        metrics.knockToOpen.observe(seconds);
        metrics.opened(door.name);
        this.grantError = null;
        const grant = this.grants.open(door, src, family, this.now());
        this.hook("on_open", door, src);
        log.info(
          {
            event: "open",
            door: door.name,
            src,
            ports: portsText(door),
            open_for_s: door.openForMs / 1000,
            expires: Number.isFinite(grant.expiresAt) ? new Date(Date.now() + door.openForMs).toISOString() : null,
            latency_ms: Math.round(seconds * 1e6) / 1e3,
          },
          `opened ${portsText(door)} for ${src}`,
        );
      },
      (err: Error) => this.firewallFailed("grant", err, { door: door.name, src }),
    );
  }

  private close(door: Door, family: Family, src: string): void {
    const { log, metrics } = this.deps;
    this.deps.firewall.revoke(door, family, src).then(
      () => {
        this.grantError = null;
        this.grants.close(door, src);
        metrics.closed(door.name, "close_sequence");
        this.hook("on_close", door, src);
        log.info({ event: "close", door: door.name, src, ports: portsText(door), reason: "close_sequence" }, `closed ${portsText(door)} for ${src}`);
      },
      (err: Error) => this.firewallFailed("revoke", err, { door: door.name, src }),
    );
  }

  /** Runs the door's ON_OPEN/ON_CLOSE without waiting for it; failures are logged and counted. */
  private hook(kind: HookKind, door: Door, src: string): void {
    const template = kind === "on_open" ? door.onOpen : door.onClose;
    if (!template) return;
    void runHook(template, { ip: src, door }, this.deps.config.hookTimeoutMs, this.deps.log, kind).then((r) => {
      if (!r.ok) this.deps.metrics.hookErrors.labels(door.name, kind).inc();
    });
  }

  private firewallFailed(action: string, err: Error, fields: Record<string, string>): void {
    this.deps.metrics.firewallErrors.inc();
    this.grantError = `${action} failed: ${err.message}`;
    this.deps.log.error({ event: `${action}_failed`, ...fields, err: err.message }, `${action} failed: ${err.message}`);
  }

  private sweep(): void {
    const now = this.now();
    this.machine.sweep(now);
    for (const g of this.grants.expire(now)) {
      this.deps.metrics.closed(g.door.name, "expired");
      this.hook("on_close", g.door, g.src);
      this.deps.log.info({ event: "close", door: g.door.name, src: g.src, ports: portsText(g.door), reason: "expired" }, `grant for ${g.src} expired`);
    }
    this.warnOfDrops(now);
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
    this.reconcileTimer = setTimeout(() => {
      void this.reconcile(false).then(() => this.scheduleReconcile());
    }, this.deps.config.reconcileIntervalMs);
    this.reconcileTimer.unref();
  }

  private async reconcile(initial: boolean): Promise<void> {
    const { firewall, log, metrics } = this.deps;
    try {
      const repairs = await firewall.reconcile();
      if (this.firewallError !== null && !initial) log.info({ event: "firewall_recovered" }, "firewall is in place again");
      this.firewallError = null;
      if (repairs.length > 0) {
        if (initial) log.info({ event: "firewall_installed", backend: firewall.backend, changes: repairs }, `firewall ready (${firewall.backend})`);
        else {
          metrics.firewallRepairs.inc(repairs.length);
          log.warn({ event: "firewall_repaired", changes: repairs }, `put back: ${repairs.join("; ")}`);
        }
      } else if (initial) {
        log.info({ event: "firewall_adopted", backend: firewall.backend }, `firewall already in place (${firewall.backend})`);
      }
    } catch (err) {
      const message = (err as Error).message;
      metrics.firewallErrors.inc();
      if (this.firewallError !== message) log.error({ event: "firewall_reconcile_failed", err: message }, message);
      this.firewallError = message;
    }
    if (initial) return;
    for (const iface of this.deps.interfaces) {
      const capture = this.captures.get(iface);
      if (capture?.alive()) continue;
      if (capture) {
        this.closeCapture(iface, capture);
        this.captureErrors.set(iface, "interface went away");
        log.warn({ event: "capture_lost", iface }, `interface ${iface} went away; reopening`);
      }
      this.openCaptureOn(iface);
    }
  }
}
