/**
 * Who owns which target: the configuration's ports first, then labelled containers oldest first;
 * a label never puts an owned target behind a second door. And what the firewall plan makes of
 * targets: only packets to this host or to a labelled container are ever matched.
 */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/config.js";
import { conflictText, containerOrigin, decideDoors } from "../../src/core/docker/desired.js";
import type { LabelledContainer } from "../../src/core/docker/labels.js";
import { labelledContainer } from "../support/containers.js";
import { iptablesChain, nftScript } from "../support/render.js";
import { keptRecords, parseKept } from "../../src/core/firewall/kept.js";
import { keptComments } from "../../src/adapters/firewall/iptables/listing.js";
import { ruleComments } from "../../src/adapters/firewall/nftables/listing.js";
import { doorPorts, hostDestination, networkOf, overlaps, protectionKey, targetText } from "../../src/core/protection/targets.js";
import { portName } from "../../src/core/types.js";
import { ProtectionService } from "../../src/app/protection.js";
import { Metrics } from "../../src/adapters/metrics/metrics.js";
import { FakeClock } from "../support/fake-clock.js";

const config = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000", KNOCK_DOOR_WEB_SEQUENCE: "7001,8001", KNOCK_DOOR_WEB_PORTS: "none" });

/** A labelled container naming `door`, publishing host ports ("22", "192.0.2.2:2222", "127.0.0.1:53") to container port 80. */
const container = (name: string, door: string, ports: string[], created = "2026-01-01T00:00:00Z", running = false): LabelledContainer =>
  labelledContainer(name, door, ports, { created, addresses: running ? [{ network: "bridge", family: 4, address: "172.17.0.9", prefixLen: 16 }] : [] });

const ports = (door: string, containers: LabelledContainer[]) => doorPorts(decideDoors(config.doors, containers).targets, door).map(portName);

describe("who owns a target", () => {
  test("a label cannot put a port that a door's _PORTS protects behind another door: refused, and the owner keeps it", () => {
    const weak = container("weak", "WEB", ["22"]);
    const decided = decideDoors(config.doors, [weak]);
    assert.deepEqual(ports("WEB", [weak]), [], "WEB's knock opens nothing on 22");
    assert.deepEqual(ports("SSH", [weak]), ["22/tcp"]);
    assert.equal(decided.conflicts.length, 1);
    assert.equal(conflictText(decided.conflicts[0]!), "container weak (7765616b0000) claims 22/tcp for door WEB, which door SSH owns (env): refused");
  });

  test("a port bound to one host address lies inside the same port on every address: refused too", () => {
    const bound = container("bound", "WEB", ["192.0.2.2:22"]);
    assert.deepEqual(ports("WEB", [bound]), []);
    assert.equal(decideDoors(config.doors, [bound]).conflicts[0]?.owner.door, "SSH");
  });

  test("a port bound to loopback only is out of reach from outside: no target, no claim", () => {
    assert.equal(hostDestination("127.0.0.1"), null);
    assert.equal(hostDestination("::1"), null);
    const local = container("local", "WEB", ["127.0.0.1:22", "::1:2222"]);
    assert.deepEqual(decideDoors(config.doors, [local]), decideDoors(config.doors, []));
  });

  test("between containers the older keeps a port; the younger gets it once the older is gone", () => {
    const older = container("older", "SSH", ["2222"], "2026-01-01T00:00:00Z");
    const younger = container("younger", "WEB", ["2222"], "2026-01-02T00:00:00Z");
    // The order they are listed in does not matter: their age does.
    assert.deepEqual(ports("WEB", [younger, older]), []);
    assert.deepEqual(ports("SSH", [younger, older]), ["22/tcp", "2222/tcp"]);
    assert.deepEqual(ports("WEB", [younger]), ["2222/tcp"]);
  });

  test("age within one second: Docker cuts the fraction's trailing zeros (12Z, 12.1Z, 12.12Z), which as text sort out of time order", () => {
    for (const [first, second] of [
      ["2026-01-01T00:00:12Z", "2026-01-01T00:00:12.5Z"],
      ["2026-01-01T00:00:12.1Z", "2026-01-01T00:00:12.12Z"],
      ["2026-01-01T00:00:12.999999999Z", "2026-01-01T00:00:13Z"],
    ]) {
      // Named so that the names, the tie-break, would pick the younger.
      const older = container("b-older", "SSH", ["2222"], first);
      const younger = container("a-younger", "WEB", ["2222"], second);
      assert.deepEqual(ports("WEB", [younger, older]), [], `${first} before ${second}`);
      assert.deepEqual(ports("SSH", [younger, older]), ["22/tcp", "2222/tcp"], `${first} before ${second}`);
    }
  });

  test("two containers of one door publishing one port share it; the origins name both", () => {
    const [a, b] = [container("a", "WEB", ["8080"]), container("b", "WEB", ["8080"])];
    const { targets, conflicts } = decideDoors(config.doors, [a, b]);
    assert.deepEqual(conflicts, []);
    assert.deepEqual(targets.find((t) => t.door === "WEB")?.origins, [containerOrigin(a.container), containerOrigin(b.container)]);
  });

  test("ports bound to different host addresses are different targets; the same address is the same", () => {
    const host = { kind: "host" as const };
    const at = (address: string) => ({ kind: "bound" as const, family: 4 as const, address });
    const p = { port: 8080, proto: "tcp" as const };
    assert.equal(overlaps({ dest: at("192.0.2.2"), port: p }, { dest: at("192.0.2.3"), port: p }), false);
    assert.equal(overlaps({ dest: at("192.0.2.2"), port: p }, { dest: at("192.0.2.2"), port: p }), true);
    assert.equal(overlaps({ dest: host, port: p }, { dest: at("192.0.2.2"), port: p }), true);
    assert.equal(overlaps({ dest: host, port: p }, { dest: host, port: { port: 8080, proto: "udp" } }), false);
    assert.equal(overlaps({ dest: host, port: p }, { dest: { kind: "container", family: 4, address: "192.0.2.2", peers: null }, port: p }), false);
    const a = container("a", "SSH", ["192.0.2.2:8080"]);
    const b = container("b", "WEB", ["192.0.2.3:8080"], "2026-01-02T00:00:00Z");
    assert.deepEqual(decideDoors(config.doors, [a, b]).conflicts, []);
  });

  test("only the operator shares a port between doors: two doors' _PORTS may name it", () => {
    const shared = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000", KNOCK_DOOR_ADMIN_SEQUENCE: "7001,8001" });
    const { targets, conflicts } = decideDoors(shared.doors, []);
    assert.deepEqual(conflicts, []);
    assert.deepEqual(targets.map((t) => `${t.door} ${targetText(t)}`), ["ADMIN 22/tcp", "SSH 22/tcp"]);
  });

  test("a container's network from its address and prefix length", () => {
    assert.equal(networkOf("172.17.5.9", 16), "172.17.0.0/16");
    assert.equal(networkOf("172.17.21.9", 20), "172.17.16.0/20");
    assert.equal(networkOf("fd00:6b67::2", 64), "fd00:6b67::/64");
    assert.equal(networkOf("172.17.0.2", 0), null, "an unknown prefix gives no peers");
    assert.equal(networkOf("not an address", 16), null);
  });
});

describe("targets in the plan", () => {
  const bound = container("bound", "WEB", ["192.0.2.2:8080", "2001:db8::5:8081"]);
  const targets = decideDoors(config.doors, [bound]).targets;

  test("iptables: a host port matches local destinations only; a bound port its address only, in its family's chain", () => {
    const chain = (restore: string) => restore.split("\n").filter((l) => l.startsWith("-A KNOCKGATE ")).join("\n");
    const rules4 = chain(iptablesChain(config, 4, targets).restore);
    assert.match(rules4, /-A KNOCKGATE -p tcp -m multiport --dports 22 -m addrtype --dst-type LOCAL -j DROP/);
    assert.match(rules4, /-A KNOCKGATE -d 192\.0\.2\.2\/32 -p tcp -m multiport --dports 8080 -m set --match-set knockgate-WEB-4 src -j RETURN/);
    assert.match(rules4, /-A KNOCKGATE -d 192\.0\.2\.2\/32 -p tcp -m multiport --dports 8080 -j DROP/);
    assert.doesNotMatch(rules4, /2001:db8/);
    const rules6 = chain(iptablesChain(config, 6, targets).restore);
    assert.match(rules6, /-A KNOCKGATE -d 2001:db8::5\/128 -p tcp -m multiport --dports 8081 -j DROP/);
    assert.doesNotMatch(rules6, /192\.0\.2\.2/);
    for (const rule of [...rules4.split("\n"), ...rules6.split("\n")].filter((r) => / -j DROP$/.test(r))) {
      assert.match(rule, /--dst-type LOCAL| -d /, `every drop names its destination: ${rule}`);
    }
  });

  test("nftables: the same, through the fib for every local address", () => {
    const script = nftScript(config, targets).script;
    assert.match(script, /add rule inet knockgate prerouting tcp dport \{ 22 \} fib daddr type local drop/);
    assert.match(script, /add rule inet knockgate prerouting ip daddr 192\.0\.2\.2 tcp dport \{ 8080 \} ip saddr @door_WEB_v4 accept/);
    assert.match(script, /add rule inet knockgate prerouting ip6 daddr 2001:db8::5 tcp dport \{ 8081 \} drop/);
    for (const rule of script.split("\n").filter((r) => / drop$/.test(r))) assert.match(rule, /fib daddr type local|ip6? daddr /, `every drop names its destination: ${rule}`);
  });
});

describe("ProtectionService", () => {
  const setup = () => {
    const lines: Record<string, unknown>[] = [];
    const log = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const protection = new ProtectionService({ config, log, clock: new FakeClock() });
    const docker = { enabled: true, effective: () => protection.effective(), conflicts: () => protection.conflicts(), connected: () => true, reconnects: () => 0 };
    const metrics = new Metrics(config.doors, { version: "test", revision: "test", backend: "dry-run" }, { tracked: () => 0, grants: () => Promise.resolve(new Map()), captureDropped: () => new Map(), docker });
    const gauge = async (door: string) => (await metrics.publicRegistry.getSingleMetric("knockgate_label_conflicts")!.get()).values.find((v) => v.labels["door"] === door)?.value;
    return { protection, lines, gauge };
  };

  test("a refused claim is logged once (label_conflict), counted, and shown as an advisory; it clears when the container goes", async () => {
    const { protection, lines, gauge } = setup();
    const weak = container("weak", "WEB", ["22"]);
    await protection.propose([weak]);
    await protection.propose([weak]);
    const logged = lines.filter((l) => l["event"] === "label_conflict");
    assert.equal(logged.length, 1);
    assert.deepEqual([logged[0]?.["container"], logged[0]?.["door"], logged[0]?.["port"], logged[0]?.["owner"]], ["container weak (7765616b0000)", "WEB", "22/tcp", "SSH"]);
    assert.equal(await gauge("WEB"), 1);
    assert.deepEqual(protection.checks(), [{ name: "label_conflicts", ok: true, detail: conflictText(protection.conflicts()[0]!) }]);
    assert.deepEqual(protection.portsOf("WEB"), []);
    await protection.propose([]);
    assert.equal(await gauge("WEB"), 0);
    assert.deepEqual(protection.checks(), []);
    await protection.propose([weak]);
    assert.equal(lines.filter((l) => l["event"] === "label_conflict").length, 2, "logged again when it comes back");
  });

  test("the configuration's doors are never changed: readers get a door's ports from the protection", async () => {
    const { protection } = setup();
    const before = JSON.stringify(config.doors);
    await protection.propose([container("app", "WEB", ["8080"])]);
    assert.deepEqual(protection.portsOf("WEB"), [{ port: 8080, proto: "tcp" }]);
    assert.equal(JSON.stringify(config.doors), before);
  });
});

describe("targets kept across a restart", () => {
  const doors = new Set(["SSH", "WEB"]);
  const running = container("app", "WEB", ["8080", "192.0.2.2:8081"], "2026-01-01T00:00:00Z", true);
  const labelled = decideDoors(config.doors, [running]).targets;

  test("what labels gave is written as records and read back as the same targets; the configuration's own ports are not", () => {
    const records = keptRecords(labelled);
    assert.deepEqual(records, [
      "kept WEB host tcp/8080 617070000000 app",
      "kept WEB bound=192.0.2.2 tcp/8081 617070000000 app",
      "kept WEB container=172.17.0.9,172.17.0.0/16 tcp/80 617070000000 app",
    ]);
    const claims = parseKept(records, doors);
    const again = decideDoors(config.doors, [], claims).targets;
    assert.equal(protectionKey(again), protectionKey(labelled), "the same rules after the restart");
    assert.deepEqual(claims.map((c) => c.origin), Array(3).fill("kept from before the restart: container app (617070000000)"));
    assert.deepEqual(keptRecords(again), records, "still written while kept, so a second restart keeps them too");
  });

  test("records that do not parse, or name a door not configured, are left out", () => {
    const bad = [
      "kept NOPE host tcp/8080 617070000000",
      "kept WEB host tcp/70000 617070000000",
      "kept WEB host sctp/80 617070000000",
      "kept WEB bound=1.2.3.4;x tcp/80 617070000000",
      "kept WEB container=172.17.0.9,10.0.0.0/8 tcp/80 617070000000",
      "kept WEB host tcp/80 not-an-id",
      "kept WEB host tcp/80 617070000000 bad/name",
      "kept WEB host tcp/80 617070000000 app extra",
      "knockgate plan 0123456789ab",
      "",
    ];
    assert.deepEqual(parseKept(bad, doors), []);
  });

  test("iptables-save and nft print the records back as comments", () => {
    const save = ["*mangle", ":KNOCKGATE-KEPT - [0:0]", '-A KNOCKGATE-KEPT -m comment --comment "kept WEB host tcp/8080 617070000000 app" -j RETURN', "-A KNOCKGATE -j RETURN", "COMMIT"].join("\n");
    assert.deepEqual(keptComments(save), ["kept WEB host tcp/8080 617070000000 app"]);
    const json = JSON.stringify({
      nftables: [{ metainfo: {} }, { chain: { name: "kept" } }, { rule: { chain: "kept", comment: "kept WEB host tcp/8080 617070000000 app", expr: [{ counter: {} }] } }, { rule: { chain: "kept", expr: [] } }],
    });
    assert.deepEqual(ruleComments(json), ["kept WEB host tcp/8080 617070000000 app"]);
    assert.match(iptablesChain(config, 4, labelled).restore, /^-A KNOCKGATE-KEPT -m comment --comment "kept WEB host tcp\/8080 617070000000 app" -j RETURN$/m);
    assert.doesNotMatch(iptablesChain(config, 6, labelled).restore, /KEPT/, "one copy, in the IPv4 table");
    assert.match(nftScript(config, labelled).script, /^add rule inet knockgate kept counter comment "kept WEB host tcp\/8080 617070000000 app"$/m);
  });

  test("kept targets stay protected until Docker answers; on: not ready meanwhile, auto: ready with an advisory", async () => {
    for (const mode of ["on", "auto"] as const) {
      const lines: Record<string, unknown>[] = [];
      const log = pino({ level: "info" }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
      const withMode = { ...config, docker: { ...config.docker, mode } };
      const protection = new ProtectionService({ config: withMode, log, clock: new FakeClock() });
      protection.keep(parseKept(keptRecords(labelled), doors));
      assert.deepEqual(protection.portsOf("WEB"), [{ port: 8080, proto: "tcp" }, { port: 8081, proto: "tcp" }]);
      const kept = protection.checks().find((c) => c.name === "kept_targets");
      assert.equal(kept?.ok, mode === "auto");
      assert.match(kept?.detail ?? "", /WEB 8080\/tcp, WEB 8081\/tcp on 192\.0\.2\.2, WEB 80\/tcp on container 172\.17\.0\.9/);
      assert.ok(lines.some((l) => l["event"] === "targets_kept"));
      // The engine answers: the container is gone.
      await protection.propose([]);
      assert.deepEqual(protection.portsOf("WEB"), []);
      assert.equal(protection.checks().find((c) => c.name === "kept_targets"), undefined);
      assert.ok(lines.some((l) => l["event"] === "kept_released"));
    }
  });
});
