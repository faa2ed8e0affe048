import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Door } from "../../src/core/types.js";
import { GrantBook } from "../../src/core/grants/grant-book.js";
import { prefixKey } from "../../src/core/grants/prefix.js";

function door(name: string, openForMs: number): Door {
  return {
    name,
    sequence: [{ port: 7000, proto: "tcp" }],
    closeSequence: openForMs === 0 ? [{ port: 9000, proto: "tcp" }] : null,
    ports: [{ port: 22, proto: "tcp" }],
    seqTimeoutMs: 5000,
    openForMs,
    tcpFlags: { set: 0x02, clear: 0x10 },
    onOpen: null,
    onClose: null,
    spa: null,
  };
}

const SSH = door("SSH", 30_000);
/** A sequence grant: the door's ports for its OPEN_FOR. */
const whole = (d: Door) => ({ ports: d.ports, openForMs: d.openForMs });
const PREFIXES = { v4: 24, v6: 64 };
const UNBOUNDED = { maxGrants: 1e9, maxPerPrefix: 1e9, prefixes: PREFIXES };
const A = "198.18.0.2";
const B = "2001:db8::2";

describe("GrantBook", () => {
  test("open records the grant with an expiry OPEN_FOR after now", () => {
    const book = new GrantBook(UNBOUNDED);
    const { record } = book.open(SSH, "sequence", A, 4, 1000, whole(SSH));
    assert.deepEqual(record, { door: SSH, src: A, family: 4, expiresAt: 31_000, prefix: "4/c61200", via: "sequence", ports: SSH.ports });
    assert.equal(book.size, 1);
  });

  test("preview says what open would record, changing nothing: a new grant, and a signed refresh with each port's later end", () => {
    const book = new GrantBook({ maxGrants: 1, maxPerPrefix: 1, prefixes: PREFIXES });
    const p22 = { port: 22, proto: "tcp" as const };
    const p443 = { port: 443, proto: "tcp" as const };
    const fresh = book.preview(SSH, "signed", A, 4, 1000, { ports: [p22], openForMs: 60_000 });
    assert.equal(book.size, 0, "nothing booked");
    assert.deepEqual(book.open(SSH, "signed", A, 4, 1000, { ports: [p22], openForMs: 60_000 }).record, fresh);
    const refresh = book.preview(SSH, "signed", A, 4, 2000, { ports: [p22, p443], openForMs: 10_000 });
    assert.deepEqual([...(refresh.until ?? [])], [["22/tcp", 61_000], ["443/tcp", 12_000]]);
    assert.equal(book.get(SSH, "signed", A)?.ports.length, 1, "the booked grant is unchanged");
    book.preview(SSH, "signed", "198.18.0.3", 4, 2000, { ports: [p22], openForMs: 1000 });
    assert.equal(book.get(SSH, "signed", A)?.src, A, "a preview makes no room: the full door keeps its grant");
    assert.deepEqual(book.open(SSH, "signed", A, 4, 2000, { ports: [p22, p443], openForMs: 10_000 }).record, refresh);
  });

  test("a signed grant books the ports asked for with its own time, and a second one adds ports and keeps the later expiry", () => {
    const book = new GrantBook(UNBOUNDED);
    const web = { ...SSH, ports: [{ port: 22, proto: "tcp" as const }, { port: 443, proto: "tcp" as const }] };
    assert.deepEqual(book.open(web, "signed", A, 4, 1000, { ports: [{ port: 443, proto: "tcp" }], openForMs: 5000 }).record.ports, [{ port: 443, proto: "tcp" }]);
    const { record, replaced } = book.open(web, "signed", A, 4, 2000, { ports: [{ port: 22, proto: "tcp" }], openForMs: 1000 });
    assert.deepEqual(replaced, []);
    assert.equal(record.via, "signed");
    assert.deepEqual(record.ports, [{ port: 443, proto: "tcp" }, { port: 22, proto: "tcp" }]);
    assert.equal(record.expiresAt, 6000);
  });

  test("a grant expires once its time is up, not before", () => {
    const book = new GrantBook(UNBOUNDED);
    book.open(SSH, "sequence", A, 4, 1000, whole(SSH));
    assert.deepEqual(book.expire(30_999), []);
    assert.equal(book.size, 1);
    const expired = book.expire(31_000);
    assert.deepEqual(
      expired.map((r) => [r.door.name, r.src, r.expiresAt]),
      [["SSH", A, 31_000]],
    );
    assert.equal(book.size, 0);
    assert.deepEqual(book.expire(40_000), [], "an expired grant is reported only once");
  });

  test("expire takes out only the grants whose time is up", () => {
    const book = new GrantBook(UNBOUNDED);
    book.open(SSH, "sequence", A, 4, 0, whole(SSH));
    book.open(SSH, "sequence", B, 6, 10_000, whole(SSH));
    assert.deepEqual(
      book.expire(35_000).map((r) => r.src),
      [A],
    );
    assert.equal(book.size, 1);
    assert.deepEqual(
      book.expire(40_000).map((r) => [r.src, r.family]),
      [[B, 6]],
    );
  });

  test("close removes the grant and returns it", () => {
    const book = new GrantBook(UNBOUNDED);
    book.open(SSH, "sequence", A, 4, 0, whole(SSH));
    const closed = book.close(SSH, "sequence", A);
    assert.equal(closed?.src, A);
    assert.equal(closed?.expiresAt, 30_000);
    assert.equal(book.size, 0);
    assert.deepEqual(book.expire(60_000), []);
  });

  test("close of a grant we do not have returns undefined", () => {
    const book = new GrantBook(UNBOUNDED);
    book.open(SSH, "sequence", A, 4, 0, whole(SSH));
    assert.equal(book.close(SSH, "sequence", B), undefined);
    assert.equal(book.close(door("WEB", 30_000), "sequence", A), undefined);
    assert.equal(book.size, 1);
  });

  test("opening again refreshes the expiry instead of adding a second grant", () => {
    const book = new GrantBook(UNBOUNDED);
    book.open(SSH, "sequence", A, 4, 0, whole(SSH));
    const { record: refreshed } = book.open(SSH, "sequence", A, 4, 20_000, whole(SSH));
    assert.equal(refreshed.expiresAt, 50_000);
    assert.equal(book.size, 1);
    assert.deepEqual(book.expire(30_000), [], "the old expiry no longer applies");
    assert.equal(book.expire(50_000).length, 1);
  });

  test("a refresh never shortens: the later of the two ends holds", () => {
    const book = new GrantBook(UNBOUNDED);
    book.open(SSH, "sequence", A, 4, 0, whole(SSH));
    assert.equal(book.open(SSH, "sequence", A, 4, 1000, { ports: SSH.ports, openForMs: 5000 }).record.expiresAt, 30_000);
    const web = { ...SSH, ports: [{ port: 22, proto: "tcp" as const }, { port: 443, proto: "tcp" as const }] };
    book.open(web, "signed", A, 4, 0, { ports: web.ports, openForMs: 60_000 });
    const { record } = book.open(web, "signed", A, 4, 1000, { ports: [{ port: 443, proto: "tcp" }], openForMs: 5000 });
    assert.deepEqual([...(record.until ?? [])], [["22/tcp", 60_000], ["443/tcp", 60_000]]);
  });

  test("a sequence grant and a signed grant of one address are two grants, each in its own bounds", () => {
    const book = new GrantBook({ maxGrants: 1, maxPerPrefix: 1, prefixes: PREFIXES });
    book.open(SSH, "sequence", A, 4, 0, whole(SSH));
    assert.deepEqual(book.open(SSH, "signed", A, 4, 0, { ports: SSH.ports, openForMs: 1000 }).replaced, []);
    assert.equal(book.size, 2);
    assert.equal(book.close(SSH, "signed", A)?.via, "signed");
    assert.equal(book.get(SSH, "sequence", A)?.via, "sequence");
  });

  test("the same source on two doors has two grants", () => {
    const book = new GrantBook(UNBOUNDED);
    const web = door("WEB", 60_000);
    book.open(SSH, "sequence", A, 4, 0, whole(SSH));
    book.open(web, "sequence", A, 4, 0, whole(web));
    assert.equal(book.size, 2);
    assert.deepEqual(
      book.expire(30_000).map((r) => r.door.name),
      ["SSH"],
    );
    assert.equal(book.size, 1);
  });

  test("with OPEN_FOR 0 a grant never expires and lasts until closed", () => {
    const book = new GrantBook(UNBOUNDED);
    const forever = door("VPN", 0);
    const { record } = book.open(forever, "sequence", A, 4, 1000, whole(forever));
    assert.equal(record.expiresAt, Infinity);
    assert.deepEqual(book.expire(Number.MAX_SAFE_INTEGER), []);
    assert.equal(book.size, 1);
    assert.equal(book.close(forever, "sequence", A)?.expiresAt, Infinity);
    assert.equal(book.size, 0);
  });
});

describe("GrantBook bounds", () => {
  const fill = (book: GrantBook, srcs: string[], family: 4 | 6 = 4) => {
    const replaced: string[] = [];
    srcs.forEach((src, i) => {
      for (const r of book.open(SSH, "sequence", src, family, i, whole(SSH)).replaced) replaced.push(`${r.record.src} ${r.reason}`);
    });
    return replaced;
  };

  test("a prefix at its cap gives up its own oldest grant, and only its own", () => {
    const book = new GrantBook({ maxGrants: 100, maxPerPrefix: 2, prefixes: PREFIXES });
    const replaced = fill(book, ["198.18.0.1", "203.0.113.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"]);
    assert.deepEqual(replaced, ["198.18.0.1 prefix_full", "198.18.0.2 prefix_full"]);
    assert.ok(book.get(SSH, "sequence", "203.0.113.1"));
    assert.equal(book.size, 3);
  });

  test("a full door gives up the oldest grant of the most crowded prefix, not the newcomer's", () => {
    const book = new GrantBook({ maxGrants: 4, maxPerPrefix: 100, prefixes: PREFIXES });
    // One real client, then a crowd from one /64 fills the door.
    const replaced = fill(book, ["203.0.113.9", "2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1::3"].slice(0, 1));
    assert.deepEqual(replaced, []);
    const crowd = fill(book, ["2001:db8:1:1::1", "2001:db8:1:1::2", "2001:db8:1:1::3", "2001:db8:1:1::4", "2001:db8:1:1::5"], 6);
    assert.deepEqual(crowd, ["2001:db8:1:1::1 set_full", "2001:db8:1:1::2 set_full"]);
    assert.ok(book.get(SSH, "sequence", "203.0.113.9"), "the lone client outlasts the crowd");
    assert.equal(book.size, 4);
    // A newcomer from elsewhere still gets in, at the crowd's expense.
    assert.deepEqual(fill(book, ["198.51.100.7"]), ["2001:db8:1:1::3 set_full"]);
    assert.ok(book.get(SSH, "sequence", "198.51.100.7") && book.get(SSH, "sequence", "203.0.113.9"));
  });

  test("a refreshed grant is the newest of its prefix again; closing and expiry free room", () => {
    const book = new GrantBook({ maxGrants: 100, maxPerPrefix: 2, prefixes: PREFIXES });
    fill(book, ["198.18.0.1", "198.18.0.2"]);
    assert.deepEqual(book.open(SSH, "sequence", "198.18.0.1", 4, 10, whole(SSH)).replaced, [], "a refresh needs no room");
    assert.deepEqual(
      book.open(SSH, "sequence", "198.18.0.3", 4, 11, whole(SSH)).replaced.map((r) => r.record.src),
      ["198.18.0.2"],
    );
    book.close(SSH, "sequence", "198.18.0.1");
    assert.deepEqual(book.open(SSH, "sequence", "198.18.0.4", 4, 12, whole(SSH)).replaced, [], "closing freed a place");
  });

  test("matches a model through random grants, closes and expiries (counts, caps, who is replaced)", () => {
    let seed = 42;
    const rnd = (n: number) => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed % n;
    };
    const limits = { maxGrants: 20, maxPerPrefix: 6, prefixes: PREFIXES };
    const book = new GrantBook(limits);
    /** src -> [prefix, order of last grant] */
    const model = new Map<string, [string, number]>();
    for (let step = 0; step < 5000; step++) {
      const src = `198.18.${rnd(6)}.${rnd(12)}`;
      const prefix = src.split(".").slice(0, 3).join(".");
      if (rnd(5) === 0) {
        assert.equal(book.close(SSH, "sequence", src)?.src, model.has(src) ? src : undefined);
        model.delete(src);
        continue;
      }
      if (!model.has(src)) {
        const expected: string[] = [];
        const oldestOf = (p?: string) => {
          const entries = [...model.entries()].filter(([, [q]]) => p === undefined || q === p).sort((a, b) => a[1][1] - b[1][1]);
          return entries[0]?.[0];
        };
        const count = (p: string) => [...model.values()].filter(([q]) => q === p).length;
        if (count(prefix) >= limits.maxPerPrefix) {
          const v = oldestOf(prefix)!;
          expected.push(v);
          model.delete(v);
        } else if (model.size >= limits.maxGrants) {
          const top = Math.max(...[...new Set([...model.values()].map(([q]) => q))].map(count));
          const crowded = [...new Set([...model.values()].map(([q]) => q))].filter((q) => count(q) === top);
          const v = book.open(SSH, "sequence", src, 4, step, whole(SSH)).replaced.map((r) => r.record.src);
          assert.equal(v.length, 1, `step ${step}`);
          const victim = v[0]!;
          const victimPrefix = model.get(victim)![0];
          assert.ok(crowded.includes(victimPrefix), `step ${step}: ${victim} is not of a most crowded prefix`);
          assert.equal(victim, oldestOf(victimPrefix), `step ${step}: not the oldest of its prefix`);
          model.delete(victim);
          model.set(src, [prefix, step]);
          continue;
        }
        assert.deepEqual(book.open(SSH, "sequence", src, 4, step, whole(SSH)).replaced.map((r) => r.record.src), expected, `step ${step}`);
      } else {
        assert.deepEqual(book.open(SSH, "sequence", src, 4, step, whole(SSH)).replaced, [], `step ${step}: a refresh replaces nothing`);
      }
      model.set(src, [prefix, step]);
      assert.equal(book.size, model.size);
    }
  });
});

describe("prefixKey", () => {
  test("every address of one /24 or /64 has the same key, its neighbours another", () => {
    const key = (src: string, family: 4 | 6) => prefixKey(src, family, PREFIXES);
    assert.equal(key("198.18.0.1", 4), key("198.18.0.254", 4));
    assert.notEqual(key("198.18.0.1", 4), key("198.18.1.1", 4));
    assert.equal(key("2001:db8:1:1::1", 6), key("2001:db8:1:1:ffff:ffff:ffff:ffff", 6));
    assert.notEqual(key("2001:db8:1:1::1", 6), key("2001:db8:1:2::1", 6));
    assert.equal(key("2001:db8:0:1::", 6), key("2001:db8::1:0:0:0:1", 6), "two spellings of one /64");
    assert.equal(prefixKey("198.18.7.9", 4, { v4: 32, v6: 128 }), "4/c6120709");
    assert.equal(prefixKey("64:ff9b::198.18.0.2", 6, { v4: 32, v6: 128 }), "6/0064ff9b0000000000000000c6120002");
  });

  test("text that is no address is a key of its own, never another address's", () => {
    for (const bad of ["1.2.3", "1.2.3.256", "2001:db8::1::2", "1:2:3:4:5:6:7:8:9", "fe80::1%eth0", "x"]) {
      assert.equal(prefixKey(bad, bad.includes(":") ? 6 : 4, PREFIXES), `?${bad}`, bad);
    }
    assert.equal(prefixKey("198.18.0.1", 6, PREFIXES), "?198.18.0.1", "an address of the other family");
  });
});
