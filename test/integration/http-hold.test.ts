/**
 * /healthz while someone holds connections to the HTTP port (issue 22, item 3): a liveness probe
 * that cannot connect restarts the pod, so whoever holds idle connections, trickles headers or
 * keeps reconnecting must not keep the probe out. The HTTP adapter alone on loopback, the holder
 * in a process of its own (so its sockets do not share the server's event loop); counts and time
 * are bounded, and every socket is closed when a test ends. Figures go to the test's diagnostics.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { get } from "node:http";
import type { AddressInfo } from "node:net";
import { createInterface } from "node:readline";
import { after, before, describe, test, type TestContext } from "node:test";
import type { Server } from "node:http";
import { pino } from "pino";
import { Registry } from "prom-client";
import { startHttp } from "../../src/adapters/http.js";
import { systemClock } from "../../src/adapters/clock.js";

/** Probes per scenario, one every PROBE_EVERY_MS, each given PROBE_TIMEOUT_MS (a kubelet's default is 1 s). */
const PROBES = 20;
const PROBE_EVERY_MS = 100;
const PROBE_TIMEOUT_MS = 1000;

/**
 * The holder: opens `count` connections to `port` and holds them, idle or sending a header line
 * now and then without ever ending the request ("slow"); with `reconnectMs`, one that the server
 * closes is opened again after that long. Prints "ready" once every connection got an answer to its
 * connect (accepted or refused), and on stdin's end prints what happened and exits.
 */
const HOLDER = `
const net = require("node:net");
const [port, count, mode, reconnectMs] = process.argv.slice(1).map((a, i) => (i === 2 ? a : Number(a)));
const stats = { opened: 0, connected: 0, closedByServer: 0, errors: 0 };
const sockets = new Set();
let stopping = false;
let settled = 0;
const open = (first) => {
  stats.opened++;
  const s = net.connect(port, "127.0.0.1");
  sockets.add(s);
  let counted = false;
  const settle = () => { if (first && !counted) { counted = true; if (++settled === count) console.log("ready"); } };
  s.on("connect", () => {
    stats.connected++;
    settle();
    if (mode === "slow") {
      s.write("GET /healthz HTTP/1.1\\r\\nHost: x\\r\\n");
      const t = setInterval(() => s.writable ? s.write("X-Slow: 1\\r\\n") : clearInterval(t), 500);
      s.on("close", () => clearInterval(t));
    }
  });
  s.on("error", () => { stats.errors++; settle(); });
  s.on("close", () => {
    sockets.delete(s);
    settle();
    if (stopping) return;
    stats.closedByServer++;
    if (reconnectMs > 0) setTimeout(() => !stopping && open(false), reconnectMs);
  });
};
for (let i = 0; i < count; i++) open(true);
process.stdin.resume();
process.stdin.on("end", () => {
  stopping = true;
  stats.heldAtEnd = sockets.size;
  for (const s of sockets) s.destroy();
  console.log(JSON.stringify(stats));
  process.exit(0);
});
`;

interface HolderStats {
  opened: number;
  connected: number;
  closedByServer: number;
  errors: number;
  heldAtEnd: number;
}

class Holder {
  private readonly child: ChildProcess;
  private readonly lines: AsyncIterator<string>;

  constructor(port: number, count: number, mode: "idle" | "slow", reconnectMs: number) {
    this.child = spawn(process.execPath, ["-e", HOLDER, String(port), String(count), mode, String(reconnectMs)], { stdio: ["pipe", "pipe", "inherit"] });
    this.lines = createInterface({ input: this.child.stdout! })[Symbol.asyncIterator]();
  }

  async ready(): Promise<void> {
    const line = await this.lines.next();
    assert.equal(line.value, "ready", "the holder opened its connections");
  }

  /** Closes every held socket and returns what the holder saw. */
  async stop(): Promise<HolderStats> {
    this.child.stdin!.end();
    const line = await this.lines.next();
    await once(this.child, "exit");
    return JSON.parse(String(line.value)) as HolderStats;
  }

  kill(): void {
    if (this.child.exitCode === null) this.child.kill("SIGKILL");
  }
}

/** One liveness probe on a connection of its own: its status, or why it failed, and how long it took. */
function probe(port: number): Promise<{ ok: boolean; ms: number; why?: string }> {
  const started = performance.now();
  return new Promise((resolve) => {
    const done = (ok: boolean, why?: string) => resolve({ ok, ms: Math.round(performance.now() - started), ...(why === undefined ? {} : { why }) });
    const req = get({ host: "127.0.0.1", port, path: "/healthz", agent: false, timeout: PROBE_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on("end", () => done(res.statusCode === 200, `status ${res.statusCode}`));
    });
    req.on("timeout", () => req.destroy(new Error(`no answer in ${PROBE_TIMEOUT_MS} ms`)));
    req.on("error", (err) => done(false, err.message));
  });
}

let server: Server;
let port = 0;
const holders: Holder[] = [];

before(async () => {
  server = await startHttp({ host: "127.0.0.1", port: 0 }, { readiness: () => Promise.resolve([]), metrics: { public: new Registry(), full: new Registry(), token: null } }, systemClock, pino({ level: "silent" }));
  port = (server.address() as AddressInfo).port;
});
after(() => {
  for (const h of holders) h.kill();
  server.closeAllConnections();
  server.close();
});

/** Holds `count` connections, probes PROBES times while they are held, and reports the figures. */
/**
 * `tolerated`: probes that may fail, never two in a row. A kubelet restarts a pod after three
 * failed liveness probes in a row (failureThreshold 3), so one lost probe in a storm costs nothing.
 */
async function probesWhileHeld(t: TestContext, count: number, mode: "idle" | "slow", reconnectMs: number, tolerated = 0): Promise<void> {
  const holder = new Holder(port, count, mode, reconnectMs);
  holders.push(holder);
  await holder.ready();
  const results: Awaited<ReturnType<typeof probe>>[] = [];
  for (let i = 0; i < PROBES; i++) {
    results.push(await probe(port));
    await new Promise((resolve) => setTimeout(resolve, PROBE_EVERY_MS));
  }
  const stats = await holder.stop();
  const answered = results.filter((r) => r.ok);
  const ms = answered.map((r) => r.ms).sort((a, b) => a - b);
  t.diagnostic(
    `${count} ${mode} connections${reconnectMs > 0 ? `, each reopened ${reconnectMs} ms after the server closed it` : ""}: ` +
      `${answered.length}/${PROBES} probes answered (median ${ms[Math.floor(ms.length / 2)] ?? "-"} ms, slowest ${ms.at(-1) ?? "-"} ms); ` +
      `holder opened ${stats.opened}, the server closed ${stats.closedByServer}, ${stats.heldAtEnd} still held at the end`,
  );
  const failed = results.filter((r) => !r.ok).map((r) => r.why);
  if (tolerated === 0) assert.deepEqual(failed, [], "every probe answered");
  assert.ok(failed.length <= tolerated, `at most ${tolerated} probe(s) may fail: ${failed.join("; ")}`);
  assert.ok(!results.some((r, i) => !r.ok && results[i + 1]?.ok === false), "never two failed probes in a row");
}

describe("/healthz while connections are held", { concurrency: false }, () => {
  test("64 idle connections", (t) => probesWhileHeld(t, 64, "idle", 0));
  test("1,000 idle connections", (t) => probesWhileHeld(t, 1000, "idle", 0));
  test("64 connections trickling headers, never ending the request", (t) => probesWhileHeld(t, 64, "slow", 0));
  // A storm of about 3,000 connects a second on a loaded 2-core machine: CI saw 19/20 once or twice.
  test("1,000 idle connections, each reopened as soon as the server closes it", (t) => probesWhileHeld(t, 1000, "idle", 200, 1));
});
