/** The firewall port: what the daemon needs from a backend, whichever it is. */
import type { KernelGrant } from "../../core/firewall/common.js";
import type { FirewallPlan } from "../../core/firewall/plan.js";
import type { OwnedTarget } from "../../core/protection/targets.js";
import type { Config, Door, Family, PortSpec } from "../../core/types.js";
import type { Logger } from "../log.js";
import type { Runner } from "./exec.js";

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

/** A signed datagram's entry in its door's replay set: the precondition of the grant it asks for. */
export interface ReplayEntry {
  door: string;
  /** core/spa/verify.ts replayKey. */
  element: string;
  ttlS: number;
  /** What leaves the set first, to make room (ReplayIndex). */
  evict: readonly string[];
}

/** A grant's kernel entry and its time (whole seconds; 0: until revoked), as `Firewall.grant` takes them. */
export interface TimedGrant {
  grant: GrantKey;
  forMs: number;
  /** The book holds a live grant of this address: its entries may be in the kernel already, to be given a fresh time. */
  refresh?: boolean;
}

/** A listed door-wide grant's key: door, family, address (a mark and its grant share it). */
export const listedKey = (g: Pick<ListedGrant, "door" | "family" | "src">): string => `${g.door} ${g.family} ${g.src}`;

/** The signed doors' replay sets: the kernel's record of datagrams accepted, which outlives the daemon. */
export interface ReplaySets {
  /**
   * Records `entry` and writes the grants only if the element is new in the door's set: "recorded"
   * once both are in; "seen" (a replay) and "full" leave the grants out. Throws on any other
   * failure. nftables makes it one transaction; ipset has none, so the record goes first and the
   * grants follow once it is in (two round trips). Records go one at a time; `grants` is called
   * when this one's turn comes, so its times count from the write, not from the queue.
   */
  grant(entry: ReplayEntry, grants: () => readonly TimedGrant[]): Promise<ReplayRecord>;
  /** The door's set as the kernel holds it, each element with its time left: what a restarted daemon adopts. */
  list(door: string): Promise<KernelGrant[]>;
  /**
   * A datagram is being checked and its record may follow: wakes the writer meanwhile, so the
   * record does not wait for it to wake (nothing where the helper has no no-op: ipset). Cheap and
   * never throws; the caller bounds how often.
   */
  wake(): void;
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
  /**
   * The door-wide grants the kernel engine made whose report no daemon has taken (marked, and
   * still in the kernel), each with its time left: made while no daemon ran, or reported while
   * none read. None without the kernel engine.
   */
  unreported(): Promise<ListedGrant[]>;
  readonly replay: ReplaySets;
  /** Stops long-lived helper processes; with `remove`, first takes away every object of ours. */
  shutdown(remove: boolean): Promise<void>;
}

/** Grants per door in a listing: a signed grant counts once per port, as its kernel entries do. */
export function countPerDoor(listed: readonly ListedGrant[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const g of listed) counts.set(g.door, (counts.get(g.door) ?? 0) + (g.ports?.length ?? 1));
  return counts;
}

/**
 * A plan's id (plan-id.ts): it rides on the chain as a comment (core planMarker), so a reconcile
 * tells "our chain, as planned" with one read. createFirewall hands it to the backend.
 */
export type PlanId = (plan: FirewallPlan) => string;

/** What a backend is built from; nothing is touched until its first reconcile. */
export interface BackendOptions {
  config: Config;
  /** What to protect at the first install (the configuration's ports and what Docker labels gave at start). */
  targets: readonly OwnedTarget[];
  planId: PlanId;
  run: Runner;
  log: Logger;
}

/** What a backend would do, in its tools' words: what the dry run logs instead. */
export interface PlanText {
  /** "iptables" or "nftables". */
  readonly backend: string;
  /** Everything the first install writes; the kernel engine's knock ports hidden (they are the secret). */
  install(plan: FirewallPlan): string;
  /** What a change of the targets rewrites. */
  protect(plan: FirewallPlan): string;
  grant(grant: GrantKey, forMs: number): string;
  revoke(grant: GrantKey): string;
  /** A signed datagram's record with its grants: each write to the tool, in order. */
  record(entry: ReplayEntry, grants: readonly TimedGrant[]): string[];
}
