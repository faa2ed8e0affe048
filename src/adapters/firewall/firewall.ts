/** The firewall port: what the daemon needs from a backend, whichever it is. */
import { isIP } from "node:net";
import { FAMILIES, type KernelGrant } from "../../core/firewall/common.js";
import { replayFailure, type KernelSpaGrant } from "../../core/firewall/spa-plan.js";
import { FirewallError } from "../../core/errors.js";
import { doorPorts, type OwnedTarget } from "../../core/protection/targets.js";
import { hasPort, portName, type Door, type Family, type PortSpec } from "../../core/types.js";
import type { Logger } from "../log.js";
import { patientRunner, type LineSession, type Runner } from "./exec.js";

/** What a backend lists per door kind today; fromBackend turns it into ListedGrant. */
export interface BackendListedGrant extends KernelGrant {
  door: string;
  family: Family;
}

/** A signed door's grant as the kernel holds it: one per address, its ports, the longest time left. */
export interface ListedSpaGrant extends KernelGrant {
  door: string;
  family: Family;
  ports: PortSpec[];
}

/** What recording a datagram in the kernel's replay set found: new, there already, or no room. */
export type ReplayRecord = "recorded" | "seen" | "full";

/**
 * Which ports a grant opens: null, the door's (its address set, which follows the door's ports as
 * they change); a list, those ports only (the door's per-port set).
 */
export type GrantPorts = readonly PortSpec[] | null;

/** A grant to write or take away. */
export interface GrantKey {
  door: Door;
  family: Family;
  src: string;
  ports: GrantPorts;
}

/** A grant as the kernel holds it, with the time it has left (null: until revoked). */
export interface ListedGrant {
  door: string;
  family: Family;
  src: string;
  ports: PortSpec[] | null;
  remainingMs: number | null;
}

/** The signed doors' replay sets: the kernel's record of datagrams accepted, which outlives the daemon. */
export interface ReplaySets {
  /**
   * Adds a datagram's replay element (spa-plan replayElement) to the door's set for ttlS seconds,
   * atomically refusing one that is there already. `evict` leaves the set first (to make room:
   * ReplayIndex). Throws on any other failure.
   */
  record(door: string, element: string, ttlS: number, evict: readonly string[]): Promise<ReplayRecord>;
  /** The door's set as the kernel holds it, each element with its time left: what a restarted daemon adopts. */
  list(door: string): Promise<KernelGrant[]>;
}

/** The firewall port: what the daemon needs from a backend, whichever it is. One grant/revoke pair for every way in. */
export interface Firewall {
  /** e.g. "iptables-nft", "iptables-legacy", "nftables", "dry-run". */
  readonly backend: string;
  /**
   * "check": what differs from the plan right now (empty: all in place), changing nothing.
   * "repair": installs what is missing and repairs what differs; idempotent and cheap when all is
   * in place; returns what it found and put right (empty: nothing had to change).
   */
  reconcile(mode: "check" | "repair"): Promise<string[]>;
  /**
   * Makes `targets` the protected set: the chain or table is rewritten in one transaction, the
   * grant sets are kept. A container start waits on this, so it writes the rules and nothing else;
   * the reconcile loop checks the rest as always.
   */
  protect(targets: readonly OwnedTarget[]): Promise<void>;
  /**
   * Adds or refreshes a grant for `forMs` (whole seconds; 0: until revoked); resolves once the
   * kernel has it. Listed ports must each be one the door protects now.
   */
  grant(grant: GrantKey, forMs: number): Promise<void>;
  /** Takes the grant away: the door-wide one, or these ports of the per-port one. */
  revoke(grant: GrantKey): Promise<void>;
  /** Every grant in the kernel sets, with its remaining time: what a restarted daemon adopts. */
  grants(): Promise<ListedGrant[]>;
  readonly replay: ReplaySets;
  /** Stops long-lived helper processes; with `remove`, first takes away every object of ours. */
  shutdown(remove: boolean): Promise<void>;
}

/** What each backend implements today, door kind by door kind; fromBackend adapts it to Firewall. */
export interface Backend {
  readonly backend: string;
  check(): Promise<string[]>;
  reconcile(): Promise<string[]>;
  protect(targets: readonly OwnedTarget[]): Promise<void>;
  grant(door: Door, family: Family, src: string, forMs?: number): Promise<void>;
  revoke(door: Door, family: Family, src: string): Promise<void>;
  grantPorts(door: Door, family: Family, src: string, ports: readonly PortSpec[], openForMs: number): Promise<void>;
  revokePorts(door: Door, family: Family, src: string, ports: readonly PortSpec[]): Promise<void>;
  recordDatagram(door: string, element: string, ttlS: number, evict: readonly string[]): Promise<ReplayRecord>;
  listReplay(door: string): Promise<KernelGrant[]>;
  listSpaGrants(): Promise<ListedSpaGrant[]>;
  listGrants(): Promise<BackendListedGrant[]>;
  remove(): Promise<void>;
  close(): void;
}

export function fromBackend(b: Backend): Firewall {
  return {
    backend: b.backend,
    reconcile: (mode) => (mode === "check" ? b.check() : b.reconcile()),
    protect: (targets) => b.protect(targets),
    grant: ({ door, family, src, ports }, forMs) => (ports === null ? b.grant(door, family, src, forMs) : b.grantPorts(door, family, src, ports, forMs)),
    revoke: ({ door, family, src, ports }) => (ports === null ? b.revoke(door, family, src) : b.revokePorts(door, family, src, ports)),
    grants: async () => [...(await b.listGrants()).map((g) => ({ ...g, ports: null })), ...(await b.listSpaGrants())],
    replay: { record: (...args) => b.recordDatagram(...args), list: (door) => b.listReplay(door) },
    shutdown: async (remove) => {
      b.close();
      if (remove) await b.remove();
    },
  };
}

/** Grants per door in a listing: a signed grant counts once per port, as its kernel entries do. */
export function countPerDoor(listed: readonly ListedGrant[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const g of listed) counts.set(g.door, (counts.get(g.door) ?? 0) + (g.ports?.length ?? 1));
  return counts;
}

/** Grants per door: the sum over both address families of what `countSet` reads from the kernel. */
export async function grantsPerDoor(
  doors: readonly Door[],
  countSet: (door: string, family: Family) => number | Promise<number>,
): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const door of doors) {
    let n = 0;
    for (const family of FAMILIES) n += await countSet(door.name, family);
    counts.set(door.name, n);
  }
  return counts;
}

/** Every door and family's grants, each set read by `readSet`. */
export async function listPerDoor(doors: readonly Door[], readSet: (door: string, family: Family) => Promise<KernelGrant[]>): Promise<BackendListedGrant[]> {
  const all: BackendListedGrant[] = [];
  for (const door of doors) {
    for (const family of FAMILIES) for (const g of await readSet(door.name, family)) all.push({ ...g, door: door.name, family });
  }
  return all;
}

/** Every signed door and family's grants, each set read by `readSet` (one entry per port) and grouped per address. */
export async function listSpaPerDoor(doors: readonly Door[], readSet: (door: string, family: Family) => Promise<KernelSpaGrant[]>): Promise<ListedSpaGrant[]> {
  const all: ListedSpaGrant[] = [];
  for (const door of doors.filter((d) => d.spa !== null)) {
    for (const family of FAMILIES) {
      const bySrc = new Map<string, ListedSpaGrant>();
      for (const e of await readSet(door.name, family)) {
        const g = bySrc.get(e.src) ?? { door: door.name, family, src: e.src, ports: [], remainingMs: e.remainingMs };
        g.ports.push(e.port);
        if (g.remainingMs !== null && (e.remainingMs === null || e.remainingMs > g.remainingMs)) g.remainingMs = e.remainingMs;
        bySrc.set(e.src, g);
      }
      all.push(...bySrc.values());
    }
  }
  return all;
}

/** The last check before signed-grant ports reach a command: each must be one the door protects in `targets`. */
export function checkedPorts(door: Door, targets: readonly OwnedTarget[], ports: readonly PortSpec[]): readonly PortSpec[] {
  const own = doorPorts(targets, door.name);
  const foreign = ports.find((p) => !hasPort(own, p));
  if (foreign || ports.length === 0) throw new FirewallError(`refusing a grant of ${foreign ? portName(foreign) : "no port"}: not among door ${door.name}'s ports`, [], "");
  return ports;
}

/**
 * Records datagrams in the replay sets through a session of their own (a spawn per datagram cost
 * ~20 ms), one line at a time. A line that fails is then the only one pending, so the session's
 * stderr is that line's own: "already added" means this element was there, never that another
 * line failed (sharing the session, 600 concurrent records refused 303 of 400 new datagrams as
 * seen). Only when the session itself fails (it exits, or cannot start) is the line run again as a
 * command of its own; its "already added" can then be the line's own earlier success, and such a
 * datagram is refused, never a replay accepted.
 */
export class ReplayWriter {
  private last: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly session: Pick<LineSession, "send">,
    private readonly run: Runner,
    /** The line as a command of its own. */
    private readonly argvOf: (line: string) => string[],
  ) {}

  /** Runs `deletes` (each must succeed), then `add`; after every earlier record has finished. */
  record(deletes: readonly string[], add: string): Promise<ReplayRecord> {
    const result = this.last.then(() => this.write(deletes, add));
    this.last = result.catch(() => undefined);
    return result;
  }

  private async write(deletes: readonly string[], add: string): Promise<ReplayRecord> {
    for (const line of deletes) {
      const r = await this.line(line);
      if (r.code !== 0) throw new FirewallError(`exit code ${r.code}`, this.argvOf(line), r.stderr);
    }
    const r = await this.line(add);
    if (r.code === 0) return "recorded";
    const failure = replayFailure(r.stderr);
    if (failure === null) throw new FirewallError(`exit code ${r.code}`, this.argvOf(add), r.stderr);
    return failure;
  }

  private async line(line: string): Promise<{ code: number; stderr: string }> {
    try {
      await this.session.send(line);
      return { code: 0, stderr: "" };
    } catch (err) {
      // What the tool wrote on stderr for this line, the only one in flight.
      if (err instanceof FirewallError && err.stderr !== "") return { code: 1, stderr: err.stderr };
    }
    return this.run(this.argvOf(line));
  }
}

/** The last check before an address reaches a command line: it must be an IP of the family. */
export function checkedAddress(src: string, family: Family): string {
  if (isIP(src) !== family) throw new FirewallError(`refusing "${src}": not an IPv${family} address`, [], "");
  return src;
}

/**
 * How both backends make their big changes. One at a time: a periodic reconcile still in flight when
 * removal starts reads a half-removed firewall and puts back the jump that removal just deleted, so
 * deleting the chain fails ("Device or resource busy") and the daemon exits 70 with objects left.
 * And with transient tool failures retried where one costs the most: the install and removal.
 */
export class ChangeQueue {
  private last: Promise<unknown> = Promise.resolve();
  private installed = false;
  private readonly patient: Runner;

  constructor(
    private readonly run: Runner,
    log: Logger,
  ) {
    this.patient = patientRunner(run, log);
  }

  /** Retries transient failures until a reconcile has succeeded once: that one is the install at start. */
  reconcile<T>(pass: (run: Runner) => Promise<T>): Promise<T> {
    return this.next(async () => {
      const result = await pass(this.installed ? this.run : this.patient);
      this.installed = true;
      return result;
    });
  }

  remove(removal: (run: Runner) => Promise<void>): Promise<void> {
    return this.next(() => removal(this.patient));
  }

  private next<T>(change: () => Promise<T>): Promise<T> {
    const result = this.last.then(change);
    this.last = result.catch(() => undefined);
    return result;
  }
}
