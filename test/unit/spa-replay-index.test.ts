import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ReplayIndex } from "../../src/core/spa/replay-index.js";

describe("ReplayIndex", () => {
  test("holds a key until its expiry, inclusive", () => {
    const index = new ReplayIndex(4, 10);
    assert.deepEqual(index.add("a", 100, 0), []);
    assert.ok(index.has("a", 100));
    assert.ok(!index.has("a", 100.5));
    assert.ok(!index.has("b", 0));
  });

  test("full: drops what can no longer be replayed first, then what expires first, and says what it dropped", () => {
    const index = new ReplayIndex(3, 0);
    index.add("late", 300, 0);
    index.add("early", 100, 0);
    index.add("mid", 200, 0);
    // Arrival order is late, early, mid: "oldest first" by expiry takes early, not late.
    assert.deepEqual(index.add("new", 400, 50), ["early"]);
    assert.ok(index.has("late", 50) && index.has("mid", 50) && index.has("new", 50));
    // Past its time (mid, at 250): swept without a word, so nothing live goes.
    assert.deepEqual(index.add("newer", 500, 250), []);
    assert.ok(index.has("late", 250) && index.has("new", 250) && index.has("newer", 250));
    assert.equal(index.size, 3);
  });

  test("keeps an entry its grace past its expiry, still counting against the bound, then forgets it quietly", () => {
    const index = new ReplayIndex(2, 10);
    index.add("a", 100, 0);
    index.add("b", 200, 0);
    // At 105 "a" is no longer a replay, but the kernel may still hold it: pushed out, so deleted there too.
    assert.ok(!index.has("a", 105));
    assert.deepEqual(index.add("c", 300, 105), ["a"]);
    // At 211 "b" is past its grace: the kernel has dropped it, nothing to delete.
    assert.deepEqual(index.add("d", 400, 211), []);
    assert.equal(index.size, 2);
  });

  test("a key added again keeps its later expiry and its one slot", () => {
    const index = new ReplayIndex(2, 0);
    index.add("a", 100, 0);
    assert.deepEqual(index.add("a", 50, 0), []);
    assert.ok(index.has("a", 90));
    index.add("a", 150, 0);
    assert.equal(index.size, 1);
    index.add("b", 120, 0);
    assert.deepEqual(index.add("c", 130, 0), ["b"], "a's later expiry puts b first");
  });

  test("agrees with a sorted model through random operations", () => {
    let s = 7;
    const rand = (n: number) => ((s = (Math.imul(s, 1664525) + 1013904223) >>> 0), s % n);
    const index = new ReplayIndex(16, 5);
    const model = new Map<string, number>();
    let now = 0;
    for (let i = 0; i < 5000; i++) {
      now += rand(3);
      const key = `k${rand(40)}`;
      if (index.has(key, now)) continue;
      const expiresAt = now + 1 + rand(60);
      for (const [k, e] of model) if (e + 5 < now) model.delete(k);
      const evicted = index.add(key, expiresAt, now);
      if (model.has(key)) {
        model.set(key, Math.max(model.get(key)!, expiresAt));
        assert.deepEqual(evicted, []);
      } else {
        assert.equal(evicted.length, Math.max(0, model.size - 15));
        // Each one dropped expires first of what was there (ties either way).
        for (const k of evicted) {
          assert.equal(model.get(k), Math.min(...model.values()));
          model.delete(k);
          assert.ok(!index.has(k, now));
        }
        model.set(key, expiresAt);
      }
      assert.equal(index.size, model.size);
      for (const [k, e] of model) assert.equal(index.has(k, now), now <= e, k);
    }
  });
});
