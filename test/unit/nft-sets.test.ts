/** The bench's readings of nft set listings (bench/nft-sets.ts), and the daemon's reader of set elements that the bench uses too. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { nftDurationMs, nftSetFill } from "../../bench/nft-sets.js";
import { nftElements } from "../../src/adapters/firewall/nftables/listing.js";

const addresses = (json: string) => nftElements(json).map((e) => e.src);

const META = { metainfo: { version: "1.0.6", release_name: "Lester Gooch #5", json_schema_version: 1 } };
const set = (table: string, name: string, elem?: unknown[], size?: number) => ({ set: { family: "inet", name, table, type: "ipv4_addr", handle: 1, ...(size ? { size } : {}), flags: ["timeout"], ...(elem ? { elem } : {}) } });
const listing = (...objects: object[]) => JSON.stringify({ nftables: [META, ...objects] });

describe("nft set listings", () => {
  test("elements are read as plain values and as {elem: {val}} with a timeout", () => {
    const json = listing(set("knockgate", "door_SSH_v4", ["198.18.1.1", { elem: { val: "198.18.1.2", timeout: 60, expires: 59 } }]));
    assert.deepEqual(addresses(json), ["198.18.1.1", "198.18.1.2"]);
    assert.deepEqual(nftElements(json).map((e) => e.remainingMs), [null, 59_000]);
  });

  test("a set with no elements has none, and other objects of the listing are skipped", () => {
    assert.deepEqual(addresses(listing(set("knockgate", "door_SSH_v4"), { chain: { name: "prerouting" } })), []);
  });

  test("fill counts the elements of the table's sets with the prefix, with their declared size", () => {
    const json = listing(
      set("knockgate", "knock_SSH_open_v6_first", [{ elem: { val: "fd00::1", timeout: 5, expires: 4 } }, { elem: { val: "fd00::2", timeout: 5, expires: 4 } }], 65536),
      set("knockgate", "knock_SSH_open_v4_recent", undefined, 65536),
      set("knockgate", "door_SSH_v4", ["198.18.1.1"]),
      set("other", "knock_X", ["198.18.1.1"], 8),
      set("knockgate", "knock_unsized", ["198.18.1.1"]),
    );
    assert.deepEqual(nftSetFill(json, "knockgate", "knock_"), [
      { set: "knock_SSH_open_v6_first", elements: 2, size: 65536 },
      { set: "knock_SSH_open_v4_recent", elements: 0, size: 65536 },
      { set: "knock_unsized", elements: 1, size: null },
    ]);
  });

  test("durations in nft's text are read to the millisecond", () => {
    assert.equal(nftDurationMs("18s700ms"), 18_700);
    assert.equal(nftDurationMs("1h2m3s400ms"), 3_723_400);
    assert.equal(nftDurationMs("1d"), 86_400_000);
  });
});
