import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ReplayCache } from "../../src/core/spa/replay.js";

/** Small deterministic generator so failures replay. */
function rng(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

/**
 * The cache's meaning, without its ring: entries in arrival order; adding sweeps expired entries
 * from the oldest end, forgets an earlier entry for the same key, and drops the oldest at the bound.
 */
class Model {
  entries: { key: string | null; expiresAt: number }[] = [];
  live = new Map<string, number>();
  constructor(readonly capacity: number) {}
  has(key: string, now: number) {
    const at = this.live.get(key);
    return at !== undefined && now <= at;
  }
  add(key: string, expiresAt: number, now: number) {
    while (this.entries.length > 0 && this.entries[0]!.expiresAt < now) this.drop();
    for (const e of this.entries) if (e.key === key) e.key = null;
    if (this.entries.length === this.capacity) this.drop();
    this.entries.push({ key, expiresAt });
    this.live.set(key, expiresAt);
  }
  private drop() {
    const e = this.entries.shift()!;
    if (e.key !== null) this.live.delete(e.key);
  }
}

describe("ReplayCache", () => {
  test("holds a key until its expiry, inclusive", () => {
    const c = new ReplayCache(4);
    c.add("a", 130, 10);
    assert.equal(c.has("a", 130), true);
    assert.equal(c.has("a", 131), false);
    assert.equal(c.has("b", 10), false);
  });

  test("at the bound drops the oldest entry, live or not", () => {
    const c = new ReplayCache(2);
    c.add("a", 100, 0);
    c.add("b", 100, 0);
    c.add("c", 100, 0);
    assert.deepEqual(["a", "b", "c"].map((k) => c.has(k, 1)), [false, true, true]);
    assert.equal(c.size, 2);
  });

  test("sweeps expired entries as new ones arrive, so they do not crowd live ones out", () => {
    const c = new ReplayCache(2);
    c.add("a", 10, 0);
    c.add("b", 100, 0);
    c.add("c", 100, 50);
    assert.deepEqual(["b", "c"].map((k) => c.has(k, 50)), [true, true]);
  });

  test("refuses a capacity that is not a positive integer", () => {
    assert.throws(() => new ReplayCache(0), RangeError);
    assert.throws(() => new ReplayCache(1.5), RangeError);
  });

  for (const [seed, capacity] of [
    [1, 1],
    [2, 3],
    [3, 8],
    [4, 64],
  ] as const) {
    test(`agrees with the model through random operations (seed ${seed}, capacity ${capacity})`, () => {
      const r = rng(seed);
      const cache = new ReplayCache(capacity);
      const model = new Model(capacity);
      const keys = Array.from({ length: capacity * 3 + 2 }, (_, i) => `k${i}`);
      let now = 0;
      for (let step = 0; step < 20_000; step++) {
        now += r(4);
        const key = keys[r(keys.length)]!;
        if (r(3) === 0) {
          // Expiries vary around now, as timestamp + max age does with clients' clocks.
          const expiresAt = now + r(40) - 10;
          cache.add(key, expiresAt, now);
          model.add(key, expiresAt, now);
          assert.equal(cache.size, model.entries.length, `size after step ${step}`);
        }
        for (const k of keys) assert.equal(cache.has(k, now), model.has(k, now), `has(${k}) at step ${step}`);
      }
    });
  }
});
