import { describe, test } from "node:test";
import assert from "node:assert/strict";
import type { Door } from "../../src/core/types.js";
import { GrantBook } from "../../src/core/grants/grant-book.js";

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
  };
}

const SSH = door("SSH", 30_000);
const A = "198.18.0.2";
const B = "2001:db8::2";

describe("GrantBook", () => {
  test("open records the grant with an expiry OPEN_FOR after now", () => {
    const book = new GrantBook();
    const record = book.open(SSH, A, 4, 1000);
    assert.deepEqual(record, { door: SSH, src: A, family: 4, expiresAt: 31_000 });
    assert.equal(book.size, 1);
  });

  test("a grant expires once its time is up, not before", () => {
    const book = new GrantBook();
    book.open(SSH, A, 4, 1000);
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
    const book = new GrantBook();
    book.open(SSH, A, 4, 0);
    book.open(SSH, B, 6, 10_000);
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
    const book = new GrantBook();
    book.open(SSH, A, 4, 0);
    const closed = book.close(SSH, A);
    assert.equal(closed?.src, A);
    assert.equal(closed?.expiresAt, 30_000);
    assert.equal(book.size, 0);
    assert.deepEqual(book.expire(60_000), []);
  });

  test("close of a grant we do not have returns undefined", () => {
    const book = new GrantBook();
    book.open(SSH, A, 4, 0);
    assert.equal(book.close(SSH, B), undefined);
    assert.equal(book.close(door("WEB", 30_000), A), undefined);
    assert.equal(book.size, 1);
  });

  test("opening again refreshes the expiry instead of adding a second grant", () => {
    const book = new GrantBook();
    book.open(SSH, A, 4, 0);
    const refreshed = book.open(SSH, A, 4, 20_000);
    assert.equal(refreshed.expiresAt, 50_000);
    assert.equal(book.size, 1);
    assert.deepEqual(book.expire(30_000), [], "the old expiry no longer applies");
    assert.equal(book.expire(50_000).length, 1);
  });

  test("the same source on two doors has two grants", () => {
    const book = new GrantBook();
    const web = door("WEB", 60_000);
    book.open(SSH, A, 4, 0);
    book.open(web, A, 4, 0);
    assert.equal(book.size, 2);
    assert.deepEqual(
      book.expire(30_000).map((r) => r.door.name),
      ["SSH"],
    );
    assert.equal(book.size, 1);
  });

  test("with OPEN_FOR 0 a grant never expires and lasts until closed", () => {
    const book = new GrantBook();
    const forever = door("VPN", 0);
    const record = book.open(forever, A, 4, 1000);
    assert.equal(record.expiresAt, Infinity);
    assert.deepEqual(book.expire(Number.MAX_SAFE_INTEGER), []);
    assert.equal(book.size, 1);
    assert.equal(book.close(forever, A)?.expiresAt, Infinity);
    assert.equal(book.size, 0);
  });
});
