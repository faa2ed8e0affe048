/** The iptables+ipset backend's words for the plan: the chain's restore input, the ipset scripts and lines, and reading back iptables-save and ipset list. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/config.js";
import type { Config, Family } from "../../src/core/types.js";
import { CHAIN } from "../../src/adapters/firewall/iptables/rules.js";
import * as sets from "../../src/adapters/firewall/iptables/sets.js";
import { expectedAllowMembers, ipsetAllowName, ipsetGrantLine, ipsetName, ipsetRebuildScript, ipsetRevokeLine, isOurIpset } from "../../src/adapters/firewall/iptables/sets.js";
import { ipsetMaxelems, ipsetSizes, mangleView } from "../../src/adapters/firewall/iptables/listing.js";
import { iptablesChain, markerOf, planIdOf, planOf } from "../support/render.js";

/** The plan of a configuration without Docker: its doors' own ports. */
const ipsetGrantSets = (c: Config, only?: Family) => sets.ipsetGrantSets(planOf(c), only);
const ipsetCreateScript = (c: Config, only?: readonly string[]) => sets.ipsetCreateScript(planOf(c), only);
const ipsetAllowScript = (c: Config, f: Family) => sets.ipsetAllowScript(planOf(c), f);
const iptablesChainPlan = (c: Config, f: Family) => iptablesChain(c, f);
const planId = (c: Config) => planIdOf(c);
const planMarker = (c: Config) => markerOf(c);

const SSH = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000" };

function config(env: Record<string, string> = {}): Config {
  return parseConfig({ ...SSH, ...env });
}

/** The lines of a restore script that append a rule to our chain. */
const appendLines = (restore: string) => restore.split("\n").filter((l) => l.startsWith(`-A ${CHAIN} `));
const rulesOf = (restore: string) => appendLines(restore).map((l) => l.slice(`-A ${CHAIN} `.length));

describe("set names", () => {
  test("door sets are knockgate-NAME-FAMILY and the allow sets knockgate-allow-FAMILY", () => {
    assert.equal(ipsetName("SSH", 4), "knockgate-SSH-4");
    assert.equal(ipsetName("SSH", 6), "knockgate-SSH-6");
    assert.equal(ipsetAllowName(4), "knockgate-allow-4");
    assert.equal(ipsetAllowName(6), "knockgate-allow-6");
  });

  test("a door set name with the longest door name fits ipset's 31 characters", () => {
    assert.equal(ipsetName("A".repeat(19), 6).length, 31);
  });

  test("isOurIpset recognises our prefix only", () => {
    assert.equal(isOurIpset("knockgate-SSH-4"), true);
    assert.equal(isOurIpset("knockgate-allow-6"), true);
    assert.equal(isOurIpset("docker-ssh"), false);
    assert.equal(isOurIpset("my-knockgate-SSH-4"), false);
  });
});

describe("iptablesChainPlan", () => {
  test("the chain holds exactly the planned rules in order, then the plan marker", () => {
    const c = config();
    const plan = iptablesChainPlan(c, 4);
    assert.equal(
      plan.restore,
      [
        "*mangle",
        ":KNOCKGATE - [0:0]",
        ":KNOCKGATE-KEPT - [0:0]",
        "-A KNOCKGATE -i lo -j RETURN",
        "-A KNOCKGATE -m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
        "-A KNOCKGATE -m set --match-set knockgate-allow-4 src -j RETURN",
        "-A KNOCKGATE -p tcp -m multiport --dports 22 -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH-4 src -j RETURN",
        "-A KNOCKGATE -p tcp -m multiport --dports 22 -m addrtype --dst-type LOCAL -j DROP",
        `-A KNOCKGATE -m comment --comment "knockgate plan ${planId(c)}" -j RETURN`,
        "COMMIT",
        "",
      ].join("\n"),
    );
    assert.equal(plan.ruleCount, 6);
    assert.equal(plan.ruleCount, appendLines(plan.restore).length);
  });

  test("the IPv6 chain matches the IPv6 sets", () => {
    const rules = rulesOf(iptablesChainPlan(config(), 6).restore);
    assert.equal(rules[2], "-m set --match-set knockgate-allow-6 src -j RETURN");
    assert.equal(rules[3], "-p tcp -m multiport --dports 22 -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH-6 src -j RETURN");
    assert.ok(!rules.some((r) => r.includes("-4 ")));
  });

  test("ports are grouped by protocol, sorted", () => {
    const plan = iptablesChainPlan(config({ KNOCK_DOOR_SSH_PORTS: "2222/tcp,53/udp,22/tcp" }), 4);
    assert.deepEqual(rulesOf(plan.restore).slice(3, -1), [
      "-p tcp -m multiport --dports 22,2222 -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH-4 src -j RETURN",
      "-p udp -m multiport --dports 53 -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH-4 src -j RETURN",
      "-p tcp -m multiport --dports 22,2222 -m addrtype --dst-type LOCAL -j DROP",
      "-p udp -m multiport --dports 53 -m addrtype --dst-type LOCAL -j DROP",
    ]);
    assert.equal(plan.ruleCount, appendLines(plan.restore).length);
  });

  test("more than 15 ports are split into several multiport rules", () => {
    const ports = Array.from({ length: 17 }, (_, i) => 10001 + i);
    const plan = iptablesChainPlan(config({ KNOCK_DOOR_SSH_PORTS: ports.join(",") }), 4);
    const first15 = ports.slice(0, 15).join(",");
    const rest = ports.slice(15).join(",");
    assert.deepEqual(rulesOf(plan.restore).slice(3, -1), [
      `-p tcp -m multiport --dports ${first15} -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH-4 src -j RETURN`,
      `-p tcp -m multiport --dports ${rest} -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH-4 src -j RETURN`,
      `-p tcp -m multiport --dports ${first15} -m addrtype --dst-type LOCAL -j DROP`,
      `-p tcp -m multiport --dports ${rest} -m addrtype --dst-type LOCAL -j DROP`,
    ]);
    assert.equal(plan.ruleCount, 8);
    assert.equal(plan.ruleCount, appendLines(plan.restore).length);
  });

  test("two doors whose _PORTS share a port both return before the single DROP for it", () => {
    const plan = iptablesChainPlan(
      config({ KNOCK_DOOR_SSH_PORTS: "22", KNOCK_DOOR_ADMIN_SEQUENCE: "6000,5000", KNOCK_DOOR_ADMIN_PORTS: "22,8443" }),
      4,
    );
    // Doors come in sorted variable order: ADMIN before SSH.
    assert.deepEqual(rulesOf(plan.restore).slice(3, -1), [
      "-p tcp -m multiport --dports 22,8443 -m addrtype --dst-type LOCAL -m set --match-set knockgate-ADMIN-4 src -j RETURN",
      "-p tcp -m multiport --dports 22 -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH-4 src -j RETURN",
      "-p tcp -m multiport --dports 22,8443 -m addrtype --dst-type LOCAL -j DROP",
    ]);
  });
});

describe("mangleView", () => {
  const plan = iptablesChainPlan(config(), 4);
  const save = (body: string[]) =>
    ["# Generated by iptables-nft-save", "*mangle", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ...body, "COMMIT", ""].join("\n");

  test("reads back what the plan's restore script installs, plus the jump", () => {
    const installed = plan.restore.split("\n").filter((l) => l.startsWith(":") || l.startsWith("-A"));
    const view = mangleView(save([...installed, "-A PREROUTING -j KNOCKGATE"]));
    assert.equal(view.chain, true);
    assert.equal(view.rules.length, plan.ruleCount);
    assert.ok(view.rules.some((r) => r.includes(planMarker(config()))));
    assert.equal(view.jumps, 1);
  });

  test("a fresh table: no chain, no rules, no jump", () => {
    assert.deepEqual(mangleView(save([])), { chain: false, rules: [], jumps: 0, firstPrerouting: undefined });
  });

  test("names the first rule of PREROUTING, so a rule inserted above our jump is seen", () => {
    assert.equal(mangleView(save(["-A PREROUTING -j KNOCKGATE", "-A PREROUTING -j OTHER"])).firstPrerouting, "-A PREROUTING -j KNOCKGATE");
    const above = "-A PREROUTING -p tcp -m tcp --dport 2222 -j ACCEPT";
    assert.equal(mangleView(save([":KNOCKGATE - [0:0]", above, "-A PREROUTING -j KNOCKGATE", "-A KNOCKGATE -j RETURN"])).firstPrerouting, above);
  });

  test("counts duplicate jumps, and ignores other chains' rules and jumps with matches", () => {
    const view = mangleView(
      save([":KNOCKGATE - [0:0]", ":OTHER - [0:0]", "-A PREROUTING -j KNOCKGATE", "-A PREROUTING -i eth0 -j KNOCKGATE", "-A PREROUTING -j KNOCKGATE", "-A OTHER -j ACCEPT"]),
    );
    assert.equal(view.jumps, 2);
    assert.deepEqual(view.rules, []);
  });
});

describe("ipsetSizes", () => {
  test("reads every set's entry count from `ipset list -t`", () => {
    const terse = [
      "Name: knockgate-allow-4",
      "Type: hash:net",
      "Revision: 7",
      "Header: family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x1",
      "Size in memory: 504",
      "References: 1",
      "Number of entries: 2",
      "",
      "Name: knockgate-SSH-4",
      "Type: hash:ip",
      "Header: family inet hashsize 1024 maxelem 65536 timeout 0",
      "Number of entries: 10000",
      "",
    ].join("\n");
    assert.deepEqual([...ipsetSizes(terse)], [
      ["knockgate-allow-4", 2],
      ["knockgate-SSH-4", 10000],
    ]);
  });

  test("no sets, no entries", () => {
    assert.equal(ipsetSizes("").size, 0);
  });
});

describe("ipset scripts", () => {
  test("the create script makes both allow sets and a timeout-capable set per door and family, sized from KNOCK_MAX_GRANTS", () => {
    const c = config({ KNOCK_DOOR_WEB_SEQUENCE: "1111,2222", KNOCK_DOOR_WEB_PORTS: "443", KNOCK_MAX_GRANTS: "5000" });
    assert.equal(
      ipsetCreateScript(c),
      [
        "create knockgate-allow-4 hash:net family inet",
        "create knockgate-SSH-4 hash:ip family inet timeout 0 maxelem 6024",
        "create knockgate-WEB-4 hash:ip family inet timeout 0 maxelem 6024",
        "create knockgate-allow-6 hash:net family inet6",
        "create knockgate-SSH-6 hash:ip family inet6 timeout 0 maxelem 6024",
        "create knockgate-WEB-6 hash:ip family inet6 timeout 0 maxelem 6024",
        "",
      ].join("\n"),
    );
    assert.equal(ipsetCreateScript(c, ["knockgate-WEB-6"]), "create knockgate-WEB-6 hash:ip family inet6 timeout 0 maxelem 6024\n", "only the sets named");
  });

  test("the resize script refills a set of the new size with every grant and its remaining time, then swaps it in", () => {
    const c = config({ KNOCK_MAX_GRANTS: "10" });
    assert.equal(
      ipsetRebuildScript(ipsetGrantSets(c).find((s) => s.name === "knockgate-SSH-4")!, [
        { src: "198.18.0.2", remainingMs: 12_300 },
        { src: "198.18.0.3", remainingMs: null },
      ]),
      [
        "create knockgate-swap hash:ip family inet timeout 0 maxelem 1034",
        "flush knockgate-swap",
        "add knockgate-swap 198.18.0.2 timeout 13",
        "add knockgate-swap 198.18.0.3 timeout 0",
        "swap knockgate-swap knockgate-SSH-4",
        "destroy knockgate-swap",
        "",
      ].join("\n"),
    );
  });

  test("ipsetMaxelems reads each set's maxelem", () => {
    const terse = ["Name: knockgate-SSH-4", "Type: hash:ip", "Header: family inet hashsize 1024 maxelem 65536 timeout 0 bucketsize 12", "Number of entries: 1", ""].join("\n");
    assert.deepEqual([...ipsetMaxelems(terse)], [["knockgate-SSH-4", 65536]]);
  });

  test("the allow script fills a temporary set of one family and swaps it in", () => {
    const c = config({ KNOCK_ALLOW: "10.1.2.3/8,fd00::1/64,192.0.2.7" });
    assert.equal(
      ipsetAllowScript(c, 4),
      [
        "create knockgate-allow-4-new hash:net family inet",
        "flush knockgate-allow-4-new",
        "add knockgate-allow-4-new 10.0.0.0/8",
        "add knockgate-allow-4-new 192.0.2.7/32",
        "swap knockgate-allow-4-new knockgate-allow-4",
        "destroy knockgate-allow-4-new",
        "",
      ].join("\n"),
    );
    assert.equal(
      ipsetAllowScript(c, 6),
      [
        "create knockgate-allow-6-new hash:net family inet6",
        "flush knockgate-allow-6-new",
        "add knockgate-allow-6-new fd00::/64",
        "swap knockgate-allow-6-new knockgate-allow-6",
        "destroy knockgate-allow-6-new",
        "",
      ].join("\n"),
    );
  });

  test("an empty allow list still swaps in an empty set", () => {
    assert.equal(
      ipsetAllowScript(config(), 4),
      "create knockgate-allow-4-new hash:net family inet\nflush knockgate-allow-4-new\n" +
        "swap knockgate-allow-4-new knockgate-allow-4\ndestroy knockgate-allow-4-new\n",
    );
  });

  test("expected allow members print a host route as the bare address", () => {
    const c = config({ KNOCK_ALLOW: "192.0.2.7,10.0.0.0/8,2001:db8::1,fd00::/64" });
    assert.deepEqual(expectedAllowMembers(planOf(c), 4), ["10.0.0.0/8", "192.0.2.7"]);
    assert.deepEqual(expectedAllowMembers(planOf(c), 6), ["2001:db8::1", "fd00::/64"]);
  });

  test("a grant is an -exist add with the timeout in seconds", () => {
    assert.equal(ipsetGrantLine("SSH", 4, "198.18.0.2", 30_000), "add knockgate-SSH-4 198.18.0.2 timeout 30 -exist");
    assert.equal(ipsetGrantLine("SSH", 6, "2001:db8::2", 600_000), "add knockgate-SSH-6 2001:db8::2 timeout 600 -exist");
  });

  test("a grant with OPEN_FOR 0 is timeout 0, which ipset keeps until removed", () => {
    assert.equal(ipsetGrantLine("SSH", 4, "198.18.0.2", 0), "add knockgate-SSH-4 198.18.0.2 timeout 0 -exist");
  });

  test("a revoke is an -exist del", () => {
    assert.equal(ipsetRevokeLine("SSH", 4, "198.18.0.2"), "del knockgate-SSH-4 198.18.0.2 -exist");
  });
});
