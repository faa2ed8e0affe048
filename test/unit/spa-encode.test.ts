/**
 * The SPA encoder against the real fwknop client: from a client vector's salt and random digits it
 * must write the client's datagram byte for byte, and what it writes must pass verifySpa with the
 * fields it was given. (That stock fwknopd accepts it too is test/integration/spa-client.test.ts.)
 */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { accessPlaintext, encodeSpa, spaPlaintext } from "../../src/core/spa/encode.js";
import { ReplayCache } from "../../src/core/spa/replay.js";
import { verifySpa, type SpaKeys, type SpaLimits } from "../../src/core/spa/verify.js";
import { unb64 } from "../../src/core/spa/wire.js";
import type { SpaType } from "../../src/core/spa/message.js";
import { SPA_FIXTURE as FIXTURE, fixtureKeys as keysFor, spaLimits } from "../support/spa-vectors.js";

/** The salt the client drew: bytes 8-15 of the decoded E. */
const saltOf = (payload: string): Buffer => unb64(`U2FsdGVkX1${payload}`.slice(0, 24))!.subarray(8, 16);
const SALT = Buffer.from("0011223344556677", "hex");
const RAND = "0123456789012345";
const LIMITS: SpaLimits = {
  ...spaLimits([
    { proto: "tcp", port: 22 },
    { proto: "tcp", port: 2222 },
    { proto: "udp", port: 53 },
  ]),
  requireSourceAddress: true,
};
const NOW = 1_800_000_000;

describe("the encoder writes what the fwknop client writes", () => {
  for (const v of FIXTURE.vectors) {
    test(`${v.name}: the client's plaintext and salt give the client's datagram`, () => {
      assert.equal(encodeSpa(v.client.plaintext, keysFor(v.hmacDigest), saltOf(v.payload)), v.payload);
    });
  }

  test("the plaintext from the client's fields and random digits is the client's plaintext, every type and digest", () => {
    const digestOf = (text: string) => text.split(" ")[1]!.replace(/[()]/g, "").toLowerCase() as "md5" | "sha1" | "sha256" | "sha384" | "sha512";
    for (const v of FIXTURE.vectors) {
      const c = v.client;
      const rebuilt = spaPlaintext({
        rand: c.plaintext.slice(0, 16),
        username: c.username,
        timestamp: c.timestamp,
        type: c.type as SpaType,
        message: c.message,
        ...(c.natAccess !== "<NULL>" ? { nat: c.natAccess } : {}),
        ...(c.clientTimeout > 0 ? { clientTimeoutS: c.clientTimeout } : {}),
        digest: digestOf(c.digestType),
      });
      assert.equal(rebuilt, c.plaintext, v.name);
    }
  });

  test("an access request is written as the client writes -A/-a/-f/-U: type 1 without -f, type 3 with it", () => {
    for (const name of ["access", "access-two-ports", "client-timeout-60", "username-alice", "source-address"]) {
      const c = FIXTURE.vectors.find((v) => v.name === name)!.client;
      const [address = "", ...specs] = c.message.split(",");
      const ports = specs.map((s) => ({ proto: s.split("/")[0] as "tcp" | "udp", port: Number(s.split("/")[1]) }));
      const plaintext = accessPlaintext({
        rand: c.plaintext.slice(0, 16),
        username: c.username,
        timestamp: c.timestamp,
        address,
        ports,
        clientTimeoutS: c.clientTimeout > 0 ? c.clientTimeout : null,
      });
      assert.equal(plaintext, c.plaintext, name);
    }
  });
});

describe("what the encoder writes, verifySpa reads back", () => {
  const keys = keysFor("sha256");
  const check = (fields: Partial<Parameters<typeof accessPlaintext>[0]>, k: SpaKeys = keys, limits: Partial<SpaLimits> = {}) =>
    verifySpa(
      {
        payload: Buffer.from(
          encodeSpa(accessPlaintext({ rand: RAND, username: "alice", timestamp: NOW, address: "198.18.0.2", ports: [{ proto: "tcp", port: 22 }], clientTimeoutS: null, ...fields }), k, SALT),
          "latin1",
        ),
        source: { family: 4, src: "198.18.0.9" },
      },
      k,
      { ...LIMITS, ...limits },
      new ReplayCache(4),
      NOW + 5,
    );

  test("address, ports, username and the default open-for", () => {
    const r = check({ ports: [{ proto: "tcp", port: 2222 }, { proto: "udp", port: 53 }] });
    assert.ok(r.ok, JSON.stringify(r));
    assert.deepEqual(
      [r.request.address, r.request.family, r.request.ports, r.request.username, r.request.openForS, r.request.timestamp, r.request.type],
      ["198.18.0.2", 4, [{ proto: "tcp", port: 2222 }, { proto: "udp", port: 53 }], "alice", 30, NOW, 1],
    );
  });

  test("a client timeout becomes the grant's length, capped by the door", () => {
    const r = check({ clientTimeoutS: 5 });
    assert.ok(r.ok && r.request.openForS === 5 && r.request.type === 3, JSON.stringify(r));
    const capped = check({ clientTimeoutS: 5000 });
    assert.ok(capped.ok && capped.request.openForS === 300, JSON.stringify(capped));
  });

  test("an IPv6 address, and 0.0.0.0 where the door allows it", () => {
    const v6 = check({ address: "fd00:198:18::2" });
    assert.ok(v6.ok && v6.request.address === "fd00:198:18::2" && v6.request.family === 6, JSON.stringify(v6));
    const source = check({ address: "0.0.0.0" }, keys, { requireSourceAddress: false });
    assert.ok(source.ok && source.request.address === "198.18.0.9", JSON.stringify(source));
    const refused = check({ address: "0.0.0.0" });
    assert.ok(!refused.ok && refused.result === "address_refused");
  });

  test("every HMAC digest; another key is refused", () => {
    for (const d of ["sha256", "sha384", "sha512"] as const) {
      const r = check({}, keysFor(d));
      assert.ok(r.ok, `${d}: ${JSON.stringify(r)}`);
    }
    const wrong = verifySpa(
      { payload: Buffer.from(encodeSpa(accessPlaintext({ rand: RAND, username: "a", timestamp: NOW, address: "198.18.0.2", ports: [{ proto: "tcp", port: 22 }], clientTimeoutS: null }), { ...keys, hmacKey: Buffer.alloc(64, 1) }, SALT)), source: { family: 4, src: "198.18.0.9" } },
      keys,
      LIMITS,
      new ReplayCache(4),
      NOW,
    );
    assert.ok(!wrong.ok && wrong.result === "bad_hmac");
  });
});

describe("the encoder's inputs", () => {
  const keys = keysFor("sha256");
  const request = { rand: RAND, username: "alice", timestamp: NOW, address: "198.18.0.2", ports: [{ proto: "tcp" as const, port: 22 }], clientTimeoutS: null };

  test("the same randomness and clock give the same datagram; another salt or RAND another", () => {
    const a = encodeSpa(accessPlaintext(request), keys, SALT);
    assert.equal(encodeSpa(accessPlaintext(request), keys, SALT), a);
    assert.notEqual(encodeSpa(accessPlaintext(request), keys, Buffer.alloc(8)), a);
    assert.notEqual(encodeSpa(accessPlaintext({ ...request, rand: "9999999999999999" }), keys, SALT), a);
  });

  test("malformed randomness, usernames and requests are refused, never encoded", () => {
    assert.throws(() => accessPlaintext({ ...request, rand: "123" }), RangeError);
    assert.throws(() => accessPlaintext({ ...request, rand: "12345678901234ab" }), RangeError);
    assert.throws(() => accessPlaintext({ ...request, username: "" }), RangeError);
    assert.throws(() => accessPlaintext({ ...request, username: "a\nb" }), RangeError);
    assert.throws(() => accessPlaintext({ ...request, ports: [] }), RangeError);
    assert.throws(() => encodeSpa(accessPlaintext(request), keys, Buffer.alloc(7)), RangeError);
    const many = Array.from({ length: 200 }, (_, i) => ({ proto: "tcp" as const, port: 10000 + i }));
    assert.throws(() => encodeSpa(accessPlaintext({ ...request, ports: many }), keys, SALT), /fewer ports/);
  });
});
