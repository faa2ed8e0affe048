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
import { hasPort, portName, type Door, type Family, type GrantVia, type PortSpec, type SourcePrefixes } from "../types.js";
import { prefixKey } from "./prefix.js";

export interface GrantRecord {
  door: Door;
  src: string;
  family: Family;
  /** Infinity when OPEN_FOR is 0 (until the close sequence). */
  expiresAt: number;
  prefix: string;
  /** The book's path: "sequence" grants open the door's ports, "spa" grants the ports they asked for. */
  via: GrantVia;
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

/**
 * One book per path: the daemon keeps sequence grants and signed grants apart, as the kernel keeps
 * them in different sets; each book has the bounds to itself.
 */
export class GrantBook {
  private readonly doors = new Map<string, DoorGrants>();

  constructor(
    private readonly limits: GrantLimits,
    private readonly via: GrantVia = "sequence",
  ) {}

  private of(door: Door): DoorGrants {
    let grants = this.doors.get(door.name);
    if (!grants) this.doors.set(door.name, (grants = new DoorGrants()));
    return grants;
  }

  /**
   * Records a new or refreshed grant. A source without a grant first gets room under the bounds:
   * what had to go is returned with the reason, for the caller to revoke. A refresh takes no room.
   */
  open(door: Door, src: string, family: Family, now: number, grant: PortGrant): Opened {
    const expiresAt = grant.openForMs > 0 ? now + grant.openForMs : Infinity;
    const { ports } = grant;
    const previous = this.of(door).bySrc.get(src);
    // A signed grant adds ports to what the address holds; each port's kernel entry keeps its own time.
    if (previous && this.via === "spa") {
      const until = portsUntil(ports, expiresAt, previous.until);
      return { record: this.insert(door, { ...previous, ports: unionPorts(previous.ports, ports), until }, Math.max(previous.expiresAt, expiresAt)), replaced: [] };
    }
    if (previous) return { record: this.insert(door, { ...previous, ports }, expiresAt), replaced: [] };
    const prefix = prefixKey(src, family, this.limits.prefixes);
    const replaced = this.makeRoom(door, prefix);
    const until = this.via === "spa" ? { until: portsUntil(ports, expiresAt) } : {};
    return { record: this.insert(door, { door, src, family, expiresAt, prefix, via: this.via, ports, ...until }, expiresAt), replaced };
  }

  /** Takes out what must go so that one more grant from `prefix` fits the bounds, and says why. */
  private makeRoom(door: Door, prefix: string): Replaced[] {
    const grants = this.of(door);
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
  adopt(door: Door, src: string, family: Family, expiresAt: number, ports: readonly PortSpec[]): GrantRecord {
    const previous = this.of(door).bySrc.get(src);
    const until = this.via === "spa" ? { until: portsUntil(ports, expiresAt) } : {};
    return this.insert(door, previous ?? { door, src, family, expiresAt, prefix: prefixKey(src, family, this.limits.prefixes), via: this.via, ports, ...until }, expiresAt);
  }

  /** (Re-)inserts, so a refresh makes the grant the newest of its prefix (the last to be replaced). */
  private insert(door: Door, record: GrantRecord, expiresAt: number): GrantRecord {
    const grants = this.of(door);
    grants.delete(record);
    const inserted = { ...record, expiresAt };
    grants.add(inserted);
    return inserted;
  }

  has(door: Door, src: string): boolean {
    return this.doors.get(door.name)?.bySrc.has(src) ?? false;
  }

  get(door: Door, src: string): GrantRecord | undefined {
    return this.doors.get(door.name)?.bySrc.get(src);
  }

  /** Narrows a grant to `ports` (the others were revoked), keeping its place and time. */
  keepPorts(door: Door, src: string, ports: readonly PortSpec[]): void {
    const record = this.doors.get(door.name)?.bySrc.get(src);
    if (!record) return;
    const until = record.until && { until: new Map([...record.until].filter(([port]) => ports.some((p) => portName(p) === port))) };
    this.doors.get(door.name)?.bySrc.set(src, { ...record, ports, ...until });
  }

  /** Removes a grant; returns it if we had one. */
  close(door: Door, src: string): GrantRecord | undefined {
    const grants = this.doors.get(door.name);
    const record = grants?.bySrc.get(src);
    if (record) grants?.delete(record);
    return record;
  }

  /** Takes out and returns every grant whose time is up. */
  expire(now: number): GrantRecord[] {
    const expired: GrantRecord[] = [];
    for (const grants of this.doors.values()) {
      for (const record of grants.bySrc.values()) if (record.expiresAt <= now) expired.push(record);
    }
    for (const record of expired) this.of(record.door).delete(record);
    return expired;
  }

  /** Every grant held now, for comparing with what the kernel holds. */
  records(): GrantRecord[] {
    return [...this.doors.values()].flatMap((grants) => [...grants.bySrc.values()]);
  }

  get size(): number {
    let n = 0;
    for (const grants of this.doors.values()) n += grants.bySrc.size;
    return n;
  }
}
