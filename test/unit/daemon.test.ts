/** Daemon wiring with a fake firewall and fake capture: how failures surface in /readyz, metrics and logs. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { pino } from "pino";
import { parseConfig } from "../../src/config/config.js";
import { Daemon, type Deps } from "../../src/app/daemon.js";
import type { Firewall } from "../../src/adapters/firewall/firewall.js";
import type { FrameHandler } from "../../src/adapters/capture.js";
import { Metrics } from "../../src/adapters/metrics.js";
import { buildFrame, macBytes } from "../support/frames.js";

class FakeFirewall implements Firewall {
  readonly backend = "fake";
  problems: string[] = [];
  failGrants = false;
  failReconcile = false;
  grants: string[] = [];
  check = () => Promise.resolve([...this.problems]);
  reconcile = () => {
    if (this.failReconcile) return Promise.reject(new Error("iptables: permission denied"));
    const found = this.problems;
    this.problems = [];
    return Promise.resolve(found);
  };
  grant = (_door: unknown, _family: unknown, src: string) => {
    if (this.failGrants) return Promise.reject(new Error("ipset: set does not exist"));
    this.grants.push(src);
    return Promise.resolve();
  };
  revoke = () => Promise.resolve();
  countGrants = () => Promise.resolve(new Map([["SSH", this.grants.length]]));
  remove = () => Promise.resolve();
  close = () => undefined;
}

function setup(overrides: Partial<Deps> = {}) {
  const config = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", KNOCK_INTERFACE: "eth0", KNOCK_RECONCILE_INTERVAL: "0.1" });
  const firewall = new FakeFirewall();
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "debug" }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  let daemon: Daemon | null = null;
  const metrics = new Metrics(
    ["SSH"],
    { version: "test", backend: "fake" },
    { tracked: () => 0, grants: () => firewall.countGrants(), captureDropped: () => daemon?.captureDropped() ?? new Map() },
  );
  let onFrame: FrameHandler = () => undefined;
  let alive = true;
  /** What the capture opened last reports as dropped by the kernel. */
  const ring = { dropped: 0 };
  daemon = new Daemon({
    config,
    interfaces: ["eth0"],
    firewall,
    log,
    metrics,
    interfaceLinkType: () => "ETHERNET",
    openCapture: (iface, _filter, handler) => {
      onFrame = handler;
      alive = true;
      ring.dropped = 0;
      return { iface, linkType: "ETHERNET", alive: () => alive, stats: () => ({ received: 0, dropped: ring.dropped }), close: () => undefined };
    },
    ...overrides,
  });
  const knock = (port: number) => {
    const frame = buildFrame({
      srcMac: macBytes("02:00:00:00:00:02"),
      dstMac: macBytes("02:00:00:00:00:01"),
      src: "198.18.0.2",
      dst: "198.18.0.1",
      proto: "tcp",
      srcPort: 40000,
      dstPort: port,
    });
    onFrame(frame, frame.length);
  };
  const raw = (frame: Buffer) => onFrame(frame, frame.length);
  return { daemon, firewall, lines, metrics, knock, raw, ring, kill: () => (alive = false) };
}

const settle = () => new Promise((resolve) => setTimeout(resolve, 20));
const failing = async (d: Daemon) => (await d.readiness()).filter((c) => !c.ok).map((c) => c.name);

test("a completed sequence grants through the firewall and logs one open line", async () => {
  const { daemon, firewall, lines, knock } = setup();
  await daemon.start();
  for (const port of [7000, 8000, 9000]) knock(port);
  await settle();
  assert.deepEqual(firewall.grants, ["198.18.0.2"]);
  const opens = lines.filter((l) => l["event"] === "open");
  assert.equal(opens.length, 1);
  assert.equal(opens[0]?.["src"], "198.18.0.2");
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("a failed grant is logged, counted and makes /readyz fail until a grant succeeds", async () => {
  const { daemon, firewall, lines, metrics, knock } = setup();
  await daemon.start();
  firewall.failGrants = true;
  for (const port of [7000, 8000, 9000]) knock(port);
  await settle();
  assert.equal(lines.filter((l) => l["event"] === "grant_failed").length, 1);
  assert.deepEqual(await failing(daemon), ["grants"]);
  assert.match(await metrics.registry.metrics(), /knockgate_firewall_errors_total 1/);
  firewall.failGrants = false;
  for (const port of [7000, 8000, 9000]) knock(port);
  await settle();
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("a firewall object that went missing fails /readyz at once and is repaired and counted", async () => {
  const { daemon, firewall, lines, metrics } = setup();
  await daemon.start();
  firewall.problems = ["jump PREROUTING -> KNOCKGATE missing (IPv4)"];
  const checks = await daemon.readiness();
  assert.deepEqual(checks.find((c) => c.name === "firewall"), { name: "firewall", ok: false, detail: "jump PREROUTING -> KNOCKGATE missing (IPv4)" });
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.deepEqual(await failing(daemon), []);
  assert.equal(lines.filter((l) => l["event"] === "firewall_repaired").length, 1);
  assert.match(await metrics.registry.metrics(), /knockgate_firewall_repairs_total 1/);
  await daemon.stop();
});

test("a failing reconcile is logged once and reported by /readyz", async () => {
  const { daemon, firewall, lines } = setup();
  await daemon.start();
  firewall.failReconcile = true;
  await new Promise((resolve) => setTimeout(resolve, 350));
  assert.deepEqual(await failing(daemon), ["reconcile"]);
  assert.equal(lines.filter((l) => l["event"] === "firewall_reconcile_failed").length, 1, "repeats of the same error are not re-logged");
  await daemon.stop();
});

test("start fails when the firewall cannot be installed", async () => {
  const { daemon, firewall } = setup();
  firewall.failReconcile = true;
  await assert.rejects(daemon.start(), /permission denied/);
});

test("a capture that cannot be opened fails /readyz and is retried", async () => {
  let attempts = 0;
  const { daemon } = setup({
    openCapture: () => {
      attempts++;
      throw new Error("capture on eth0: No such device exists");
    },
  });
  await daemon.start();
  assert.deepEqual(await failing(daemon), ["capture:eth0"]);
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.ok(attempts >= 2, `capture must be retried (attempts: ${attempts})`);
  await daemon.stop();
});

test("a malformed frame is counted and ignored", async () => {
  const { daemon, metrics, raw } = setup();
  await daemon.start();
  raw(Buffer.from([1, 2, 3]));
  assert.match(await metrics.registry.metrics(), /knockgate_packets_total\{result="malformed"\} 1/);
  await daemon.stop();
});

test("kernel capture drops are counted per interface across a reopen, and warned about", async () => {
  const { daemon, lines, metrics, ring, kill } = setup();
  await daemon.start();
  assert.match(await metrics.registry.metrics(), /knockgate_capture_dropped_packets_total\{interface="eth0"\} 0/);
  ring.dropped = 5;
  kill();
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.equal(ring.dropped, 0, "the capture was reopened");
  ring.dropped = 2;
  assert.match(await metrics.registry.metrics(), /knockgate_capture_dropped_packets_total\{interface="eth0"\} 7/);
  await new Promise((resolve) => setTimeout(resolve, 1100)); // one sweep
  const warned = lines.filter((l) => l["event"] === "capture_dropped");
  assert.deepEqual(warned.map((l) => [l["dropped"], l["total"]]), [[7, 7]]);
  await daemon.stop();
});

test("an interface that went away fails /readyz and its capture is reopened", async () => {
  const { daemon, lines, kill } = setup();
  await daemon.start();
  kill();
  assert.deepEqual(await failing(daemon), ["capture:eth0"]);
  await new Promise((resolve) => setTimeout(resolve, 250));
  assert.ok(lines.some((l) => l["event"] === "capture_lost"));
  assert.ok(lines.filter((l) => l["event"] === "capture_started").length >= 2, "capture must be reopened");
  await daemon.stop();
});
