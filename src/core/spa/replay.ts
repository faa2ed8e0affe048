/**
 * SPA datagrams already used, so that a captured datagram cannot be sent again. Keyed by the
 * SHA-256 of the whole datagram, as fwknopd's digest cache is (its first 128 bits: verify.ts replayKey).
 *
 * Bounded without losing protection in normal use: a datagram is refused as stale once
 * |now - its timestamp| exceeds the door's max age, so an entry only needs to live until
 * timestamp + max age (its `expiresAt`); after that the timestamp check refuses the replay anyway.
 * Only datagrams whose HMAC checked out are recorded, so filling the cache takes the door's HMAC
 * key: strangers' floods never reach it. At the bound the oldest entry is dropped even if it has
 * not expired. The alternative, refusing new entries, would let whoever fills the cache (a key
 * holder, or just a busy door) lock every client out; dropping the oldest instead reopens a replay
 * window only for a datagram that more than `capacity` newer authentic datagrams have followed
 * within one max age, and the open-for limits still bound what a replay could do.
 *
 * Entries sit in a ring in arrival order with a map from key to slot, so memory is fixed at the
 * capacity and each operation is O(1) amortised: expired entries are swept from the oldest end as
 * new ones arrive (an expired entry behind a live one waits its turn; `has` checks expiry itself).
 */
export class ReplayCache {
  private readonly keys: (string | null)[];
  private readonly expires: Float64Array;
  private readonly slotOf = new Map<string, number>();
  /** Slot of the oldest entry, and how many slots from there are in use. */
  private oldest = 0;
  private used = 0;

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1) throw new RangeError(`replay cache capacity must be a positive integer, got ${capacity}`);
    this.keys = new Array<string | null>(capacity).fill(null);
    this.expires = new Float64Array(capacity);
  }

  /** Entries held, expired ones not yet swept included. */
  get size(): number {
    return this.used;
  }

  /** Whether `key` was recorded and its entry is still live at `now` (seconds). */
  has(key: string, now: number): boolean {
    const slot = this.slotOf.get(key);
    return slot !== undefined && now <= this.expires[slot]!;
  }

  /** Records `key` until `expiresAt` (seconds); an earlier entry for the same key is replaced. */
  add(key: string, expiresAt: number, now: number): void {
    while (this.used > 0 && this.expires[this.oldest]! < now) this.dropOldest();
    const previous = this.slotOf.get(key);
    // Only an expired entry can be re-added (the caller checks `has` first); it still holds its
    // slot, so forget it there and let the sweep free the slot in turn.
    if (previous !== undefined) this.keys[previous] = null;
    if (this.used === this.capacity) this.dropOldest();
    const slot = (this.oldest + this.used) % this.capacity;
    this.keys[slot] = key;
    this.expires[slot] = expiresAt;
    this.slotOf.set(key, slot);
    this.used++;
  }

  private dropOldest(): void {
    const key = this.keys[this.oldest];
    if (key !== null && key !== undefined) this.slotOf.delete(key);
    this.keys[this.oldest] = null;
    this.oldest = (this.oldest + 1) % this.capacity;
    this.used--;
  }
}
