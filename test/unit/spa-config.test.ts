/** Signed doors in the configuration: KNOCK_DOOR_<NAME>_SPA_*, their defaults, and every problem at once without a key in sight. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { inspect } from "node:util";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError, type ConfigProblem } from "../../src/core/errors.js";
import { checkReport, reportText } from "../../src/cli/check.js";

// As `fwknop --key-gen` prints them (32 and 64 random bytes).
const KEY = "x3Hm4XvHIiGziVKV+qtD/DzEv19BFqDytmwBUgNOG/4=";
const HMAC = "l5z+ZZVZPtim7VQfYuGS8p+8zdD/3e6YCOFKO4enjs332ze+A3h/SvpEsjP3VB6G0F+HUKd4HZ9vVOIRnY4Eng==";
const SIGNED = { KNOCK_DOOR_SSH_SPA_KEY: KEY, KNOCK_DOOR_SSH_SPA_HMAC_KEY: HMAC };

function problemsOf(env: Record<string, string>, readFile?: (path: string) => string): readonly ConfigProblem[] {
  try {
    parseConfig(env, readFile);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    return err.problems;
  }
  assert.fail("parseConfig accepted the environment");
}

/** No problem text, anywhere, holds any part of a key: not the base64, not a quarter of it. */
function assertNoKey(text: string): void {
  for (const secret of [KEY, HMAC]) {
    for (let i = 0; i + 11 <= secret.length; i += 11) assert.ok(!text.includes(secret.slice(i, i + 11)), `key text leaked: ${text}`);
  }
}

describe("signed doors", () => {
  test("a door with only SPA keys is a door, with fwknopd's defaults", () => {
    const door = parseConfig(SIGNED).doors[0];
    assert.ok(door?.spa);
    assert.deepEqual(door.sequence, []);
    assert.deepEqual(door.ports, [{ port: 22, proto: "tcp" }]);
    assert.equal(door.spa.port, 62201);
    assert.equal(door.spa.keys.hmacDigest, "sha256");
    assert.equal(door.spa.maxAgeS, 120);
    assert.equal(door.spa.maxOpenForS, 300);
    assert.equal(door.spa.requireSourceAddress, true);
    assert.equal(door.spa.username, null);
    assert.deepEqual(Buffer.from(door.spa.keys.encryptionKey), Buffer.from(KEY, "base64"));
    assert.deepEqual(Buffer.from(door.spa.keys.hmacKey), Buffer.from(HMAC, "base64"));
  });

  test("cluster mode refuses a door that takes 0.0.0.0 datagrams, naming the variable; a door that requires an address is fine", () => {
    const cluster = { KNOCK_CLUSTER: "kubernetes", KNOCK_NODE_NAME: "node-1", KNOCK_CLUSTER_NAMESPACE: "knockgate" };
    const problems = problemsOf({ ...SIGNED, ...cluster, KNOCK_DOOR_SSH_SPA_REQUIRE_SOURCE_ADDRESS: "false" });
    assert.deepEqual(
      problems.map((p) => p.variable),
      ["KNOCK_DOOR_SSH_SPA_REQUIRE_SOURCE_ADDRESS"],
    );
    assert.match(problems[0]!.message, /KNOCK_CLUSTER=kubernetes refuses/);
    assert.equal(parseConfig({ ...SIGNED, ...cluster }).doors[0]?.spa?.requireSourceAddress, true);
    assert.equal(parseConfig({ ...SIGNED, KNOCK_DOOR_SSH_SPA_REQUIRE_SOURCE_ADDRESS: "false" }).doors[0]?.spa?.requireSourceAddress, false);
  });

  test("every SPA setting is read", () => {
    const door = parseConfig({
      ...SIGNED,
      KNOCK_DOOR_SSH_SEQUENCE: "7000,8000",
      KNOCK_DOOR_SSH_SPA_PORT: "40001/udp",
      KNOCK_DOOR_SSH_SPA_HMAC_DIGEST: "SHA512",
      KNOCK_DOOR_SSH_SPA_MAX_AGE: "30",
      KNOCK_DOOR_SSH_SPA_MAX_OPEN_FOR: "60",
      KNOCK_DOOR_SSH_SPA_REQUIRE_SOURCE_ADDRESS: "false",
      KNOCK_DOOR_SSH_SPA_REQUIRE_USERNAME: "alice",
    }).doors[0];
    assert.ok(door?.spa);
    assert.equal(door.sequence.length, 2);
    assert.deepEqual(
      { port: door.spa.port, digest: door.spa.keys.hmacDigest, age: door.spa.maxAgeS, cap: door.spa.maxOpenForS, src: door.spa.requireSourceAddress, user: door.spa.username },
      { port: 40001, digest: "sha512", age: 30, cap: 60, src: false, user: "alice" },
    );
  });

  test("keys come from files like every secret", () => {
    const files: Record<string, string> = { "/run/secrets/key": `${KEY}\n`, "/run/secrets/hmac": `${HMAC}\n` };
    const config = parseConfig(
      { KNOCK_DOOR_SSH_SPA_KEY_FILE: "/run/secrets/key", KNOCK_DOOR_SSH_SPA_HMAC_KEY_FILE: "/run/secrets/hmac" },
      (path) => files[path] ?? assert.fail(`unexpected read of ${path}`),
    );
    assert.deepEqual(Buffer.from(config.doors[0]?.spa?.keys.hmacKey ?? []), Buffer.from(HMAC, "base64"));
    assert.deepEqual(config.secretFiles, { KNOCK_DOOR_SSH_SPA_KEY: "/run/secrets/key", KNOCK_DOOR_SSH_SPA_HMAC_KEY: "/run/secrets/hmac" });
  });

  test("a door with neither a sequence nor both keys is refused, naming the missing key", () => {
    const problems = problemsOf({ KNOCK_DOOR_SSH_SPA_KEY: KEY, KNOCK_DOOR_SSH_PORTS: "22/tcp" });
    assert.deepEqual(problems.map((p) => p.variable).sort(), ["KNOCK_DOOR_SSH_PORTS", "KNOCK_DOOR_SSH_SPA_KEY"]);
    assert.match(problems.find((p) => p.variable === "KNOCK_DOOR_SSH_SPA_KEY")?.message ?? "", /KNOCK_DOOR_SSH_SPA_HMAC_KEY is not set/);
  });

  test("one key on a sequence door is a problem, not a silently unsigned door", () => {
    const problems = problemsOf({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000", KNOCK_DOOR_SSH_SPA_HMAC_KEY: HMAC });
    assert.deepEqual(problems.map((p) => p.variable), ["KNOCK_DOOR_SSH_SPA_HMAC_KEY"]);
  });

  test("SPA settings without keys, and sequence settings without a sequence, belong to nothing", () => {
    const problems = problemsOf({
      KNOCK_DOOR_WEB_SEQUENCE: "7000,8000",
      KNOCK_DOOR_WEB_SPA_MAX_AGE: "60",
      ...SIGNED,
      KNOCK_DOOR_SSH_SEQ_TIMEOUT: "5",
    });
    assert.deepEqual(problems.map((p) => p.variable).sort(), ["KNOCK_DOOR_SSH_SEQ_TIMEOUT", "KNOCK_DOOR_WEB_SPA_MAX_AGE"]);
  });

  test("every bad SPA value is listed at once and none shows a key", () => {
    const problems = problemsOf({
      KNOCK_DOOR_SSH_SPA_KEY: `${KEY.slice(0, 20)}!${KEY.slice(21)}`,
      KNOCK_DOOR_SSH_SPA_HMAC_KEY: HMAC.slice(0, 12),
      KNOCK_DOOR_SSH_SPA_PORT: "62201/tcp",
      KNOCK_DOOR_SSH_SPA_HMAC_DIGEST: "md5",
      KNOCK_DOOR_SSH_SPA_MAX_AGE: "0",
      KNOCK_DOOR_SSH_SPA_MAX_OPEN_FOR: "ten",
      KNOCK_DOOR_SSH_SPA_REQUIRE_SOURCE_ADDRESS: "maybe",
      KNOCK_DOOR_SSH_SPA_REQUIRE_USERNAME: "\t",
    });
    assert.deepEqual(
      problems.map((p) => p.variable).sort(),
      [
        "KNOCK_DOOR_SSH_SPA_HMAC_DIGEST",
        "KNOCK_DOOR_SSH_SPA_HMAC_KEY",
        "KNOCK_DOOR_SSH_SPA_KEY",
        "KNOCK_DOOR_SSH_SPA_MAX_AGE",
        "KNOCK_DOOR_SSH_SPA_MAX_OPEN_FOR",
        "KNOCK_DOOR_SSH_SPA_PORT",
        "KNOCK_DOOR_SSH_SPA_REQUIRE_SOURCE_ADDRESS",
        "KNOCK_DOOR_SSH_SPA_REQUIRE_USERNAME",
      ],
    );
    assertNoKey(JSON.stringify(problems));
    assert.match(problems.find((p) => p.variable === "KNOCK_DOOR_SSH_SPA_HMAC_KEY")?.message ?? "", /decodes to 9 bytes/);
  });

  test("a key file that is not base64 is reported under the _FILE variable, naming the file only", () => {
    const problems = problemsOf({ KNOCK_DOOR_SSH_SPA_KEY_FILE: "/k", KNOCK_DOOR_SSH_SPA_HMAC_KEY: HMAC }, () => `${KEY.slice(0, 10)}*${KEY.slice(11)}`);
    assert.equal(problems.length, 1);
    assert.equal(problems[0]?.variable, "KNOCK_DOOR_SSH_SPA_KEY_FILE");
    assert.match(problems[0]?.message ?? "", /^\/k: /);
    assertNoKey(problems[0]?.message ?? "");
  });

  test("the same key for encryption and HMAC is refused", () => {
    const problems = problemsOf({ KNOCK_DOOR_SSH_SPA_KEY: KEY, KNOCK_DOOR_SSH_SPA_HMAC_KEY: KEY });
    assert.deepEqual(problems.map((p) => p.variable), ["KNOCK_DOOR_SSH_SPA_HMAC_KEY"]);
  });

  test("an SPA port that is a udp knock of any door is refused without naming the port", () => {
    const problems = problemsOf({ ...SIGNED, KNOCK_DOOR_WEB_SEQUENCE: "7000,62201:udp" });
    assert.deepEqual(problems.map((p) => p.variable), ["KNOCK_DOOR_SSH_SPA_PORT"]);
    assert.doesNotMatch(problems[0]?.message ?? "", /62201/);
  });

  test("two signed doors may share a port", () => {
    const other = {
      KNOCK_DOOR_WEB_SPA_KEY: Buffer.alloc(32, 7).toString("base64"),
      KNOCK_DOOR_WEB_SPA_HMAC_KEY: Buffer.alloc(64, 9).toString("base64"),
      KNOCK_DOOR_WEB_PORTS: "443/tcp",
    };
    assert.deepEqual(
      parseConfig({ ...SIGNED, ...other }).doors.map((d) => d.spa?.port),
      [62201, 62201],
    );
  });

  test("two signed doors on one port with the same HMAC key are refused: the second could never open", () => {
    const second = { KNOCK_DOOR_WEB_SPA_KEY: Buffer.alloc(32, 7).toString("base64"), KNOCK_DOOR_WEB_SPA_HMAC_KEY: HMAC, KNOCK_DOOR_WEB_PORTS: "443/tcp" };
    const problems = problemsOf({ ...SIGNED, ...second });
    assert.deepEqual(problems.map((p) => p.variable), ["KNOCK_DOOR_WEB_SPA_HMAC_KEY"]);
    assert.match(problems[0]?.message ?? "", /KNOCK_DOOR_SSH_SPA_HMAC_KEY/);
    assertNoKey(problems[0]?.message ?? "");
    // Told apart by another port, or by another digest (the HMAC's length differs): both can open.
    assert.equal(parseConfig({ ...SIGNED, ...second, KNOCK_DOOR_WEB_SPA_PORT: "62202" }).doors.length, 2);
    assert.equal(parseConfig({ ...SIGNED, ...second, KNOCK_DOOR_WEB_SPA_HMAC_DIGEST: "sha512" }).doors.length, 2);
  });

  test("a misspelt SPA field gets a suggestion", () => {
    const problems = problemsOf({ ...SIGNED, KNOCK_DOOR_SSH_SPA_MAX_AEG: "10" });
    assert.match(problems[0]?.message ?? "", /did you mean KNOCK_DOOR_SSH_SPA_MAX_AGE\?/);
  });

  test("the keys print as [secret] when a door is serialized or inspected", () => {
    const door = parseConfig(SIGNED).doors[0];
    assertNoKey(JSON.stringify(door));
    assertNoKey(inspect(door, { depth: 10 }));
    assert.match(JSON.stringify(door), /"keys":"\[secret\]"/);
  });

  test("knockgate check shows a signed door's settings and where its keys came from, never the keys", async () => {
    const env = { KNOCK_DOOR_SSH_SPA_KEY_FILE: "/run/k", KNOCK_DOOR_SSH_SPA_HMAC_KEY: HMAC, KNOCK_DOOR_SSH_SPA_MAX_AGE: "60" };
    const config = parseConfig(env, () => KEY);
    const report = await checkReport(config, env, "test", { defaultInterfaces: () => Promise.resolve(["eth0"]), chooseBackend: () => Promise.resolve({ backend: "nftables" }) });
    const door = report.doors[0];
    assert.equal(door?.sequence, null);
    assert.deepEqual(door?.spa?.keys, [{ variable: "KNOCK_DOOR_SSH_SPA_KEY", file: "/run/k" }, { variable: "KNOCK_DOOR_SSH_SPA_HMAC_KEY" }]);
    const age = door?.spa?.settings.find((s) => s.variable === "KNOCK_DOOR_SSH_SPA_MAX_AGE");
    assert.deepEqual(age, { variable: "KNOCK_DOOR_SSH_SPA_MAX_AGE", value: "60", default: false });
    const text = reportText(report);
    assert.match(text, /KNOCK_DOOR_SSH_SPA_KEY: set <from file \/run\/k>/);
    assert.match(text, /KNOCK_DOOR_SSH_SPA_PORT=62201\/udp \(default\)/);
    assert.match(text, /KNOCK_DOOR_SSH_SEQUENCE: not set/);
    assert.doesNotMatch(text, /SEQ_TIMEOUT|TCPFLAGS/, "no sequence settings on a door without a sequence");
    assertNoKey(text);
    assertNoKey(JSON.stringify(report));
  });
});
