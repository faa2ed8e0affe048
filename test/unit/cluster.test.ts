/**
 * Cluster-wide grants, without an API server: the pure checks of KnockGrant objects, the
 * configuration, and the sync on a fake Kubernetes API and a fake clock (publishing with retries and
 * a bounded queue, the watch resuming and re-listing, other nodes' grants applied and revoked,
 * expired objects collected).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/core/errors.js";
import {
  backoffMs,
  CLOCK_SKEW_MS,
  grantObject,
  objectName,
  ORPHAN_AFTER_MS,
  shouldCollect,
  validateGrant,
  type ClusterGrant,
} from "../../src/core/cluster/knock-grant.js";
import { portName, type Family } from "../../src/core/types.js";
import { Metrics } from "../../src/adapters/metrics/metrics.js";
import type { KubeGrants, WatchEvent } from "../../src/adapters/kube.js";
import { ClusterSync, MAX_PENDING, type RemoteGrants } from "../../src/app/ways/cluster/cluster-sync.js";
import type { CloseRequest, GrantRequest } from "../../src/app/grants.js";
import { pino } from "pino";
import { FakeClock } from "../support/fake-clock.js";
import { envPorts } from "../support/protection.js";

const config = parseConfig({
  KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000",
  KNOCK_DOOR_SSH_PORTS: "22/tcp,2222/tcp",
  KNOCK_DOOR_FOREVER_SEQUENCE: "7100,7200",
  KNOCK_DOOR_FOREVER_CLOSE_SEQUENCE: "7200,7100",
  KNOCK_DOOR_FOREVER_OPEN_FOR: "0",
  // Signed, with a datagram's time capped above OPEN_FOR (30 s).
  KNOCK_DOOR_WEB_SPA_KEY: Buffer.alloc(32, 1).toString("base64"),
  KNOCK_DOOR_WEB_SPA_HMAC_KEY: Buffer.alloc(64, 2).toString("base64"),
  KNOCK_DOOR_WEB_PORTS: "80/tcp,443/tcp,443/udp",
  KNOCK_DOOR_WEB_SPA_MAX_OPEN_FOR: "120",
});
const DOORS = new Map(config.doors.map((d) => [d.name, d]));
const PORTS = envPorts(config);
const NOW = Date.UTC(2026, 0, 1, 12);
const iso = (ms: number) => new Date(ms).toISOString();

/** A KnockGrant object; by default named as its grant names it (`ssh.4.c6120002`). */
function object(spec: Record<string, unknown>, name?: string, resourceVersion = "1"): Record<string, unknown> {
  const full: Record<string, unknown> = { door: "SSH", address: "198.18.0.2", family: 4, expiresAt: iso(NOW + 20_000), grantedAt: iso(NOW - 10_000), originNode: "node-a", how: "sequence", ...spec };
  const signedPorts = full["how"] === "signed" && Array.isArray(full["ports"]) ? (full["ports"] as string[]) : null;
  return {
    apiVersion: "knockgate.io/v1alpha1",
    kind: "KnockGrant",
    metadata: { name: name ?? objectName(String(full["door"]), full["family"] as Family, String(full["address"]), signedPorts), resourceVersion },
    spec: full,
  };
}

test("a valid KnockGrant reads into a grant with a canonical address; a signed one keeps the ports it names", () => {
  const r = validateGrant(object({ door: "WEB", how: "signed", address: "fd00:198:18:0:0:0:0:2", family: 6, ports: ["443/udp", "80/tcp"] }), DOORS, PORTS.portsOf, NOW);
  assert.ok(r.ok);
  assert.deepEqual(r.grant, {
    door: "WEB",
    address: "fd00:198:18::2",
    family: 6,
    expiresAt: NOW + 20_000,
    grantedAt: NOW - 10_000,
    origin: "node-a",
    how: "signed",
    ports: ["443/udp", "80/tcp"],
  });
  const whole = validateGrant(object({ ports: ["2222/tcp", "22/tcp"] }), DOORS, PORTS.portsOf, NOW);
  assert.ok(whole.ok, "a sequence grant may name all of the door's ports");
});

test("KnockGrants this node must not apply are refused by reason", () => {
  const cases: [Record<string, unknown> | null, string][] = [
    [null, "malformed"],
    [{ family: 5 }, "malformed"],
    [{ how: "guessed" }, "malformed"],
    [{ grantedAt: "yesterday" }, "malformed"],
    [{ expiresAt: "2026-01-01 12:00" }, "malformed"],
    [{ originNode: "" }, "malformed"],
    [{ door: "TELNET" }, "unknown_door"],
    [{ address: "198.18.0.300" }, "bad_address"],
    [{ address: "198.18.0.2", family: 6 }, "bad_address"],
    [{ address: "127.0.0.1" }, "bad_address"],
    [{ address: "224.0.0.1" }, "bad_address"],
    [{ address: "::ffff:198.18.0.2", family: 6 }, "bad_address"],
    [{ address: "169.254.0.7" }, "bad_address"],
    [{ address: "fe80::7", family: 6 }, "bad_address"],
    [{ address: "64:ff9b::7f00:1", family: 6 }, "bad_address"],
    [{ address: "198.18.0.2; rm -rf /" }, "bad_address"],
    [{ expiresAt: iso(NOW) }, "expired"],
    [{ expiresAt: iso(NOW + 30_000 + CLOCK_SKEW_MS + 1) }, "too_long"],
    [{ expiresAt: undefined }, "too_long"],
    [{ ports: ["23/tcp"] }, "bad_ports"],
    [{ ports: [] }, "bad_ports"],
    [{ ports: "22/tcp" }, "bad_ports"],
    [{ ports: ["22/tcp"] }, "bad_ports"],
    [{ how: "signed" }, "not_signed"],
    [{ door: "WEB" }, "no_sequence"],
    [{ door: "WEB", expiresAt: undefined }, "no_sequence"],
    [{ door: "WEB", how: "signed", ports: ["22/tcp"] }, "bad_ports"],
    [{ door: "WEB", how: "signed", ports: ["80/udp"] }, "bad_ports"],
    [{ door: "WEB", how: "signed" }, "bad_ports"],
    [{ door: "WEB", how: "signed", ports: ["80/tcp"], expiresAt: iso(NOW + 120_000 + CLOCK_SKEW_MS + 1) }, "too_long"],
    [{ door: "WEB", how: "signed", ports: ["80/tcp"], expiresAt: undefined }, "too_long"],
    [{ door: "WEB", how: "signed", ports: ["80/tcp"], expiresAt: iso(NOW - 1) }, "expired"],
  ];
  for (const [spec, reason] of cases) {
    const obj = spec === null ? { metadata: { name: "x" } } : object(spec);
    const r = validateGrant(obj, DOORS, PORTS.portsOf, NOW);
    assert.equal(r.ok ? "ok" : r.reason, reason, JSON.stringify(spec));
  }
});

test("a grant up to OPEN_FOR (signed: SPA_MAX_OPEN_FOR) plus the clock skew allowance is accepted; a door open until its close sequence takes one without expiry", () => {
  assert.ok(validateGrant(object({ expiresAt: iso(NOW + 30_000 + CLOCK_SKEW_MS) }), DOORS, PORTS.portsOf, NOW).ok);
  const signed = { door: "WEB", how: "signed", ports: ["443/tcp"] };
  assert.ok(validateGrant(object({ ...signed, expiresAt: iso(NOW + 120_000 + CLOCK_SKEW_MS) }), DOORS, PORTS.portsOf, NOW).ok);
  assert.equal(validateGrant(object({ door: "WEB", expiresAt: iso(NOW + 120_000) }), DOORS, PORTS.portsOf, NOW).ok, false, "a sequence grant of that door still ends at OPEN_FOR");
  const forever = validateGrant(object({ door: "FOREVER", expiresAt: undefined }), DOORS, PORTS.portsOf, NOW);
  assert.ok(forever.ok);
  assert.equal(forever.grant.expiresAt, null);
});

test("an object whose name is not the one its door, address, family and ports give is ignored (wrong_name)", () => {
  const signed = { door: "WEB", how: "signed", ports: ["443/udp"], expiresAt: iso(NOW + 60_000) };
  const cases: [Record<string, unknown>, string][] = [
    [{}, "ssh.4.c6120009"],
    [{ address: "198.18.0.9" }, "ssh.4.c6120002"],
    [{}, "ssh.6.c6120002"],
    [{ door: "FOREVER", expiresAt: undefined }, "ssh.4.c6120002"],
    [{}, "ssh.4.c6120002.22-tcp"],
    [signed, "web.4.c6120002.80-tcp"],
    [signed, "web.4.c6120002"],
    [signed, "anything"],
  ];
  for (const [spec, name] of cases) {
    const r = validateGrant(object(spec, name), DOORS, PORTS.portsOf, NOW);
    assert.equal(r.ok ? "ok" : r.reason, "wrong_name", `${name}: ${JSON.stringify(spec)}`);
  }
  assert.ok(validateGrant(object({ address: "198.18.0.9" }, "ssh.4.c6120009"), DOORS, PORTS.portsOf, NOW).ok);
  assert.ok(validateGrant(object({ address: "fd00:198:18:0::2", family: 6 }, "ssh.6.fd000198001800000000000000000002"), DOORS, PORTS.portsOf, NOW).ok, "any spelling of the address, one name");
});

test("object names are DNS subdomains, one per door and address (and port, when signed), whatever the address spelling", () => {
  assert.equal(objectName("SSH", 4, "198.18.0.2"), "ssh.4.c6120002");
  assert.equal(objectName("SSH", 4, "198.18.0.2", ["22/tcp"]), "ssh.4.c6120002.22-tcp");
  assert.match(objectName("MY_DOOR", 6, "fd00:198:18::2", ["443/udp"]), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
  assert.equal(objectName("MY_DOOR", 6, "fd00:198:18::2"), objectName("MY_DOOR", 6, "fd00:198:18:0::2"));
  assert.match(objectName("MY_DOOR", 6, "fd00:198:18::2"), /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/);
  const grant: ClusterGrant = { door: "SSH", address: "198.18.0.2", family: 4, expiresAt: null, grantedAt: NOW, origin: "a", how: "sequence", ports: null };
  const spec = grantObject(grant, "ns")["spec"] as Record<string, unknown>;
  assert.ok(!("expiresAt" in spec) && !("ports" in spec), "absent, not null: the CRD's schema types them");
  assert.ok(validateGrant(grantObject({ ...grant, door: "FOREVER" }, "ns"), DOORS, PORTS.portsOf, NOW).ok, "what a node publishes, another accepts");
  const signed = grantObject({ ...grant, door: "WEB", how: "signed", ports: ["443/udp"], expiresAt: NOW + 60_000 }, "ns");
  assert.equal((signed["metadata"] as { name: string }).name, "web.4.c6120002.443-udp");
  assert.ok(validateGrant(signed, DOORS, PORTS.portsOf, NOW).ok);
});

test("the origin collects its expired objects at once, any node those expired ORPHAN_AFTER_MS ago", () => {
  assert.equal(shouldCollect(NOW, "a", "a", NOW), true);
  assert.equal(shouldCollect(NOW + 1, "a", "a", NOW), false);
  assert.equal(shouldCollect(NOW, "b", "a", NOW + ORPHAN_AFTER_MS - 1), false);
  assert.equal(shouldCollect(NOW, "b", "a", NOW + ORPHAN_AFTER_MS), true);
  assert.equal(shouldCollect(null, "a", "a", NOW), false);
});

test("backoff doubles up to its cap, with jitter in the upper half", () => {
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffMs(n, 100, 1000, 0)), [50, 100, 200, 400]);
  assert.equal(backoffMs(50, 100, 1000, 0.999), 1000);
});

test("KNOCK_CLUSTER: off by default; kubernetes needs a node name and a namespace, from the pod when not set", () => {
  const door = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000" };
  assert.deepEqual(parseConfig(door).cluster, { mode: "off" });
  const inPod = (path: string) => (path.endsWith("/namespace") ? "knockgate\n" : assert.fail(path));
  assert.deepEqual(parseConfig({ ...door, KNOCK_CLUSTER: "kubernetes", KNOCK_NODE_NAME: "node-a" }, inPod).cluster, {
    mode: "kubernetes",
    nodeName: "node-a",
    namespace: "knockgate",
  });
  const problems = (env: Record<string, string>) => {
    try {
      parseConfig({ ...door, ...env }, () => {
        throw new Error("ENOENT");
      });
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.problems.map((p) => p.variable);
    }
    return [];
  };
  assert.deepEqual(problems({ KNOCK_CLUSTER: "kubernetes" }), ["KNOCK_NODE_NAME", "KNOCK_CLUSTER_NAMESPACE"]);
  assert.deepEqual(problems({ KNOCK_CLUSTER: "kubernetes", KNOCK_NODE_NAME: "Node_A", KNOCK_CLUSTER_NAMESPACE: "ns" }), ["KNOCK_NODE_NAME"]);
  assert.deepEqual(problems({ KNOCK_CLUSTER: "gossip" }), ["KNOCK_CLUSTER"]);
  assert.deepEqual(problems({ KNOCK_NODE_NAME: "node-a" }), ["KNOCK_NODE_NAME"]);
});

// --- the sync, on a fake API ---

class HttpError extends Error {
  constructor(readonly statusCode: number) {
    super(`HTTP ${statusCode}`);
  }
}

/** A fake API: what was written, and a watch the test drives. `fail` makes the next writes fail. */
class FakeKube implements KubeGrants {
  objects: unknown[] = [];
  listRv = "10";
  lists = 0;
  written: string[] = [];
  fail: (() => Error) | null = null;
  exists = new Set<string>();
  watches: { rv: string; emit: (e: WatchEvent) => void; end: (err: unknown) => void }[] = [];
  /** The next calls never answer (a half-open connection). */
  hang = false;

  list() {
    this.lists++;
    return Promise.resolve({ items: this.objects, resourceVersion: this.listRv });
  }
  watch(rv: string, _timeout: number, emit: (e: WatchEvent) => void, end: (err: unknown) => void) {
    this.watches.push({ rv, emit, end });
    if (this.hang) return new Promise<() => void>(() => undefined);
    return Promise.resolve(() => end(null));
  }
  /** Set: writes are recorded at once and answered when it resolves (a slow API). */
  gate: Promise<void> | null = null;
  private write(what: string) {
    if (this.hang) return new Promise<void>(() => undefined);
    if (this.fail) return Promise.reject(this.fail());
    this.written.push(what);
    return this.gate ?? Promise.resolve();
  }
  create(body: Record<string, unknown>) {
    const name = (body["metadata"] as { name: string }).name;
    if (!this.fail && this.exists.has(name)) return Promise.reject(new HttpError(409));
    return this.write(`create ${name}`);
  }
  patchSpec(name: string) {
    return this.write(`patch ${name}`);
  }
  remove(name: string) {
    return this.write(`delete ${name}`);
  }
  get lastWatch() {
    const w = this.watches.at(-1);
    assert.ok(w, "no watch started");
    return w;
  }
}

function syncSetup(dryRun = false) {
  const clock = new FakeClock(NOW);
  const kube = new FakeKube();
  const all = new Metrics([], { version: "test", revision: "test", backend: "dry-run" }, { tracked: () => 0, grants: () => Promise.resolve(new Map()), captureDropped: () => new Map() });
  const { registry, cluster: metrics } = all;
  const applied: string[] = [];
  const revoked: string[] = [];
  const sync = new ClusterSync({
    kube,
    nodeName: "node-b",
    namespace: "knockgate",
    doors: config.doors,
    ports: PORTS,
    clock,
    log: pino({ level: "silent" }),
    metrics,
    random: () => 0,
    dryRun,
  });
  const target: RemoteGrants = {
    open: (r: GrantRequest) => {
      const only = r.ports === undefined ? "" : ` ${r.ports.map(portName).join(",")}`;
      applied.push(`${r.door.name} ${r.family} ${r.src} ${r.openForMs === 0 ? "forever" : r.openForMs} ${r.origin}${only}`);
      return Promise.resolve("opened" as const);
    },
    close: (r: CloseRequest) => {
      revoked.push(`${r.door.name} ${r.family} ${r.src}${r.via === "signed" ? " signed" : ""}`);
      return Promise.resolve(true);
    },
  };
  const start = () => sync.start(target);
  const metric = async (name: string) => {
    const m = await registry.getSingleMetric(name)?.get();
    return Object.fromEntries((m?.values ?? []).map((v) => [JSON.stringify(v.labels), v.value]));
  };
  return { clock, kube, sync, start, applied, revoked, metric };
}

const local = { door: "SSH", address: "198.18.0.2", family: 4 as const, expiresAt: NOW + 30_000, grantedAt: NOW, how: "sequence" as const, ports: null };

test("a local grant is published; an unreachable API is retried with growing backoff until it answers", async () => {
  const { clock, kube, sync, metric } = syncSetup();
  kube.fail = () => new Error("connect ECONNREFUSED");
  sync.opened(local);
  await clock.advance(0);
  assert.deepEqual(kube.written, []);
  assert.equal(sync.check().ok, false);
  assert.equal(sync.check().advisory, true, "the API being away must not make the node unready");
  assert.match(sync.check().detail ?? "", /writing KnockGrants failed: connect ECONNREFUSED/);
  assert.doesNotMatch(sync.check().detail ?? "", /c6120002/, "the public /readyz names no object: its name encodes the address");
  await clock.advance(50 + 100 + 200 - 1);
  assert.deepEqual(kube.written, []);
  kube.fail = null;
  await clock.advance(400);
  assert.deepEqual(kube.written, ["create ssh.4.c6120002"]);
  assert.deepEqual(await metric("knockgate_cluster_grants_published_total"), { "{}": 1 });
  assert.ok(((await metric("knockgate_cluster_publish_errors_total"))["{}"] ?? 0) >= 3);
  sync.stop();
});

test("a refresh of an existing object patches it; a close deletes it; writes for one object coalesce", async () => {
  const { clock, kube, sync } = syncSetup();
  kube.exists.add("ssh.4.c6120002");
  kube.fail = () => new Error("timeout");
  sync.opened(local);
  sync.opened({ ...local, expiresAt: NOW + 40_000 });
  sync.closed(DOORS.get("SSH")!, 4, "198.18.0.2");
  sync.opened({ ...local, address: "198.18.0.3" });
  assert.equal(sync.pendingWrites, 2);
  kube.fail = null;
  await clock.advance(10_000);
  assert.deepEqual(kube.written, ["delete ssh.4.c6120002", "create ssh.4.c6120003"]);
  sync.opened(local);
  await clock.advance(0);
  assert.deepEqual(kube.written.at(-1), "patch ssh.4.c6120002");
  sync.stop();
});

test("the queue of unsent writes is bounded: beyond MAX_PENDING the oldest is given up and counted", async () => {
  const { clock, kube, sync, metric } = syncSetup();
  kube.fail = () => new Error("down");
  for (let i = 0; i <= MAX_PENDING; i++) sync.opened({ ...local, address: `198.18.${i >> 8}.${i & 255}` });
  assert.equal(sync.pendingWrites, MAX_PENDING);
  assert.deepEqual(await metric("knockgate_cluster_publish_dropped_total"), { "{}": 1 });
  await clock.advance(0);
  sync.stop();
});

test("other nodes' objects are applied with the time they have left; ours and invalid ones are not", async () => {
  const { clock, kube, sync, applied, metric, start } = syncSetup();
  kube.objects = [object({}), object({ originNode: "node-b" }, "own"), object({ door: "TELNET" }, "telnet")];
  start();
  await clock.advance(0);
  assert.deepEqual(applied, ["SSH 4 198.18.0.2 20000 node-a"]);
  assert.equal((await metric("knockgate_cluster_grants_rejected_total"))[JSON.stringify({ reason: "unknown_door" })], 1);
  assert.equal(kube.lastWatch.rv, "10");
  assert.equal(sync.check().ok, true);
  // A live event measures the lag from the origin's grant.
  clock.advance(0);
  kube.lastWatch.emit({ type: "ADDED", object: object({ address: "198.18.0.9", grantedAt: iso(NOW - 40) }, "ssh.4.c6120009", "11") });
  await clock.advance(0);
  assert.equal(applied.length, 2);
  const lag = await metric("knockgate_cluster_lag_seconds");
  assert.equal(lag[JSON.stringify({ le: 0.05 })], 1);
  assert.equal(lag[JSON.stringify({ le: 0.025 })], 0);
  assert.deepEqual(await metric("knockgate_cluster_grants_applied_total"), { "{}": 2 });
  // Part of a door's ports by a sequence: that path grants whole doors only.
  kube.lastWatch.emit({ type: "ADDED", object: object({ ports: ["22/tcp"] }, "part", "12") });
  await clock.advance(0);
  assert.equal(applied.length, 2);
  assert.equal((await metric("knockgate_cluster_grants_rejected_total"))[JSON.stringify({ reason: "bad_ports" })], 1);
  sync.stop();
});

const WEB = DOORS.get("WEB")!;
const signedObject = (spec: Record<string, unknown>, name: string, rv: string) =>
  object({ door: "WEB", how: "signed", ports: ["443/udp"], expiresAt: iso(NOW + 90_000), ...spec }, name, rv);

test("a signed grant is published as one object per port with its own expiry; a close deletes the sequence grant's object only", async () => {
  const { clock, kube, sync } = syncSetup();
  sync.opened({ door: "WEB", address: "198.18.0.2", family: 4, expiresAt: NOW + 90_000, grantedAt: NOW, how: "signed", ports: ["80/tcp", "443/udp"] });
  sync.opened({ ...local, door: "WEB" });
  await clock.advance(0);
  assert.deepEqual(kube.written, ["create web.4.c6120002.80-tcp", "create web.4.c6120002.443-udp", "create web.4.c6120002"]);
  sync.closed(WEB, 4, "198.18.0.2");
  await clock.advance(0);
  assert.deepEqual(kube.written.slice(3), ["delete web.4.c6120002"], "signed grants end by their time, never by a close sequence");
  sync.stop();
});

test("other nodes' signed objects are applied to their ports only; deleted early they are revoked, at their expiry left to the kernel", async () => {
  const { clock, kube, sync, applied, revoked, start } = syncSetup();
  kube.objects = [signedObject({}, "web.4.c6120002.443-udp", "1")];
  start();
  await clock.advance(0);
  assert.deepEqual(applied, ["WEB 4 198.18.0.2 90000 node-a 443/udp"]);
  kube.lastWatch.emit({ type: "ADDED", object: signedObject({ address: "198.18.0.3", expiresAt: iso(NOW + 10_000) }, "web.4.c6120003.443-udp", "2") });
  await clock.advance(0);
  assert.equal(applied.length, 2);
  // A close sequence elsewhere: deleted long before its time.
  kube.lastWatch.emit({ type: "DELETED", object: signedObject({}, "web.4.c6120002.443-udp", "3") });
  await clock.advance(0);
  assert.deepEqual(revoked, ["WEB 4 198.18.0.2 signed"]);
  // Its origin collecting it once its port's time is up (its clock a little ahead of ours): the
  // address may hold other ports for longer, which a revocation would take with it.
  await clock.advance(9_000);
  kube.lastWatch.emit({ type: "DELETED", object: signedObject({ address: "198.18.0.3" }, "web.4.c6120003.443-udp", "4") });
  await clock.advance(0);
  assert.deepEqual(revoked, ["WEB 4 198.18.0.2 signed"]);
  sync.stop();
});

test("a deleted object is revoked here; the watch resumes from the last resourceVersion, and re-lists after 410 Gone", async () => {
  const { clock, kube, sync, revoked, metric, start } = syncSetup();
  kube.objects = [object({})];
  start();
  await clock.advance(0);
  kube.lastWatch.emit({ type: "DELETED", object: object({}, "ssh.4.c6120002", "15") });
  await clock.advance(0);
  assert.deepEqual(revoked, ["SSH 4 198.18.0.2"]);
  assert.deepEqual(await metric("knockgate_cluster_grants_revoked_total"), { "{}": 1 });
  kube.lastWatch.emit({ type: "BOOKMARK", object: { metadata: { resourceVersion: "20" } } });
  kube.lastWatch.end(null);
  await clock.advance(0);
  assert.equal(kube.lastWatch.rv, "20", "a watch the server closed goes on where it stopped");
  assert.equal(kube.lists, 1);
  kube.lastWatch.end(new Error("socket hang up"));
  await clock.advance(0);
  assert.equal(sync.check().ok, false);
  await clock.advance(10_000);
  assert.equal(kube.lastWatch.rv, "20");
  // 410: the resourceVersion is gone; a list brings back what happened meanwhile.
  kube.objects = [object({ address: "198.18.0.7" }, "ssh.4.c6120007")];
  kube.listRv = "99";
  kube.lastWatch.emit({ type: "ERROR", object: { kind: "Status", code: 410 } });
  kube.lastWatch.end(null);
  await clock.advance(0);
  assert.equal(kube.lists, 2);
  assert.equal(kube.lastWatch.rv, "99");
  assert.equal((await metric("knockgate_cluster_watch_restarts_total"))["{}"], 3);
  sync.stop();
});

test("a write or a watch that never answers is given up after a few seconds and tried again", async () => {
  const { clock, kube, sync, applied, start } = syncSetup();
  kube.hang = true;
  start();
  sync.opened(local);
  await clock.advance(4_999);
  assert.equal(kube.watches.length, 1);
  assert.deepEqual(kube.written, []);
  kube.hang = false;
  await clock.advance(10_000);
  assert.deepEqual(kube.written, ["create ssh.4.c6120002"]);
  assert.equal(kube.watches.length, 2);
  assert.equal(sync.check().ok, true);
  // The abandoned first watch is not listened to.
  kube.watches[0]?.emit({ type: "ADDED", object: object({}) });
  kube.lastWatch.emit({ type: "ADDED", object: object({ address: "198.18.0.5" }, "ssh.4.c6120005") });
  await clock.advance(0);
  assert.deepEqual(applied.map((line) => line.split(" ")[2]), ["198.18.0.5"]);
  sync.stop();
});

test("a write waiting past its grant's expiry, or for an object deleted elsewhere meanwhile, is not sent", async () => {
  const { clock, kube, sync, start } = syncSetup();
  kube.objects = [object({ address: "198.18.0.4" }, "ssh.4.c6120004")];
  start();
  await clock.advance(0);
  kube.fail = () => new Error("down");
  sync.opened({ ...local, expiresAt: NOW + 2_000 });
  sync.opened({ ...local, address: "198.18.0.4" });
  kube.lastWatch.emit({ type: "DELETED", object: object({ address: "198.18.0.4" }, "ssh.4.c6120004", "30") });
  await clock.advance(0);
  assert.equal(sync.pendingWrites, 1);
  await clock.advance(2_000);
  kube.fail = null;
  await clock.advance(10_000);
  assert.deepEqual(kube.written, []);
  assert.equal(sync.pendingWrites, 0);
  assert.equal(sync.check().ok, true, "no write is failing any more");
  sync.stop();
});

test("a dry run applies other nodes' grants but writes nothing, not even to collect", async () => {
  const { clock, kube, sync, applied, start } = syncSetup(true);
  kube.objects = [object({}), object({ originNode: "node-b", expiresAt: iso(NOW + 1000) }, "own")];
  start();
  sync.opened(local);
  sync.closed(DOORS.get("SSH")!, 4, "198.18.0.2");
  await clock.advance(ORPHAN_AFTER_MS * 2);
  assert.equal(applied.length, 1);
  assert.deepEqual(kube.written, []);
  sync.stop();
});

test("a re-list revokes objects deleted while the watch was down", async () => {
  const { clock, kube, sync, revoked, start } = syncSetup();
  kube.objects = [object({})];
  start();
  await clock.advance(0);
  kube.objects = [];
  kube.lastWatch.emit({ type: "ERROR", object: { code: 410 } });
  kube.lastWatch.end(null);
  await clock.advance(0);
  assert.deepEqual(revoked, ["SSH 4 198.18.0.2"]);
  sync.stop();
});

test("expired objects are collected: our own at once, other nodes' after ORPHAN_AFTER_MS", async () => {
  const { clock, kube, sync, start } = syncSetup();
  kube.objects = [object({ originNode: "node-b", expiresAt: iso(NOW + 1000) }, "own"), object({ expiresAt: iso(NOW + 1000) }, "other")];
  start();
  await clock.advance(5_000);
  assert.deepEqual(kube.written, ["delete own"]);
  await clock.advance(ORPHAN_AFTER_MS);
  assert.deepEqual(kube.written, ["delete own", "delete other"]);
  sync.stop();
  assert.equal(clock.pending, 0, "a stopped sync leaves no timer");
});

test("401 and 403 are retried (an API server that just started refuses until its RBAC caches fill); a refused object is dropped and the next write that works clears the check", async () => {
  const { clock, kube, sync, start } = syncSetup();
  start();
  kube.fail = () => new HttpError(403);
  sync.opened(local);
  await clock.advance(1000);
  assert.deepEqual(kube.written, []);
  kube.fail = null;
  await clock.advance(10_000);
  assert.deepEqual(kube.written, ["create ssh.4.c6120002"], "the 403 was retried");
  assert.equal(sync.check().ok, true);
  kube.fail = () => new HttpError(422);
  sync.opened({ ...local, address: "198.18.0.3" });
  await clock.advance(0);
  assert.match(sync.check().detail ?? "", /HTTP 422/);
  kube.fail = null;
  await clock.advance(10_000);
  assert.deepEqual(kube.written, ["create ssh.4.c6120002"], "the refused object is not tried again");
  sync.opened({ ...local, address: "198.18.0.4" });
  await clock.advance(0);
  assert.equal(sync.check().ok, true);
  sync.stop();
});

test("a newer write of an object that arrives while the older is in flight still goes out", async () => {
  const { clock, kube, sync } = syncSetup();
  let answer = () => undefined as void;
  kube.gate = new Promise<void>((resolve) => (answer = resolve));
  sync.opened(local);
  await clock.advance(0);
  assert.deepEqual(kube.written, ["create ssh.4.c6120002"]);
  kube.exists.add("ssh.4.c6120002");
  sync.opened({ ...local, expiresAt: NOW + 40_000 });
  kube.gate = null;
  answer();
  await clock.advance(0);
  assert.deepEqual(kube.written, ["create ssh.4.c6120002", "patch ssh.4.c6120002"], "the refresh was not taken for the write that finished");
  assert.equal(sync.pendingWrites, 0);
  sync.stop();
});
