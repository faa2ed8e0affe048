/**
 * How many attempts each source prefix (an IPv4 /24, an IPv6 /64 by default) has in progress, so
 * that one network cannot take the whole attempt table: an IPv6 host owns a /64 and need not even
 * spoof to knock from millions of addresses. Kept in an AttemptTable keyed by the masked address,
 * with the count in its `stage` column: no allocation per packet here either.
 */
import type { Family, SourcePrefixes } from "../types.js";
import { maskToPrefix } from "../packet/address.js";
import { AttemptTable } from "./attempt-table.js";

export class PrefixCounts {
  private readonly table: AttemptTable;
  private readonly masked = new Uint8Array(16);

  constructor(
    maxEntries: number,
    seed: number,
    private readonly bits: SourcePrefixes,
  ) {
    this.table = new AttemptTable(maxEntries, seed);
  }

  count(family: Family, addr: Uint8Array): number {
    const e = this.table.find(0, family, this.mask(family, addr));
    return e < 0 ? 0 : this.table.stage[e]!;
  }

  increment(family: Family, addr: Uint8Array): void {
    const key = this.mask(family, addr);
    let e = this.table.find(0, family, key);
    if (e < 0) e = this.table.add(0, family, key, 0);
    this.table.stage[e]!++;
  }

  decrement(family: Family, addr: Uint8Array): void {
    const e = this.table.find(0, family, this.mask(family, addr));
    if (e < 0) return;
    if (--this.table.stage[e]! <= 0) this.table.remove(e);
  }

  /** Prefixes with attempts in progress. */
  get size(): number {
    return this.table.size;
  }

  private mask(family: Family, addr: Uint8Array): Uint8Array {
    return maskToPrefix(addr, family, this.bits, this.masked);
  }

}
