/**
 * Knock attempts in progress, kept in typed arrays rather than one heap object per source: a sweep
 * of spoofed sources then allocates nothing per packet, so memory stays flat once the table is full
 * and no garbage collection pauses stall capture. Pure data structure; the knock machine gives it
 * meaning.
 *
 * Entries are keyed by (sequence number, family, source address bytes) and linked oldest-first, so
 * expiry takes the oldest in O(1). Entries still on their first knock are also on a second
 * oldest-first list, and eviction takes from that one while it has any: a flood of first knocks
 * then pushes out only other first knocks, never an attempt that has got further. Lookup is open addressing with linear probing; the
 * hash is seeded per process so that an attacker cannot choose sources that all collide.
 */
import type { Family } from "../types.js";

const EMPTY = -1;
const NONE = -1;
const FIRST_CAPACITY = 1024;

export class AttemptTable {
  private size_ = 0;
  private capacity: number;
  /** Hash slots holding entry indexes; at least twice the entries, so probes stay short. */
  private slots: Int32Array;
  private mask: number;
  /** Source address per entry as four 32-bit words (IPv4 uses the first). */
  private words: Int32Array;
  private hashes: Int32Array;
  private families: Uint8Array;
  /** Which sequence the attempt is on (the caller's numbering). */
  sequence: Int32Array;
  /** Knocks matched so far. */
  stage: Int32Array;
  startedAt: Float64Array;
  lastAt: Float64Array;
  private older: Int32Array;
  private newer: Int32Array;
  private oldest_ = NONE;
  private newest_ = NONE;
  /** The first-knock list: 1 while an entry is on it, linked like the main list. */
  private fresh: Uint8Array;
  private olderFresh: Int32Array;
  private newerFresh: Int32Array;
  private oldestFresh = NONE;
  private newestFresh = NONE;
  /** Removed entries, chained through `newer`, are reused before never-used ones (from `used` on). */
  private free = NONE;
  private used = 0;

  constructor(
    readonly maxEntries: number,
    private readonly seed: number,
  ) {
    this.capacity = Math.min(maxEntries, FIRST_CAPACITY);
    this.words = new Int32Array(this.capacity * 4);
    this.hashes = new Int32Array(this.capacity);
    this.families = new Uint8Array(this.capacity);
    this.sequence = new Int32Array(this.capacity);
    this.stage = new Int32Array(this.capacity);
    this.startedAt = new Float64Array(this.capacity);
    this.lastAt = new Float64Array(this.capacity);
    this.older = new Int32Array(this.capacity);
    this.newer = new Int32Array(this.capacity);
    this.fresh = new Uint8Array(this.capacity);
    this.olderFresh = new Int32Array(this.capacity);
    this.newerFresh = new Int32Array(this.capacity);
    this.slots = new Int32Array(slotCount(this.capacity)).fill(EMPTY);
    this.mask = this.slots.length - 1;
  }

  get size(): number {
    return this.size_;
  }

  /** The entry started longest ago, or -1. */
  get oldest(): number {
    return this.oldest_;
  }

  /** What to evict to make room: the oldest entry still on its first knock, else the oldest. */
  get victim(): number {
    return this.oldestFresh !== NONE ? this.oldestFresh : this.oldest_;
  }

  /** The entry has got past its first knock: it leaves the first-knock list (evicted last). */
  promote(e: number): void {
    if (this.fresh[e] === 0) return;
    this.fresh[e] = 0;
    const before = this.olderFresh[e]!;
    const after = this.newerFresh[e]!;
    if (before !== NONE) this.newerFresh[before] = after;
    else this.oldestFresh = after;
    if (after !== NONE) this.olderFresh[after] = before;
    else this.newestFresh = before;
  }

  /** The entry started next after `entry`, or -1. */
  next(entry: number): number {
    return this.newer[entry]!;
  }

  family(entry: number): Family {
    return this.families[entry] as Family;
  }

  /** Writes the entry's source address into `out` (4 bytes for IPv4, 16 for IPv6). */
  copyAddress(entry: number, out: Uint8Array): void {
    const n = this.families[entry] === 4 ? 1 : 4;
    for (let w = 0; w < n; w++) {
      const v = this.words[entry * 4 + w]!;
      out[w * 4] = v >>> 24;
      out[w * 4 + 1] = (v >>> 16) & 255;
      out[w * 4 + 2] = (v >>> 8) & 255;
      out[w * 4 + 3] = v & 255;
    }
  }

  /** The entry for this sequence and source, or -1. */
  find(sequence: number, family: Family, addr: Uint8Array): number {
    const w0 = word(addr, 0);
    const w1 = family === 6 ? word(addr, 4) : 0;
    const w2 = family === 6 ? word(addr, 8) : 0;
    const w3 = family === 6 ? word(addr, 12) : 0;
    const h = this.hash(sequence, family, w0, w1, w2, w3);
    const { slots, mask, words } = this;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const e = slots[s]!;
      if (e === EMPTY) return NONE;
      const k = e * 4;
      if (
        this.hashes[e] === h &&
        words[k] === w0 &&
        words[k + 1] === w1 &&
        words[k + 2] === w2 &&
        words[k + 3] === w3 &&
        this.sequence[e] === sequence &&
        this.families[e] === family
      ) {
        return e;
      }
    }
  }

  /**
   * Starts an attempt as the newest entry and returns it. The caller has checked with `find` that
   * there is none for this key, and has made room: adding beyond `maxEntries` throws.
   */
  add(sequence: number, family: Family, addr: Uint8Array, now: number): number {
    if (this.size_ >= this.maxEntries) throw new RangeError(`attempt table full (${this.maxEntries})`);
    if (this.free === NONE && this.used === this.capacity) this.grow();
    let e: number;
    if (this.free !== NONE) {
      e = this.free;
      this.free = this.newer[e]!;
    } else {
      e = this.used++;
    }
    const k = e * 4;
    const w0 = word(addr, 0);
    const w1 = family === 6 ? word(addr, 4) : 0;
    const w2 = family === 6 ? word(addr, 8) : 0;
    const w3 = family === 6 ? word(addr, 12) : 0;
    this.words[k] = w0;
    this.words[k + 1] = w1;
    this.words[k + 2] = w2;
    this.words[k + 3] = w3;
    const h = this.hash(sequence, family, w0, w1, w2, w3);
    this.hashes[e] = h;
    this.families[e] = family;
    this.sequence[e] = sequence;
    this.stage[e] = 0;
    this.startedAt[e] = now;
    this.lastAt[e] = now;
    this.place(e, h);
    this.older[e] = this.newest_;
    this.newer[e] = NONE;
    if (this.newest_ !== NONE) this.newer[this.newest_] = e;
    else this.oldest_ = e;
    this.newest_ = e;
    this.fresh[e] = 1;
    this.olderFresh[e] = this.newestFresh;
    this.newerFresh[e] = NONE;
    if (this.newestFresh !== NONE) this.newerFresh[this.newestFresh] = e;
    else this.oldestFresh = e;
    this.newestFresh = e;
    this.size_++;
    return e;
  }

  remove(e: number): void {
    this.promote(e);
    const { slots, mask } = this;
    let hole = this.hashes[e]! & mask;
    while (slots[hole] !== e) hole = (hole + 1) & mask;
    // Backward-shift deletion: pull later members of the probe run into the hole, so lookups never
    // need tombstones and a long flood can't degrade the table.
    for (let s = (hole + 1) & mask; slots[s] !== EMPTY; s = (s + 1) & mask) {
      const home = this.hashes[slots[s]!]! & mask;
      // Stay if home lies cyclically in (hole, s]; otherwise the hole is on its probe path.
      const stays = hole <= s ? home > hole && home <= s : home > hole || home <= s;
      if (!stays) {
        slots[hole] = slots[s]!;
        hole = s;
      }
    }
    slots[hole] = EMPTY;

    const before = this.older[e]!;
    const after = this.newer[e]!;
    if (before !== NONE) this.newer[before] = after;
    else this.oldest_ = after;
    if (after !== NONE) this.older[after] = before;
    else this.newest_ = before;
    this.newer[e] = this.free;
    this.free = e;
    this.size_--;
  }

  private place(e: number, h: number): void {
    let s = h & this.mask;
    while (this.slots[s] !== EMPTY) s = (s + 1) & this.mask;
    this.slots[s] = e;
  }

  /** Doubles storage up to maxEntries; entry indexes stay valid, only the slots are rebuilt. */
  private grow(): void {
    const capacity = Math.min(this.maxEntries, this.capacity * 2);
    const widen = <T extends Int32Array | Uint8Array | Float64Array>(old: T, make: (n: number) => T, per = 1): T => {
      const next = make(capacity * per);
      next.set(old);
      return next;
    };
    this.words = widen(this.words, (n) => new Int32Array(n), 4);
    this.hashes = widen(this.hashes, (n) => new Int32Array(n));
    this.families = widen(this.families, (n) => new Uint8Array(n));
    this.sequence = widen(this.sequence, (n) => new Int32Array(n));
    this.stage = widen(this.stage, (n) => new Int32Array(n));
    this.startedAt = widen(this.startedAt, (n) => new Float64Array(n));
    this.lastAt = widen(this.lastAt, (n) => new Float64Array(n));
    this.older = widen(this.older, (n) => new Int32Array(n));
    this.newer = widen(this.newer, (n) => new Int32Array(n));
    this.fresh = widen(this.fresh, (n) => new Uint8Array(n));
    this.olderFresh = widen(this.olderFresh, (n) => new Int32Array(n));
    this.newerFresh = widen(this.newerFresh, (n) => new Int32Array(n));
    this.capacity = capacity;
    this.slots = new Int32Array(slotCount(capacity)).fill(EMPTY);
    this.mask = this.slots.length - 1;
    for (let e = this.oldest_; e !== NONE; e = this.newer[e]!) this.place(e, this.hashes[e]!);
  }

  /** murmur3-style mixing of the key words, seeded. */
  private hash(sequence: number, family: number, w0: number, w1: number, w2: number, w3: number): number {
    let h = this.seed ^ Math.imul(sequence * 2 + family, 0x9e3779b1);
    h = mix(h, w0);
    h = mix(h, w1);
    h = mix(h, w2);
    h = mix(h, w3);
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return h ^ (h >>> 16);
  }
}

function mix(h: number, w: number): number {
  let k = Math.imul(w, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

function word(b: Uint8Array, off: number): number {
  return (b[off]! << 24) | (b[off + 1]! << 16) | (b[off + 2]! << 8) | b[off + 3]!;
}

/** Power of two, at least twice `capacity`. */
function slotCount(capacity: number): number {
  let n = 2;
  while (n < capacity * 2) n *= 2;
  return n;
}
