/**
 * What we granted and until when, for the audit log, ON_CLOSE, metrics and the bounds: the kernel
 * set is the truth and expires grants by itself. Pure, clock-injected. A restarted daemon refills
 * it from the kernel's own listing (adopt), so grants from before the restart close with their log
 * line too.
 *
 * Bounds, per door: at most `maxGrants` grants, and at most `maxPerPrefix` from one source prefix.
 * A new grant that would break one replaces a grant instead of failing: the oldest of its own
 * prefix when that prefix is at its cap, else the oldest of the prefix holding the most grants. So
 * whoever fills the set (one network, or a leaked sequence replayed from many) crowds out itself
 * first, and a real client still gets in.
 */
import { hasPort, portName, type Door, type Family, type WayIn, type PortSpec, type SourcePrefixes } from "../types.js";
import { prefixKey } from "./prefix.js";

export interface GrantRecord {
  door: Door;
  src: string;
  family: Family;
  /** Infinity when OPEN_FOR is 0 (until the close sequence). */
  expiresAt: number;
  prefix: string;
  /** How it came: a sequence grant opens the door's ports, a signed grant the ports it asked for. */
  via: WayIn;
  /** What the grant opens: the door's ports, or for a signed grant every port asked for while it lasted. */
  ports: readonly PortSpec[];
  /** A signed grant's end per port ("22/tcp" -> when): each port's kernel entry keeps its own time. */
  until?: ReadonlyMap<string, number>;
}

/** Each of `ports` ending at `at`, or later where `previous` already said so. */
function portsUntil(ports: readonly PortSpec[], at: number, previous?: ReadonlyMap<string, number>): Map<string, number> {
  const until = new Map(previous);
  for (const p of ports) until.set(portName(p), Math.max(until.get(portName(p)) ?? -Infinity, at));
  return until;
}

/** A grant of some of a door's ports for a time of its own (a signed datagram's). */
export interface PortGrant {
  ports: readonly PortSpec[];
  openForMs: number;
}

export interface GrantLimits {
  maxGrants: number;
  maxPerPrefix: number;
  prefixes: SourcePrefixes;
}

export type ReplaceReason = "prefix_full" | "set_full";

export interface Opened {
  record: GrantRecord;
  /** Grants taken out to make room for this one (none for a refresh). */
  replaced: Replaced[];
}

export interface Replaced {
  record: GrantRecord;
  reason: ReplaceReason;
}

/** One door's grants: by source, and per prefix oldest first, with prefixes bucketed by count. */
class DoorGrants {
  readonly bySrc = new Map<string, GrantRecord>();
  /** Insertion-ordered: the first source of a prefix is its oldest grant. */
  readonly byPrefix = new Map<string, Set<string>>();
  /** count -> prefixes with that many grants; `top` is the largest non-empty count. */
  private readonly byCount = new Map<number, Set<string>>();
  private top = 0;

  add(record: GrantRecord): void {
    this.bySrc.set(record.src, record);
    let srcs = this.byPrefix.get(record.prefix);
    if (!srcs) this.byPrefix.set(record.prefix, (srcs = new Set()));
    srcs.add(record.src);
    this.recount(record.prefix, srcs.size - 1, srcs.size);
  }

  delete(record: GrantRecord): void {
    this.bySrc.delete(record.src);
    const srcs = this.byPrefix.get(record.prefix);
    if (!srcs?.delete(record.src)) return;
    if (srcs.size === 0) this.byPrefix.delete(record.prefix);
    this.recount(record.prefix, srcs.size + 1, srcs.size);
  }

  /** The oldest grant of `prefix`, or of the most crowded prefix when none is given. */
  oldest(prefix = this.crowded()): GrantRecord | undefined {
    const first = prefix === undefined ? undefined : this.byPrefix.get(prefix)?.values().next().value;
    return first === undefined ? undefined : this.bySrc.get(first);
  }

  private crowded(): string | undefined {
    return this.byCount.get(this.top)?.values().next().value;
  }

  private recount(prefix: string, from: number, to: number): void {
    this.byCount.get(from)?.delete(prefix);
    if (to > 0) {
      let set = this.byCount.get(to);
      if (!set) this.byCount.set(to, (set = new Set()));
      set.add(prefix);
    }
    if (to > this.top) this.top = to;
    while (this.top > 0 && !this.byCount.get(this.top)?.size) this.top--;
  }
}

/** Ports of both lists, each once, in order of first appearance. */
function unionPorts(a: readonly PortSpec[], b: readonly PortSpec[]): PortSpec[] {
  return [...a, ...b.filter((p) => !hasPort(a, p))];
}

/** Where a way in's grants live: per door, per way in, as the kernel keeps them in sets of their own. */
const bookKey = (door: Door, via: WayIn): string => `${door.name}\0${via}`;

/**
 * Every grant, of every way in. Bounds hold per door and way in, as each has its kernel set. A
 * refresh never shortens: a door-wide grant keeps the later of its two ends, a signed grant each
 * port's later end, so the book says what the kernel must hold.
 */
export class GrantBook {
  private readonly sets = new Map<string, DoorGrants>();

  constructor(private readonly limits: GrantLimits) {}

  private of(door: Door, via: WayIn): DoorGrants {
    const key = bookKey(door, via);
    let grants = this.sets.get(key);
    if (!grants) this.sets.set(key, (grants = new DoorGrants()));
    return grants;
  }

  /**
   * Records a new or refreshed grant. A source without a grant first gets room under the bounds:
   * what had to go is returned with the reason, for the caller to revoke. A refresh takes no room.
   */
  open(door: Door, via: WayIn, src: string, family: Family, now: number, grant: PortGrant): Opened {
    const record = this.preview(door, via, src, family, now, grant);
    const replaced = this.get(door, via, src) ? [] : this.makeRoom(door, via, record.prefix);
    return { record: this.insert(record, record.expiresAt), replaced };
  }

  /** The record `open` would make now, changing nothing: what a kernel write ahead of the booking holds. */
  preview(door: Door, via: WayIn, src: string, family: Family, now: number, grant: PortGrant): GrantRecord {
    const ends = grant.openForMs > 0 ? now + grant.openForMs : Infinity;
    const { ports } = grant;
    const previous = this.get(door, via, src);
    // A signed grant adds ports to what the address holds; each port's kernel entry keeps its own time.
    if (previous && via === "signed") return { ...previous, ports: unionPorts(previous.ports, ports), until: portsUntil(ports, ends, previous.until), expiresAt: Math.max(previous.expiresAt, ends) };
    if (previous) return { ...previous, ports, expiresAt: Math.max(previous.expiresAt, ends) };
    const until = via === "signed" ? { until: portsUntil(ports, ends) } : {};
    return { door, src, family, expiresAt: ends, prefix: prefixKey(src, family, this.limits.prefixes), via, ports, ...until };
  }

  /** Takes out what must go so that one more grant from `prefix` fits the bounds, and says why. */
  private makeRoom(door: Door, via: WayIn, prefix: string): Replaced[] {
    const grants = this.of(door, via);
    const replaced: Replaced[] = [];
    const take = (record: GrantRecord | undefined, reason: ReplaceReason): boolean => {
      if (!record) return false;
      grants.delete(record);
      replaced.push({ record, reason });
      return true;
    };
    while ((grants.byPrefix.get(prefix)?.size ?? 0) >= this.limits.maxPerPrefix && take(grants.oldest(prefix), "prefix_full"));
    while (grants.bySrc.size >= this.limits.maxGrants && take(grants.oldest(), "set_full"));
    return replaced;
  }

  /**
   * Records a grant found in the kernel at start, expiring at `expiresAt` (Infinity: until the close
   * sequence). The kernel already holds it, so nothing is replaced for it.
   */
  adopt(door: Door, via: WayIn, src: string, family: Family, expiresAt: number, ports: readonly PortSpec[]): GrantRecord {
    const previous = this.of(door, via).bySrc.get(src);
    const until = via === "signed" ? { until: portsUntil(ports, expiresAt) } : {};
    return this.insert(previous ?? { door, src, family, expiresAt, prefix: prefixKey(src, family, this.limits.prefixes), via, ports, ...until }, expiresAt);
  }

  /** (Re-)inserts, so a refresh makes the grant the newest of its prefix (the last to be replaced). */
  private insert(record: GrantRecord, expiresAt: number): GrantRecord {
    const grants = this.of(record.door, record.via);
    grants.delete(record);
    const inserted = { ...record, expiresAt };
    grants.add(inserted);
    return inserted;
  }

  get(door: Door, via: WayIn, src: string): GrantRecord | undefined {
    return this.sets.get(bookKey(door, via))?.bySrc.get(src);
  }

  /** Narrows a grant to `ports` (the others were revoked), keeping its place and time. */
  keepPorts(record: GrantRecord, ports: readonly PortSpec[]): void {
    const grants = this.sets.get(bookKey(record.door, record.via));
    if (grants?.bySrc.get(record.src) !== record) return;
    const until = record.until && { until: new Map([...record.until].filter(([port]) => ports.some((p) => portName(p) === port))) };
    grants.bySrc.set(record.src, { ...record, ports, ...until });
  }

  /** Removes a grant; returns it if we had one. */
  close(door: Door, via: WayIn, src: string): GrantRecord | undefined {
    const grants = this.sets.get(bookKey(door, via));
    const record = grants?.bySrc.get(src);
    if (record) grants?.delete(record);
    return record;
  }

  /** Takes out and returns every grant whose time is up. */
  expire(now: number): GrantRecord[] {
    const expired: GrantRecord[] = [];
    for (const grants of this.sets.values()) {
      for (const record of grants.bySrc.values()) if (record.expiresAt <= now) expired.push(record);
    }
    for (const record of expired) this.of(record.door, record.via).delete(record);
    return expired;
  }

  /** Every grant held now, for comparing with what the kernel holds. */
  records(): GrantRecord[] {
    return [...this.sets.values()].flatMap((grants) => [...grants.bySrc.values()]);
  }

  get size(): number {
    let n = 0;
    for (const grants of this.sets.values()) n += grants.bySrc.size;
    return n;
  }
}
