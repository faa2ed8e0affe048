/** The nftables backend's words for the plan: the table's `nft -f` transaction and the `nft -i` lines of grants. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/config.js";
import type { Config } from "../../src/core/types.js";
import { nftGrantLine, nftRevokeLine, nftSetName } from "../../src/adapters/firewall/nftables/sets.js";
import { markerOf, nftScript } from "../support/render.js";

const nftPlan = (c: Config) => nftScript(c);
const planMarker = (c: Config) => markerOf(c);

const SSH = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000" };

function config(env: Record<string, string> = {}): Config {
  return parseConfig({ ...SSH, ...env });
}

const nftRuleLines = (script: string) => script.split("\n").filter((l) => l.startsWith("add rule "));

describe("set names", () => {
  test("door sets are door_NAME_vFAMILY", () => {
    assert.equal(nftSetName("SSH", 6), "door_SSH_v6");
  });
});

describe("nftPlan", () => {
  const c = config({ KNOCK_ALLOW: "10.0.0.0/8,192.0.2.7,fd00::/64", KNOCK_DOOR_SSH_PORTS: "22,53/udp" });
  const plan = nftPlan(c);
  const lines = plan.script.split("\n");

  test("the chain hooks prerouting at priority -150 and accepts by default", () => {
    assert.ok(
      lines.includes("add chain inet knockgate prerouting { type filter hook prerouting priority -150; policy accept; }"),
    );
    assert.ok(lines.includes("flush chain inet knockgate prerouting"));
  });

  test("door sets are timeout sets and allow sets interval sets", () => {
    for (const line of [
      "add set inet knockgate door_SSH_v4 { type ipv4_addr; flags timeout; size 66560; }",
      "add set inet knockgate door_SSH_v6 { type ipv6_addr; flags timeout; size 66560; }",
      "add set inet knockgate allow_v4 { type ipv4_addr; flags interval; auto-merge; }",
      "add set inet knockgate allow_v6 { type ipv6_addr; flags interval; auto-merge; }",
    ]) {
      assert.ok(lines.includes(line), line);
    }
  });

  test("the allow sets are flushed and refilled with the configured networks", () => {
    const flush4 = lines.indexOf("flush set inet knockgate allow_v4");
    const add4 = lines.indexOf("add element inet knockgate allow_v4 { 10.0.0.0/8, 192.0.2.7/32 }");
    assert.ok(flush4 >= 0 && add4 > flush4);
    assert.ok(lines.includes("add element inet knockgate allow_v6 { fd00::/64 }"));
  });

  test("an empty allow list adds no elements", () => {
    assert.ok(!nftPlan(config()).script.includes("add element"));
  });

  test("the rules are in order and ruleCount equals the add rule lines", () => {
    const p = "add rule inet knockgate prerouting ";
    assert.deepEqual(nftRuleLines(plan.script), [
      `${p}iifname "lo" accept`,
      `${p}ct state established,related accept`,
      `${p}ip saddr @allow_v4 accept`,
      `${p}ip6 saddr @allow_v6 accept`,
      `${p}tcp dport { 22 } fib daddr type local ip saddr @door_SSH_v4 accept`,
      `${p}udp dport { 53 } fib daddr type local ip saddr @door_SSH_v4 accept`,
      `${p}tcp dport { 22 } fib daddr type local ip6 saddr @door_SSH_v6 accept`,
      `${p}udp dport { 53 } fib daddr type local ip6 saddr @door_SSH_v6 accept`,
      `${p}tcp dport { 22 } fib daddr type local drop`,
      `${p}udp dport { 53 } fib daddr type local drop`,
      `${p}counter comment "${planMarker(c)}"`,
    ]);
    assert.equal(plan.ruleCount, 11);
  });

  test("the script creates the table first and ends with a newline", () => {
    assert.equal(lines[0], "add table inet knockgate");
    assert.ok(plan.script.endsWith("\n"));
  });

  test("a grant re-adds the element with the timeout in seconds", () => {
    assert.equal(
      nftGrantLine("SSH", 4, ["198.18.0.2"], 30_000),
      "add element inet knockgate door_SSH_v4 { 198.18.0.2 }; delete element inet knockgate door_SSH_v4 { 198.18.0.2 }; " +
        "add element inet knockgate door_SSH_v4 { 198.18.0.2 timeout 30s }",
    );
  });

  test("a grant with OPEN_FOR 0 has no timeout", () => {
    const line = nftGrantLine("SSH", 6, ["2001:db8::2"], 0);
    assert.equal(
      line,
      "add element inet knockgate door_SSH_v6 { 2001:db8::2 }; delete element inet knockgate door_SSH_v6 { 2001:db8::2 }; " +
        "add element inet knockgate door_SSH_v6 { 2001:db8::2 }",
    );
    assert.ok(!line.includes("timeout"));
  });

  test("grants that queued up go as one transaction, each address with its timeout", () => {
    assert.equal(
      nftGrantLine("SSH", 4, ["198.18.0.2", "198.18.0.3"], 5_000),
      "add element inet knockgate door_SSH_v4 { 198.18.0.2, 198.18.0.3 }; delete element inet knockgate door_SSH_v4 { 198.18.0.2, 198.18.0.3 }; " +
        "add element inet knockgate door_SSH_v4 { 198.18.0.2 timeout 5s, 198.18.0.3 timeout 5s }",
    );
  });

  test("a revoke makes sure the element exists, then deletes it", () => {
    assert.equal(
      nftRevokeLine("SSH", 4, ["198.18.0.2"]),
      "add element inet knockgate door_SSH_v4 { 198.18.0.2 }; delete element inet knockgate door_SSH_v4 { 198.18.0.2 }",
    );
  });
});
