/**
 * The Docker watcher against a fake engine that serves the real engine's inspect JSON
 * (test/fixtures/docker): what it protects when, how it survives a broken stream or a missing
 * engine, and what /readyz says meanwhile. Time moves only with the fake clock.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { describe, test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/config.js";
import { DockerWatch } from "../../src/app/docker-watch.js";
import type { DockerEngine, DockerEvent, EventStream } from "../../src/adapters/docker.js";
import { dockerOptions, parseEvent } from "../../src/adapters/docker.js";
import { dryRunFirewall } from "../support/dry-run.js";
import { portName } from "../../src/core/types.js";
import { decideDoors, effectiveDoors } from "../../src/core/docker/desired.js";
import { natBindings, type NatBinding } from "../../src/core/docker/nat.js";
import { readContainer } from "../../src/core/docker/labels.js";
import { iptablesChain, nftScript } from "../support/render.js";
import { doorPorts, type Target } from "../../src/core/protection/targets.js";
import { ProtectionService } from "../../src/app/protection.js";
import { checkReport, reportText, type HostProbe } from "../../src/cli/check.js";
import { FakeClock, settle } from "../support/fake-clock.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
type Json = Record<string, unknown> & { Id: string };
const fixture = (name: string): Json => {
  const parsed = JSON.parse(readFileSync(`${ROOT}test/fixtures/docker/${name}.json`, "utf8")) as Json | Json[];
  return Array.isArray(parsed) ? parsed[0]! : parsed;
};
/** A fixture as another container: same ports and labels, another id and name. */
const twin = (name: string, id: string): Json => ({ ...fixture(name), Id: id.padEnd(64, "0"), Name: `/${id}` });

/** An engine that serves inspect JSON from a map and events on demand; it can be taken away. */
class FakeEngine implements DockerEngine {
  readonly containers = new Map<string, Json>();
  up = true;
  private listener: ((e: DockerEvent) => void) | null = null;
  private breakStream: ((err: Error) => void) | null = null;

  labelled(): Promise<string[]> {
    if (!this.up) return Promise.reject(new Error("connect ENOENT /var/run/docker.sock"));
    const labelled = [...this.containers.values()].filter((c) => JSON.stringify((c["Config"] as { Labels?: unknown }).Labels ?? {}).includes("knockgate."));
    return Promise.resolve(labelled.map((c) => c.Id));
  }
  inspect(id: string): Promise<unknown> {
    if (!this.up) return Promise.reject(new Error("connect ENOENT /var/run/docker.sock"));
    return Promise.resolve(this.containers.get(id) ?? null);
  }
  /** What Docker's NAT rules show for a container joining a network, by container id. */
  readonly nat = new Map<string, NatBinding[]>();
  joining(_network: string, id: string): Promise<{ container: unknown; bindings: NatBinding[] } | null> {
    const c = this.containers.get(id);
    const bindings = this.nat.get(id);
    return Promise.resolve(c && bindings ? { container: { Id: c.Id, Name: c["Name"], Config: { Labels: (c["Config"] as { Labels?: unknown }).Labels } }, bindings } : null);
  }
  events(onEvent: (e: DockerEvent) => void): Promise<EventStream> {
    if (!this.up) return Promise.reject(new Error("connect ENOENT /var/run/docker.sock"));
    this.listener = onEvent;
    const ended = new Promise<void>((_, reject) => (this.breakStream = reject));
    ended.catch(() => undefined);
    return Promise.resolve({ ended, close: () => (this.listener = null) });
  }
  /** Puts (or removes, with null) a container and tells the watcher, as the engine would. */
  async change(id: string, json: Json | null, action: string, network?: string): Promise<void> {
    if (json) this.containers.set(id, json);
    else this.containers.delete(id);
    this.listener?.(network === undefined ? { id, action } : { id, action, network });
    await settle();
  }
  stop(): void {
    this.up = false;
    this.listener = null;
    this.breakStream?.(new Error("aborted"));
  }
}

function setup(env: Record<string, string> = {}) {
  const config = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", KNOCK_DOOR_WEB_SEQUENCE: "7001,8001", KNOCK_DOOR_WEB_PORTS: "none", ...env });
  const clock = new FakeClock();
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "debug" }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  const protection = new ProtectionService({ config, log, clock });
  const firewall = dryRunFirewall(config, pino({ level: "silent" }), clock, { targets: protection.targets() });
  const applied: (readonly Target[])[] = [];
  const realProtect = firewall.protect.bind(firewall);
  let failures = 0;
  firewall.protect = (targets) => {
    if (failures > 0) {
      failures--;
      return Promise.reject(new Error("iptables-restore: exit code 4"));
    }
    applied.push(targets);
    return realProtect(targets);
  };
  const engine = new FakeEngine();
  const watch = new DockerWatch({ config, engine, log, clock, protection });
  /** Host ports of a door in the last protection applied (or the first install's, before any). */
  const ports = (door: string, targets: readonly Target[] = applied.at(-1) ?? []) => doorPorts(targets, door).map(portName);
  /** Container addresses and ports of a door, as "172.17.0.2 22/tcp". */
  const addresses = (door: string, targets: readonly Target[] = applied.at(-1) ?? []) =>
    targets.flatMap((t) => (t.door === door && t.dest.kind === "container" ? [`${t.dest.address} ${portName(t.port)}`] : [])).sort();
  /** The first look, then following: as `knockgate run` does. */
  const follow = async () => {
    await protection.follow(firewall, protection.targets());
    watch.follow();
    await settle();
  };
  return { config, clock, lines, engine, watch, protection, firewall, applied, ports, addresses, follow, failNext: (n: number) => (failures = n) };
}

const NAT_SAVE = [
  "*nat",
  ":DOCKER - [0:0]",
  "-A DOCKER -i docker0 -j RETURN",
  "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 32769 -j DNAT --to-destination 172.17.0.4:9000",
  "-A DOCKER ! -i docker0 -p udp -m udp --dport 32770 -j DNAT --to-destination 172.17.0.4:9001",
  "-A DOCKER ! -i docker0 -p tcp -m tcp --dport 32799 -j DNAT --to-destination 172.17.0.40:9000",
  "COMMIT",
].join("\n");

describe("DockerWatch", () => {
  test("the first install already holds what labelled containers publish, next to the door's own ports, each with its origin", async () => {
    const s = setup({ KNOCK_DOOR_SSH_PORTS: "22/tcp" });
    const running = fixture("running");
    s.engine.containers.set(running.Id, running);
    await s.watch.initial(5000);
    const targets = s.protection.targets();
    // 32768/udp is bound to 127.0.0.1 only: out of reach from outside, so no rule.
    assert.deepEqual(s.ports("SSH", targets), ["22/tcp", "2222/tcp", "8443/tcp", "32768/tcp"]);
    assert.deepEqual(s.ports("WEB", targets), []);
    await s.follow();
    const ssh = s.protection.effective().find((d) => d.door === "SSH");
    assert.deepEqual(ssh?.ports[0], { port: "22/tcp", from: ["env"] });
    assert.deepEqual(ssh?.ports[1], { port: "2222/tcp", from: ["container kg-fixture-running (4253d5ee98b8)"] });
    assert.equal(ssh?.containers, 1);
    // Its own address, on each protected container port, needs the grant too.
    assert.deepEqual(s.addresses("SSH", targets), ["172.17.0.2 22/tcp", "172.17.0.2 443/tcp", "172.17.0.2 53/udp", "172.17.0.2 80/tcp"]);
    assert.equal(s.lines.find((l) => l["event"] === "protected_ports")?.["initial"], true);
  });

  test("explicit ports are protected at create, before the start; random ones when the start is seen", async () => {
    const s = setup();
    await s.watch.initial(5000);
    await s.follow();
    const id = fixture("created").Id;
    await s.engine.change(id, fixture("created"), "create");
    assert.deepEqual(s.ports("SSH"), ["22/tcp", "2222/tcp", "8443/tcp"], "the requested bindings; 53/udp gets its port at start");
    assert.deepEqual(s.addresses("SSH"), [], "no address before the start");
    await s.engine.change(id, { ...fixture("running"), Id: id }, "start");
    assert.deepEqual(s.ports("SSH"), ["22/tcp", "2222/tcp", "8443/tcp", "32768/tcp"]);
    assert.equal(s.protection.portsOf("SSH").length, 4, "readers see the ports in force (logs, %PORTS%, signed doors)");
    assert.deepEqual(s.config.doors.find((d) => d.name === "SSH")?.ports, [{ port: 22, proto: "tcp" }], "the configuration is never changed");
  });

  test("random ports are protected when the container joins its network, before its start, from Docker's NAT rules", async () => {
    const s = setup();
    await s.watch.initial(5000);
    await s.follow();
    const created = fixture("publish-all-created");
    await s.engine.change(created.Id, created, "create");
    // What the engine had programmed when the container joined: an unrelated container's rule too.
    s.engine.nat.set(created.Id, natBindings(NAT_SAVE, "172.17.0.4"));
    await s.engine.change(created.Id, created, "connect", "b".repeat(64));
    assert.deepEqual(s.ports("WEB"), ["32769/tcp", "32770/udp"], "the random ones from the NAT rules, not another container's; 9002/udp is on ::1 only");
  });

  test("a container joining before its create was read is still protected from the NAT rules, by its labels", async () => {
    const s = setup();
    await s.watch.initial(5000);
    await s.follow();
    const created = fixture("publish-all-created");
    // The engine has it, but no create event was handled yet (an earlier rewrite kept the watcher busy).
    s.engine.containers.set(created.Id, created);
    s.engine.nat.set(created.Id, natBindings(NAT_SAVE, "172.17.0.4"));
    await s.engine.change(created.Id, created, "connect", "b".repeat(64));
    assert.ok(s.ports("WEB").includes("32769/tcp") && s.ports("WEB").includes("32770/udp"), s.ports("WEB").join(","));
    assert.ok(s.lines.some((l) => l["event"] === "docker_ports_at_join"));
  });

  test("a stopped container keeps its explicit ports (a restart needs no new rule); removal releases them", async () => {
    const s = setup();
    const running = fixture("running");
    s.engine.containers.set(running.Id, running);
    await s.watch.initial(5000);
    await s.follow();
    await s.engine.change(running.Id, { ...fixture("exited"), Id: running.Id }, "die");
    assert.deepEqual(s.ports("SSH"), ["22/tcp", "2222/tcp", "8443/tcp"], "random ports go with the stop, explicit ones stay");
    await s.engine.change(running.Id, null, "destroy");
    assert.deepEqual(s.ports("SSH"), ["22/tcp"], "back to the door's own (default) port");
  });

  test("a port another labelled container still publishes stays protected when one of them goes", async () => {
    const s = setup();
    const [a, b] = [twin("running", "aaaa"), twin("running", "bbbb")];
    s.engine.containers.set(a.Id, a);
    s.engine.containers.set(b.Id, b);
    await s.watch.initial(5000);
    const before = s.protection.targets();
    assert.equal(s.protection.effective()[0]?.ports.find((p) => p.port === "2222/tcp")?.from.length, 2);
    await s.follow();
    await s.engine.change(a.Id, null, "destroy");
    assert.deepEqual(s.ports("SSH", s.applied.at(-1) ?? before), s.ports("SSH", before), "nothing opened");
    assert.deepEqual(s.protection.effective()[0]?.ports.find((p) => p.port === "2222/tcp")?.from, ["container bbbb (bbbb00000000)"]);
  });

  test("unlabelled containers change nothing; bad labels are logged once per container and the rest is still protected", async () => {
    const s = setup();
    await s.watch.initial(5000);
    await s.follow();
    const before = s.applied.length;
    await s.engine.change(fixture("unlabelled").Id, fixture("unlabelled"), "start");
    assert.equal(s.applied.length, before, "no rewrite for a container without labels");
    const bad = fixture("bad-labels");
    await s.engine.change(bad.Id, bad, "start");
    await s.engine.change(bad.Id, bad, "update");
    const problems = s.lines.filter((l) => l["event"] === "docker_label_problems");
    assert.equal(problems.length, 1, "the same problems are not logged again");
    assert.ok((problems[0]?.["problems"] as string[]).includes('"nope" is not a configured door (configured: SSH, WEB)'));
    assert.ok(s.ports("SSH").includes("2225/tcp"));
  });

  test("a broken stream is retried with backoff; the reconnect re-lists, so a container removed meanwhile is released", async () => {
    const s = setup({ KNOCK_DOCKER: "on" });
    const running = fixture("running");
    s.engine.containers.set(running.Id, running);
    await s.watch.initial(5000);
    await s.follow();
    assert.deepEqual(s.watch.checks(), [{ name: "docker", ok: true, detail: "following unix:///var/run/docker.sock: 1 labelled container(s)" }]);

    const rewrites = s.applied.length;
    s.engine.stop();
    await settle();
    const down = s.watch.checks()[0];
    assert.equal(down?.ok, false);
    assert.match(down?.detail ?? "", /^event stream down since 2026-01-01T00:00:00\.000Z \(aborted\); the last known ports stay protected$/);
    assert.equal(s.applied.length, rewrites, "nothing is opened while Docker is away");
    s.engine.containers.delete(running.Id);
    await s.clock.advance(500);
    await s.clock.advance(1000);
    assert.equal(s.lines.filter((l) => l["event"] === "docker_unavailable").length, 2, "the break, then one line for the failed retries' new reason");
    s.engine.up = true;
    await s.clock.advance(2000);
    assert.equal(s.watch.checks()[0]?.ok, true);
    assert.equal(s.watch.reconnects, 1);
    assert.deepEqual(s.ports("SSH"), ["22/tcp"], "the re-list dropped the container removed while the stream was down");
    assert.ok(s.lines.some((l) => l["event"] === "docker_connected" && typeof l["down_since"] === "string"));
  });

  test("auto with no engine: ready, says so once, and follows the engine when it appears; on: not ready", async () => {
    const auto = setup();
    auto.engine.up = false;
    await auto.watch.initial(5000);
    await auto.follow();
    await auto.clock.advance(20_000);
    assert.equal(auto.watch.checks()[0]?.ok, true);
    assert.match(auto.watch.checks()[0]?.detail ?? "", /^no Docker engine at unix:\/\/\/var\/run\/docker\.sock \(connect ENOENT .*\); KNOCK_DOCKER=auto: labels are followed once it appears$/);
    assert.equal(auto.lines.filter((l) => l["event"] === "docker_unavailable").length, 1, "one line, not one per retry");
    const running = fixture("running");
    auto.engine.containers.set(running.Id, running);
    auto.engine.up = true;
    await auto.clock.advance(10_000);
    assert.ok(auto.ports("SSH").includes("2222/tcp"), "a socket that appears late is followed");

    const on = setup({ KNOCK_DOCKER: "on" });
    on.engine.up = false;
    await on.watch.initial(5000);
    assert.equal(on.watch.checks()[0]?.ok, false);
    const off = setup({ KNOCK_DOCKER: "off", KNOCK_DOOR_WEB_PORTS: "80/tcp" });
    off.engine.up = false;
    await off.watch.initial(5000);
    assert.deepEqual(off.watch.checks(), [], "off: Docker is not a readiness concern");
  });

  test("a failed rewrite is shown in readiness and retried", async () => {
    const s = setup();
    await s.watch.initial(5000);
    await s.follow();
    s.failNext(1);
    const running = fixture("running");
    await s.engine.change(running.Id, running, "start");
    assert.deepEqual(s.protection.checks()[0], { name: "protection", ok: false, detail: "could not apply the protected targets: iptables-restore: exit code 4" });
    await s.clock.advance(1000);
    assert.deepEqual(s.protection.checks(), []);
    assert.ok(s.ports("SSH").includes("2222/tcp"));
  });
});

describe("desired doors and events", () => {
  test("container addresses that are not IPs never become targets", () => {
    const running = fixture("running");
    const c = readContainer(running, new Set(["SSH"]))!;
    const hostile = { ...c, doors: c.doors.map((d) => ({ ...d, addresses: [{ network: "x", family: 4 as const, address: "1.2.3.4 -j ACCEPT", prefixLen: 16 }] })) };
    const config = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000" });
    assert.deepEqual(decideDoors(config.doors, [hostile]).targets.filter((t) => t.dest.kind === "container"), []);
  });

  test("event lines: container and network events name a container; anything else is ignored", () => {
    assert.deepEqual(parseEvent('{"Type":"container","Action":"start","Actor":{"ID":"4253d5ee98b89a18"}}'), { id: "4253d5ee98b89a18", action: "start" });
    assert.deepEqual(parseEvent('{"Type":"network","Action":"connect","Actor":{"ID":"n","Attributes":{"container":"4253d5ee98b89a18"}}}'), { id: "4253d5ee98b89a18", action: "connect" });
    for (const line of ["", "{", "null", '{"Type":"image","Action":"pull","Actor":{"ID":"4253d5ee98b89a18"}}', '{"Type":"container","Action":"start","Actor":{"ID":"../x"}}']) {
      assert.equal(parseEvent(line), null, line);
    }
  });
});

describe("KNOCK_DOCKER configuration", () => {
  const base = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000" };
  test("defaults: auto, DOCKER_HOST when set, else the default socket; tcp:// works", () => {
    assert.deepEqual(parseConfig(base).docker, { mode: "auto", host: "unix:///var/run/docker.sock", hostFrom: "default" });
    assert.deepEqual(parseConfig({ ...base, DOCKER_HOST: "tcp://127.0.0.1:2375" }).docker, { mode: "auto", host: "tcp://127.0.0.1:2375", hostFrom: "DOCKER_HOST" });
    assert.equal(parseConfig({ ...base, DOCKER_HOST: "tcp://127.0.0.1:2375", KNOCK_DOCKER_HOST: "unix:///run/proxy.sock" }).docker.host, "unix:///run/proxy.sock");
  });

  test("every problem named: a bad mode, a bad host, a door without ports while Docker is off", () => {
    assert.throws(
      () => parseConfig({ ...base, KNOCK_DOCKER: "maybe", KNOCK_DOCKER_HOST: "https://x:1", KNOCK_DOOR_SSH_PORTS: "none" }),
      (e: Error) => /KNOCK_DOCKER: "maybe" is not one of auto, on, off/.test(e.message) && /KNOCK_DOCKER_HOST: "https:\/\/x:1" is not unix/.test(e.message),
    );
    assert.throws(() => parseConfig({ ...base, KNOCK_DOCKER: "off", KNOCK_DOOR_SSH_PORTS: "none" }), /KNOCK_DOOR_SSH_PORTS: "none" leaves the door only the ports Docker labels give it, but KNOCK_DOCKER=off/);
    assert.deepEqual(parseConfig({ ...base, KNOCK_DOOR_SSH_PORTS: "none" }).doors[0]?.ports, []);
  });
});

describe("container addresses in the plan", () => {
  const config = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000", KNOCK_DOOR_SSH_PORTS: "2222/tcp" });
  const targets = decideDoors(config.doors, [readContainer(fixture("running"), new Set(["SSH"]))!]).targets;

  test("iptables: the grant lets the knocker in, the container's own network passes from where it is routed, everything else new is dropped", () => {
    const rules = iptablesChain(config, 4, targets).restore.split("\n");
    const at = (rule: string) => rules.indexOf(`-A KNOCKGATE ${rule}`);
    const target = "-d 172.17.0.2/32 -p tcp -m multiport --dports 22,80,443";
    assert.ok(at(`${target} -m set --match-set knockgate-SSH-4 src -j RETURN`) > 0, rules.join("\n"));
    assert.ok(at(`${target} -s 172.17.0.0/16 -m rpfilter -j RETURN`) > at(`${target} -m set --match-set knockgate-SSH-4 src -j RETURN`));
    assert.ok(at(`${target} -j DROP`) > at(`${target} -s 172.17.0.0/16 -m rpfilter -j RETURN`));
    assert.ok(!rules.some((r) => / -i (?!lo )/.test(r)), "no rule trusts an interface by its name");
    assert.ok(!iptablesChain(config, 6, targets).restore.includes("172.17.0.2"), "an IPv4 address only in the IPv4 chain");
  });

  test("nftables: the same three steps per address, with the fib for the reverse path", () => {
    const script = nftScript(config, targets).script;
    assert.match(script, /ip daddr 172\.17\.0\.2 udp dport \{ 53 \} ip saddr @door_SSH_v4 accept/);
    assert.match(script, /ip daddr 172\.17\.0\.2 tcp dport \{ 22, 80, 443 \} ip saddr 172\.17\.0\.0\/16 fib saddr \. iif oif exists accept/);
    assert.match(script, /\n.* ip daddr 172\.17\.0\.2 tcp dport \{ 22, 80, 443 \} drop/);
    assert.doesNotMatch(script, /iifname "(?!lo")/, "no rule trusts an interface by its name");
  });
});

describe("knockgate check with Docker labels", () => {
  test("each door's effective ports and their origin, and what Docker looked like", async () => {
    const env = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000", KNOCK_DOOR_SSH_PORTS: "none", KNOCK_DOOR_WEB_SEQUENCE: "7001,8001", KNOCK_DOOR_WEB_PORTS: "80/tcp", KNOCK_INTERFACE: "lo" };
    const config = parseConfig(env);
    const running = readContainer(fixture("running"), new Set(["SSH", "WEB"]))!;
    const host: HostProbe = {
      defaultInterfaces: () => Promise.resolve(["lo"]),
      chooseBackend: () => Promise.resolve({ backend: "nftables" }),
      dockerDoors: (c) =>
        Promise.resolve({ effective: effectiveDoors(c.doors, decideDoors(c.doors, [running]), [running]), conflicts: [], state: "following unix:///var/run/docker.sock: 1 labelled container(s)" }),
    };
    const report = await checkReport(config, env, "the environment", host);
    assert.deepEqual(report.doors[0]?.ports[0], { port: "2222/tcp", from: ["container kg-fixture-running (4253d5ee98b8)"] });
    assert.deepEqual(report.doors[1]?.ports, [{ port: "80/tcp", from: ["env"] }]);
    const text = reportText(report);
    assert.match(text, /KNOCK_DOOR_SSH_PORTS=none \(only ports that Docker labels give\)/);
    assert.match(text, /protected ports: 2222\/tcp \(container kg-fixture-running \(4253d5ee98b8\)\), 8443\/tcp/);
    assert.match(text, /KNOCK_DOCKER=auto \(default: following unix:\/\/\/var\/run\/docker\.sock: 1 labelled container\(s\)\)/);
  });
});

describe("dockerode options", () => {
  test("unix:// is a socket path, tcp:// a plain HTTP endpoint (IPv6 literals unbracketed)", () => {
    assert.deepEqual(dockerOptions("unix:///var/run/docker.sock"), { socketPath: "/var/run/docker.sock" });
    assert.deepEqual(dockerOptions("tcp://127.0.0.1:2375"), { protocol: "http", host: "127.0.0.1", port: 2375 });
    assert.deepEqual(dockerOptions("tcp://[fd00:198:18::1]:2375"), { protocol: "http", host: "fd00:198:18::1", port: 2375 });
  });
});
