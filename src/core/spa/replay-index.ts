/**
 * What a door's kernel replay set holds, as the daemon recorded (or adopted) it: a bounded index
 * ordered by expiry, so that a full set makes room instead of refusing a new datagram.
 *
 * Neither kernel set evicts by age on an add from userspace (nft sets refuse it, ipset hashes have
 * no LRU), so the daemon does: before an add that would overflow, the entry that expires first is
 * taken out of the index and handed back for the caller to delete from the kernel. Expiry order is
 * the order that matters: entries past their time (nothing left to protect) go first, then the
 * datagram stamped earliest (a door's entries all live until timestamp + max age), the one whose
 * replay window closes soonest.
 *
 * Every element in the kernel set is in the index, so the kernel never holds more than `capacity`:
 * the index adds before the kernel does and forgets an entry only `graceS` after its expiry, once
 * the kernel has dropped it too (nftables garbage-collects expired elements some time after their
 * timeout, and until then they count against the set's size).
 *
 * A binary min-heap on expiry with a map from key to heap slot: each operation is O(log n).
 */
export class ReplayIndex {
  private readonly keys: string[] = [];
  private readonly expires: number[] = [];
  private readonly slotOf = new Map<string, number>();

  constructor(
    readonly capacity: number,
    private readonly graceS: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`replay index capacity must be a positive integer, got ${capacity}`);
  }

  get size(): number {
    return this.keys.length;
  }

  /** Whether `key` is recorded and can still be replayed at `now` (seconds). */
  has(key: string, now: number): boolean {
    const slot = this.slotOf.get(key);
    return slot !== undefined && now <= this.expires[slot]!;
  }

  /**
   * Records `key` until `expiresAt` (seconds; a key already there keeps the later expiry). Returns
   * the keys taken out to make room, which the kernel set must lose before it gets `key`.
   */
  add(key: string, expiresAt: number, now: number): string[] {
    while (this.keys.length > 0 && this.expires[0]! + this.graceS < now) this.removeAt(0);
    const slot = this.slotOf.get(key);
    if (slot !== undefined) {
      if (expiresAt > this.expires[slot]!) {
        this.expires[slot] = expiresAt;
        this.down(slot);
      }
      return [];
    }
    const evicted: string[] = [];
    while (this.keys.length >= this.capacity) evicted.push(this.removeAt(0));
    this.keys.push(key);
    this.expires.push(expiresAt);
    this.slotOf.set(key, this.keys.length - 1);
    this.up(this.keys.length - 1);
    return evicted;
  }

  private removeAt(slot: number): string {
    const key = this.keys[slot]!;
    const last = this.keys.length - 1;
    this.swap(slot, last);
    this.keys.pop();
    this.expires.pop();
    this.slotOf.delete(key);
    if (slot < this.keys.length) {
      this.down(slot);
      this.up(slot);
    }
    return key;
  }

  private up(slot: number): void {
    for (let i = slot; i > 0; ) {
      const parent = (i - 1) >> 1;
      if (this.expires[parent]! <= this.expires[i]!) return;
      this.swap(i, parent);
      i = parent;
    }
  }

  private down(slot: number): void {
    const n = this.keys.length;
    for (let i = slot; ; ) {
      const l = 2 * i + 1;
      const r = l + 1;
      let least = i;
      if (l < n && this.expires[l]! < this.expires[least]!) least = l;
      if (r < n && this.expires[r]! < this.expires[least]!) least = r;
      if (least === i) return;
      this.swap(i, least);
      i = least;
    }
  }

  private swap(a: number, b: number): void {
    if (a === b) return;
    const ka = this.keys[a]!;
    const kb = this.keys[b]!;
    this.keys[a] = kb;
    this.keys[b] = ka;
    const ea = this.expires[a]!;
    this.expires[a] = this.expires[b]!;
    this.expires[b] = ea;
    this.slotOf.set(kb, a);
    this.slotOf.set(ka, b);
  }
}
