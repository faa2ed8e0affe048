/** The firewall port: what the daemon needs from a backend, whichever it is. */
import { FAMILIES, type KernelGrant } from "../../core/firewall/plan.js";
import type { Door, Family } from "../../core/types.js";
import type { Logger } from "../log.js";
import { patientRunner, type Runner } from "./exec.js";

export interface ListedGrant extends KernelGrant {
  door: string;
  family: Family;
}

export interface Firewall {
  /** e.g. "iptables-nft", "iptables-legacy", "nftables", "dry-run". */
  readonly backend: string;
  /** What differs from the plan right now (empty: all in place); changes nothing. */
  check(): Promise<string[]>;
  /**
   * Installs what is missing and repairs what differs from the plan; idempotent and cheap when all
   * is in place. Returns what it found and put right (empty: nothing had to change).
   */
  reconcile(): Promise<string[]>;
  /**
   * Makes `doors` (same names, other ports or container targets) the protected set: the chain or
   * table is rewritten in one transaction, the grant sets are kept. A container start waits on
   * this, so it writes the rules and nothing else; the reconcile loop checks the rest as always.
   */
  protect(doors: readonly Door[]): Promise<void>;
  /**
   * Adds or refreshes a grant for `forMs` (whole seconds; 0: until revoked), by default the door's
   * OPEN_FOR; resolves once the kernel has it. A grant from another node passes the time it has left.
   */
  grant(door: Door, family: Family, src: string, forMs?: number): Promise<void>;
  revoke(door: Door, family: Family, src: string): Promise<void>;
  /** Grants per door as the kernel sets hold them right now. */
  countGrants(): Promise<Map<string, number>>;
  /** Every grant in the kernel sets, with its remaining time: what a restarted daemon adopts. */
  listGrants(): Promise<ListedGrant[]>;
  /** Takes away every object of ours: jumps, chains, sets, table. */
  remove(): Promise<void>;
  /** Stops long-lived helper processes. */
  close(): void;
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
export async function listPerDoor(doors: readonly Door[], readSet: (door: string, family: Family) => Promise<KernelGrant[]>): Promise<ListedGrant[]> {
  const all: ListedGrant[] = [];
  for (const door of doors) {
    for (const family of FAMILIES) for (const g of await readSet(door.name, family)) all.push({ ...g, door: door.name, family });
  }
  return all;
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
