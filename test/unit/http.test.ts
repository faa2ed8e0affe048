/** The HTTP adapter: which /metrics set a request gets, what /readyz shows anyone, and the bounds on connections. */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { readFileSync } from "node:fs";
import { get, type Server } from "node:http";
import { connect, type AddressInfo, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { pino } from "pino";
import { Counter, Gauge, Registry } from "prom-client";
import { startHttp, type Check } from "../../src/adapters/http.js";
import { systemClock } from "../../src/adapters/clock.js";
import { EVICT_AFTER_MS, HARD_CONNECTION_LIMIT, HTTP_TIMEOUTS, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_PEER, NODE_CONNECTION_CAP } from "../../src/adapters/http-connections.js";
import { METRICS } from "../../src/adapters/metrics/table.js";
import type { ClusterLink } from "../../src/app/daemon.js";
import { ProtectionService } from "../../src/app/protection.js";
import { sharedRead } from "../../src/app/shared-read.js";
import type { EffectiveDoor } from "../../src/core/docker/desired.js";
import { FirewallError } from "../../src/core/errors.js";
import { encodeSpa, spaPlaintext } from "../../src/core/spa/encode.js";
import { SpaType } from "../../src/core/spa/message.js";
import { CLIENT, daemonHarness } from "../support/daemon-harness.js";
import { FakeClock } from "../support/fake-clock.js";

const quiet = pino({ level: "silent" });

function registries() {
  const publicRegistry = new Registry();
  const preGrant = new Registry();
  new Counter({ name: "public_total", help: "moves after a grant", registers: [publicRegistry] }).inc(3);
  new Counter({ name: "secret_total", help: "moves on every knock", registers: [preGrant] }).inc(7);
  return { public: publicRegistry, full: Registry.merge([publicRegistry, preGrant]) };
}

async function serve(token: string | null): Promise<{ server: Server; get: (headers?: Record<string, string>) => Promise<{ status: number; body: string }> }> {
  const server = await startHttp({ host: "127.0.0.1", port: 0 }, { readiness: () => Promise.resolve([]), metrics: { ...registries(), token } }, systemClock, quiet);
  const { port } = server.address() as AddressInfo;
  const get = async (headers: Record<string, string> = {}) => {
    const res = await fetch(`http://127.0.0.1:${port}/metrics`, { headers });
    return { status: res.status, body: await res.text() };
  };
  return { server, get };
}

describe("/metrics with a token configured", () => {
  let s: Awaited<ReturnType<typeof serve>>;
  before(async () => (s = await serve("right-token")));
  after(() => s.server.close());

  test("no Authorization: the public set only", async () => {
    const r = await s.get();
    assert.equal(r.status, 200);
    assert.match(r.body, /public_total 3/);
    assert.doesNotMatch(r.body, /secret_total/);
  });

  test("the right bearer token: the full set", async () => {
    const r = await s.get({ authorization: "Bearer right-token" });
    assert.equal(r.status, 200);
    assert.match(r.body, /public_total 3/);
    assert.match(r.body, /secret_total 7/);
  });

  test("a wrong token, a prefix of it, or another scheme: 401, nothing served", async () => {
    for (const authorization of ["Bearer wrong", "Bearer right", "Bearer right-token-and-more", "Basic cmlnaHQtdG9rZW4="]) {
      const r = await s.get({ authorization });
      assert.equal(r.status, 401, authorization);
      assert.doesNotMatch(r.body, /_total/);
    }
  });

  test("the server bounds slow requests and idle connections", () => {
    assert.deepEqual([s.server.headersTimeout, s.server.requestTimeout, s.server.keepAliveTimeout], [HTTP_TIMEOUTS.headersTimeout, HTTP_TIMEOUTS.requestTimeout, HTTP_TIMEOUTS.keepAliveTimeout]);
    assert.equal(s.server.maxConnections, NODE_CONNECTION_CAP);
  });
});

test("/metrics without a token configured: the public set, and 401 for any token offered", async () => {
  const s = await serve(null);
  try {
    assert.doesNotMatch((await s.get()).body, /secret_total/);
    assert.equal((await s.get({ authorization: "Bearer anything" })).status, 401);
  } finally {
    s.server.close();
  }
});

describe("sharedRead", () => {
  test("400 requests at once cost one read; within the TTL still one; after it, one more", async () => {
    const clock = new FakeClock();
    let reads = 0;
    const read = sharedRead(() => Promise.resolve(++reads), 1000, clock);
    const results = await Promise.all(Array.from({ length: 400 }, () => read()));
    assert.deepEqual(new Set(results), new Set([1]));
    assert.equal(reads, 1);
    await clock.advance(999);
    assert.equal(await read(), 1);
    await clock.advance(1);
    assert.equal(await read(), 2);
    assert.equal(reads, 2);
  });

  test("invalidate makes the next call read again", async () => {
    const clock = new FakeClock();
    let reads = 0;
    const read = sharedRead(() => Promise.resolve(++reads), 1000, clock);
    await read();
    read.invalidate();
    assert.equal(await read(), 2);
  });
});

test("/readyz: an advisory check that fails is shown but does not make the answer 503", async () => {
  let checks = [
    { name: "firewall", ok: true },
    { name: "cluster", ok: false, detail: "watch of KnockGrants failed", advisory: true },
  ];
  const server = await startHttp({ host: "127.0.0.1", port: 0 }, { readiness: () => Promise.resolve(checks), metrics: { ...registries(), token: null } }, systemClock, quiet);
  const { port } = server.address() as AddressInfo;
  try {
    const res = await fetch(`http://127.0.0.1:${port}/readyz`);
    const body = (await res.json()) as { ready: boolean; reasons: string[]; checks: unknown[] };
    assert.equal(res.status, 200);
    assert.deepEqual([body.ready, body.reasons, body.checks.length], [true, [], 2]);
    checks = [{ name: "firewall", ok: false, detail: "chain missing", advisory: false }, ...checks.slice(1)];
    const failing = await fetch(`http://127.0.0.1:${port}/readyz`);
    assert.equal(failing.status, 503);
    assert.deepEqual(((await failing.json()) as { reasons: string[] }).reasons, ["firewall: chain missing"]);
  } finally {
    server.close();
  }
});

test("/readyz names what is wrong, never who: addresses and KnockGrant names in a check's message are not shown; a failure to read the checks is logged and not shown", async () => {
  const secrets = ["198.18.0.2", "fd00:198:18::2", "2001:db8:0:0:1:2:3:4", "ssh.4.c6120002", "web.6.fd000198001800000000000000000002.443-udp"];
  let checks = [
    { name: "grants", ok: false, detail: "grant failed: exit code 1: ipset add knockgate-ssh-4 198.18.0.2 timeout 30: ipset v7.11: Hash is full, cannot add more elements" },
    { name: "spa", ok: false, detail: "recording failed: nft add element inet knockgate grants6 { fd00:198:18::2 . 22 timeout 30s }; also 2001:db8:0:0:1:2:3:4" },
    { name: "cluster", ok: false, advisory: true, detail: 'knockgrants.knockgate.io "ssh.4.c6120002" and "web.6.fd000198001800000000000000000002.443-udp" already exist' },
    { name: "docker", ok: true, detail: "event stream down since 2026-12-06T10:00:00.000Z; the last known ports stay protected" },
  ];
  const server = await startHttp({ host: "127.0.0.1", port: 0 }, { readiness: () => Promise.resolve(checks), metrics: { ...registries(), token: null } }, systemClock, quiet);
  const { port } = server.address() as AddressInfo;
  try {
    const text = await (await fetch(`http://127.0.0.1:${port}/readyz`)).text();
    for (const secret of secrets) assert.ok(!text.includes(secret), `${secret} in ${text}`);
    assert.match(text, /ipset add knockgate-ssh-4 <address> timeout 30: ipset v7\.11: Hash is full/, "what is wrong stays");
    assert.match(text, /<knockgrant>\\" and \\"<knockgrant>\\" already exist/);
    assert.match(text, /since 2026-12-06T10:00:00\.000Z/, "times are not addresses");
    checks = [];
    const lines: Record<string, unknown>[] = [];
    const log = pino({}, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
    const error = "exit code 1: nft -j list set inet knockgate spa_SSH_replay: netlink: Error: Could not process rule";
    const failing = await startHttp({ host: "127.0.0.1", port: 0 }, { readiness: () => Promise.reject(new Error(error)), metrics: { ...registries(), token: null } }, systemClock, log);
    try {
      for (let probe = 0; probe < 3; probe++) {
        const res = await fetch(`http://127.0.0.1:${(failing.address() as AddressInfo).port}/readyz`);
        const body = await res.text();
        assert.equal(res.status, 503);
        assert.match(body, /reading readiness failed: the daemon's log has the error \(event readiness_failed\)/);
        assert.doesNotMatch(body, /nft|spa_SSH/, "the error stays in the log");
      }
      // Once while it stays the same: probes come every few seconds.
      assert.deepEqual(
        lines.map((l) => [l["event"], l["err"]]),
        [["readiness_failed", error]],
      );
    } finally {
      failing.close();
    }
  } finally {
    server.close();
  }
});

test("/metrics whose collector fails answers 500 saying what failed; the error, which may quote a command, goes to the log only", async () => {
  const lines: Record<string, unknown>[] = [];
  const log = pino({}, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  const failing = new Registry();
  const error = "exit code 1: ipset list knockgate-ssh-4: ipset v7.11: 198.18.0.2 timeout 30 is odd";
  new Gauge({ name: "grants", help: "reads the kernel", registers: [failing], collect: () => Promise.reject(new Error(error)) });
  const server = await startHttp({ host: "127.0.0.1", port: 0 }, { readiness: () => Promise.resolve([]), metrics: { public: failing, full: failing, token: null } }, systemClock, log);
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`);
    const body = await res.text();
    assert.equal(res.status, 500);
    assert.match(body, /^reading the metrics failed/);
    assert.doesNotMatch(body, /ipset|198\.18/);
    assert.deepEqual(
      lines.map((l) => [l["event"], l["err"]]),
      [["metrics_failed", error]],
    );
  } finally {
    server.close();
  }
});

test("the public /metrics labels its series by door, reason, operation, hook and build only: never by address or object", () => {
  const allowed = new Set(["door", "reason", "operation", "hook", "version", "revision", "backend", "nodejs"]);
  const publicLabels = Object.values(METRICS).filter((m) => m.set === "public").flatMap((m) => m.labels.map((l) => `${m.name}{${l}}`));
  assert.deepEqual(publicLabels.filter((l) => !allowed.has(l.slice(l.indexOf("{") + 1, -1))), []);
});

/**
 * A server on a fake clock, and connections to it from chosen loopback addresses (Linux answers on
 * all of 127.0.0.0/8), each peer's in the order opened.
 */
async function connectionLab(readiness: () => Promise<Check[]> = () => Promise.resolve([])) {
  const clock = new FakeClock();
  const server = await startHttp({ host: "127.0.0.1", port: 0 }, { readiness, metrics: { ...registries(), token: null } }, clock, quiet);
  const { port } = server.address() as AddressInfo;
  const byPeer = new Map<string, Socket[]>();
  const open = (localAddress: string) =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port, localAddress }, () => resolve(s));
      s.on("error", reject);
      byPeer.set(localAddress, [...(byPeer.get(localAddress) ?? []), s]);
    });
  const count = () => new Promise<number>((resolve) => server.getConnections((_, n) => resolve(n)));
  /** A client's connect can complete before the server has accepted, and a close before it has seen it: waits until it has `n`. */
  const holds = async (n: number) => {
    for (let turn = 0; turn < 100 && (await count()) !== n; turn++) await clock.settle();
    assert.equal(await count(), n, "connections the server holds");
  };
  const closed = (sockets: readonly Socket[]) => sockets.map((s) => s.readyState === "closed" || s.readableEnded);
  const closedSoon = (s: Socket) => (s.closed ? Promise.resolve() : new Promise((resolve) => s.once("close", resolve)));
  /** Until all of `sockets` are closed, 2 s at most: the server accepts a burst at its own pace. */
  const closedWithin2s = (sockets: readonly Socket[]) => Promise.race([Promise.all(sockets.map(closedSoon)), new Promise((resolve) => setTimeout(resolve, 2000))]);
  const end = () => {
    for (const s of [...byPeer.values()].flat()) s.destroy();
    server.close();
  };
  return { clock, port, byPeer, open, holds, closed, closedSoon, closedWithin2s, end };
}

test("connections over a peer's share are closed idle-longest first, on the server's clock; another peer keeps its own", async () => {
  const { clock, byPeer, open, holds, closed, closedSoon, end } = await connectionLab();
  try {
    for (let i = 0; i < MAX_CONNECTIONS_PER_PEER + 8; i++) await open("127.0.0.2");
    for (let i = 0; i < 4; i++) await open("127.0.0.3");
    const hog = byPeer.get("127.0.0.2") ?? [];
    await holds(MAX_CONNECTIONS_PER_PEER + 12);
    assert.equal(clock.pending, 1, "all are too new to close: one pass is due once the oldest may be");
    await clock.advance(EVICT_AFTER_MS);
    await Promise.all(hog.slice(0, 8).map(closedSoon));
    assert.deepEqual(closed(hog), [...Array<boolean>(8).fill(true), ...Array<boolean>(MAX_CONNECTIONS_PER_PEER).fill(false)], "the hog's oldest eight closed");
    assert.deepEqual(closed(byPeer.get("127.0.0.3") ?? []), [false, false, false, false]);
    assert.equal(clock.pending, 0, "down to the limits: no further pass");
  } finally {
    end();
  }
});

test("over the overall limit from many peers, each within its share, the most crowded give way, oldest first, and a probe from a new address is answered", async () => {
  const { clock, port, byPeer, open, holds, closed, end } = await connectionLab();
  // Half a share each, from more peers than the limit has shares: 80 connections, no peer over its own.
  const each = MAX_CONNECTIONS_PER_PEER / 2;
  const peers = Array.from({ length: MAX_CONNECTIONS / each + 2 }, (_, i) => `127.0.0.${10 + i}`);
  try {
    for (let i = 0; i < each; i++) for (const peer of peers) await open(peer);
    await holds(peers.length * each);
    await clock.advance(EVICT_AFTER_MS);
    await holds(MAX_CONNECTIONS);
    assert.equal(clock.pending, 0, "down to the limit: no further pass");
    const kept = peers.map((peer) => closed(byPeer.get(peer) ?? []).filter((c) => !c).length);
    assert.ok(Math.max(...kept) - Math.min(...kept) <= 1, `spread over the crowded peers: ${kept.join(" ")}`);
    for (const peer of peers) {
      const states = closed(byPeer.get(peer) ?? []);
      assert.deepEqual(states, [...states].sort().reverse(), `${peer}: its oldest closed first`);
    }
    const probe = await new Promise<{ status: number | undefined; body: string }>((resolve, reject) => {
      get({ host: "127.0.0.1", port, path: "/healthz", localAddress: "127.0.0.200", agent: false }, (res) => {
        let body = "";
        res.setEncoding("utf8").on("data", (d: string) => (body += d));
        res.on("end", () => resolve({ status: res.statusCode, body }));
      }).on("error", reject);
    });
    assert.deepEqual(probe, { status: 200, body: "ok\n" });
  } finally {
    end();
  }
});

test("a burst past the hard limit within the grace closes the idle longest at once, so a probe right after it, from the same address, is answered", async () => {
  const { clock, port, byPeer, open, holds, closed, closedWithin2s, end } = await connectionLab();
  try {
    // All on a clock that never moves: every connection is within its grace.
    const burst = HARD_CONNECTION_LIMIT + 40;
    const sockets = await Promise.all(Array.from({ length: burst }, () => open("127.0.0.2")));
    await closedWithin2s(sockets.slice(0, 40));
    await holds(HARD_CONNECTION_LIMIT);
    assert.deepEqual(closed(byPeer.get("127.0.0.2") ?? []), [...Array<boolean>(40).fill(true), ...Array<boolean>(HARD_CONNECTION_LIMIT).fill(false)], "the oldest forty closed");
    assert.equal(await healthz(port, "127.0.0.2"), 200);
    assert.equal(clock.pending, 1, "the pass that brings the rest down to the limits is still due");
  } finally {
    end();
  }
});

/** Loopback address number `i` (up to 65,280 of them, Linux answers on all of 127.0.0.0/8). */
const loopbackPeer = (i: number) => `127.0.${1 + (i >> 8)}.${i & 255}`;

/** A /readyz whose answer waits for `release`; `asked()`: how many requests are waiting on it. */
function heldReadiness() {
  let release = () => undefined as void;
  const held = new Promise<Check[]>((resolve) => (release = () => resolve([])));
  let asked = 0;
  return { readiness: () => (asked++, held), asked: () => asked, release: () => release() };
}

/** A /healthz probe from `localAddress`, which sends its request as soon as it is connected: its status. */
function healthz(port: number, localAddress: string): Promise<number | undefined> {
  return new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path: "/healthz", localAddress, agent: false }, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    }).on("error", reject);
  });
}

test("a probe that connected just before a burst past the hard limit, from many addresses, is answered: what it sent is read before anyone is closed", async () => {
  const { open, holds, closed, closedWithin2s, end, port } = await connectionLab();
  try {
    const probe = healthz(port, "127.0.0.200");
    const burst = await Promise.all(Array.from({ length: HARD_CONNECTION_LIMIT + 44 }, (_, i) => open(loopbackPeer(i))));
    assert.equal(await probe, 200);
    // The server went past the limit: the burst's oldest 44 were closed.
    await closedWithin2s(burst.slice(0, 44));
    await holds(HARD_CONNECTION_LIMIT);
    assert.deepEqual(closed(burst), [...Array<boolean>(44).fill(true), ...Array<boolean>(HARD_CONNECTION_LIMIT).fill(false)]);
  } finally {
    end();
  }
});

test("with every connection up to the hard limit in a request, a probe is still let in and answered", async () => {
  const { readiness, asked, release } = heldReadiness();
  const { clock, port, open, holds, end } = await connectionLab(readiness);
  try {
    for (let i = 0; i < HARD_CONNECTION_LIMIT; i++) (await open(loopbackPeer(i))).write("GET /readyz HTTP/1.1\r\nhost: knockgate\r\n\r\n");
    while (asked() < HARD_CONNECTION_LIMIT) await clock.settle();
    await holds(HARD_CONNECTION_LIMIT);
    assert.equal(await healthz(port, "127.0.9.1"), 200);
    release();
  } finally {
    end();
  }
});

test("over the overall limit, when the most crowded peer's connections are all in a request, the longest-idle connections elsewhere give way and its requests are answered", async () => {
  const { readiness, asked, release } = heldReadiness();
  const { clock, byPeer, open, holds, closed, end } = await connectionLab(readiness);
  const busy = "127.0.0.9";
  const idle = Array.from({ length: 5 }, (_, i) => `127.0.0.${10 + i}`);
  try {
    for (let i = 0; i < MAX_CONNECTIONS_PER_PEER; i++) (await open(busy)).write("GET /readyz HTTP/1.1\r\nhost: knockgate\r\n\r\n");
    while (asked() < MAX_CONNECTIONS_PER_PEER) await clock.settle();
    // 60 idle connections, 12 from each of five peers: 76 in all.
    for (let i = 0; i < 12; i++) for (const peer of idle) await open(peer);
    await holds(MAX_CONNECTIONS_PER_PEER + 60);
    await clock.advance(EVICT_AFTER_MS);
    await holds(MAX_CONNECTIONS);
    assert.deepEqual(closed(byPeer.get(busy) ?? []), Array<boolean>(MAX_CONNECTIONS_PER_PEER).fill(false), "requests in progress are never closed");
    const closedPerRound = Array.from({ length: 12 }, (_, i) => idle.filter((peer) => closed(byPeer.get(peer) ?? [])[i]).length);
    assert.deepEqual(closedPerRound, [5, 5, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0], "the twelve idle longest, whoever holds them");
    const answers = (byPeer.get(busy) ?? []).map((s) => new Promise<string>((resolve) => s.setEncoding("utf8").once("data", resolve)));
    release();
    for (const answer of await Promise.all(answers)) assert.match(answer, /^HTTP\/1\.1 200 /);
  } finally {
    end();
  }
});

test("the public /readyz of a daemon whose grants, replay records and cluster writes fail shows doors, ports and what is wrong, never who, what knocks or what signs", async () => {
  const fixture = JSON.parse(readFileSync(new URL("../../../test/fixtures/spa/vectors.json", import.meta.url), "utf8")) as { keyBase64: string; hmacKeyBase64: string };
  const hookSecret = "/usr/local/bin/notify-ops --token hook-secret-42";
  const objectName = `ssh.4.${Buffer.from([198, 18, 0, 2]).toString("hex")}`;
  const cluster: ClusterLink = {
    opened: () => undefined,
    closed: () => undefined,
    // cluster-sync.ts words a failed write so, quoting the API server.
    check: () => ({ name: "cluster", ok: false, advisory: true, detail: `writing KnockGrants failed: knockgrants.knockgate.io "${objectName}" already exists` }),
  };
  const h = daemonHarness({
    env: {
      KNOCK_DOOR_SSH_SEQUENCE: "7101,7202,7303",
      KNOCK_DOOR_SSH_PORTS: "22/tcp",
      KNOCK_DOOR_SSH_ON_OPEN: `${hookSecret} %IP%`,
      KNOCK_DOOR_WEB_SPA_KEY: fixture.keyBase64,
      KNOCK_DOOR_WEB_SPA_HMAC_KEY: fixture.hmacKeyBase64,
      KNOCK_DOOR_WEB_PORTS: "8443/tcp",
    },
    firewallOf: (f) => {
      // As the ipset backend words a refused add: its command line, with the client's address.
      f.grant = ({ src }) => Promise.reject(new FirewallError("exit code 1", ["ipset", "add", "knockgate-ssh-4", src, "timeout", "30"], "ipset v7.11: Hash is full, cannot add more elements"));
      f.replay.grant = ({ door, element, ttlS }) => Promise.reject(new FirewallError("exit code 1", ["ipset", "add", `knockgate-spa-${door}`, element, "timeout", String(ttlS)], "ipset v7.11: Kernel error received: Cannot allocate memory"));
      return f;
    },
    overrides: { cluster },
  });
  const protection = new ProtectionService({ config: h.config, log: pino({ level: "silent" }), clock: h.clock });
  // A signed door's daemon waits for the next wall-clock second before it captures: time moves until it is up.
  let started = false;
  const starting = h.daemon.start().finally(() => (started = true));
  while (!started) await h.clock.advance(50);
  await starting;
  await h.knockAll([7101, 7202, 7303]);
  const plaintext = spaPlaintext({ rand: "1234567890123456", username: "alice", timestamp: Math.floor(h.clock.wallNow() / 1000), type: SpaType.access, message: `${CLIENT},tcp/8443` });
  await h.send(Buffer.from(encodeSpa(plaintext, { encryptionKey: Buffer.from(fixture.keyBase64, "base64"), hmacKey: Buffer.from(fixture.hmacKeyBase64, "base64"), hmacDigest: "sha256" }, randomBytes(8)), "latin1"));
  const server = await startHttp(
    { host: "127.0.0.1", port: 0 },
    { readiness: () => h.daemon.readiness(), details: () => ({ doors: protection.effective() }), metrics: { ...registries(), token: null } },
    systemClock,
    quiet,
  );
  try {
    const res = await fetch(`http://127.0.0.1:${(server.address() as AddressInfo).port}/readyz`);
    const text = await res.text();
    assert.equal(res.status, 503);
    const body = JSON.parse(text) as { checks: Check[]; doors: EffectiveDoor[] };
    assert.deepEqual(Object.keys(body).sort(), ["checks", "doors", "ready", "reasons"]);
    assert.deepEqual(body.doors.map((d) => d.door), ["SSH", "WEB"], "door names");
    assert.deepEqual(body.doors.map((d) => d.ports.map((p) => p.port)), [["22/tcp"], ["8443/tcp"]], "their protected ports");
    assert.deepEqual(body.checks.filter((c) => !c.ok).map((c) => c.name), ["grants", "spa_replay", "cluster"], "what is wrong");
    const never = [CLIENT, "7101", "7202", "7303", "notify-ops", "hook-secret", "alice", fixture.keyBase64, fixture.hmacKeyBase64, objectName];
    assert.deepEqual(never.filter((s) => text.includes(s)), []);
  } finally {
    server.close();
    await h.daemon.stop();
  }
});
