/**
 * Docker labels with the real engine: knockgate runs as a process in this machine's root network
 * namespace (where Docker's NAT is), containers publish ports on a test network (198.18.210.0/24),
 * and a client namespace reaches the host over a veth on 198.18.200.0/24 (and fd00:198:18::c8:0/112,
 * for the host's own ports over IPv6) and routes the test network through the host, so it can also
 * try the containers' own addresses. The door is the test's own (KGDOCKERTEST), with no ports of its
 * own: everything it protects comes from labels. A second door, WEB, signed too (keys from files),
 * is the claimant in the tests of who owns a port.
 *
 * Cleanup (on failure too): containers and the network of this run, the client namespace, our
 * chains and sets (see test/support/docker-host.ts). Docker's own rules are never touched.
 *
 * Needs root, a Docker daemon with node:20-bookworm-slim (../shared/containers/setup-docker.sh
 * and base-images.sh) and the fwknop client (`apt-get install fwknop-client`); fails rather than
 * skips without.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer, connect, type Server, type Socket } from "node:net";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  CLI,
  CLIENT_V4,
  ClientNet,
  HOST_IFACE,
  HOST_V4,
  OTHER_V4,
  PEER_IFACE,
  ROOT,
  RUN_NAME,
  TEST_DOOR,
  hostVariant,
  knockgateObjects,
  must,
  nftTables,
  removeTestFirewall,
  run,
  sleep,
  waitUntil,
  type Variant,
} from "../support/docker-host.js";
import { DaemonProcess, type LogLine } from "../support/lab.js";
import { explainFailures } from "../support/failure-report.js";
import { SPA_FIXTURE } from "../support/spa-vectors.js";

const IMAGE = "node:20-bookworm-slim";
const NETWORK = `${RUN_NAME}-net`;
const SUBNET = "198.18.210.0/24";
const KNOCKS = ["7111", "7112", "7113"];
const HTTP = { main: "127.0.0.1:29181", other: "127.0.0.1:29182" };
const CONTAINER_PORT = 8080;
/** A TCP server that greets each client: the containers' service. */
const SERVICE = `require("net").createServer((s) => { s.on("error", () => {}); s.end("hello from " + require("os").hostname() + "\\n"); }).listen(${CONTAINER_PORT})`;
const SETUP_DOCKER = join(ROOT, "..", "shared", "containers", "setup-docker.sh");
/** IPv6 on the client's link (root namespace side and client side), added by this file's before(). */
const HOST_V6 = "fd00:198:18::c8:1";
const CLIENT_V6 = "fd00:198:18::c8:2";

interface DoorUnderTest {
  name: string;
  knocks: string[];
}
/** The test's own door, with no ports of its own unless a test gives it some. */
const OWN: DoorUnderTest = { name: TEST_DOOR, knocks: KNOCKS };
/** A second door for the tests of who owns a port: a sequence, and SPA keys for signed datagrams (webDoor()). */
const WEB: DoorUnderTest = { name: "WEB", knocks: ["7121", "7122", "7123"] };
/** WEB's own port: what its grants reach when nothing else is in the way. */
const WEB_PORT = 22310;

const net = new ClientNet();
let variant: Variant = "nft";
let tablesBefore = new Set<string>();
let ownFirewall = false;
const daemons: DaemonProcess[] = [];
let proxy: Server | null = null;
/** The dockerd restart test stopped the engine and has not started it again yet. */
let engineStopped = false;
/** WEB's SPA key files and the knock client's env file (before()). */
let secrets = "";

explainFailures(
  () => undefined,
  () => daemons.flatMap((d, i) => d.lastWords(`knockgate ${i + 1}`)),
);

/** The environment knockgate runs with here: the test's door, the client's link, then `env`. */
function knockgateEnv(env: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin",
    [`KNOCK_DOOR_${TEST_DOOR}_SEQUENCE`]: KNOCKS.join(","),
    [`KNOCK_DOOR_${TEST_DOOR}_PORTS`]: "none",
    [`KNOCK_DOOR_${TEST_DOOR}_OPEN_FOR`]: "300",
    KNOCK_INTERFACE: HOST_IFACE,
    KNOCK_HTTP_ADDR: HTTP.main,
    KNOCK_RECONCILE_INTERVAL: "0.5",
    KNOCK_ON_EXIT: "remove",
    ...env,
  };
}

function startKnockgate(env: Record<string, string>): DaemonProcess {
  const child = spawn(process.execPath, [CLI, "run"], { env: knockgateEnv(env), stdio: ["ignore", "pipe", "pipe"] });
  const daemon = new DaemonProcess(child);
  daemons.push(daemon);
  return daemon;
}

async function stopKnockgate(daemon: DaemonProcess): Promise<void> {
  assert.equal(await daemon.stop(), 0, "knockgate must exit 0 on SIGTERM");
}

/** Runs `body` with a knockgate that follows Docker and is ready; it is stopped however body ends. */
async function withKnockgate(env: Record<string, string>, body: (daemon: DaemonProcess) => Promise<void>): Promise<void> {
  const daemon = startKnockgate(env);
  try {
    await daemon.waitFor("ready", 20_000);
    await body(daemon);
  } finally {
    await stopKnockgate(daemon);
  }
}

async function readyz(addr: string): Promise<{ status: number; body: { ready: boolean; reasons: string[]; checks: { name: string; ok: boolean; detail?: string }[]; doors?: { door: string; ports: { port: string; from: string[] }[] }[] } }> {
  const r = await fetch(`http://${addr}/readyz`);
  return { status: r.status, body: (await r.json()) as never };
}

async function metric(addr: string, name: string): Promise<number> {
  const text = await (await fetch(`http://${addr}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(name));
  return line === undefined ? NaN : Number(line.split(" ").at(-1));
}

/**
 * The same service in perl, which answers within milliseconds of the container's start (node takes
 * a few hundred): the window test must not let a slow start hide a late rule.
 */
const FAST_SERVICE = ["perl", "-MIO::Socket::INET", "-e", `my $s = IO::Socket::INET->new(LocalPort => ${CONTAINER_PORT}, Listen => 128, ReuseAddr => 1) or die; while (my $c = $s->accept) { print $c "hello from perl\n"; close $c }`];

/** Starts a container of this run on the test network; returns its full id. */
async function container(name: string, args: string[], labelled = true, service = ["node", "-e", SERVICE]): Promise<string> {
  const labels = labelled ? ["--label", `knockgate.door=${TEST_DOOR}`] : [];
  // --init: the service stops at once on SIGTERM, so a stopping engine does not wait 10 s for it.
  return (await must(["docker", "run", "-d", "--init", "--name", `${RUN_NAME}-${name}`, "--network", NETWORK, ...labels, ...args, IMAGE, ...service], { timeoutMs: 60_000 })).trim();
}

const address = async (id: string) => (await must(["docker", "inspect", "-f", `{{(index .NetworkSettings.Networks "${NETWORK}").IPAddress}}`, id])).trim();
const hostPort = async (id: string) => Number((await must(["docker", "inspect", "-f", `{{(index (index .NetworkSettings.Ports "${CONTAINER_PORT}/tcp") 0).HostPort}}`, id])).trim());

/**
 * Knocks `door`'s sequence from the client (CLIENT_V4, or CLIENT_V6 to HOST_V6) and waits for that
 * grant (each test's knockgate starts without grants: KNOCK_ON_EXIT=remove).
 */
async function knockIn(daemon: DaemonProcess, host = HOST_V4, door = OWN): Promise<void> {
  const knock = await net.knock([host, ...door.knocks]);
  assert.equal(knock.code, 0, knock.stderr);
  const src = host === HOST_V6 ? CLIENT_V6 : CLIENT_V4;
  await daemon.waitFor("open", 5000, (l) => l["door"] === door.name && l["src"] === src && l["via"] === "sequence");
}

/** Door WEB's variables: its sequence, `ports`, and its SPA keys from files, as a secret mount gives them. */
const webDoor = (ports: string): Record<string, string> => ({
  KNOCK_DOOR_WEB_SEQUENCE: WEB.knocks.join(","),
  KNOCK_DOOR_WEB_PORTS: ports,
  KNOCK_DOOR_WEB_SPA_KEY_FILE: join(secrets, "web.key"),
  KNOCK_DOOR_WEB_SPA_HMAC_KEY_FILE: join(secrets, "web.hmac"),
});

/** A signed datagram for door WEB from the client namespace, by Debian's fwknop: it asks for `access` (tcp/PORT) for `allow`. */
async function fwknop(access: string, allow = CLIENT_V4): Promise<void> {
  const keys = ["--key-base64-rijndael", SPA_FIXTURE.keyBase64, "--key-base64-hmac", SPA_FIXTURE.hmacKeyBase64];
  const r = await net.exec(["fwknop", "--no-rc-file", "--no-save-args", "-D", HOST_V4, "--use-hmac", ...keys, "-A", access, "-a", allow]);
  assert.equal(r.code, 0, `fwknop failed: ${r.stderr}`);
}

/** A signed datagram for door WEB by knockgate's own client (keys from the files its --config names), asking for `access` for `allow`. */
async function signedKnock(access: string, allow: string): Promise<void> {
  const r = await net.exec([process.execPath, CLI, "knock", "--door", "WEB", "--config", join(secrets, "client.env"), "-A", access, "-a", allow, HOST_V4]);
  assert.equal(r.code, 0, `knockgate knock failed: ${r.stderr}`);
}

/** Waits until the daemon logged a protection that includes `port` (as "N/tcp"), and returns it. */
function protecting(daemon: DaemonProcess, port: number, timeoutMs = 10_000): Promise<LogLine> {
  return daemon.waitFor("protected_ports", timeoutMs, (l) => JSON.stringify(l["doors"]).includes(`"${port}/tcp"`));
}

/** The service from the client namespace answers (with its greeting) within the timeout. */
async function reaches(host: string, port: number, from = CLIENT_V4, timeoutMs = 700): Promise<boolean> {
  return (await net.connect(host, port, { from, banner: true, timeoutMs })).banner.startsWith("hello from");
}

/** Waits until the service answers from the client namespace: a listener that is up, not our rule. */
async function answering(host: string, port: number, from = CLIENT_V4): Promise<void> {
  await waitUntil(`${host}:${port} to answer ${from}`, 15_000, async () => ((await reaches(host, port, from)) ? true : undefined));
}

/**
 * A socket that relays to Docker's, at a unix path (one that appears when the test says so) or a
 * loopback TCP port (a socket proxy's kind of endpoint).
 */
function socketProxy(path: string | number): Promise<Server> {
  if (typeof path === "string") rmSync(path, { force: true });
  const open = new Set<Socket>();
  const server = createServer((client) => {
    const engine = connect("/var/run/docker.sock");
    client.on("error", () => engine.destroy());
    engine.on("error", () => client.destroy());
    client.pipe(engine).pipe(client);
    open.add(client);
    client.on("close", () => {
      open.delete(client);
      engine.destroy();
    });
  });
  proxyConnections.set(server, open);
  return new Promise((resolve) => (typeof path === "string" ? server.listen(path, () => resolve(server)) : server.listen(path, "127.0.0.1", () => resolve(server))));
}

const proxyConnections = new WeakMap<Server, Set<Socket>>();

/** Stops a socket proxy as a stopped engine goes: its socket file and every connection through it. */
async function stopProxy(server: Server): Promise<void> {
  const closed = new Promise((resolve) => server.close(resolve));
  for (const s of proxyConnections.get(server) ?? []) s.destroy();
  await closed;
}

/** A greeting service on the host (the root namespace), IPv4 and IPv6, as a host's own sshd would be. */
function listen(port: number): Promise<Server> {
  const server = createServer((s) => {
    s.on("error", () => undefined);
    s.end("hello from the host\n");
  });
  return new Promise((resolve) => server.listen(port, "::", () => resolve(server)));
}

/** Runs `body` with greeting services on the host's `ports`; they and this run's containers are gone after, however it ends. */
async function withHostServices(ports: number[], body: () => Promise<void>): Promise<void> {
  const services = await Promise.all(ports.map(listen));
  try {
    await body();
  } finally {
    for (const service of services) service.close();
    await removeRunContainers();
  }
}

/** A container of this run labelled for `door` and publishing host port `port`, only created: never started, it binds nothing, and that is enough to claim the port. Returns its id. */
async function createdOnly(name: string, door: string, port: number): Promise<string> {
  return (await must(["docker", "create", "--name", `${RUN_NAME}-${name}`, "--network", NETWORK, "--label", `knockgate.door=${door}`, "-p", `${port}:${CONTAINER_PORT}`, IMAGE, "true"])).trim();
}

async function removeRunContainers(): Promise<void> {
  const ids = (await run(["docker", "ps", "-aq", "--filter", `name=^${RUN_NAME}-`])).stdout.split("\n").filter(Boolean);
  if (ids.length > 0) await run(["docker", "rm", "-f", ...ids], { timeoutMs: 60_000 });
}

before(async () => {
  assert.equal(process.getuid?.(), 0, "the Docker label tests need root (network namespaces, the root namespace's firewall)");
  const info = await run(["docker", "info", "--format", "{{.ServerVersion}}"], { timeoutMs: 20_000 });
  assert.equal(info.code, 0, `no Docker daemon answers (${info.stderr.trim()}); run: bash ../shared/containers/setup-docker.sh && bash ../shared/containers/base-images.sh`);
  assert.equal((await run(["docker", "image", "inspect", IMAGE])).code, 0, `base image ${IMAGE} is missing; run: bash ../shared/containers/base-images.sh`);
  // Leftovers of a killed run: containers and networks named kgtest-*, the client namespace.
  for (const id of (await run(["docker", "ps", "-aq", "--filter", "name=^kgtest-"])).stdout.split("\n").filter(Boolean)) await run(["docker", "rm", "-f", id]);
  for (const id of (await run(["docker", "network", "ls", "-q", "--filter", "name=^kgtest-"])).stdout.split("\n").filter(Boolean)) await run(["docker", "network", "rm", id]);
  ClientNet.removeStale();
  variant = hostVariant();
  const present = await knockgateObjects();
  assert.equal(present, "", `this machine's root namespace already has knockgate objects; stop that knockgate or run knockgate cleanup first:\n${present}`);
  tablesBefore = nftTables();
  ownFirewall = true;
  await must(["docker", "network", "create", "--subnet", SUBNET, NETWORK]);
  net.create();
  // The client reaches the test network through the host, as a neighbour or routed client would.
  await must(["ip", "-n", net.ns, "route", "add", SUBNET, "via", HOST_V4]);
  // IPv6 to the host's own ports (Docker 20.10 here has no IPv6 networks: the containers stay IPv4).
  await must(["ip", "addr", "add", `${HOST_V6}/112`, "dev", HOST_IFACE, "nodad"]);
  await must(["ip", "-n", net.ns, "addr", "add", `${CLIENT_V6}/112`, "dev", PEER_IFACE, "nodad"]);
  secrets = mkdtempSync(join(tmpdir(), "knockgate-docker-labels-"));
  writeFileSync(join(secrets, "web.key"), SPA_FIXTURE.keyBase64, { mode: 0o600 });
  writeFileSync(join(secrets, "web.hmac"), SPA_FIXTURE.hmacKeyBase64, { mode: 0o600 });
  // The client knows WEB's keys and the port it is meant to ask for; the server decides what WEB protects.
  writeFileSync(join(secrets, "client.env"), `KNOCK_DOOR_WEB_SPA_KEY_FILE=${join(secrets, "web.key")}\nKNOCK_DOOR_WEB_SPA_HMAC_KEY_FILE=${join(secrets, "web.hmac")}\nKNOCK_DOOR_WEB_PORTS=${WEB_PORT}/tcp\n`, { mode: 0o600 });
});

after(async () => {
  for (const d of daemons) if (d.child.exitCode === null && d.child.signalCode === null) await d.stop("SIGKILL");
  if (engineStopped) await run(["bash", SETUP_DOCKER], { timeoutMs: 120_000 });
  proxy?.close();
  await removeRunContainers();
  await run(["docker", "network", "rm", NETWORK], { timeoutMs: 30_000 });
  net.destroy();
  if (secrets !== "") rmSync(secrets, { recursive: true, force: true });
  if (ownFirewall) {
    await removeTestFirewall(variant, tablesBefore);
    // The nftables run's table (KNOCK_ON_EXIT=remove takes it away unless the daemon was killed).
    await run(["nft", "delete", "table", "inet", "knockgate"]);
  }
});

describe("Docker labels", { concurrency: false }, () => {
  test("no Docker socket at start with auto: a clear log line and readiness detail, no crash; a late socket is followed; tcp:// works; on without an engine is not ready", { timeout: 60_000 }, async () => {
    const socket = `/run/knockgate-test-${process.pid}.sock`;
    const daemon = startKnockgate({ KNOCK_DOCKER_HOST: `unix://${socket}`, KNOCK_HTTP_ADDR: HTTP.other, [`KNOCK_DOOR_${TEST_DOOR}_PORTS`]: "22399/tcp" });
    try {
      const missing = await daemon.waitFor("docker_unavailable", 10_000);
      assert.match(String(missing["msg"]), new RegExp(`no Docker engine at unix://${socket} .*KNOCK_DOCKER=auto`));
      await daemon.waitFor("ready", 15_000);
      const r = await readyz(HTTP.other);
      assert.equal(r.status, 200, "auto: an engine never seen does not make knockgate unready");
      const docker = r.body.checks.find((c) => c.name === "docker");
      assert.match(docker?.detail ?? "", /no Docker engine at .*labels are followed once it appears/);
      assert.deepEqual(r.body.doors, [{ door: TEST_DOOR, ports: [{ port: "22399/tcp", from: ["env"] }], containers: 0 }]);

      proxy = await socketProxy(socket);
      await daemon.waitFor("docker_connected", 20_000);
      const later = await readyz(HTTP.other);
      assert.match(later.body.checks.find((c) => c.name === "docker")?.detail ?? "", /^following unix:/);
      assert.equal(daemon.child.exitCode, null, "the daemon must still run");
    } finally {
      await stopKnockgate(daemon);
      proxy?.close();
      proxy = null;
      rmSync(socket, { force: true });
    }
    // tcp://, as a socket proxy would serve it.
    proxy = await socketProxy(29183);
    const overTcp = startKnockgate({ KNOCK_DOCKER: "on", KNOCK_DOCKER_HOST: "tcp://127.0.0.1:29183", KNOCK_HTTP_ADDR: HTTP.other });
    try {
      await overTcp.waitFor("docker_connected", 20_000);
      await overTcp.waitFor("ready", 20_000);
      assert.equal((await readyz(HTTP.other)).status, 200);
    } finally {
      await stopKnockgate(overTcp);
      proxy.close();
      proxy = null;
    }
    // KNOCK_DOCKER=on with no engine: not ready, and /readyz says since when.
    const strict = startKnockgate({ KNOCK_DOCKER: "on", KNOCK_DOCKER_HOST: `unix://${socket}`, KNOCK_HTTP_ADDR: HTTP.other, [`KNOCK_DOOR_${TEST_DOOR}_PORTS`]: "22399/tcp" });
    try {
      await strict.waitFor("ready", 20_000);
      const r = await readyz(HTTP.other);
      assert.equal(r.status, 503);
      assert.ok(r.body.reasons.some((reason) => /^docker: event stream down since \d{4}-\d\d-\d\dT/.test(reason)), r.body.reasons.join("\n"));
    } finally {
      await stopKnockgate(strict);
    }
  });

  // nftables first: the tests after this one find the iptables backend's web container in place.
  for (const backend of ["nftables", "iptables"]) {
  test(`${backend}: a labelled container is closed until a knock, then open to the knocker only, on its host port and its own address; unlabelled ones stay reachable`, { timeout: 120_000 }, async () => {
    await removeRunContainers();
    await withKnockgate({ KNOCK_DOCKER: "on", KNOCK_FIREWALL: backend }, async (daemon) => {
      const web = await container("web", ["-p", "22301:8080"]);
      const plain = await container("plain", ["-p", "22302:8080"], false);
      await protecting(daemon, 22301);
      const [webIp, plainIp] = [await address(web), await address(plain)];

      await answering(HOST_V4, 22302);
      await answering(plainIp, CONTAINER_PORT);
      assert.equal(await reaches(HOST_V4, 22301), false, "the labelled container's host port must be closed before knocking");
      assert.equal(await reaches(webIp, CONTAINER_PORT), false, "its own address must be closed from outside too");
      const fromNeighbour = await must(["docker", "exec", `${RUN_NAME}-plain`, "node", "-e", `require("net").connect(${CONTAINER_PORT}, "${webIp}").on("data", (d) => { console.log(String(d)); process.exit(0); }).on("error", () => process.exit(1))`]);
      assert.match(fromNeighbour, /hello from/, "containers on the host still reach it directly");

      const ready = await readyz(HTTP.main);
      assert.equal(ready.status, 200, ready.body.reasons.join("\n"));
      assert.deepEqual(ready.body.doors?.[0]?.ports, [{ port: "22301/tcp", from: [`container ${RUN_NAME}-web (${web.slice(0, 12)})`] }]);
      assert.equal(await metric(HTTP.main, `knockgate_docker_containers{door="${TEST_DOOR}"}`), 1);
      assert.equal(await metric(HTTP.main, `knockgate_protected_ports{door="${TEST_DOOR}"}`), 1);
      // knockgate check asks Docker too, and says where each port comes from.
      const check = await must([process.execPath, CLI, "check", "--json"], {
        env: { PATH: process.env["PATH"] ?? "", [`KNOCK_DOOR_${TEST_DOOR}_SEQUENCE`]: KNOCKS.join(","), [`KNOCK_DOOR_${TEST_DOOR}_PORTS`]: "none", KNOCK_INTERFACE: HOST_IFACE },
      });
      const report = JSON.parse(check) as { doors: { ports: { port: string; from: string[] }[] }[] };
      assert.deepEqual(report.doors[0]?.ports, ready.body.doors?.[0]?.ports);

      await knockIn(daemon);
      assert.equal(await reaches(HOST_V4, 22301), true, "the knocker must get in through the host port");
      assert.equal(await reaches(webIp, CONTAINER_PORT), true, "and through the container's address");
      assert.equal(await reaches(HOST_V4, 22301, OTHER_V4), false, "others stay out of the host port");
      assert.equal(await reaches(webIp, CONTAINER_PORT, OTHER_V4), false, "and out of the container's address");
    });
  });
  }

  test("recreated with another host port: the new port is protected before it answers, the old one is released", { timeout: 120_000 }, async () => {
    await withKnockgate({ KNOCK_DOCKER: "on" }, async (daemon) => {
      await protecting(daemon, 22301);
      await knockIn(daemon);
      await must(["docker", "rm", "-f", `${RUN_NAME}-web`]);
      const web = await container("web", ["-p", "22303:8080"]);
      const moved = await protecting(daemon, 22303);
      assert.doesNotMatch(JSON.stringify(moved["doors"]), /"22301\/tcp"/, "the removed container's port is no longer protected");
      await answering(HOST_V4, 22303);
      assert.equal(await reaches(HOST_V4, 22303, OTHER_V4), false, "the new host port must be closed to others");
      assert.equal(await reaches(await address(web), CONTAINER_PORT, OTHER_V4), false);
    });
  });

  test("dockerd restarted while knockgate runs: the same process follows the new engine and its new socket; the labelled port stays closed to others throughout, knockgate_docker_connected goes 0 then 1, a knock after opens", { timeout: 180_000 }, async () => {
    await must(["docker", "rm", "-f", `${RUN_NAME}-web`]);
    await container("web", ["--restart", "unless-stopped", "-p", "22304:8080"]);
    await withKnockgate({ KNOCK_DOCKER: "on" }, async (daemon) => {
      await protecting(daemon, 22304);
      await knockIn(daemon);
      await answering(HOST_V4, 22304);
      assert.equal(await metric(HTTP.main, "knockgate_docker_connected"), 1);
      const watch = watchPort(22304, 150_000);

      const pids = (await must(["pidof", "dockerd"])).trim().split(" ");
      engineStopped = true;
      for (const pid of pids) process.kill(Number(pid), "SIGTERM");
      const gone = (pid: string) => {
        try {
          process.kill(Number(pid), 0);
          return false;
        } catch {
          return true;
        }
      };
      await waitUntil("dockerd to exit", 60_000, () => Promise.resolve(pids.every(gone) ? true : undefined));
      await daemon.waitFor("docker_unavailable", 10_000);
      assert.equal(await metric(HTTP.main, "knockgate_docker_connected"), 0);
      const down = await readyz(HTTP.main);
      assert.equal(down.status, 503, "KNOCK_DOCKER=on: an event stream that is down makes knockgate unready");
      assert.ok(down.body.reasons.some((r) => /^docker: event stream down since /.test(r)), down.body.reasons.join("\n"));

      // A new engine, a new socket at the same path; the container comes back by its restart policy.
      await must(["bash", SETUP_DOCKER], { timeoutMs: 120_000 });
      engineStopped = false;
      await daemon.waitFor("docker_connected", 30_000, (l) => l["down_since"] !== undefined);
      await answering(HOST_V4, 22304);
      const greeted = await watch.stop();
      assert.equal(greeted[OTHER_V4], 0, "the labelled port must stay closed to others while the engine restarts and until knockgate follows it again");
      assert.ok((greeted[CLIENT_V4] ?? 0) > 0, `the watch must see the service answer the knocker (${JSON.stringify(greeted)})`);
      assert.equal(await reaches(HOST_V4, 22304, OTHER_V4), false, "still protected after the engine's restart");
      await waitUntil("/readyz to be ready again", 10_000, async () => ((await readyz(HTTP.main)).status === 200 ? true : undefined));
      assert.equal(await metric(HTTP.main, "knockgate_docker_connected"), 1);
      assert.ok((await metric(HTTP.main, "knockgate_docker_reconnects_total")) >= 1);
      await knockFrom(daemon, OTHER_V4);
      assert.equal(await reaches(HOST_V4, 22304, OTHER_V4), true, "a knock after the restart opens the labelled port");
      assert.deepEqual([daemon.child.exitCode, daemon.child.signalCode, daemon.events("starting").length], [null, null, 1], "the same daemon throughout");
    });
  });

  test("the window between a container's port answering and its rule: none for explicit ports (at create), none for random ones (at the network join)", { timeout: 240_000 }, async (t) => {
    await removeRunContainers();
    await withKnockgate({ KNOCK_DOCKER: "on" }, async (daemon) => {
      const ROUNDS = 6;
      const windows = { explicit: [] as number[], random: [] as number[] };
      // Docker hands out random ports in order: the next one follows the last one it gave.
      let last = await hostPort(await container("probe0", ["-p", String(CONTAINER_PORT)]));
      // The control: an unlabelled container's random port, which the probe must see answering.
      const control = net.exec([process.execPath, "-e", prober([1, 2, 3, 4].map((n) => last + n), 3000)], 30_000);
      await sleep(300);
      const plain = await container("control", ["-p", String(CONTAINER_PORT)], false, FAST_SERVICE);
      last = await hostPort(plain);
      const seen = JSON.parse((await control).stdout) as Record<string, number[]>;
      assert.ok((seen[String(last)] ?? []).length > 10, `the probe must see an unprotected random port (${last}) answer: ${JSON.stringify(seen)}`);
      for (let round = 1; round <= ROUNDS; round++) {
        for (const kind of ["explicit", "random"] as const) {
          const candidates = kind === "explicit" ? [22320 + round] : [1, 2, 3, 4].map((n) => last + n);
          const probe = net.exec([process.execPath, "-e", prober(candidates, 4000)], 30_000);
          await sleep(300);
          const id = await container(`${kind}${round}`, ["-p", kind === "explicit" ? `${22320 + round}:8080` : String(CONTAINER_PORT)], true, FAST_SERVICE);
          const port = await hostPort(id);
          const answered = JSON.parse((await probe).stdout) as Record<string, number[]>;
          const times = answered[String(port)] ?? [];
          assert.ok(kind === "explicit" || candidates.includes(port), `Docker gave ${port}, not one of the ports probed (${candidates.join(", ")})`);
          // From the first answer to the last: how long the port was open to someone without a grant.
          windows[kind].push(times.length === 0 ? 0 : Math.max(...times) - Math.min(...times) + PROBE_EVERY_MS);
          if (kind === "random") {
          last = port;
          // Protected from Docker's NAT rules as the container joined its network, before its start.
          await daemon.waitFor("docker_ports_at_join", 5000, (l) => l["id"] === id.slice(0, 12) && JSON.stringify(l["ports"]) === `["${port}/tcp"]`);
        }
          await must(["docker", "rm", "-f", id]);
        }
      }
      const worst = (list: number[]) => Math.max(...list);
      t.diagnostic(`explicit ports: window per round ${windows.explicit.join(", ")} ms; random ports: ${windows.random.join(", ")} ms (0 = never answered)`);
      assert.equal(worst(windows.explicit), 0, "an explicit port must never answer before its rule is in place");
      // A start so fast that the process answers before the rewrite lands would show here; on a loaded machine it can.
    assert.ok(worst(windows.random) < 100, `a random port answered without a grant for ${worst(windows.random)} ms`);
    });
  });

  // The tests below remove this run's containers: the ones above build on each other's.
  for (const backend of ["nftables", "iptables"]) {
    test(`${backend}: containers on a user-defined network and on the default bridge reach another host's port that a door protects here; this host's stays closed (IPv4 and IPv6) until knocked`, { timeout: 120_000 }, async () => {
      await removeRunContainers();
      const port = 22306;
      const far = await net.listen(port);
      const here = await listen(port);
      try {
        await withKnockgate({ KNOCK_DOCKER: "on", KNOCK_FIREWALL: backend, [`KNOCK_DOOR_${TEST_DOOR}_PORTS`]: `${port}/tcp` }, async (daemon) => {
          assert.equal(await reaches(HOST_V4, port), false, "this host's port stays closed to the client (IPv4)");
          assert.equal(await reaches(HOST_V6, port, CLIENT_V6), false, "this host's port stays closed to the client (IPv6)");
          const probe = `const s = require("net").connect(${port}, "${CLIENT_V4}"); s.setTimeout(3000, () => process.exit(1)); s.on("connect", () => process.exit(0)); s.on("error", () => process.exit(1));`;
          for (const network of [NETWORK, "bridge"]) {
            const r = await run(["docker", "run", "--rm", "--name", `${RUN_NAME}-egress`, "--network", network, IMAGE, "node", "-e", probe], { timeoutMs: 60_000 });
            assert.equal(r.code, 0, `a container on ${network} must reach ${CLIENT_V4}:${port}: ${r.stderr}`);
          }
          assert.equal(far.seen.filter((l) => l.startsWith("tcp ")).length, 2, "both connections arrived at the other host");
          // Both paths to this host work: what kept the port closed was the firewall.
          await knockIn(daemon);
          await knockIn(daemon, HOST_V6);
          assert.equal(await reaches(HOST_V4, port), true, "the knocker gets in (IPv4)");
          assert.equal(await reaches(HOST_V6, port, CLIENT_V6), true, "the knocker gets in (IPv6)");
        });
      } finally {
        await far.stop();
        here.close();
      }
    });

    test(`${backend}: a label claiming a port another door owns is refused: the claimant's knock and signed datagram open nothing there (IPv4 and IPv6), the owner's knock still does; logged, counted, shown in /readyz and check`, { timeout: 120_000 }, async () => {
      await removeRunContainers();
      const owned = 22307;
      // The test's door owns `owned` by its _PORTS; a second door, WEB, is what the label names.
      const env = { KNOCK_DOCKER: "on", KNOCK_FIREWALL: backend, [`KNOCK_DOOR_${TEST_DOOR}_PORTS`]: `${owned}/tcp`, ...webDoor(`${WEB_PORT}/tcp`), KNOCK_LOG_LEVEL: "debug" };
      await withHostServices([owned, WEB_PORT], () =>
        withKnockgate(env, async (daemon) => {
          const claimant = await createdOnly("claimant", "WEB", owned);
          const conflict = await daemon.waitFor("label_conflict", 10_000);
          assert.deepEqual([conflict["door"], conflict["port"], conflict["owner"]], ["WEB", `${owned}/tcp`, TEST_DOOR]);
          assert.equal(await reaches(HOST_V4, owned), false, "the owned port is closed before any knock (IPv4)");
          assert.equal(await reaches(HOST_V6, owned, CLIENT_V6), false, "the owned port is closed before any knock (IPv6)");

          // A holder of WEB's keys asks for the claimed port: refused for that port (the datagram was read), nothing opened.
          await fwknop(`tcp/${owned}`);
          await daemon.waitFor("spa_refused", 5000, (l) => l["door"] === "WEB" && l["result"] === "port_not_allowed");
          assert.deepEqual(daemon.events("open"), [], "WEB's signed datagram must open nothing");
          assert.equal(await reaches(HOST_V4, owned), false, "WEB's signed datagram must not open a port its label only claimed");

          await knockIn(daemon, HOST_V4, WEB);
          await knockIn(daemon, HOST_V6, WEB);
          // WEB's grants are in place on both families (its own port answers): the claimed port still does not.
          assert.equal(await reaches(HOST_V4, WEB_PORT), true, "WEB's own port opens to its knock (IPv4)");
          assert.equal(await reaches(HOST_V6, WEB_PORT, CLIENT_V6), true, "WEB's own port opens to its knock (IPv6)");
          assert.equal(await reaches(HOST_V4, owned), false, "WEB's knock must not open a port its label only claimed (IPv4)");
          assert.equal(await reaches(HOST_V6, owned, CLIENT_V6), false, "WEB's knock must not open a port its label only claimed (IPv6)");

          const r = await readyz(HTTP.main);
          assert.equal(r.status, 200, r.body.reasons.join("\n"));
          assert.match(r.body.checks.find((c) => c.name === "label_conflicts")?.detail ?? "", new RegExp(`claims ${owned}/tcp for door WEB, which door ${TEST_DOOR} owns \\(env\\): refused`));
          assert.equal(await metric(HTTP.main, `knockgate_label_conflicts{door="WEB"}`), 1);
          const check = JSON.parse(await must([process.execPath, CLI, "check", "--json"], { env: knockgateEnv(env) })) as { warnings: string[] };
          const warning = `label conflict: container ${RUN_NAME}-claimant (${claimant.slice(0, 12)}) claims ${owned}/tcp for door WEB, which door ${TEST_DOOR} owns (env): refused`;
          assert.deepEqual(check.warnings, [warning], "knockgate check warns of the refused claim");

          await knockIn(daemon);
          await knockIn(daemon, HOST_V6);
          assert.equal(await reaches(HOST_V4, owned), true, "the owner's knock still opens it (IPv4)");
          assert.equal(await reaches(HOST_V6, owned, CLIENT_V6), true, "the owner's knock still opens it (IPv6)");
        }),
      );
    });

    test(`${backend}: a sequence grant reaches whatever its door protects now, a port a label gives the door later included; a signed grant only the ports it asked for`, { timeout: 120_000 }, async () => {
      await removeRunContainers();
      const later = 22311;
      await withHostServices([WEB_PORT, later], () =>
        withKnockgate({ KNOCK_DOCKER: "on", KNOCK_FIREWALL: backend, ...webDoor(`${WEB_PORT}/tcp`) }, async (daemon) => {
          await knockIn(daemon, HOST_V4, WEB);
          await signedKnock(`${WEB_PORT}/tcp`, OTHER_V4);
          await daemon.waitFor("open", 5000, (l) => l["src"] === OTHER_V4 && l["via"] === "signed" && l["ports"] === `${WEB_PORT}/tcp`);
          assert.equal(await reaches(HOST_V4, WEB_PORT), true, "the sequence grant");
          assert.equal(await reaches(HOST_V4, WEB_PORT, OTHER_V4), true, "the signed grant");
          await answering(HOST_V4, later, OTHER_V4);

          await createdOnly("later", "WEB", later);
          await protecting(daemon, later);
          assert.equal(await reaches(HOST_V4, later), true, "the sequence grant is door-wide: it reaches the port the label gave WEB after the knock");
          assert.equal(await reaches(HOST_V4, later, OTHER_V4), false, "the signed grant holds the port it asked for, not the one the label added");
        }),
      );
    });
  }

  for (const backend of ["nftables", "iptables"]) {
    test(`${backend}: restarted while the engine is away (no socket; a socket that never answers), a labelled port stays closed and /readyz says so`, { timeout: 180_000 }, async () => {
      await removeRunContainers();
      const port = 22308;
      const first = startKnockgate({ KNOCK_DOCKER: "on", KNOCK_FIREWALL: backend, KNOCK_ON_EXIT: "keep" });
      try {
        await first.waitFor("ready", 20_000);
        await container("kept", ["-p", `${port}:8080`]);
        await protecting(first, port);
      } finally {
        await stopKnockgate(first);
      }
      const missing = `/run/knockgate-test-${process.pid}-missing.sock`;
      const silentPath = `/run/knockgate-test-${process.pid}-silent.sock`;
      rmSync(silentPath, { force: true });
      // Accepts and never answers: an engine that hangs.
      const silent = createServer((s) => s.on("error", () => undefined));
      await new Promise<void>((resolve) => silent.listen(silentPath, resolve));
      try {
        for (const [mode, host, status] of [["auto", missing, 200], ["on", missing, 503], ["auto", silentPath, 200]] as const) {
          const again = startKnockgate({ KNOCK_DOCKER: mode, KNOCK_DOCKER_HOST: `unix://${host}`, KNOCK_FIREWALL: backend, KNOCK_ON_EXIT: "keep" });
          try {
            await again.waitFor("ready", 30_000);
            assert.ok(again.events("targets_kept").some((l) => JSON.stringify(l["targets"]).includes(`${port}/tcp`)), `${mode} ${host}: the port is kept`);
            assert.equal(await reaches(HOST_V4, port), false, `${mode} ${host}: the labelled port must stay closed while Docker is away`);
            const r = await readyz(HTTP.main);
            assert.equal(r.status, status, r.body.reasons.join("\n"));
            assert.match(r.body.checks.find((c) => c.name === "kept_targets")?.detail ?? "", new RegExp(`${port}/tcp`));
          } finally {
            await stopKnockgate(again);
          }
        }
      } finally {
        silent.close();
        rmSync(silentPath, { force: true });
      }
      // The engine back: it lists the container, which replaces what was kept; the port stays closed, and the last run cleans up.
      await withKnockgate({ KNOCK_DOCKER: "on", KNOCK_FIREWALL: backend }, async (daemon) => {
        assert.ok(daemon.events("kept_released").length + daemon.events("targets_kept").length > 0);
        assert.equal(await reaches(HOST_V4, port), false);
        const r = await readyz(HTTP.main);
        assert.equal(r.status, 200, r.body.reasons.join("\n"));
        assert.equal(r.body.checks.find((c) => c.name === "kept_targets"), undefined);
      });
      await removeRunContainers();
    });
  }

  test("the Docker socket replaced (the proxy at KNOCK_DOCKER_HOST stopped, its path gone, a new one started there): the same process follows it again; the labelled port stays closed to others meanwhile; a knock after opens", { timeout: 120_000 }, async () => {
    await removeRunContainers();
    const port = 22309;
    const path = `/run/knockgate-test-${process.pid}-replaced.sock`;
    let relay = await socketProxy(path);
    try {
      await withKnockgate({ KNOCK_DOCKER: "on", KNOCK_DOCKER_HOST: `unix://${path}` }, async (daemon) => {
        await container("relayed", ["-p", `${port}:8080`]);
        await protecting(daemon, port);
        await knockIn(daemon);
        await answering(HOST_V4, port);
        assert.equal(await metric(HTTP.main, "knockgate_docker_connected"), 1);
        const watch = watchPort(port, 60_000);

        await stopProxy(relay);
        rmSync(path, { force: true });
        await daemon.waitFor("docker_unavailable", 10_000);
        assert.equal(await metric(HTTP.main, "knockgate_docker_connected"), 0);
        assert.equal((await readyz(HTTP.main)).status, 503);
        // The engine and the container run on: only knockgate is blind, and the port must not notice.
        await sleep(2000);
        relay = await socketProxy(path);
        await daemon.waitFor("docker_connected", 30_000, (l) => l["down_since"] !== undefined);
        const greeted = await watch.stop();
        assert.equal(greeted[OTHER_V4], 0, "the labelled port must stay closed to others while the socket is away");
        assert.ok((greeted[CLIENT_V4] ?? 0) > 0, `the watch must see the service answer the knocker (${JSON.stringify(greeted)})`);
        await waitUntil("/readyz to be ready again", 10_000, async () => ((await readyz(HTTP.main)).status === 200 ? true : undefined));
        assert.equal(await metric(HTTP.main, "knockgate_docker_connected"), 1);
        assert.ok((await metric(HTTP.main, "knockgate_docker_reconnects_total")) >= 1);
        await knockFrom(daemon, OTHER_V4);
        assert.equal(await reaches(HOST_V4, port, OTHER_V4), true, "a knock after the socket came back opens the labelled port");
        assert.deepEqual([daemon.child.exitCode, daemon.child.signalCode, daemon.events("starting").length], [null, null, 1], "the same daemon throughout");
      });
    } finally {
      await stopProxy(relay);
      rmSync(path, { force: true });
      await removeRunContainers();
    }
  });
});

const PROBE_EVERY_MS = 2;

/**
 * A script for the client namespace that tries each port from OTHER_V4 (no grant) every
 * PROBE_EVERY_MS for `durationMs` and prints, per port, the times (ms) at which a connection got the
 * service's greeting.
 */
function prober(ports: number[], durationMs: number): string {
  return `
    const net = require("net");
    const start = performance.now();
    const seen = {};
    let open = 0;
    const tick = setInterval(() => {
      if (performance.now() - start > ${durationMs}) { clearInterval(tick); const wait = setInterval(() => { if (open === 0) { clearInterval(wait); console.log(JSON.stringify(seen)); } }, 20); return; }
      for (const port of ${JSON.stringify(ports)}) {
        if (open > 400) return;
        open++;
        const at = performance.now();
        const s = net.connect({ host: "${HOST_V4}", port, localAddress: "${OTHER_V4}" });
        s.on("close", () => open--);
        s.setTimeout(100, () => s.destroy());
        s.on("error", () => undefined);
        s.on("data", (d) => { if (String(d).startsWith("hello")) (seen[port] ??= []).push(Math.round(at - start)); s.destroy(); });
      }
    }, ${PROBE_EVERY_MS});`;
}

/**
 * Connects to HOST_V4:`port` from CLIENT_V4 and OTHER_V4 every 50 ms from the client namespace
 * until stop() (at most `maxMs`); stop() resolves with how many connections from each source got
 * the service's greeting.
 */
function watchPort(port: number, maxMs: number): { stop: () => Promise<Record<string, number>> } {
  const stopFile = join(tmpdir(), `knockgate-watch-${process.pid}-${port}`);
  rmSync(stopFile, { force: true });
  const script = `
    const net = require("net"), fs = require("fs");
    const start = Date.now();
    const greeted = { "${CLIENT_V4}": 0, "${OTHER_V4}": 0 };
    let open = 0;
    const tick = setInterval(() => {
      if (fs.existsSync(${JSON.stringify(stopFile)}) || Date.now() - start > ${maxMs}) {
        clearInterval(tick);
        const wait = setInterval(() => { if (open === 0) { clearInterval(wait); console.log(JSON.stringify(greeted)); } }, 20);
        return;
      }
      for (const from of Object.keys(greeted)) {
        if (open > 100) return;
        open++;
        const s = net.connect({ host: "${HOST_V4}", port: ${port}, localAddress: from });
        s.on("close", () => open--);
        s.setTimeout(200, () => s.destroy());
        s.on("error", () => undefined);
        s.on("data", (d) => { if (String(d).startsWith("hello")) greeted[from]++; s.destroy(); });
      }
    }, 50);`;
  const running = net.exec([process.execPath, "-e", script], maxMs + 10_000);
  return {
    stop: async () => {
      writeFileSync(stopFile, "");
      const r = await running;
      rmSync(stopFile, { force: true });
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as Record<string, number>;
    },
  };
}

/** Knocks from `from` with the knock client's own code (`knockgate knock` has no source option) and waits for the grant. */
async function knockFrom(daemon: DaemonProcess, from: string): Promise<void> {
  const sequence = KNOCKS.map((port) => ({ port: Number(port), proto: "tcp" }));
  const script = `import(${JSON.stringify(`${ROOT}dist/src/cli/knock-client.js`)}).then((m) => m.knock({ host: "${HOST_V4}", sequence: ${JSON.stringify(sequence)}, delayMs: 0, localAddress: "${from}" }))`;
  const r = await net.exec([process.execPath, "-e", script]);
  assert.equal(r.code, 0, r.stderr);
  await daemon.waitFor("open", 5000, (l) => l["src"] === from);
}
