import { test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/core/errors.js";
import { nflogParts } from "../../src/core/packet/nflog.js";
import { knockPrefix, knockReport } from "../../src/adapters/firewall/nftables/knock.js";
import { nftScript } from "../support/render.js";

const DOOR = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000:udp,9000" };
const problems = (env: Record<string, string>): string[] => {
  try {
    parseConfig(env);
    return [];
  } catch (err) {
    return (err as ConfigError).problems.map((p) => `${p.variable}: ${p.message}`);
  }
};

test("KNOCK_ENGINE=kernel picks nftables for auto, and with KNOCK_FIREWALL=iptables is a configuration error listed with the others", () => {
  assert.equal(parseConfig(DOOR).engine, "capture");
  assert.deepEqual(((c) => [c.engine, c.firewall])(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel" })), ["kernel", "nftables"]);
  const found = problems({ ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_FIREWALL: "iptables", KNOCK_MAX_TRACKED: "0" });
  assert.ok(found.some((p) => /^KNOCK_ENGINE: kernel needs nftables/.test(p)), found.join("\n"));
  assert.ok(found.some((p) => p.startsWith("KNOCK_MAX_TRACKED:")));
  assert.deepEqual(problems({ ...DOOR, KNOCK_ENGINE: "fast" }), ['KNOCK_ENGINE: "fast" is not one of capture, kernel']);
});

test("a door the kernel engine cannot run exactly is refused at start, naming the door", () => {
  const long = Array.from({ length: 17 }, (_, i) => String(7000 + i)).join(",");
  assert.match(problems({ KNOCK_ENGINE: "kernel", KNOCK_DOOR_LONG_SEQUENCE: long }).join("\n"), /^KNOCK_DOOR_LONG_SEQUENCE: the kernel engine takes sequences of at most 16 knocks/);
  assert.deepEqual(problems({ KNOCK_DOOR_LONG_SEQUENCE: long }), []);
});

test("the kernel engine's rules enter each sequence's chain with the door's TCP flags, report on NFLOG and write the grant; capture mode has none", () => {
  const script = nftScript(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_MAX_TRACKED: "500" })).script;
  assert.match(script, /add rule inet knockgate prerouting meta nfproto ipv4 tcp dport \{ 7000, 9000 \} tcp flags & \(syn \| ack\) == syn jump knock_SSH_open_v4\n/);
  assert.match(script, /add rule inet knockgate prerouting meta nfproto ipv6 udp dport \{ 8000 \} jump knock_SSH_open_v6\n/);
  assert.match(script, /add set inet knockgate knock_SSH_open_v4_s2 \{ type ipv4_addr; flags dynamic,timeout; size 500; \}/);
  assert.match(script, /th dport 9000 .*log prefix "knockgate open SSH" group 19271 update @door_SSH_v4 \{ ip saddr timeout 30s \} return\n/);
  assert.doesNotMatch(nftScript(parseConfig(DOOR)).script, /knock_/);
});

test("an NFLOG message gives its prefix and the logged packet; one that does not parse gives null", () => {
  // As libpcap delivered it in a namespace: header, NFULA_PACKET_HDR, NFULA_PREFIX, ..., NFULA_PAYLOAD.
  const tlv = (type: number, body: number[]) => {
    const size = 4 + body.length;
    return [size & 0xff, size >> 8, type, 0, ...body, ...new Array((4 - (size % 4)) % 4).fill(0)];
  };
  const prefix = [...new TextEncoder().encode(knockPrefix("open", "SSH")), 0];
  const payload = [0x45, 0, 0, 40];
  const frame = Buffer.from([2, 0, 0x4b, 0x47, ...tlv(1, [8, 0, 1, 0]), ...tlv(10, prefix), ...tlv(9, payload)]);
  const parts = nflogParts(frame, frame.length);
  assert.ok(parts);
  assert.equal(parts.prefix, "knockgate open SSH");
  assert.deepEqual([...frame.subarray(parts.payloadAt, parts.payloadEnd)], payload);
  assert.deepEqual(knockReport(parts.prefix), { kind: "open", door: "SSH" });
  assert.equal(knockReport("somebody else"), null);
  assert.equal(nflogParts(frame, frame.length - 3), null);
});
