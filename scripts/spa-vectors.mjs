#!/usr/bin/env node
/**
 * Regenerates test/fixtures/spa/vectors.json with the real fwknop client (Debian's fwknop-client):
 * every SPA test vector is a datagram the stock client wrote, so the unit tests check against
 * fwknop itself rather than against our own reading of its format. The tests need no fwknop; run
 * this only to refresh the vectors: node scripts/spa-vectors.mjs
 *
 * `client` in each vector is what the client printed about the packet it built (its -v dump), kept
 * as an independent witness of the fields; `expected` is what knockgate must answer under the
 * tests' standard door (see test/unit/spa-verify.test.ts).
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const OUT = join(dirname(fileURLToPath(import.meta.url)), "..", "test", "fixtures", "spa", "vectors.json");
const ALLOW = "198.18.0.2";

/** [name, client options beyond the common ones, expected answer under the tests' standard door] */
const CASES = [
  ["access", ["-A", "tcp/22", "-a", ALLOW], { address: ALLOW, family: 4, ports: ["tcp/22"], openForS: 30, username: "root", type: 1 }],
  ["access-two-ports", ["-A", "tcp/22,udp/53", "-a", ALLOW], { address: ALLOW, family: 4, ports: ["tcp/22", "udp/53"], openForS: 30, username: "root", type: 1 }],
  ["client-timeout-60", ["-A", "tcp/22", "-a", ALLOW, "-f", "60"], { address: ALLOW, family: 4, ports: ["tcp/22"], openForS: 60, username: "root", type: 3 }],
  ["client-timeout-capped", ["-A", "tcp/22", "-a", ALLOW, "-f", "3600"], { address: ALLOW, family: 4, ports: ["tcp/22"], openForS: 300, username: "root", type: 3 }],
  ["source-address", ["-A", "tcp/22", "-s"], { address: "source", family: "source", ports: ["tcp/22"], openForS: 30, username: "root", type: 1 }],
  ["username-alice", ["-A", "tcp/22", "-a", ALLOW, "-U", "alice"], { address: ALLOW, family: 4, ports: ["tcp/22"], openForS: 30, username: "alice", type: 1 }],
  ["port-not-allowed", ["-A", "tcp/23", "-a", ALLOW], { refused: "port_not_allowed" }],
  ["one-port-not-allowed", ["-A", "tcp/22,tcp/23", "-a", ALLOW], { refused: "port_not_allowed" }],
  ["loopback-address", ["-A", "tcp/22", "-a", "127.0.0.1"], { refused: "address_refused" }],
  ["command", ["-C", "uname -a", "-a", ALLOW], { refused: "command_refused" }],
  ["nat", ["-A", "tcp/22", "-a", ALLOW, "-N", "192.168.1.10:22"], { refused: "nat_refused" }],
  ["nat-client-timeout", ["-A", "tcp/22", "-a", ALLOW, "-N", "192.168.1.10:22", "-f", "60"], { refused: "nat_refused" }],
  ["nat-local", ["-A", "tcp/22", "-a", ALLOW, "--nat-local"], { refused: "nat_refused" }],
  ["nat-local-client-timeout", ["-A", "tcp/22", "-a", ALLOW, "--nat-local", "-f", "60"], { refused: "nat_refused" }],
  ...["md5", "sha1", "sha384", "sha512"].map((d) => [
    `digest-${d}`,
    ["-A", "tcp/22", "-a", ALLOW, "-m", d],
    { address: ALLOW, family: 4, ports: ["tcp/22"], openForS: 30, username: "root", type: 1 },
  ]),
  ...["sha384", "sha512"].map((d) => [
    `hmac-${d}`,
    ["-A", "tcp/22", "-a", ALLOW, "--hmac-digest-type", d],
    { address: ALLOW, family: 4, ports: ["tcp/22"], openForS: 30, username: "root", type: 1 },
  ]),
];

function fwknop(args) {
  return execFileSync("fwknop", args, { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
}

/** The client's "Field: value" dump of the packet it built (the first of the two it prints). */
function clientDump(text) {
  const field = (name) => {
    const m = new RegExp(`^\\s*${name}: (.*)$`, "m").exec(text);
    if (!m) throw new Error(`fwknop -v printed no "${name}"`);
    return m[1];
  };
  return {
    username: field("Username"),
    timestamp: Number(field("Timestamp")),
    type: Number(field("Message Type").split(" ")[0]),
    message: field("Message String"),
    natAccess: field("Nat Access"),
    clientTimeout: Number(field("Client Timeout")),
    digestType: field("Digest Type"),
    hmacType: field("HMAC Type"),
    plaintext: `${field("Encoded Data")}:${field("SPA Data Digest")}`,
  };
}

const keyLine = (text, name) => {
  const m = new RegExp(`^${name}: (\\S+)$`, "m").exec(text);
  if (!m) throw new Error(`fwknop --key-gen printed no ${name}`);
  return m[1];
};

const version = fwknop(["--version"]).trim();
const keys = fwknop(["--key-gen"]);
const keyBase64 = keyLine(keys, "KEY_BASE64");
const hmacKeyBase64 = keyLine(keys, "HMAC_KEY_BASE64");

const dir = mkdtempSync(join(tmpdir(), "spa-vectors-"));
try {
  const vectors = CASES.map(([name, options, expected]) => {
    const out = join(dir, `${name}.txt`);
    const args = ["--no-rc-file", "-D", "127.0.0.1", "-T", "--use-hmac", "--key-base64-rijndael", keyBase64, "--key-base64-hmac", hmacKeyBase64, ...options, "-B", out, "-b", "-v"];
    const client = clientDump(fwknop(args));
    // -B writes the datagram followed by a newline that is not part of it.
    const payload = readFileSync(out, "utf8").replace(/\n$/, "");
    const hmacDigest = client.hmacType.split(" ")[1].toLowerCase().replace(/[^a-z0-9]/g, "");
    return { name, options, hmacDigest, payload, now: client.timestamp, client, expected };
  });
  const doc = {
    generator: "scripts/spa-vectors.mjs",
    client: version,
    keyBase64,
    hmacKeyBase64,
    common: ["--no-rc-file", "-D", "127.0.0.1", "-T", "--use-hmac", "--key-base64-rijndael", "KEY_BASE64", "--key-base64-hmac", "HMAC_KEY_BASE64", "-B", "FILE", "-b"],
    vectors,
  };
  writeFileSync(OUT, `${JSON.stringify(doc, null, 2)}\n`);
  console.log(`wrote ${vectors.length} vectors to ${OUT}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
