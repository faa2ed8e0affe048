/**
 * The grant lifecycle. Every way in (a knock sequence, a signed datagram, another node's
 * KnockGrant) hands a GrantRequest to `open`, and this one component does what follows: bounds and
 * replacement, refresh (never shorter, in the book or the kernel), the kernel write, the audit line,
 * hooks, the cluster object, expiry, adoption at start, repair and close. The kernel set is the
 * truth and expires grants by itself; the book (core/grants) is what we granted and until when.
 */
import type { Clock } from "../core/clock.js";
import { errorFields } from "../core/errors.js";
import { GrantBook, type GrantLimits, type GrantRecord, type ReplaceReason } from "../core/grants/grant-book.js";
import type { ClusterGrant } from "../core/cluster/knock-grant.js";
import { portName, portsText, type Door, type Family, type PortSpec, type WayIn } from "../core/types.js";
import { listedKey, type Firewall, type GrantKey, type ListedGrant, type ReplayEntry, type ReplayRecord, type TimedGrant } from "../adapters/firewall/firewall.js";
import type { HookKind, HookRunner } from "../adapters/hooks.js";
import type { Logger } from "../adapters/log.js";
import type { Metrics } from "../adapters/metrics/metrics.js";
import type { CloseReason, FirewallOperation } from "../adapters/metrics/table.js";
import { guard, logFailure } from "./guard.js";
import type { DoorPorts } from "./protection.js";

/** What a way in asks for. */
export interface GrantRequest {
  door: Door;
  family: Family;
  src: string;
  via: WayIn;
  /** A signed grant's ports (each one the door protects); a sequence grant opens the door's ports, whatever they are now. */
  ports?: readonly PortSpec[];
  /** 0: until the close sequence. */
  openForMs: number;
  /** When the knock or datagram was captured: knock-to-open runs from here. None for another node's grant. */
  capturedAt?: number;
  /** Another node's grant: that node. It is not published again, nor counted as an open of ours. */
  origin?: string;
  /** A signed datagram's username, for the audit line. */
  username?: string;
  /** The kernel engine made it and no daemon took its report: found at start, or lost while running; opened late. */
  late?: LateReason;
  /** A signed datagram's replay record: the grant goes in only with it, in one kernel write. */
  replay?: ReplayEntry;
}

/** Why a grant the kernel engine made is opened late: made while no daemon ran, or its report lost. */
export type LateReason = "while_down" | "report_lost";

/** What the late open line says after the address. */
const LATE_TEXT: Record<LateReason, string> = {
  while_down: " (by the kernel while the daemon was down)",
  report_lost: " (by the kernel; its report was lost)",
};

/**
 * What became of a request: in the kernel; nothing to do (another node's grant we hold longer);
 * refused with nothing written because its replay record was there ("seen") or found no room
 * ("full"); or failed, which is logged and counted here.
 */
export type OpenResult = "opened" | "unchanged" | "seen" | "full" | "failed";

/** Which grant to take away: a signed one's `ports` only, when given. */
export interface CloseRequest {
  door: Door;
  family: Family;
  src: string;
  via: WayIn;
  ports?: readonly PortSpec[];
  /** Its KnockGrant was deleted elsewhere (a close sequence on another node, or by hand). */
  remote?: boolean;
}

/** Where grants made here go once the kernel has them (ways/cluster/cluster-sync.ts); never awaited. */
export interface GrantPublisher {
  opened(grant: Omit<ClusterGrant, "origin">): void;
  closed(door: Door, family: Family, src: string): void;
}

export interface GrantsDeps {
  doors: readonly Door[];
  firewall: Firewall;
  /** Each door's ports now: what a sequence grant opens. */
  protection: DoorPorts;
  log: Logger;
  metrics: Metrics;
  clock: Clock;
  runHook: HookRunner;
  limits: GrantLimits;
  publisher?: GrantPublisher;
}

/**
 * Time left until `end` as the kernel keeps it: whole seconds, rounded up; 0 (no timeout) for a
 * grant until the close sequence. Whole milliseconds first: monotonic times are fractional, and
 * (now + 30000) - now can come out a hair above 30000, which would round up to a second more.
 */
const kernelMs = (end: number, now: number): number => (Number.isFinite(end) ? Math.ceil(Math.round(end - now) / 1000) * 1000 : 0);

/** A grant's kernel entries by end: one for a door-wide grant, one per end among a signed grant's ports. */
function entriesOf(record: GrantRecord, ports: readonly PortSpec[] | null): Map<number, PortSpec[] | null> {
  if (record.via === "sequence") return new Map([[record.expiresAt, null]]);
  const byEnd = new Map<number, PortSpec[]>();
  for (const p of ports ?? record.ports) {
    const end = record.until?.get(portName(p)) ?? record.expiresAt;
    byEnd.set(end, [...(byEnd.get(end) ?? []), p]);
  }
  return byEnd;
}

/** A grant's kernel entries (entriesOf), each with the time it has left at `now`; one already over is left out. */
function timedEntries(key: Omit<GrantKey, "ports">, entries: Map<number, PortSpec[] | null>, now: number, refresh = false): TimedGrant[] {
  return [...entries].filter(([end]) => end > now).map(([end, ports]) => ({ grant: { ...key, ports }, forMs: kernelMs(end, now), ...(refresh ? { refresh } : {}) }));
}

/** The ports of `asked` that `live` already holds until `ends` or later. */
function heldLongerOf(live: GrantRecord | undefined, via: WayIn, asked: readonly PortSpec[], ends: number): PortSpec[] {
  return live ? asked.filter((p) => (via === "signed" ? (live.until?.get(portName(p)) ?? -Infinity) : live.expiresAt) >= ends) : [];
}

/** A grant the kernel engine made, to be opened late for the time its listing has left. */
const lateRequest = (door: Door, g: ListedGrant, late: LateReason): GrantRequest => ({ door, family: g.family, src: g.src, via: "sequence", openForMs: g.remainingMs ?? 0, late });

/** A grant's key among the kernel writes in flight: door, way in, address. */
const writeKey = (door: Door, via: WayIn, src: string): string => `${door.name}\0${via}\0${src}`;

export class Grants {
  private readonly book: GrantBook;
  /** Why the last grant or revoke failed; null once one succeeded. */
  error: string | null = null;
  /** Grants (door, way in, address) with a kernel write in flight, and how many. */
  private readonly writing = new Map<string, number>();
  /** Per grant (door, way in, address), when its last open has settled. */
  private readonly opening = new Map<string, Promise<void>>();
  /** Door-wide grants asked for since the last openUnreported (listedKey): their reports came. */
  private reported = new Set<string>();

  /** The doors by name, as kernel listings name them. */
  private readonly doors: Map<string, Door>;

  constructor(private readonly deps: GrantsDeps) {
    this.book = new GrantBook(deps.limits);
    this.doors = new Map(deps.doors.map((d) => [d.name, d]));
  }

  get size(): number {
    return this.book.size;
  }

  /** Every grant the book holds whose time has not run out and whose kernel write has finished. */
  held(): GrantRecord[] {
    const now = this.deps.clock.now();
    return this.book.records().filter((g) => g.expiresAt > now && !this.writing.has(writeKey(g.door, g.via, g.src)));
  }

  /** Runs a kernel write of the grant, which `held` leaves out meanwhile. */
  private async write<T>(door: Door, via: WayIn, src: string, work: () => Promise<T>): Promise<T> {
    const key = writeKey(door, via, src);
    this.writing.set(key, (this.writing.get(key) ?? 0) + 1);
    try {
      return await work();
    } finally {
      const n = (this.writing.get(key) ?? 1) - 1;
      if (n === 0) this.writing.delete(key);
      else this.writing.set(key, n);
    }
  }

  /**
   * Books the grant at once (so the bounds count grants in flight too), making room first when the
   * door or the source's prefix is full, then writes each kernel entry with the later of its two
   * ends; a grant with a replay record books once the kernel took it (openRecorded). Opens of one
   * grant (door, way in, address) run one after another, each from what the last one left. Never
   * rejects: ways in call it from the capture callback and timers.
   */
  open(req: GrantRequest): Promise<OpenResult> {
    const key = writeKey(req.door, req.via, req.src);
    const result = (this.opening.get(key) ?? Promise.resolve()).then(() => this.settled("open", req, () => this.tryOpen(req), "failed"));
    const done = result.then(() => undefined);
    this.opening.set(key, done);
    void done.then(() => {
      if (this.opening.get(key) === done) this.opening.delete(key);
    });
    return result;
  }

  private async tryOpen(req: GrantRequest): Promise<OpenResult> {
    const { door, family, src, via } = req;
    const now = this.deps.clock.now();
    if (via === "sequence" && req.late === undefined) this.reported.add(listedKey({ door: door.name, family, src }));
    const asked = req.ports ?? this.deps.protection.portsOf(door.name);
    // Its write reads the book when it runs (records queue): what it holds now is not what counts.
    if (req.replay) return this.openRecorded(req, req.replay, asked);
    const live = this.live(door, via, src, now);
    const heldLonger = heldLongerOf(live, via, asked, req.openForMs > 0 ? now + req.openForMs : Infinity);
    // Another node's sequence grant we hold at least as long changes nothing. A signed one is always
    // written: after a restart the book knows only the longest of an address's port times.
    if (req.origin !== undefined && via === "sequence" && heldLonger.length > 0) return "unchanged";
    const { record, replaced } = this.book.open(door, via, src, family, now, { ports: asked, openForMs: req.openForMs });
    for (const r of replaced) this.replaced(r.record, r.reason, src);
    const entries = entriesOf(record, via === "signed" ? asked : null);
    try {
      await this.writeEntries(via, { door, family, src }, entries, now);
    } catch (err) {
      if (!live) this.book.close(door, via, src);
      this.failed("grant", err, door, src);
      return "failed";
    }
    guard(this.deps.log, "open_followup", { door: door.name, src }, () => this.opened(req, record, asked, live !== undefined, heldLonger, entries));
    return "opened";
  }

  /** Writes a grant's kernel entries one after another, as a kernel write of the grant (see `write`). */
  private writeEntries(via: WayIn, key: Omit<GrantKey, "ports">, entries: Map<number, PortSpec[] | null>, now: number): Promise<void> {
    return this.write(key.door, via, key.src, async () => {
      for (const t of timedEntries(key, entries, now)) await this.deps.firewall.grant(t.grant, t.forMs);
    });
  }

  /** The grant the book holds and whose time has not run out; one whose time ran out is closed first, so ON_CLOSE pairs with ON_OPEN. */
  private live(door: Door, via: WayIn, src: string, now: number): GrantRecord | undefined {
    const previous = this.book.get(door, via, src);
    if (previous && previous.expiresAt <= now) guard(this.deps.log, "open_followup", { door: door.name, src }, () => this.expired(previous));
    return previous !== undefined && previous.expiresAt > now ? previous : undefined;
  }

  /**
   * A grant whose replay record is its precondition (a signed datagram's): written with the record
   * in one kernel write, from the book as it is when the write runs (records queue); booked, and
   * what it displaces revoked, only once the kernel took the record, so a replay the kernel
   * refuses changes nothing. Meanwhile the bounds do not count it: records go one at a time, and
   * the kernel set's headroom (core/firewall/plan.ts) holds the one briefly over.
   */
  private async openRecorded(req: GrantRequest, replay: ReplayEntry, asked: readonly PortSpec[]): Promise<OpenResult> {
    const { door, family, src, via } = req;
    const key = { door, family, src };
    const grant = { ports: asked, openForMs: req.openForMs };
    let at = 0;
    let seen: GrantRecord | undefined;
    let entries = new Map<number, PortSpec[] | null>();
    let result: ReplayRecord;
    try {
      result = await this.write(door, via, src, () =>
        this.deps.firewall.replay.grant(replay, () => {
          at = this.deps.clock.now();
          seen = this.live(door, via, src, at);
          entries = entriesOf(this.book.preview(door, via, src, family, at, grant), asked);
          return timedEntries(key, entries, at, seen !== undefined);
        }),
      );
      if (result === "recorded" && seen !== undefined && this.book.get(door, via, src) !== seen) {
        // Its grant left the book while the record was in flight (displaced, expired, closed), and a
        // revoke of it may have reached the kernel after this write: written again behind it, as new.
        seen = undefined;
        entries = entriesOf(this.book.preview(door, via, src, family, at, grant), asked);
        await this.writeEntries(via, key, entries, at);
      }
    } catch (err) {
      this.failed("grant", err, door, src);
      return "failed";
    }
    if (result !== "recorded") return result;
    const heldLonger = heldLongerOf(seen, via, asked, req.openForMs > 0 ? at + req.openForMs : Infinity);
    const { record, replaced } = this.book.open(door, via, src, family, at, grant);
    for (const r of replaced) this.replaced(r.record, r.reason, src);
    guard(this.deps.log, "open_followup", { door: door.name, src }, () => this.opened(req, record, asked, seen !== undefined, heldLonger, entries));
    return "opened";
  }

  /** The kernel has it: measure, publish, audit, run ON_OPEN. */
  private opened(req: GrantRequest, record: GrantRecord, asked: readonly PortSpec[], refresh: boolean, heldLonger: readonly PortSpec[], entries: Map<number, PortSpec[] | null>): void {
    const { log, metrics, clock, publisher } = this.deps;
    const { door, src, family, via } = req;
    const now = clock.now();
    const wallNow = clock.wallNow();
    this.error = null;
    const latency = req.capturedAt === undefined ? {} : { latency_ms: Math.round((now - req.capturedAt) * 1e3) / 1e3 };
    if (req.capturedAt !== undefined) metrics.knockToOpen.observe((now - req.capturedAt) / 1000);
    if (req.origin === undefined) {
      metrics.opened(door.name);
      for (const [end, ports] of entries) {
        const expiresAt = Number.isFinite(end) ? wallNow + (end - now) : null;
        publisher?.opened({ door: door.name, address: src, family, expiresAt, grantedAt: wallNow, how: via, ports: ports?.map(portName) ?? null });
      }
    }
    if (!refresh) this.hook("on_open", door, src, record.ports);
    const end = Math.max(...entries.keys());
    const text = portsText({ ports: asked });
    log.info(
      {
        event: "open",
        door: door.name,
        src,
        ports: text,
        via,
        refresh,
        open_for_s: kernelMs(end, now) / 1000,
        expires: Number.isFinite(end) ? new Date(wallNow + (end - now)).toISOString() : null,
        ...latency,
        ...(req.origin === undefined ? {} : { origin: req.origin }),
        ...(req.username === undefined ? {} : { username: req.username }),
        ...(heldLonger.length > 0 ? { held_longer: portsText({ ports: heldLonger }) } : {}),
        ...(req.late ? { [req.late]: true } : {}),
      },
      `opened ${text} for ${src}${req.origin !== undefined ? ` (granted on ${req.origin})` : req.late ? LATE_TEXT[req.late] : ""}`,
    );
  }

  /**
   * A close sequence here: closes the source's sequence grant, here and on every other node. Only
   * that: a signed grant ends by its time, never by knocks, which anyone can forge with the
   * client's address. With no grant here another node may still hold one, so the close goes out.
   */
  closeSequence(door: Door, family: Family, src: string): Promise<boolean> {
    return this.settled("close", { door, src }, async () => {
      const publish = () => this.deps.publisher?.closed(door, family, src);
      if (!this.book.get(door, "sequence", src)) {
        publish();
        this.deps.log.info({ event: "close_ignored", door: door.name, src, reason: "no_grant" }, `close sequence from ${src}, which has no grant`);
        return false;
      }
      const closed = await this.tryClose({ door, family, src, via: "sequence" });
      if (closed) publish();
      return closed;
    }, false);
  }

  /**
   * Runs `work`, which resolves its own failure when the kernel refuses (`failed` logs and counts
   * that); anything else it throws (a bug in a step) is logged here and resolves `failed` too.
   */
  private async settled<T>(what: string, req: { door: Door; src: string }, work: () => Promise<T>, failed: T): Promise<T> {
    try {
      return await work();
    } catch (err) {
      logFailure(this.deps.log, what, { door: req.door.name, src: req.src }, err);
      return failed;
    }
  }

  /**
   * Takes a grant out of the kernel and the book: the ports it opened, or `ports` of them. Resolves
   * false when there was no such grant or the kernel refused (logged and counted here); never rejects.
   */
  close(req: CloseRequest): Promise<boolean> {
    return this.settled("close", req, () => this.tryClose(req), false);
  }

  private async tryClose(req: CloseRequest): Promise<boolean> {
    const { door, family, src, via } = req;
    const record = this.book.get(door, via, src);
    if (!record) return false;
    const ports = req.ports ? record.ports.filter((p) => req.ports?.some((q) => portName(q) === portName(p))) : record.ports;
    const left = record.ports.filter((p) => !ports.includes(p));
    try {
      await this.write(door, via, src, () => this.deps.firewall.revoke({ door, family, src, ports: via === "signed" ? ports : null }));
    } catch (err) {
      this.failed("revoke", err, door, src);
      return false;
    }
    this.error = null;
    if (left.length === 0) this.book.close(door, via, src);
    else this.book.keepPorts(record, left);
    guard(this.deps.log, "close_followup", { door: door.name, src }, () => {
      const text = portsText({ ports });
      this.closedLine({ ...record, ports }, "close_sequence", { remote: req.remote ?? false }, `closed ${text} for ${src}`);
    });
    return true;
  }

  /** The sweep: every grant whose time is up is closed, each on its own (one's failing follow-up never skips the others). */
  sweep(now: number): void {
    for (const g of this.book.expire(now)) guard(this.deps.log, "expiry_followup", { door: g.door.name, src: g.src }, () => this.expired(g, false));
  }

  /**
   * Grants a previous run left in the kernel go into the book with the time they have left, so their
   * expiry is logged and runs ON_CLOSE like any other. The kernel expires them regardless: a listing
   * that fails costs only those lines, and is said so. One the kernel engine made while no daemon
   * read its reports is opened as if reported now, for the time it has left: its audit line,
   * ON_OPEN and its cluster object come late rather than never.
   */
  async adopt(): Promise<void> {
    const { firewall, log, clock, protection } = this.deps;
    let listed: ListedGrant[];
    let marks: ListedGrant[];
    try {
      [listed, marks] = await Promise.all([firewall.grants(), firewall.unreported()]);
    } catch (err) {
      log.warn({ event: "grants_not_adopted", ...errorFields(err, "KNOCK_E_FIREWALL") }, "could not list the grants already in the kernel; they still expire on time, without a close line or ON_CLOSE");
      return;
    }
    const unread = new Set(marks.map(listedKey));
    const now = clock.now();
    let adopted = 0;
    const late: GrantRequest[] = [];
    for (const g of listed) {
      const door = this.doors.get(g.door);
      if (!door) continue;
      if (g.ports === null && unread.has(listedKey(g))) {
        late.push(lateRequest(door, g, "while_down"));
        continue;
      }
      const via: WayIn = g.ports === null ? "sequence" : "signed";
      this.book.adopt(door, via, g.src, g.family, g.remainingMs === null ? Infinity : now + g.remainingMs, g.ports ?? protection.portsOf(g.door));
      adopted++;
    }
    if (adopted > 0) log.info({ event: "grants_adopted", grants: adopted }, `adopted ${adopted} grant${adopted === 1 ? "" : "s"} already in the kernel`);
    await Promise.all(late.map((req) => this.open(req)));
  }

  /**
   * Grants the kernel engine made whose reports were lost while this daemon ran (their marks, which
   * each reconcile pass hands over: none, or those found unread twice in a row), opened as if
   * reported now. One asked for since the last pass was reported after the listing: its write takes
   * the mark. Resolves to how many were taken for lost and how many of them opened.
   */
  async openUnreported(marks: readonly ListedGrant[]): Promise<{ lost: number; opened: number }> {
    const reported = this.reported;
    this.reported = new Set();
    const late = marks.flatMap((m) => {
      const door = this.doors.get(m.door);
      return door && !reported.has(listedKey(m)) && !this.writing.has(writeKey(door, "sequence", m.src)) ? [lateRequest(door, m, "report_lost")] : [];
    });
    const results = await Promise.all(late.map((req) => this.open(req)));
    return { lost: late.length, opened: results.filter((r) => r === "opened").length };
  }

  /**
   * The kernel lost these grants (a set or table removed underneath): each goes back for the time
   * the book gives it, a signed grant's ports each for its own. One that fails is logged like any
   * failed grant and stays in the book, whose sweep closes it on time. Resolves to those put back.
   */
  async restore(lost: readonly GrantRecord[]): Promise<GrantRecord[]> {
    const now = this.deps.clock.now();
    const restored: GrantRecord[] = [];
    await Promise.all(
      lost
        .filter((g) => g.expiresAt > now)
        .map(async (g) => {
          const key = { door: g.door, family: g.family, src: g.src };
          try {
            await this.writeEntries(g.via, key, entriesOf(g, null), now);
            // Closed while it went back (a close sequence, a replacement): taken away again.
            if (this.book.get(g.door, g.via, g.src) === undefined) await this.deps.firewall.revoke({ ...key, ports: g.via === "signed" ? g.ports : null });
            else restored.push(g);
          } catch (err) {
            this.failed("grant", err, g.door, g.src);
          }
        }),
    );
    return restored;
  }

  /** A grant taken out to make room: revoked in the kernel first (the bound holds whatever follows), closed like any other, and counted. */
  private replaced(g: GrantRecord, reason: ReplaceReason, by: string): void {
    const ports = g.via === "signed" ? g.ports : null;
    this.deps.firewall.revoke({ door: g.door, family: g.family, src: g.src, ports }).catch((err: unknown) => this.failed("revoke", err, g.door, g.src));
    guard(this.deps.log, "open_followup", { door: g.door.name, src: by }, () => {
      this.deps.metrics.grantsReplaced.labels(g.door.name, reason).inc();
      this.closedLine(g, "replaced", { because: reason, by }, `grant for ${g.src} replaced (${reason}) to make room for ${by}`, true);
    });
  }

  /** Its time is up: out of the book (unless the sweep took it out already), closed. */
  private expired(g: GrantRecord, inBook = true): void {
    if (inBook) this.book.close(g.door, g.via, g.src);
    this.closedLine(g, "expired", {}, `grant for ${g.src} expired`);
  }

  /** One close line for every reason, with its metric and ON_CLOSE. */
  private closedLine(g: GrantRecord, reason: CloseReason, fields: Record<string, string | boolean>, message: string, replaced = false): void {
    this.deps.metrics.closed(g.door.name, reason);
    this.hook("on_close", g.door, g.src, g.ports, replaced);
    this.deps.log.info({ event: "close", door: g.door.name, src: g.src, ports: portsText(g), via: g.via, reason, ...fields }, message);
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

  private failed(operation: FirewallOperation, err: unknown, door: Door, src: string): void {
    const { code, err: message } = errorFields(err, "KNOCK_E_FIREWALL");
    this.deps.metrics.firewallFailed(operation);
    this.error = `${operation} failed: ${message}`;
    this.deps.log.error({ event: `${operation}_failed`, door: door.name, src, code, err: message }, `${operation} failed: ${message}`);
  }
}
