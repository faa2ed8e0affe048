/**
 * The daemon: capture -> decode -> knock machine -> firewall, plus the reconcile loop and the
 * readiness it reports. Adapters, the clock and timers come in through Deps, so this wiring is
 * tested in isolation with a fake clock and the dry-run firewall.
 */
import { randomInt } from "node:crypto";
import type { Clock, Cancel } from "../core/clock.js";
import { errorFields } from "../core/errors.js";
import { hasPort, portName, portsText, type Door, type Family, type GrantVia, type PortSpec } from "../core/types.js";
import { buildBpfFilter, capturedPorts } from "../core/packet/bpf.js";
import type { Decoder } from "../core/packet/decode.js";
import { GrantBook, type GrantRecord, type PortGrant, type ReplaceReason } from "../core/grants/grant-book.js";
import { SpaPath, type SignedGrant } from "./spa-path.js";
import { KnockMachine, type KnockEvent } from "../core/knock/machine.js";
import type { Firewall, ListedGrant } from "../adapters/firewall/firewall.js";
import type { HookKind, HookRunner } from "../adapters/hooks.js";
import type { Check } from "../adapters/http.js";
import type { ClusterGrant, GrantHow } from "../core/cluster/knock-grant.js";
import type { FirewallOperation } from "../adapters/metrics/table.js";
import { Reconciler } from "./reconcile.js";
import { sharedRead, type SharedRead } from "./shared-read.js";
import type { DoorPorts } from "./protection.js";
import { Captures, type CapturesDeps } from "./captures.js";

export interface Deps extends CapturesDeps {
  firewall: Firewall;
  runHook: HookRunner;
  /** Each door's ports now (configuration and Docker labels): what a grant opens, what a datagram may ask for. */
  protection: DoorPorts;
  /** KNOCK_CLUSTER: where grants made here go, after the kernel has them. */
  cluster?: ClusterLink;
  /** Datagrams each signed door's replay set holds: REPLAY_SET_SIZE, as the kernel set is made, unless a test makes both small. */
  replaySetSize?: number;
}

/** Publishing to other nodes (cluster-sync.ts); never awaited, so the API is not in a knock's path. */
export interface ClusterLink {
  opened(grant: Omit<ClusterGrant, "origin">): void;
  closed(door: Door, family: Family, src: string): void;
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
  private readonly machine: KnockMachine;
  private readonly reconciler: Reconciler;
  private readonly grants: GrantBook;
  /** Grants of signed datagrams: their own kernel sets, so their own book and bounds. */
  private readonly spaGrants: GrantBook;
  /** null: no door is signed. */
  private readonly spa: SpaPath | null;
  private readonly captures: Captures;
  private grantError: string | null = null;
  private cancelReconcile: Cancel | null = null;
  private cancelSweep: Cancel | null = null;
  /** Capture time of the packet being handled: knock-to-open runs from here. */
  private packetAt = 0;
  private stopped = false;
  /** Probes share one look at the kernel per READ_CACHE_MS. */
  private readonly liveCheck: SharedRead<string[]>;
  private droppedWarned = 0;
  private dropWarnedAt = -Infinity;

  constructor(private readonly deps: Deps) {
    this.clock = deps.clock;
    const { doors, maxTracked, maxTrackedPerPrefix, maxGrants, maxGrantsPerPrefix, sourcePrefixes } = deps.config;
    this.grants = new GrantBook({ maxGrants, maxPerPrefix: maxGrantsPerPrefix, prefixes: sourcePrefixes });
    this.spaGrants = new GrantBook({ maxGrants, maxPerPrefix: maxGrantsPerPrefix, prefixes: sourcePrefixes }, "spa");
    this.spa = SpaPath.forDoors(doors, deps, (g) => this.open(g.door, g.family, g.src, g.capturedAt, g));
    this.reconciler = new Reconciler(deps.firewall, deps.log, deps.metrics, {
      held: () => [...this.grants.records(), ...this.spaGrants.records()].filter((g) => g.expiresAt > this.clock.now()),
      putBack: (lost) => this.putBackLostGrants(lost),
    });
    this.liveCheck = sharedRead(() => deps.firewall.reconcile("check"), READ_CACHE_MS, deps.clock);
    this.machine = new KnockMachine(doors, { maxTracked, maxTrackedPerPrefix, prefixes: sourcePrefixes }, (e) => this.onKnockEvent(e), randomInt(2 ** 31));
    this.captures = new Captures(
      deps,
      (linkType) => buildBpfFilter(capturedPorts(this.machine.knockPorts(), doors), linkType),
      (decoder, frame, length) => this.onPacket(decoder, frame, length),
      () => deps.log.info({ event: "ready", backend: deps.firewall.backend }, "knockgate is protecting"),
    );
  }

  get tracked(): number {
    return this.machine.tracked;
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
    await this.adoptGrants();
    await this.spa?.adoptReplaySets();
    this.captures.start();
    this.scheduleReconcile();
    this.cancelSweep = this.clock.every(SWEEP_MS, () => this.sweep());
  }

  /**
   * Grants that a previous run left in the kernel go into the book with the time they have left, so
   * their expiry is logged and runs ON_CLOSE like any other. The kernel expires them regardless: a
   * listing that fails costs only those log lines, and is said so.
   */
  private async adoptGrants(): Promise<void> {
    const { firewall, log } = this.deps;
    let listed: ListedGrant[];
    try {
      listed = await firewall.grants();
    } catch (err) {
      log.warn({ event: "grants_not_adopted", ...errorFields(err, "KNOCK_E_FIREWALL") }, "could not list the grants already in the kernel; they still expire on time, without a close line or ON_CLOSE");
      return;
    }
    const doors = new Map(this.deps.config.doors.map((d) => [d.name, d]));
    const now = this.clock.now();
    let adopted = 0;
    for (const g of listed) {
      const door = doors.get(g.door);
      if (!door) continue;
      const book = g.ports === null ? this.grants : this.spaGrants;
      book.adopt(door, g.src, g.family, g.remainingMs === null ? Infinity : now + g.remainingMs, g.ports ?? this.deps.protection.portsOf(g.door));
      adopted++;
    }
    if (adopted > 0) log.info({ event: "grants_adopted", grants: adopted }, `adopted ${adopted} grant${adopted === 1 ? "" : "s"} already in the kernel`);
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
    checks.push(check("grants", this.grantError));
    if (this.spa) checks.push(check("spa_replay", this.spa.replayError));
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
    this.packetAt = this.clock.now();
    metrics.packets.seen.n++;
    const outcome = decoder.decode(frame, length);
    if (outcome !== "knock") {
      metrics.packets[outcome].n++;
      return;
    }
    metrics.packets.decoded.n++;
    // SPA ports are never knock ports (configuration checks it).
    if (this.spa !== null && decoder.knock.proto === "udp" && this.spa.handles(decoder.knock.dstPort)) this.spa.handle(decoder, frame, this.packetAt);
    else this.machine.handle(decoder.knock, this.packetAt);
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
    // This runs inside the capture callback: a throw here would escape into libpcap's event and end
    // the process, protection and all.
    try {
      if (event.kind === "open") this.open(door, family, src, this.packetAt);
      else this.close(door, family, src);
    } catch (err) {
      this.followUpFailed(event.kind, err, door, src);
    }
  }

  /**
   * Books the grant at once (so the bounds count grants in flight too), making room first when the
   * door or the source's prefix is full, then asks the kernel for it.
   */
  private open(door: Door, family: Family, src: string, capturedAt: number, signed: SignedGrant | null = null): void {
    const now = this.clock.now();
    const book = signed ? this.spaGrants : this.grants;
    // A knock from an address that still holds the grant only extends it: ON_OPEN ran for it. One
    // whose time ran out before the sweep saw it is closed first, so ON_CLOSE pairs with ON_OPEN.
    const previous = book.get(door, src);
    if (previous && previous.expiresAt <= now) this.expired(previous);
    const live = previous !== undefined && previous.expiresAt > now ? previous : undefined;
    const refresh = live !== undefined;
    const { lifetime, heldLonger } = this.lifetime(door, now, live, signed);
    const { record: grant, replaced } = book.open(door, src, family, now, lifetime);
    for (const { record, reason } of replaced) this.replaced(record, reason, src);
    const change = !signed
      ? this.deps.firewall.grant({ door, family, src, ports: null }, lifetime.openForMs)
      : lifetime.ports.length > 0
        ? this.deps.firewall.grant({ door, family, src, ports: lifetime.ports }, lifetime.openForMs)
        : Promise.resolve();
    change
      .then(
        () => this.opened(grant, refresh, capturedAt, signed, lifetime, heldLonger),
        (err: unknown) => {
          if (!refresh) book.close(door, src);
          this.firewallFailed("grant", err, { door: door.name, src });
        },
      )
      .catch((err: unknown) => this.followUpFailed("open", err, door, src));
  }

  /**
   * What a new grant or refresh writes: a refresh never shortens a grant, in the kernel or the book.
   * A sequence grant held longer (another node's, say) keeps its time; a signed datagram writes only
   * the ports it extends, and the others (`heldLonger`) keep theirs.
   */
  private lifetime(door: Door, now: number, live: GrantRecord | undefined, signed: SignedGrant | null): { lifetime: PortGrant; heldLonger: PortSpec[] } {
    if (signed) {
      const ends = now + signed.openForMs;
      const heldLonger = signed.ports.filter((p) => (live?.until?.get(portName(p)) ?? -Infinity) >= ends);
      return { lifetime: { ports: signed.ports.filter((p) => !hasPort(heldLonger, p)), openForMs: signed.openForMs }, heldLonger };
    }
    const left = live ? live.expiresAt - now : 0;
    // Whole seconds, rounded up, as the kernel keeps them.
    const openForMs = door.openForMs > 0 && left > door.openForMs ? (Number.isFinite(left) ? Math.ceil(left / 1000) * 1000 : 0) : door.openForMs;
    return { lifetime: { ports: this.deps.protection.portsOf(door.name), openForMs }, heldLonger: [] };
  }

  /**
   * The kernel lost these grants (a set or table removed underneath): each goes back for the time
   * the book gives it, a signed grant's ports each for its own. One that fails is logged like any
   * failed grant and stays in the book, whose sweep closes it on time.
   */
  private async putBackLostGrants(lost: readonly GrantRecord[]): Promise<GrantRecord[]> {
    const now = this.clock.now();
    // Whole seconds, rounded up, as the kernel keeps them; 0 (no timeout) for a grant until the close sequence.
    const left = (until: number) => (Number.isFinite(until) ? Math.ceil((until - now) / 1000) * 1000 : 0);
    const write = (g: GrantRecord): Promise<unknown> => {
      if (g.via === "sequence") return this.deps.firewall.grant({ door: g.door, family: g.family, src: g.src, ports: null }, left(g.expiresAt));
      const ports = g.ports.map((p) => ({ p, until: g.until?.get(portName(p)) ?? g.expiresAt })).filter((e) => e.until > now);
      return Promise.all(ports.map((e) => this.deps.firewall.grant({ door: g.door, family: g.family, src: g.src, ports: [e.p] }, left(e.until))));
    };
    const restored: GrantRecord[] = [];
    await Promise.all(
      lost
        .filter((g) => g.expiresAt > now)
        .map(async (g) => {
          try {
            await write(g);
            restored.push(g);
          } catch (err) {
            this.firewallFailed("grant", err, { door: g.door.name, src: g.src });
          }
        }),
    );
    return restored;
  }

  private bookOf(via: GrantVia): GrantBook {
    return via === "spa" ? this.spaGrants : this.grants;
  }

  /** Takes a grant of that path to `src` out of the kernel: a signed one's `ports`, the ones it opened. */
  private kernelRevoke(via: GrantVia, door: Door, family: Family, src: string, ports: readonly PortSpec[]): Promise<void> {
    return this.deps.firewall.revoke({ door, family, src, ports: via === "spa" ? ports : null });
  }

  /** A grant taken out to make room: revoked in the kernel, closed like any other, and counted. */
  private replaced(g: GrantRecord, reason: ReplaceReason, by: string): void {
    const { log, metrics } = this.deps;
    metrics.grantsReplaced.labels(g.door.name, reason).inc();
    metrics.closed(g.door.name, "replaced");
    this.hook("on_close", g.door, g.src, g.ports, true);
    log.info(
      { event: "close", door: g.door.name, src: g.src, ports: portsText(g), via: g.via, reason: "replaced", because: reason, by },
      `grant for ${g.src} replaced (${reason}) to make room for ${by}`,
    );
    this.kernelRevoke(g.via, g.door, g.family, g.src, g.ports).catch((err: unknown) => this.firewallFailed("revoke", err, { door: g.door.name, src: g.src }));
  }

  /** The kernel has the grant: measure, audit, run ON_OPEN. */
  private opened(grant: GrantRecord, refresh: boolean, capturedAt: number, signed: SignedGrant | null, lifetime: PortGrant, heldLonger: readonly PortSpec[]): void {
    const { log, metrics } = this.deps;
    const { door, src } = grant;
    const seconds = (this.clock.now() - capturedAt) / 1000;
    const { openForMs } = lifetime;
    const ports = portsText(signed ?? grant);
    metrics.knockToOpen.observe(seconds);
    metrics.opened(door.name);
    this.grantError = null;
    if (!refresh) this.hook("on_open", door, src, grant.ports);
    const wallNow = this.clock.wallNow();
    // A signed grant's own ports and time, not the book's (which span every port the address holds);
    // ports held longer are not published again with a shorter time.
    if (!signed || lifetime.ports.length > 0) {
      this.deps.cluster?.opened({
        door: door.name,
        address: src,
        family: grant.family,
        expiresAt: signed || Number.isFinite(grant.expiresAt) ? wallNow + openForMs : null,
        grantedAt: wallNow,
        how: signed ? "signed" : "sequence",
        ports: signed ? lifetime.ports.map(portName) : null,
      });
    }
    log.info(
      {
        event: "open",
        door: door.name,
        src,
        ports,
        via: grant.via,
        ...(signed ? { username: signed.username } : {}),
        refresh,
        open_for_s: openForMs / 1000,
        ...(heldLonger.length > 0 ? { held_longer: portsText({ ports: heldLonger }) } : {}),
        expires: Number.isFinite(grant.expiresAt) ? new Date(this.clock.wallNow() + openForMs).toISOString() : null,
        latency_ms: Math.round(seconds * 1e6) / 1e3,
      },
      `opened ${ports} for ${src}`,
    );
  }

  /**
   * A close sequence: revokes the source's sequence grant on the door, here and on every other
   * node. Only that: a signed grant ends by its time, never by knocks, which anyone can forge with
   * the client's address. With no grant here there is nothing to close here, but another node may
   * hold one (it knew of the grant while this node did not).
   */
  private close(door: Door, family: Family, src: string): void {
    if (!this.grants.has(door, src)) {
      this.deps.cluster?.closed(door, family, src);
      this.deps.log.info({ event: "close_ignored", door: door.name, src, reason: "no_grant" }, `close sequence from ${src}, which has no grant`);
      return;
    }
    this.revoke("sequence", door, family, src, false)
      .then(() => this.deps.cluster?.closed(door, family, src))
      .catch((err: unknown) => this.followUpFailed("close", err, door, src));
  }

  /**
   * Takes a grant of one path out of the kernel and the book: the ports it opened, or `only` those
   * of them; `remote`: its KnockGrant was deleted elsewhere.
   */
  private revoke(via: GrantVia, door: Door, family: Family, src: string, remote: boolean, only?: readonly PortSpec[]): Promise<void> {
    const { log, metrics } = this.deps;
    const book = this.bookOf(via);
    const held = book.get(door, src)?.ports ?? [];
    const ports = only ? held.filter((p) => hasPort(only, p)) : held;
    const left = held.filter((p) => !hasPort(ports, p));
    return this.kernelRevoke(via, door, family, src, ports).then(
      () => {
        this.grantError = null;
        if (left.length === 0) book.close(door, src);
        else book.keepPorts(door, src, left);
        metrics.closed(door.name, "close_sequence");
        this.hook("on_close", door, src, ports);
        const text = portsText({ ports });
        log.info({ event: "close", door: door.name, src, ports: text, via, reason: "close_sequence", remote }, `closed ${text} for ${src}`);
      },
      (err: unknown) => {
        this.firewallFailed("revoke", err, { door: door.name, src });
        throw err;
      },
    );
  }

  /**
   * A grant made on another node (KNOCK_CLUSTER): into the book under the same bounds as our own,
   * and into the kernel for the time it has left (whole seconds, rounded up; `expiresAt` is wall
   * time, null until a close sequence). `ports`: a signed grant's, into the door's per-port sets;
   * null: a sequence grant of the whole door. A sequence grant we already hold at least as long
   * changes nothing; a signed one is always written, as its ports' kernel entries keep times of
   * their own that the book does not know. ON_OPEN runs for a grant new here, so that it pairs
   * with the ON_CLOSE of its expiry or revocation.
   */
  async applyRemote(door: Door, family: Family, src: string, expiresAt: number | null, origin: string, ports: readonly PortSpec[] | null = null): Promise<boolean> {
    const now = this.clock.now();
    const remainingMs = expiresAt === null ? Infinity : expiresAt - this.clock.wallNow();
    if (remainingMs <= 0) return false;
    const via: GrantVia = ports ? "spa" : "sequence";
    const book = this.bookOf(via);
    let previous = book.get(door, src);
    // Run out before the sweep saw it: closed first, as a local knock does, so ON_CLOSE pairs with ON_OPEN.
    if (previous && previous.expiresAt <= now) {
      this.expired(previous);
      previous = undefined;
    }
    if (!ports && previous && previous.expiresAt >= now + remainingMs) return false;
    const opens = ports ?? this.deps.protection.portsOf(door.name);
    const forMs = Number.isFinite(remainingMs) ? Math.ceil(remainingMs / 1000) * 1000 : 0;
    if (ports) {
      for (const { record, reason } of book.open(door, src, family, now, { ports, openForMs: forMs }).replaced) this.replaced(record, reason, src);
    } else {
      if (!previous) for (const { record, reason } of book.open(door, src, family, now, { ports: opens, openForMs: door.openForMs }).replaced) this.replaced(record, reason, src);
      book.adopt(door, src, family, now + remainingMs, opens);
    }
    try {
      await this.deps.firewall.grant({ door, family, src, ports }, forMs);
    } catch (err) {
      if (!previous) book.close(door, src);
      this.firewallFailed("grant", err, { door: door.name, src });
      throw err;
    }
    this.grantError = null;
    if (!previous) this.hook("on_open", door, src, opens);
    const text = portsText({ ports: opens });
    this.deps.log.info(
      { event: "open", door: door.name, src, ports: text, via, refresh: previous !== undefined, origin, open_for_s: forMs / 1000 },
      `opened ${text} for ${src} (granted on ${origin})`,
    );
    return true;
  }

  /**
   * A KnockGrant deleted on another node (a close sequence there, or by hand): revoked here too, if
   * we hold it; a signed one's `ports` only, the ones its object named.
   */
  async revokeRemote(door: Door, family: Family, src: string, how: GrantHow = "sequence", ports: readonly PortSpec[] | null = null): Promise<boolean> {
    const via: GrantVia = how === "signed" ? "spa" : "sequence";
    if (!this.bookOf(via).has(door, src)) return false;
    await this.revoke(via, door, family, src, true, ports ?? undefined);
    return true;
  }

  /**
   * A throw after the kernel change (a logger or metrics bug, say) must not become an unhandled
   * rejection, which would end the process and with it the protection.
   */
  private followUpFailed(what: string, err: unknown, door: Door, src: string): void {
    try {
      this.deps.log.error({ event: `${what}_followup_failed`, door: door.name, src, ...errorFields(err) }, `after the ${what} of ${src}: ${String(err)}`);
    } catch {
      // Logging itself failed: nothing left to tell, and nothing may escape.
    }
  }

  /**
   * Runs the door's ON_OPEN/ON_CLOSE without waiting for it; failures are logged and counted.
   * `ports`: what the grant opened, for %PORTS% (a signed grant opens only some of the door's).
   * `replaced`: the ON_CLOSE of a grant taken out to make room, which a full queue drops first.
   */
  private hook(kind: HookKind, door: Door, src: string, ports: readonly PortSpec[], replaced = false): void {
    const template = kind === "on_open" ? door.onOpen : door.onClose;
    if (!template) return;
    const { metrics } = this.deps;
    const request = { kind, template, ip: src, door: ports === door.ports ? door : { ...door, ports: [...ports] } };
    void this.deps.runHook(replaced ? { ...request, replaced } : request).then(
      (r) => {
        if (r.dropped) metrics.hookDropped.labels(door.name, kind).inc();
        else if (!r.ok) metrics.hookErrors.labels(door.name, kind).inc();
      },
      () => metrics.hookErrors.labels(door.name, kind).inc(),
    );
  }

  private firewallFailed(operation: FirewallOperation, err: unknown, fields: Record<string, string>): void {
    const { code, err: message } = errorFields(err, "KNOCK_E_FIREWALL");
    this.deps.metrics.firewallFailed(operation);
    this.grantError = `${operation} failed: ${message}`;
    this.deps.log.error({ event: `${operation}_failed`, ...fields, code, err: message }, `${operation} failed: ${message}`);
  }

  /**
   * A timer callback: a throw here (a logger, metrics or hook bug) would end the process and its
   * protection, so each step is caught, and one grant's failure never skips the others' close lines.
   */
  private sweep(): void {
    const now = this.clock.now();
    this.guarded("sweep", () => this.machine.sweep(now));
    const expired = this.guarded("sweep", () => [...this.grants.expire(now), ...this.spaGrants.expire(now)]) ?? [];
    for (const g of expired) {
      try {
        this.expired(g);
      } catch (err) {
        this.followUpFailed("expiry", err, g.door, g.src);
      }
    }
    this.guarded("sweep", () => this.warnOfDrops(now));
  }

  /** Runs `step`; a throw is logged (`<what>_failed`) instead of escaping. */
  private guarded<T>(what: string, step: () => T): T | undefined {
    try {
      return step();
    } catch (err) {
      try {
        this.deps.log.error({ event: `${what}_failed`, ...errorFields(err) }, `${what}: ${String(err)}`);
      } catch {
        // Logging itself failed: nothing left to tell, and nothing may escape.
      }
      return undefined;
    }
  }

  private expired(g: GrantRecord): void {
    this.bookOf(g.via).close(g.door, g.src);
    this.deps.metrics.closed(g.door.name, "expired");
    this.hook("on_close", g.door, g.src, g.ports);
    this.deps.log.info({ event: "close", door: g.door.name, src: g.src, ports: portsText(g), via: g.via, reason: "expired" }, `grant for ${g.src} expired`);
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
