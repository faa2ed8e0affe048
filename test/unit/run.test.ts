/**
 * The composition root (`knockgate run`) on a stand-in platform: the dry-run firewall, a fake
 * capture, a fake Docker engine, a fake clock and signals the test sends; HTTP listens on loopback.
 * Services start in order and the started ones stop in reverse, on every path.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { get } from "node:http";
import { test } from "node:test";
import { pino } from "pino";
import { runDaemon, systemPlatform, type Platform } from "../../src/app/run.js";
import type { DockerEngine, EventStream } from "../../src/adapters/docker.js";
import type { Firewall } from "../../src/adapters/firewall/firewall.js";
import { FirewallError } from "../../src/core/errors.js";
import { freePort, tryConnect } from "../support/connect.js";
import { FakeClock } from "../support/fake-clock.js";
import { forbidUnhandledRejections } from "../support/unhandled.js";

forbidUnhandledRejections();

/** Loopback answers at once, with a connection or a refusal. */
const listening = (port: number): Promise<boolean> => tryConnect("127.0.0.1", port, 5000);

const readyz = (port: number): Promise<{ status: number; body: { ready: boolean; checks: { name: string; ok: boolean; detail?: string }[] } }> =>
  new Promise((resolve, reject) => {
    get({ host: "127.0.0.1", port, path: "/readyz", agent: false }, (res) => {
      let text = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => (text += chunk));
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as never }));
    }).once("error", reject);
  });

/** `firewall` with some of its members replaced (the backends are classes: their methods stay bound to them). */
function replaced(firewall: Firewall, parts: Partial<Firewall>): Firewall {
  return new Proxy(firewall, {
    get: (target, key: keyof Firewall) => {
      const value = key in parts ? parts[key] : target[key];
      return typeof value === "function" && !(key in parts) ? value.bind(target) : value;
    },
  });
}

/** An engine with no labelled containers; `hold` keeps its first answer back until released. */
class QuietEngine implements DockerEngine {
  streams = 0;
  closed = 0;
  private held: Promise<void> = Promise.resolve();
  release: () => void = () => undefined;
  hold(): void {
    this.held = new Promise((resolve) => (this.release = resolve));
  }
  async labelled(): Promise<string[]> {
    await this.held;
    return [];
  }
  inspect(): Promise<unknown> {
    return Promise.resolve(null);
  }
  joining(): Promise<null> {
    return Promise.resolve(null);
  }
  events(): Promise<EventStream> {
    this.streams++;
    return Promise.resolve({ ended: new Promise<void>(() => undefined), close: () => void this.closed++ });
  }
}

async function setup(env: Record<string, string> = {}, firewall: (real: Firewall) => Firewall = (f) => f) {
  const clock = new FakeClock();
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: "debug" }, { write: (l: string) => lines.push(JSON.parse(l) as Record<string, unknown>) });
  const engine = new QuietEngine();
  const exits: number[] = [];
  let onSignal: (signal: NodeJS.Signals) => void = () => assert.fail("no signal handler");
  const platform: Platform = {
    ...systemPlatform,
    clock,
    logger: () => log,
    defaultInterfaces: () => Promise.resolve(["eth0"]),
    dockerEngine: () => engine,
    openCapture: (iface) => ({ iface, linkType: "ETHERNET", alive: () => true, stats: () => ({ received: 0, dropped: 0 }), close: () => undefined }),
    interfaceState: () => ({ index: 2, up: true, linkType: "ETHERNET" }),
    firewall: { ...systemPlatform.firewall, create: (...args) => firewall(systemPlatform.firewall.create(...args)) },
    onSignal: (handler) => (onSignal = handler),
    exit: (code) => void exits.push(code),
  };
  const port = Number(env["PORT"] ?? (await freePort()));
  const run = () =>
    runDaemon(
      {
        KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000",
        KNOCK_INTERFACE: "eth0",
        KNOCK_DRY_RUN: "1",
        KNOCK_DOCKER: "on",
        KNOCK_HTTP_ADDR: `127.0.0.1:${port}`,
        KNOCK_LOG_LEVEL: "debug",
        ...env,
      },
      platform,
    );
  const events = (name: string) => lines.filter((l) => l["event"] === name);
  const services = (name: "service_started" | "service_stopped") => events(name).map((l) => l["service"]);
  return { clock, lines, events, services, engine, exits, port, run, signal: (s: NodeJS.Signals) => onSignal(s) };
}

const ALL = ["hooks", "docker", "http", "daemon", "protection"];

test("SIGTERM stops every service in the reverse order of their start, keeps the firewall and exits 0", async () => {
  const { clock, services, events, engine, port, run, signal } = await setup();
  const exit = run();
  await clock.settle();
  assert.deepEqual(services("service_started"), ALL);
  assert.equal(await listening(port), true);
  signal("SIGTERM");
  assert.equal(await exit, 0);
  assert.deepEqual(events("stopping").map((l) => [l["signal"], l["on_exit"]]), [["SIGTERM", "keep"]]);
  assert.deepEqual(services("service_stopped"), [...ALL].reverse());
  assert.equal(events("firewall_kept").length, 1);
  assert.deepEqual([engine.streams, engine.closed], [1, 1], "the Docker event stream was closed");
  assert.equal(await listening(port), false, "HTTP was closed");
  assert.equal(clock.pending, 0, "no timer left armed");
});

test("/readyz is the union of every service's checks once all run, and not ready while starting", async () => {
  let install: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (install = resolve));
  const { clock, port, run, signal } = await setup({}, (f) => replaced(f, { reconcile: async (mode) => (mode === "repair" ? (await held, f.reconcile(mode)) : f.reconcile(mode)) }));
  const exit = run();
  await clock.settle();
  const starting = await readyz(port);
  assert.equal(starting.status, 503);
  assert.deepEqual(starting.body.checks.find((c) => c.name === "lifecycle"), { name: "lifecycle", ok: false, detail: "still starting" });
  install();
  await clock.settle();
  const running = await readyz(port);
  assert.equal(running.status, 200, JSON.stringify(running.body));
  const names = running.body.checks.map((c) => c.name);
  for (const name of ["docker", "firewall", "reconcile", "grants"]) assert.ok(names.includes(name), `${name} in ${names.join(", ")}`);
  assert.ok(!names.includes("lifecycle"));
  signal("SIGTERM");
  assert.equal(await exit, 0);
});

test("a firewall that cannot be installed after HTTP started: HTTP, Docker and the hooks stop in reverse order, exit 70", async () => {
  const { clock, services, events, engine, port, run } = await setup({}, (f) => replaced(f, { reconcile: () => Promise.reject(new FirewallError("exit code 4", ["iptables-restore"], "planted")) }));
  assert.equal(await run(), 70);
  const [failed] = events("start_failed");
  assert.deepEqual([failed?.["service"], failed?.["code"]], ["daemon", "KNOCK_E_FIREWALL"]);
  assert.match(String(failed?.["err"]), /^cannot install the firewall: .*planted/);
  assert.deepEqual(services("service_started"), ["hooks", "docker", "http"]);
  assert.deepEqual(services("service_stopped"), ["http", "docker", "hooks"]);
  assert.equal(engine.closed, 1);
  assert.equal(await listening(port), false);
  assert.equal(clock.pending, 0);
});

test("HTTP that cannot listen: Docker, started before it, is stopped, the firewall never installed; exit 70", async () => {
  const taken: Server = createServer();
  await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
  try {
    const { services, events, engine, run } = await setup({ PORT: String((taken.address() as { port: number }).port) });
    assert.equal(await run(), 70);
    const [failed] = events("start_failed");
    assert.equal(failed?.["service"], "http");
    assert.match(String(failed?.["err"]), /KNOCK_HTTP_ADDR/);
    assert.deepEqual(services("service_stopped"), ["docker", "hooks"]);
    assert.equal(engine.closed, 1);
    assert.deepEqual(events("starting"), [], "the daemon never started");
  } finally {
    await new Promise((resolve) => taken.close(resolve));
  }
});

test("a signal during the start: the start in progress finishes, nothing after it starts, and what started stops; exit 0", async () => {
  const { clock, services, events, engine, port, run, signal } = await setup();
  engine.hold();
  const exit = run();
  await clock.settle();
  assert.deepEqual(services("service_started"), ["hooks"], "Docker's first look is in progress");
  signal("SIGINT");
  engine.release();
  assert.equal(await exit, 0);
  assert.equal(events("stopping").length, 1);
  assert.deepEqual(services("service_started"), ["hooks", "docker"]);
  assert.deepEqual(services("service_stopped"), ["docker", "hooks"]);
  assert.equal(await listening(port), false, "HTTP never started");
});

test("a second signal while the teardown is stuck exits at once with 70 and says so", async () => {
  let finish: () => void = () => undefined;
  const stuck = new Promise<void>((resolve) => (finish = resolve));
  const { clock, events, exits, run, signal } = await setup({ KNOCK_ON_EXIT: "remove" }, (f) => replaced(f, { shutdown: async (remove) => (await stuck, f.shutdown(remove)) }));
  const exit = run();
  await clock.settle();
  signal("SIGTERM");
  await clock.settle();
  assert.deepEqual(exits, [], "the first signal only starts the teardown");
  signal("SIGTERM");
  assert.deepEqual(exits, [70]);
  assert.equal(events("forced_exit").length, 1);
  finish();
  await exit;
});

test("removal on exit that fails: remove_failed once (no second stop_failed line), the rest still stops, exit 70", async () => {
  const { clock, services, events, run, signal } = await setup({ KNOCK_ON_EXIT: "remove" }, (f) => replaced(f, { shutdown: () => Promise.reject(new FirewallError("exit code 1", ["nft", "delete", "table"], "planted")) }));
  const exit = run();
  await clock.settle();
  signal("SIGTERM");
  assert.equal(await exit, 70);
  assert.equal(events("remove_failed").length, 1);
  assert.deepEqual(events("stop_failed"), []);
  assert.deepEqual(services("service_stopped"), ["protection", "http", "docker", "hooks"]);
});
