import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { AttemptTable } from "../../src/core/knock/attempt-table.js";
import type { Family } from "../../src/core/types.js";

/** Small deterministic generator so failures replay. */
function rng(seed: number) {
  let s = seed >>> 0;
  return (n: number) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

function addr(family: Family, n: number): Uint8Array {
  const b = new Uint8Array(16);
  if (family === 4) new DataView(b.buffer).setUint32(0, n);
  else {
    b[0] = 0xfd;
    new DataView(b.buffer).setUint32(12, n);
  }
  return b;
}

const order = (t: AttemptTable) => {
  const out: number[] = [];
  for (let e = t.oldest; e !== -1; e = t.next(e)) out.push(e);
  return out;
};

describe("AttemptTable", () => {
  test("finds what was added, by sequence, family and address, and nothing else", () => {
    const t = new AttemptTable(100, 7);
    const e = t.add(0, 4, addr(4, 0xc6120002), 10);
    assert.equal(t.find(0, 4, addr(4, 0xc6120002)), e);
    assert.equal(t.find(1, 4, addr(4, 0xc6120002)), -1, "other sequence");
    assert.equal(t.find(0, 4, addr(4, 0xc6120003)), -1, "other address");
    // The IPv6 address whose first word equals the IPv4 one is a different key.
    const v6 = new Uint8Array(16);
    v6.set([0xc6, 0x12, 0, 2]);
    assert.equal(t.find(0, 6, v6), -1, "other family");
    assert.equal(t.startedAt[e], 10);
    const out = new Uint8Array(16);
    t.copyAddress(e, out);
    assert.deepEqual([...out.subarray(0, 4)], [0xc6, 0x12, 0, 2]);
    assert.equal(t.family(e), 4);
  });

  test("keeps start order across removals and reuses freed entries", () => {
    const t = new AttemptTable(4, 1);
    const [a, b, c] = [1, 2, 3].map((n) => t.add(0, 6, addr(6, n), n));
    t.remove(b!);
    assert.deepEqual(order(t), [a, c]);
    const d = t.add(0, 6, addr(6, 4), 4);
    assert.equal(d, b, "the freed entry is reused");
    assert.deepEqual(order(t), [a, c, d]);
    t.remove(a!);
    assert.equal(t.oldest, c);
    assert.equal(t.size, 2);
  });

  test("refuses to grow past maxEntries", () => {
    const t = new AttemptTable(3, 1);
    for (let n = 0; n < 3; n++) t.add(0, 4, addr(4, n), 0);
    assert.throws(() => t.add(0, 4, addr(4, 9), 0), RangeError);
  });

  // Every seed, including 0, and capacities that force growth and probe runs wrapping the slot array.
  for (const [seed, max] of [
    [0, 5],
    [1, 64],
    [0x5eed, 1500],
    [-1, 3000],
  ] as const) {
    test(`matches a Map model through random adds, finds and removals (seed ${seed}, max ${max})`, () => {
      const t = new AttemptTable(max, seed);
      const model = new Map<string, number>();
      /** Entries moved past their first knock (off the first-knock list). */
      const promoted = new Set<number>();
      const next = rng(seed + max);
      const keyspace = max * 3;
      for (let step = 0; step < 20_000; step++) {
        const family: Family = next(2) === 0 ? 4 : 6;
        const n = next(keyspace);
        const sequence = next(2);
        const key = `${sequence}/${family}/${n}`;
        const found = t.find(sequence, family, addr(family, n));
        assert.equal(found, model.get(key) ?? -1, `step ${step}: find ${key}`);
        if (found >= 0 && next(3) === 0) {
          t.remove(found);
          model.delete(key);
          promoted.delete(found);
        } else if (found < 0 && t.size < max) {
          model.set(key, t.add(sequence, family, addr(family, n), step));
        } else if (found < 0) {
          // Full: evict as the knock machine does, the oldest still on its first knock, else the oldest.
          const victim = [...model.values()].find((e) => !promoted.has(e)) ?? [...model.values()][0]!;
          assert.equal(t.victim, victim, `step ${step}: victim`);
          for (const [k, e] of model) if (e === victim) model.delete(k);
          promoted.delete(victim);
          t.remove(victim);
        } else if (next(2) === 0) {
          t.promote(found);
          promoted.add(found);
        }
        assert.equal(t.size, model.size);
      }
      // Start order is the model's insertion order.
      assert.deepEqual(order(t), [...model.values()]);
    });
  }
});
