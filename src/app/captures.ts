/**
 * The captures: one per watched interface, kept open while the network changes underneath.
 *
 * Interfaces go down and up, are deleted and created again (a new index), renamed, or appear only
 * after the daemon started; without KNOCK_INTERFACE the default routes move. A check every
 * CAPTURE_CHECK_MS looks at each watched interface (a few sysfs reads; with the default routes
 * followed, /proc/net/route and ipv6_route too) and reopens what needs it. A periodic look was
 * chosen over netlink events: Node has no netlink socket (it would take another native module, or
 * an `ip monitor` child to parse), events can be lost when the socket's buffer overflows (so a
 * periodic resync is needed anyway), and a look through the injected clock is tested without
 * root. A capture that ends (the binding's "error" event) is noticed at the next check.
 *
 * The packet path is guarded here, at the edge of the native callback: a throw while handling one
 * packet drops that packet, is counted, and is logged at most once a minute.
 */
import type { Cancel, Clock } from "../core/clock.js";
import { errorFields } from "../core/errors.js";
import type { Config } from "../core/types.js";
import { captureSnaplen } from "../core/packet/bpf.js";
import { Decoder, type LinkType } from "../core/packet/decode.js";
import type { Capture, FrameHandler, InterfaceState } from "../adapters/capture.js";
import type { Check } from "../adapters/http.js";
import type { Logger } from "../adapters/log.js";
import type { Metrics } from "../adapters/metrics/metrics.js";

export interface CapturesDeps {
  config: Config;
  /** The interfaces to watch (KNOCK_INTERFACE, or the default routes' at start). */
  interfaces: readonly string[];
  /** KNOCK_INTERFACE unset: the default routes' interfaces now, read at every check. */
  followDefaultRoutes?: () => Promise<string[]>;
  openCapture(iface: string, filter: string, onFrame: FrameHandler, snaplen: number): Capture;
  interfaceState(iface: string): InterfaceState | undefined;
  clock: Clock;
  log: Logger;
  metrics: Metrics;
}

/** What the daemon does with one frame; `decoder` is the capture's own (its link type). */
export type PacketHandler = (decoder: Decoder, frame: Buffer, length: number) => void;

/** How often each watched interface is looked at, and a lost capture reopened. */
export const CAPTURE_CHECK_MS = 1000;
/** At most one "packet handling failed" line per this long; the counter has every one. */
const PACKET_ERROR_LOG_MS = 60_000;

const MISSING = "interface does not exist";
const DOWN = "interface is down";

export class Captures {
  private watched: readonly string[];
  private readonly open = new Map<string, Capture>();
  /** Why an interface is not captured, as last logged; none once it is. */
  private readonly problems = new Map<string, string>();
  /** Drop counts of closed captures per interface (a reopened capture counts from zero). */
  private readonly droppedBefore = new Map<string, number>();
  private cancelCheck: Cancel | null = null;
  private checking = false;
  private noDefaultRoute = false;
  /** Called once, the first time every watched interface is captured. */
  private onAllOpen: (() => void) | null;
  private packetErrorLoggedAt = -Infinity;
  private packetErrorsUnlogged = 0;

  constructor(
    private readonly deps: CapturesDeps,
    /** The BPF filter for a capture of this link type (read at each open). */
    private readonly filter: (linkType: LinkType | undefined) => string,
    private readonly onPacket: PacketHandler,
    onAllOpen: () => void,
  ) {
    this.watched = deps.interfaces;
    this.onAllOpen = onAllOpen;
  }

  /** Opens what it can now, then looks again every CAPTURE_CHECK_MS. */
  start(): void {
    this.ensureOpen();
    this.cancelCheck = this.deps.clock.every(CAPTURE_CHECK_MS, () => void this.check());
  }

  stop(): void {
    this.cancelCheck?.();
    this.cancelCheck = null;
    for (const [iface, capture] of this.open) this.close(iface, capture);
  }

  /** One per watched interface: ok while its capture is open and its interface the same. */
  checks(): Check[] {
    return this.watched.map((iface): Check => {
      const name = `capture:${iface}`;
      const capture = this.open.get(iface);
      if (capture?.alive()) return { name, ok: true };
      // Not open yet (start is still installing the firewall): a knock now would be missed.
      if (capture) return { name, ok: false, detail: this.deps.interfaceState(iface)?.up === false ? DOWN : "interface went away" };
      return { name, ok: false, detail: this.problems.get(iface) ?? "not capturing yet" };
    });
  }

  /** Packets the kernel dropped because a capture ring was full, per interface, since start. */
  dropped(): Map<string, number> {
    const dropped = new Map(this.droppedBefore);
    for (const [iface, capture] of this.open) dropped.set(iface, (dropped.get(iface) ?? 0) + capture.stats().dropped);
    return dropped;
  }

  private async check(): Promise<void> {
    // A slow read of the routes must not let checks pile up.
    if (this.checking) return;
    this.checking = true;
    try {
      if (this.deps.followDefaultRoutes) this.follow(await this.deps.followDefaultRoutes());
      if (this.cancelCheck !== null) this.ensureOpen();
    } catch (err) {
      this.deps.log.error({ event: "capture_check_failed", ...errorFields(err, "KNOCK_E_CAPTURE") }, `checking the captures: ${String(err)}`);
    } finally {
      this.checking = false;
    }
  }

  /**
   * The default routes moved: watch their interfaces instead. With no default route at all (a
   * route being replaced, a DHCP lease renewed) the interfaces watched so far stay watched: a gap in
   * the routes must not become a gap in the capture.
   */
  private follow(interfaces: string[]): void {
    const { log } = this.deps;
    if (interfaces.length === 0) {
      if (!this.noDefaultRoute) log.warn({ event: "no_default_route", interfaces: this.watched }, `no default route now; still watching ${this.watched.join(", ")}`);
      this.noDefaultRoute = true;
      return;
    }
    this.noDefaultRoute = false;
    const next = [...interfaces].sort();
    if (next.join() === [...this.watched].sort().join()) return;
    log.info({ event: "interfaces_changed", from: this.watched, to: next }, `the default routes moved: watching ${next.join(", ")}`);
    for (const iface of this.watched) {
      if (next.includes(iface)) continue;
      const capture = this.open.get(iface);
      if (capture) this.close(iface, capture);
      this.problems.delete(iface);
    }
    this.watched = next;
  }

  /** Reopens every watched capture that is not alive; each change of state is logged once. */
  private ensureOpen(): void {
    const { log } = this.deps;
    for (const iface of this.watched) {
      const capture = this.open.get(iface);
      if (capture?.alive()) continue;
      const state = this.deps.interfaceState(iface);
      if (capture) {
        this.close(iface, capture);
        const reason = !state ? MISSING : !state.up ? DOWN : "the capture ended (the interface went down, or was replaced)";
        this.problems.set(iface, reason);
        log.warn({ event: "capture_lost", iface, reason }, `capture on ${iface} lost: ${reason}; reopening when it can`);
      }
      if (!state || !state.up) {
        // Not tried: libpcap would fail, and cap writes a warning to stderr at every attempt.
        const reason = state ? DOWN : MISSING;
        if (this.problems.get(iface) !== reason) log.warn({ event: "capture_waiting", iface, reason }, `not capturing on ${iface}: ${reason}; waiting for it`);
        this.problems.set(iface, reason);
        continue;
      }
      this.openOn(iface, state.linkType);
    }
    if (this.onAllOpen && this.watched.every((iface) => this.open.has(iface))) {
      const ready = this.onAllOpen;
      this.onAllOpen = null;
      ready();
    }
  }

  private openOn(iface: string, linkType: LinkType | undefined): void {
    const { log } = this.deps;
    try {
      const filter = this.filter(linkType);
      let decoder: Decoder | null = null;
      const onFrame: FrameHandler = (frame, length) => {
        try {
          if (decoder !== null) this.onPacket(decoder, frame, length);
        } catch (err) {
          this.packetFailed(err);
        }
      };
      const capture = this.deps.openCapture(iface, filter, onFrame, captureSnaplen(this.deps.config.doors));
      decoder = new Decoder(capture.linkType);
      this.open.set(iface, capture);
      const after = this.problems.get(iface);
      this.problems.delete(iface);
      log.info({ event: "capture_started", iface, linkType: capture.linkType, ...(after ? { after } : {}) }, `capturing knocks on ${iface}`);
      // The filter names every knock port: at info level it would hand out most of the secret.
      log.debug({ event: "capture_filter", iface, filter }, "capture filter");
    } catch (err) {
      const fields = errorFields(err, "KNOCK_E_CAPTURE");
      if (this.problems.get(iface) !== fields.err) log.error({ event: "capture_failed", iface, ...fields }, fields.err);
      this.problems.set(iface, fields.err);
    }
  }

  private close(iface: string, capture: Capture): void {
    capture.close();
    this.droppedBefore.set(iface, (this.droppedBefore.get(iface) ?? 0) + capture.stats().dropped);
    this.open.delete(iface);
  }

  /** Runs in the capture callback: nothing may escape, the log line included. */
  private packetFailed(err: unknown): void {
    try {
      this.deps.metrics.packetErrors.inc();
      this.packetErrorsUnlogged++;
      const now = this.deps.clock.now();
      if (now - this.packetErrorLoggedAt < PACKET_ERROR_LOG_MS) return;
      this.packetErrorLoggedAt = now;
      const dropped = this.packetErrorsUnlogged;
      this.packetErrorsUnlogged = 0;
      this.deps.log.error(
        { event: "packet_failed", dropped, ...errorFields(err) },
        `handling a packet failed, so it was dropped (${dropped} since the last such line): ${String(err)}`,
      );
    } catch {
      // Counting or logging itself failed: nothing left to tell, and nothing may escape.
    }
  }
}
