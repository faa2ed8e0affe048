/**
 * SPA verification against datagrams written by the real fwknop client (test/fixtures/spa, made
 * by test/fixtures/spa/make-vectors.mjs): every message and digest kind accepted or refused as fwknopd would,
 * and every way a datagram can be wrong refused with its result name.
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { ReplayCache } from "../../src/core/spa/replay.js";
import { MAX_SPA_LENGTH, replayKey, verifySpa, type SpaDatagram, type SpaKeys, type SpaLimits, type SpaVerdict } from "../../src/core/spa/verify.js";
import { parseAddress } from "../../src/core/packet/address.js";
import { createHash, createSecretKey } from "node:crypto";
import { isIP } from "node:net";
import { canonicalAddress } from "../../src/core/protection/targets.js";
import { encodeSpa, spaPlaintext, type SpaFields } from "../../src/core/spa/encode.js";
import { SPA_FIXTURE as FIXTURE, fixtureKeys as keysFor, spaLimits, type Vector } from "../support/spa-vectors.js";

const SOURCE: SpaDatagram["source"] = { family: 4, src: "203.0.113.7" };
const LIMITS: SpaLimits = spaLimits([
  { proto: "tcp", port: 22 },
  { proto: "udp", port: 53 },
]);
const vector = (name: string): Vector => {
  const v = FIXTURE.vectors.find((x) => x.name === name);
  assert.ok(v, `no vector ${name}`);
  return v;
};

function verify(
  payload: string | Uint8Array,
  opts: { keys?: SpaKeys; limits?: Partial<SpaLimits>; now?: number; replay?: ReplayCache; source?: typeof SOURCE; beforeHmac?: () => void } = {},
): SpaVerdict {
  const access = vector("access");
  return verifySpa(
    { payload: typeof payload === "string" ? Buffer.from(payload, "latin1") : payload, source: opts.source ?? SOURCE },
    opts.keys ?? keysFor("sha256"),
    { ...LIMITS, ...opts.limits },
    opts.replay ?? new ReplayCache(16),
    opts.now ?? access.now,
    opts.beforeHmac,
  );
}
const resultOf = (v: SpaVerdict) => (v.ok ? "accepted" : v.result);

/** The payload with the character at `at` replaced by another base64 character. */
function flip(payload: string, at: number): string {
  const i = at < 0 ? payload.length + at : at;
  return payload.slice(0, i) + (payload[i] === "A" ? "B" : "A") + payload.slice(i + 1);
}

describe("fwknop client vectors", () => {
  test("cover every message type and digest type the client makes", () => {
    const types = new Set(FIXTURE.vectors.map((v) => v.client.type));
    assert.deepEqual([...types].sort(), [0, 1, 2, 3, 4, 5, 6]);
    assert.deepEqual([...new Set(FIXTURE.vectors.map((v) => v.hmacDigest))].sort(), ["sha256", "sha384", "sha512"]);
    const digests = new Set(FIXTURE.vectors.map((v) => v.client.plaintext.slice(v.client.plaintext.lastIndexOf(":") + 1).length));
    assert.deepEqual([...digests].sort((a, b) => a - b), [22, 27, 43, 64, 86]);
  });

  for (const v of FIXTURE.vectors) {
    test(`${v.name}: ${"refused" in v.expected ? `refused, ${v.expected.refused}` : "accepted"}`, () => {
      const verdict = verify(v.payload, { keys: keysFor(v.hmacDigest), now: v.now });
      if ("refused" in v.expected) {
        assert.equal(resultOf(verdict), v.expected.refused, JSON.stringify(verdict));
        return;
      }
      assert.ok(verdict.ok, JSON.stringify(verdict));
      const e = v.expected;
      assert.deepEqual(
        { ...verdict.request, ports: verdict.request.ports.map((p) => `${p.proto}/${p.port}`) },
        {
          address: e.address === "source" ? SOURCE.src : e.address,
          family: e.family === "source" ? SOURCE.family : e.family,
          ports: e.ports,
          openForS: e.openForS,
          username: v.client.username,
          timestamp: v.client.timestamp,
          type: v.client.type,
        },
      );
    });
  }
});

describe("SPA refusals", () => {
  const access = vector("access");

  test("a changed character in E or in H: bad_hmac", () => {
    for (const at of [0, 40, access.payload.length - 44, access.payload.length - 43, access.payload.length - 1]) {
      assert.equal(resultOf(verify(flip(access.payload, at))), "bad_hmac", `at ${at}`);
    }
  });

  test("an HMAC key given as a KeyObject (as the daemon gives it) reads the same: accepted, and a changed character is bad_hmac", () => {
    const keys = { ...keysFor("sha256"), hmacKey: createSecretKey(keysFor("sha256").hmacKey as Uint8Array) };
    assert.equal(resultOf(verify(access.payload, { keys })), "accepted");
    assert.equal(resultOf(verify(flip(access.payload, 40), { keys })), "bad_hmac");
    assert.equal(resultOf(verify(access.payload, { keys: { ...keys, hmacKey: createSecretKey(Buffer.alloc(64, 7)) } })), "bad_hmac");
  });

  test("another HMAC key, or another HMAC digest type: bad_hmac", () => {
    const other = { ...keysFor("sha256"), hmacKey: Buffer.alloc(64, 7) };
    assert.equal(resultOf(verify(access.payload, { keys: other })), "bad_hmac");
    assert.equal(resultOf(verify(access.payload, { keys: keysFor("sha384") })), "bad_hmac");
    assert.equal(resultOf(verify(vector("hmac-sha512").payload, { keys: keysFor("sha256") })), "bad_hmac");
  });

  test("another encryption key with the right HMAC key: bad_key, and no open", () => {
    const other = { ...keysFor("sha256"), encryptionKey: Buffer.alloc(32, 7) };
    // The padding check lets about 1 in 256 wrong keys through; the digits test then stops them.
    for (let k = 0; k < 64; k++) {
      const r = resultOf(verify(access.payload, { keys: { ...other, encryptionKey: Buffer.alloc(32, k) } }));
      assert.equal(r, "bad_key", `key byte ${k}`);
    }
  });

  test("the replay key is the payload's SHA-256, its first 128 bits as canonical IPv6 text (what the kernels list)", () => {
    const payload = Buffer.from(access.payload, "latin1");
    const key = replayKey(payload);
    // Leading zeros dropped (0c30), as the kernels list it and as earlier versions wrote it: their
    // records in a kernel set adopted after an upgrade still match.
    assert.equal(key, "ecad:1ca6:c30:4ee7:e46d:55c7:14d5:a831");
    assert.equal(isIP(key), 6);
    assert.equal(canonicalAddress(key)?.address, key);
    assert.deepEqual([...parseAddress(key)!.addr], [...createHash("sha256").update(payload).digest().subarray(0, 16)]);
    const verdict = verify(access.payload);
    assert.ok(verdict.ok);
    assert.equal(verdict.replayKey, key);
  });

  test("the same datagram twice: replay, even after a refusal for policy", () => {
    const replay = new ReplayCache(16);
    assert.equal(resultOf(verify(access.payload, { replay })), "accepted");
    assert.equal(resultOf(verify(access.payload, { replay })), "replay");
    assert.equal(resultOf(verify(access.payload, { replay, now: access.now + 60 })), "replay");
    const denied = vector("port-not-allowed");
    assert.equal(resultOf(verify(denied.payload, { replay, now: denied.now })), "port_not_allowed");
    assert.equal(resultOf(verify(denied.payload, { replay, now: denied.now })), "replay");
  });

  test("a replay after the max age is refused as stale: the cache need not hold it", () => {
    const replay = new ReplayCache(16);
    assert.equal(resultOf(verify(access.payload, { replay })), "accepted");
    assert.equal(resultOf(verify(access.payload, { replay, now: access.now + 121 })), "stale");
  });

  test("a forged datagram is never recorded: it cannot push a real one out of the cache", () => {
    const replay = new ReplayCache(1);
    assert.equal(resultOf(verify(access.payload, { replay })), "accepted");
    assert.equal(resultOf(verify(flip(vector("access-two-ports").payload, 5), { replay })), "bad_hmac");
    assert.equal(replay.size, 1);
    assert.equal(resultOf(verify(access.payload, { replay })), "replay");
  });

  test("timestamps: max age either way accepted, one second more stale or future", () => {
    assert.equal(resultOf(verify(access.payload, { now: access.now + 120 })), "accepted");
    assert.equal(resultOf(verify(access.payload, { now: access.now + 121 })), "stale");
    assert.equal(resultOf(verify(access.payload, { now: access.now - 120 })), "accepted");
    assert.equal(resultOf(verify(access.payload, { now: access.now - 121 })), "future");
    assert.equal(resultOf(verify(access.payload, { now: access.now + 30, limits: { maxAgeS: 10 } })), "stale");
  });

  test("lengths: under 140 too_short, over 1500 too_long, truncated bad_hmac", () => {
    assert.equal(resultOf(verify(access.payload.slice(0, 139))), "too_short");
    assert.equal(resultOf(verify(access.payload.slice(0, 140))), "bad_hmac");
    assert.equal(resultOf(verify(access.payload.slice(0, -1))), "bad_hmac");
    assert.equal(resultOf(verify(access.payload.slice(1))), "bad_hmac");
    assert.equal(resultOf(verify("A".repeat(MAX_SPA_LENGTH + 1))), "too_long");
    assert.equal(resultOf(verify("A".repeat(MAX_SPA_LENGTH))), "bad_hmac");
  });

  test("the Salted__ prefix left on, a newline, or other text: bad_format before any HMAC", () => {
    assert.equal(resultOf(verify(`U2FsdGVkX1${access.payload}`)), "bad_format");
    assert.equal(resultOf(verify(`${access.payload}\n`)), "bad_format");
    assert.equal(resultOf(verify(`${access.payload.slice(0, 100)}=${access.payload.slice(101)}`)), "bad_format");
    assert.equal(resultOf(verify(Buffer.alloc(200, 0))), "bad_format");
  });

  test("beforeHmac runs once for a datagram that passed the free checks, forged or not, and never for one they refuse", () => {
    const calls = (payload: string | Uint8Array) => {
      let n = 0;
      const verdict = verify(payload, { beforeHmac: () => n++ });
      return [resultOf(verdict), n];
    };
    assert.deepEqual(calls(access.payload), ["accepted", 1]);
    assert.deepEqual(calls(flip(access.payload, 40)), ["bad_hmac", 1]);
    assert.deepEqual(calls("A".repeat(200)), ["bad_hmac", 1]);
    assert.deepEqual(calls(access.payload.slice(0, 139)), ["too_short", 0]);
    assert.deepEqual(calls("A".repeat(MAX_SPA_LENGTH + 1)), ["too_long", 0]);
    assert.deepEqual(calls(`U2FsdGVkX1${access.payload}`), ["bad_format", 0]);
    assert.deepEqual(calls(Buffer.alloc(200, 0)), ["bad_format", 0]);
  });

  test("0.0.0.0 (fwknop -s) is refused when the door requires an address", () => {
    assert.equal(resultOf(verify(vector("source-address").payload, { limits: { requireSourceAddress: true }, now: vector("source-address").now })), "address_refused");
    assert.equal(resultOf(verify(access.payload, { limits: { requireSourceAddress: true } })), "accepted");
  });

  test("a required username: the client's -U must match", () => {
    const alice = vector("username-alice");
    assert.equal(resultOf(verify(alice.payload, { limits: { username: "alice" }, now: alice.now })), "accepted");
    assert.equal(resultOf(verify(access.payload, { limits: { username: "alice" } })), "username_refused");
  });

  test("open-for: the client's -f capped by the door's maximum", () => {
    const v = vector("client-timeout-60");
    const r = verify(v.payload, { limits: { maxOpenForS: 45 }, now: v.now });
    assert.ok(r.ok && r.request.openForS === 45, JSON.stringify(r));
  });
});

describe("datagrams the client cannot write (knockgate's encoder, held byte-equal to the client in spa-encode.test.ts)", () => {
  const keys = keysFor("sha256");
  const now = 1_800_000_000;
  const salt = Buffer.from("0123456789abcdef", "hex");
  const plain = (fields: Omit<SpaFields, "rand">) => spaPlaintext({ rand: "1234567890123456", ...fields });
  const make = (fields: Omit<SpaFields, "rand">) => encodeSpa(plain(fields), keys, salt);

  test("an IPv6 address in the message is accepted, in canonical text", () => {
    const r = verify(make({ username: "root", timestamp: now, type: 1, message: "FD00:198:18:0:0:0:0:2,tcp/22" }), { now });
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual([r.request.address, r.request.family], ["fd00:198:18::2", 6]);
  });

  test("0.0.0.0 from an IPv6 source opens for that source", () => {
    const source = { family: 6 as const, src: "2001:db8::7" };
    const r = verify(make({ username: "root", timestamp: now, type: 1, message: "0.0.0.0,tcp/22" }), { now, source });
    assert.ok(r.ok && r.request.address === "2001:db8::7" && r.request.family === 6, JSON.stringify(r));
  });

  test("IPv6 addresses no grant may name: address_refused", () => {
    for (const a of ["::1", "::", "ff02::1", "::ffff:198.18.0.2", "fe80::1", "64:ff9b::7f00:1", "64:ff9b::127.0.0.1"]) {
      assert.equal(resultOf(verify(make({ username: "root", timestamp: now, type: 1, message: `${a},tcp/22` }), { now })), "address_refused", a);
    }
  });

  test("IPv4 link-local is refused, carrier-grade NAT space is not", () => {
    assert.equal(resultOf(verify(make({ username: "root", timestamp: now, type: 1, message: "169.254.1.1,tcp/22" }), { now })), "address_refused");
    assert.equal(resultOf(verify(make({ username: "root", timestamp: now, type: 1, message: "100.64.0.9,tcp/22" }), { now })), "accepted");
  });

  test("a port named twice in the access message is one port", () => {
    const r = verify(make({ username: "root", timestamp: now, type: 1, message: "198.18.0.2,tcp/22,udp/53,tcp/22,tcp/22" }), { now });
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(r.request.ports, [
      { proto: "tcp", port: 22 },
      { proto: "udp", port: 53 },
    ]);
  });

  test("a digest that does not match: bad_digest; malformed fields: bad_format", () => {
    const good = plain({ username: "root", timestamp: now, type: 1, message: "198.18.0.2,tcp/22" });
    const wrongDigest = good.slice(0, -1) + (good.endsWith("A") ? "B" : "A");
    assert.equal(resultOf(verify(encodeSpa(wrongDigest, keys, salt), { now })), "bad_digest");
    assert.equal(resultOf(verify(encodeSpa(`${good}x`, keys, salt), { now })), "bad_digest");
    for (const message of ["198.18.0.2", "198.18.0.2,tcp/0", "198.18.0.2,icmp/22", "198.18.0.2,tcp/65536", "not-an-ip,tcp/22", "198.018.0.2,tcp/22"]) {
      assert.equal(resultOf(verify(make({ username: "root", timestamp: now, type: 1, message }), { now })), "bad_format", message);
    }
    // An access message (type 1) carrying NAT and timeout fields has more fields than its type takes.
    assert.equal(resultOf(verify(make({ username: "root", timestamp: now, type: 1, message: "198.18.0.2,tcp/22", clientTimeoutS: 60, nat: "x" }), { now })), "bad_format");
  });
});

describe("parseAddress", () => {
  test("reads IPv4 and IPv6 text, and nothing else", () => {
    const hex = (t: string) => {
      const p = parseAddress(t);
      return p && `${p.family}:${Buffer.from(p.addr).toString("hex")}`;
    };
    assert.equal(hex("198.18.0.2"), "4:c6120002");
    assert.equal(hex("::"), `6:${"00".repeat(16)}`);
    assert.equal(hex("fd00::2"), "6:fd000000000000000000000000000002");
    assert.equal(hex("1:2:3:4:5:6:7:8"), "6:00010002000300040005000600070008");
    assert.equal(hex("::ffff:1.2.3.4"), "6:00000000000000000000ffff01020304");
    for (const bad of ["", "1.2.3", "1.2.3.256", "01.2.3.4", "1:2:3:4:5:6:7", "1::2::3", "1:2:3:4:5:6:7:8:9", "1::2:3:4:5:6:7:8", "12345::", "1.2.3.4::", "g::1"]) {
      assert.equal(parseAddress(bad), null, bad);
    }
  });
});
