/**
 * What both backends render, byte for byte, for a few configurations: doors with several ports and
 * protocols (more than multiport's 15), a signed door beside a sequence door sharing a port,
 * labelled containers (host ports, ports bound to one address of either family, containers'
 * own addresses with their peer networks, kept records), IPv6 allow lists, the kernel engine's
 * knock programs; a signed datagram's record with its grants as each backend writes it. An upgrade adopts what
 * an earlier version installed only while the rules, the names and the plan id stay the same, so
 * the text is held against test/fixtures/firewall/rendered.txt. A change that means to render
 * otherwise writes the file anew: KNOCK_WRITE_RENDERED=1 node --test dist/test/unit/firewall-render.test.js
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { test } from "node:test";
import { parseConfig } from "../../src/config/config.js";
import { decideDoors } from "../../src/core/docker/desired.js";
import type { ContainerAddress, LabelledContainer } from "../../src/core/docker/labels.js";
import { labelledContainer } from "../support/containers.js";
import { KERNEL_DOORS } from "../support/render.js";
import type { Config, Family, PortSpec } from "../../src/core/types.js";
import { FAMILIES } from "../../src/core/firewall/common.js";
import { firewallPlan, planMarker } from "../../src/core/firewall/plan.js";
import { planId } from "../../src/adapters/firewall/plan-id.js";
import { iptablesChainPlan } from "../../src/adapters/firewall/iptables/rules.js";
import * as ipset from "../../src/adapters/firewall/iptables/sets.js";
import { nftPlan } from "../../src/adapters/firewall/nftables/rules.js";
import { nftablesText } from "../../src/adapters/firewall/nftables/firewall.js";
import { iptablesText } from "../../src/adapters/firewall/iptables/firewall.js";
import type { TimedGrant } from "../../src/adapters/firewall/firewall.js";
import * as nft from "../../src/adapters/firewall/nftables/sets.js";

const FIXTURE = fileURLToPath(new URL("../../../test/fixtures/firewall/rendered.txt", import.meta.url));
const KEY = { KNOCK_DOOR_SSH_SPA_KEY: Buffer.alloc(32, 1).toString("base64"), KNOCK_DOOR_SSH_SPA_HMAC_KEY: Buffer.alloc(64, 2).toString("base64") };

/** A labelled container of `door`, running with `addresses`, its ports 80/tcp and 53/udp. */
const container = (name: string, door: string, ports: string[], addresses: ContainerAddress[]): LabelledContainer =>
  labelledContainer(name, door, ports, { addresses, containerPorts: [{ port: 80, proto: "tcp" }, { port: 53, proto: "udp" }] });

interface Case {
  name: string;
  config: Config;
  containers: LabelledContainer[];
}

const seventeen = Array.from({ length: 17 }, (_, i) => 10001 + i).join(",");
const CASES: Case[] = [
  { name: "one door, defaults", config: parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000" }), containers: [] },
  {
    name: "doors with several ports, both protocols, more than 15, a shared port, allow lists of both families",
    config: parseConfig({
      KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000",
      KNOCK_DOOR_SSH_PORTS: `2222/tcp,53/udp,22/tcp,${seventeen}`,
      KNOCK_DOOR_ADMIN_SEQUENCE: "6000,5000",
      KNOCK_DOOR_ADMIN_PORTS: "22,8443,123/udp",
      KNOCK_ALLOW: "10.1.2.3/8,192.0.2.7,fd00::1/64,2001:db8::1",
      KNOCK_MAX_GRANTS: "5000",
    }),
    containers: [],
  },
  {
    name: "a signed door beside a sequence door",
    config: parseConfig({ ...KEY, KNOCK_DOOR_SSH_PORTS: "22/tcp,53/udp", KNOCK_DOOR_WEB_SEQUENCE: "1111,2222", KNOCK_DOOR_WEB_PORTS: "443,22", KNOCK_MAX_GRANTS: "1000" }),
    containers: [],
  },
  {
    name: "a door both signed and knocked",
    config: parseConfig({ ...KEY, KNOCK_DOOR_SSH_SEQUENCE: "7000,8000", KNOCK_DOOR_SSH_PORTS: "22" }),
    containers: [],
  },
  {
    name: "labelled containers: host ports, bound addresses, container addresses with peers, a signed door",
    config: parseConfig({ ...KEY, KNOCK_DOOR_SSH_PORTS: "22", KNOCK_DOOR_WEB_SEQUENCE: "7001,8001", KNOCK_DOOR_WEB_PORTS: "none", KNOCK_ALLOW: "198.18.0.0/15" }),
    containers: [
      container("app", "WEB", ["8080", "192.0.2.2:8081", "2001:db8::5:8082"], [
        { network: "bridge", family: 4, address: "172.17.0.9", prefixLen: 16 },
        { network: "v6net", family: 6, address: "fd00:6b67::9", prefixLen: 64 },
      ]),
      container("lone", "WEB", ["9090"], [{ network: "none", family: 4, address: "172.18.0.4", prefixLen: 0 }]),
      container("signed", "SSH", ["2022", "192.0.2.3:2023"], [{ network: "bridge", family: 4, address: "172.17.0.10", prefixLen: 16 }]),
    ],
  },
  {
    // nftables only: the kernel engine with iptables is a configuration error.
    name: "the kernel engine: a TCP sequence with a close sequence, a mixed one with flags, a signed door",
    config: parseConfig({ ...KEY, ...KERNEL_DOORS }),
    containers: [],
  },
];

const PORTS: PortSpec[] = [{ port: 22, proto: "tcp" }, { port: 53, proto: "udp" }];
const SRC: Record<Family, string> = { 4: "198.18.0.2", 6: "fd00:198:18::2" };

/** Everything the backends render for one case, in sections. */
function render({ config, containers }: Case): string {
  const plan = firewallPlan(config, decideDoors(config.doors, containers).targets);
  const marker = planMarker(planId(plan));
  const out: [string, string][] = [];
  const add = (name: string, text: string) => out.push([name, text]);
  const iptables = config.engine !== "kernel";
  add("plan id", planId(plan));
  if (iptables) {
    add("ipset create", ipset.ipsetCreateScript(plan));
    add("ipset grant sets", ipset.ipsetGrantSets(plan).map((s) => `${s.name} ${s.spec} ${s.maxelem}`).join("\n"));
    for (const f of FAMILIES) {
      const chain = iptablesChainPlan(plan, f, marker);
      add(`iptables-restore IPv${f} (${chain.ruleCount} rules)`, chain.restore);
      add(`ipset allow IPv${f}`, ipset.ipsetAllowScript(plan, f));
      add(`ipset allow members IPv${f}`, ipset.expectedAllowMembers(plan, f).join("\n"));
    }
  }
  const script = nftPlan(plan, marker);
  add(`nft -f (${script.ruleCount} rules)`, script.script);
  if (iptables) add("ipset rebuild", ipset.ipsetRebuildScript(ipset.ipsetGrantSets(plan)[0]!, [{ src: SRC[4], remainingMs: 12_300 }, { src: "198.18.0.3", remainingMs: null }]));
  for (const door of config.doors) {
    for (const f of FAMILIES) {
      const src = SRC[f];
      add(`grant ${door.name} IPv${f}`, [
        ipset.ipsetGrantLine(door.name, f, src, 30_000),
        ipset.ipsetGrantLine(door.name, f, src, 0),
        ipset.ipsetRevokeLine(door.name, f, src),
        nft.nftGrantLine(door.name, f, [src], 30_000),
        nft.nftGrantLine(door.name, f, [src, f === 4 ? "198.18.0.3" : "fd00:198:18::3"], 0),
        nft.nftRevokeLine(door.name, f, [src]),
      ].join("\n"));
      if (door.spa === null) continue;
      add(`signed grant ${door.name} IPv${f}`, [
        ...ipset.ipsetSpaGrantLines(door.name, f, src, PORTS, 300_000),
        ...ipset.ipsetSpaRevokeLines(door.name, f, src, PORTS),
        nft.nftSpaGrantLine(door.name, f, src, PORTS, 300_000),
        nft.nftSpaRevokeLine(door.name, f, src, PORTS),
      ].join("\n"));
    }
    if (door.spa === null) continue;
    const element = "123:4567:89ab:cdef:123:4567:89ab:cdef";
    add(`replay ${door.name}`, [ipset.ipsetReplayAddLine(door.name, element, 240), ipset.ipsetReplayDelLine(door.name, element), nft.nftReplayAddLine(door.name, element, 240), nft.nftReplayDelLine(door.name, [element])].join("\n"));
    // A datagram's record, after one eviction, with a new grant of two ports until different ends, then with a refresh.
    const entry = { door: door.name, element, ttlS: 240, evict: ["fedc:ba98:7654:3210:fedc:ba98:7654:3210"] };
    const signed = (ports: PortSpec[], forMs: number, refresh?: boolean): TimedGrant => ({ grant: { door, family: 4, src: SRC[4], ports }, forMs, ...(refresh ? { refresh } : {}) });
    const grants = [signed(PORTS.slice(0, 1), 300_000), signed(PORTS.slice(1), 30_000)];
    const refreshed = grants.map((g) => ({ ...g, refresh: true }));
    for (const text of [...(iptables ? [iptablesText(planId)] : []), nftablesText(planId)]) {
      add(`record ${door.name} (${text.backend})`, [...text.record(entry, grants), ...text.record({ ...entry, evict: [] }, refreshed)].join("\n"));
    }
  }
  return out.map(([name, text]) => `--- ${name}\n${text}${text.endsWith("\n") ? "" : "\n"}`).join("");
}

const rendered = CASES.map((c) => `=== ${c.name}\n${render(c)}`).join("");

test("both backends render the rules, sets, scripts and grant lines of every case byte for byte as before", () => {
  if (process.env["KNOCK_WRITE_RENDERED"] === "1") writeFileSync(FIXTURE, rendered);
  const expected = readFileSync(FIXTURE, "utf8");
  const [got, want] = [rendered.split("\n"), expected.split("\n")];
  const at = got.findIndex((l, i) => l !== want[i]);
  assert.equal(at === -1 && got.length === want.length, true, `first difference at line ${at + 1}:\n  rendered: ${got[at]}\n  fixture:  ${want[at]}`);
});
