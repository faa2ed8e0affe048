/**
 * The container image and the compose demo, end to end, the way they are used: `docker build`, then
 * `docker run --network host --cap-add NET_ADMIN --cap-add NET_RAW`, which puts the daemon in this
 * machine's root network namespace. Knocks come from a client network namespace over a veth pair
 * on 198.18.200.0/24 and knockgate protects a test-only port (22222/tcp; the compose demo: 2222/tcp):
 * see test/support/docker-host.ts for why that leaves the machine's real traffic alone and how
 * everything is removed afterwards, on failure too.
 *
 * Needs root and a Docker daemon with the base images (in CI, .ci/run runs
 * ../shared/containers/setup-docker.sh and base-images.sh first): fails rather than skips without.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import {
  CLIENT_V4,
  ClientNet,
  HOST_IFACE,
  HOST_V4,
  OTHER_V4,
  ROOT,
  RUN_NAME,
  TEST_DOOR,
  containerLogs,
  hostVariant,
  inspect,
  knockgateObjects,
  must,
  nftTables,
  onlyOurs,
  removeTestFirewall,
  run,
  waitForEvent,
  waitUntil,
  type Variant,
} from "../support/docker-host.js";

const IMAGE = "knockgate:test";
const BASE = "node:24-bookworm-slim";
const MAX_ADDED_BYTES = 60 * 1000 * 1000;
const PROTECTED = 22222;
const KNOCKS = ["7101", "7102", "7103"];
const HTTP_ADDR = "127.0.0.1:29180";
const PROJECT = RUN_NAME;
const CONTAINERS = { keep: `${RUN_NAME}-keep`, hardened: `${RUN_NAME}-hardened` };
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string };
const git = (...args: string[]) => must(["git", "-C", ROOT, ...args]).then((out) => out.trim());
/** What CI passes to `docker build`, as the Dockerfile's header suggests (set in the build test). */
const BUILD_ARGS = { VERSION: PKG.version, REVISION: "", CREATED: "", SOURCE: "https://git.example/knockgate.git" };
const buildArgs = (args: Record<string, string>) => Object.entries(args).flatMap(([k, v]) => ["--build-arg", `${k}=${v}`]);
const OCI = "org.opencontainers.image.";
/** `knockgate version` in the image: this build, on Node.js 24. */
const versionLine = (revision: string) =>
  new RegExp(`^knockgate ${PKG.version.replaceAll(".", "\\.")} \\(revision ${revision}, Node\\.js v24\\.\\d+\\.\\d+\\)$`);

const net = new ClientNet();
let variant: Variant = "nft";
let tablesBefore = new Set<string>();
let ownFirewall = false;
let listener: Server | null = null;
let composeUp = false;
const composeImagesBefore = new Set<string>();

const daemonEnv = (onExit: "keep" | "remove") => [
  "-e", `KNOCK_DOOR_${TEST_DOOR}_SEQUENCE=${KNOCKS.join(",")}`,
  "-e", `KNOCK_DOOR_${TEST_DOOR}_PORTS=${PROTECTED}/tcp`,
  "-e", `KNOCK_DOOR_${TEST_DOOR}_OPEN_FOR=120`,
  "-e", `KNOCK_INTERFACE=${HOST_IFACE}`,
  "-e", `KNOCK_HTTP_ADDR=${HTTP_ADDR}`,
  "-e", "KNOCK_RECONCILE_INTERVAL=0.5",
  "-e", `KNOCK_ON_EXIT=${onExit}`,
];

/** A GET on the daemon's HTTP address from inside its container (it listens on the host's loopback): "STATUS BODY". */
const daemonHttp = (name: string, path: string) =>
  must(["docker", "exec", name, "node", "-e", `fetch("http://${HTTP_ADDR}${path}").then(async (r) => console.log(r.status, await r.text()))`]);

/** A TCP server on HOST_V4:port that sends each client one line. */
async function greeter(port: number, line: string): Promise<Server> {
  const server = createServer((s) => {
    s.on("error", () => undefined); // clients here hang up abruptly
    s.end(`${line}\n`);
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, HOST_V4, resolve);
  });
  return server;
}

async function compose(args: string[], timeoutMs = 60_000, env: NodeJS.ProcessEnv = {}): Promise<string> {
  return must(["docker", "compose", "-p", PROJECT, "-f", join(ROOT, "compose.yaml"), ...args], {
    timeoutMs,
    env: { ...process.env, ...env },
  });
}

before(async () => {
  assert.equal(process.getuid?.(), 0, "the docker tests need root (network namespaces, the root namespace's firewall)");
  const info = await run(["docker", "info", "--format", "{{.ServerVersion}}"], { timeoutMs: 20_000 });
  assert.equal(
    info.code,
    0,
    `no Docker daemon answers (docker info: ${info.stderr.trim() || info.stdout.trim()}).\n` +
      "Run: bash ../shared/containers/setup-docker.sh && bash ../shared/containers/base-images.sh",
  );
  const base = await run(["docker", "image", "inspect", BASE], { timeoutMs: 20_000 });
  assert.equal(base.code, 0, `base image ${BASE} is missing; run: bash ../shared/containers/base-images.sh`);

  // Leftovers of a run that was killed: our containers, the client namespace, the test's own rules.
  for (const id of (await run(["docker", "ps", "-aq", "--filter", "name=^kgtest-"])).stdout.split("\n").filter(Boolean)) {
    await run(["docker", "rm", "-f", id]);
  }
  ClientNet.removeStale();
  variant = hostVariant();
  const existing = await knockgateObjects();
  // A killed run also left the empty mangle tables it caused: with nothing "before", they go too.
  if (existing !== "" && onlyOurs(existing)) await removeTestFirewall(variant, new Set());
  const present = await knockgateObjects();
  assert.equal(
    present,
    "",
    "this machine's root network namespace already has knockgate objects (a knockgate of yours, e.g. the compose demo?).\n" +
      "The test would fight over them: stop it (docker compose down) or remove them (node dist/src/cli/main.js cleanup) first.\n" +
      present,
  );
  tablesBefore = nftTables();
  ownFirewall = true;
  net.create();
  listener = await greeter(PROTECTED, "protected service");
});

after(async () => {
  for (const name of Object.values(CONTAINERS)) await run(["docker", "rm", "-f", name], { timeoutMs: 30_000 });
  if (composeUp) {
    await run(["docker", "compose", "-p", PROJECT, "-f", join(ROOT, "compose.yaml"), "down", "-v", "--timeout", "20"], { timeoutMs: 60_000 });
    for (const image of ["knockgate:local", "knockgate-demo-sshd:local"]) {
      if (!composeImagesBefore.has(image)) await run(["docker", "rmi", image], { timeoutMs: 30_000 });
    }
  }
  listener?.close();
  net.destroy();
  if (ownFirewall) await removeTestFirewall(variant, tablesBefore);
  await run(["docker", "rmi", IMAGE], { timeoutMs: 30_000 });
});

describe("container image", { concurrency: false }, () => {
  test("docker build --build-arg VERSION, REVISION, CREATED, SOURCE", { timeout: 600_000 }, async () => {
    BUILD_ARGS.REVISION = await git("rev-parse", "HEAD");
    BUILD_ARGS.CREATED = await git("log", "-1", "--format=%cI");
    const r = await run(["docker", "build", ...buildArgs(BUILD_ARGS), "-t", IMAGE, ROOT], { timeoutMs: 590_000 });
    assert.equal(r.code, 0, `docker build failed:\n${r.stdout.slice(-4000)}\n${r.stderr.slice(-4000)}`);
  });

  test("OCI labels from the build arguments; `version` and knockgate_build_info show the same version and revision", { timeout: 60_000 }, async () => {
    const labels = JSON.parse(await inspect(IMAGE, "{{json .Config.Labels}}")) as Record<string, string>;
    assert.deepEqual(
      Object.fromEntries(Object.entries(labels).filter(([k]) => k.startsWith(OCI))),
      {
        [`${OCI}title`]: "knockgate",
        [`${OCI}description`]: labels[`${OCI}description`],
        [`${OCI}licenses`]: "MIT",
        [`${OCI}version`]: BUILD_ARGS.VERSION,
        [`${OCI}revision`]: BUILD_ARGS.REVISION,
        [`${OCI}created`]: BUILD_ARGS.CREATED,
        [`${OCI}source`]: BUILD_ARGS.SOURCE,
      },
    );
    assert.match(labels[`${OCI}description`] ?? "", /port.knocking/i);
    // The daemon's and the client's: both are the image's node.
    for (const args of [["version"], ["knock", "--version"]]) {
      const out = await must(["docker", "run", "--rm", "--network", "none", IMAGE, ...args]);
      assert.match(out.trim(), versionLine(BUILD_ARGS.REVISION), args.join(" "));
    }
  });

  test("build arguments left out: version from package.json, revision, created and source unknown; a VERSION other than package.json's is refused", { timeout: 300_000 }, async () => {
    const image = `${IMAGE}-defaults`;
    try {
      await must(["docker", "build", "-t", image, ROOT], { timeoutMs: 290_000 });
      const labels = JSON.parse(await inspect(image, "{{json .Config.Labels}}")) as Record<string, string>;
      assert.equal(labels[`${OCI}version`], PKG.version, "the Dockerfile's default VERSION must be package.json's version");
      for (const what of ["revision", "created", "source"]) assert.equal(labels[`${OCI}${what}`], "unknown", what);
      assert.match((await must(["docker", "run", "--rm", "--network", "none", image, "version"])).trim(), versionLine("unknown"));
    } finally {
      await run(["docker", "rmi", image], { timeoutMs: 30_000 });
    }
    const wrong = await run(["docker", "build", "--build-arg", "VERSION=0.0.0-wrong", "-t", image, ROOT], { timeoutMs: 290_000 });
    assert.notEqual(wrong.code, 0, "a build whose VERSION differs from package.json must fail");
    assert.match(`${wrong.stdout}${wrong.stderr}`, new RegExp(`VERSION is "0\\.0\\.0-wrong" but package\\.json says "${PKG.version}"`));
  });

  test("runtime image: small, only production dependencies, tini as PID 1, both iptables variants", { timeout: 120_000 }, async () => {
    const size = (image: string) => inspect(image, "{{.Size}}").then(Number);
    const added = (await size(IMAGE)) - (await size(BASE));
    const history = await must(["docker", "history", "--format", "{{.Size}}\t{{.CreatedBy}}", IMAGE]);
    assert.ok(added <= MAX_ADDED_BYTES, `the image adds ${(added / 1e6).toFixed(1)} MB to ${BASE} (limit 60 MB):\n${history}`);

    assert.equal(await inspect(IMAGE, "{{json .Config.Entrypoint}}"), '["tini","--","node","/app/dist/src/cli/main.js"]');
    assert.equal(await inspect(IMAGE, "{{json .Config.Cmd}}"), '["run"]');
    assert.match(await inspect(IMAGE, "{{json .Config.Healthcheck.Test}}"), /"node","\/app\/dist\/src\/cli\/main.js","healthcheck"/);

    const script = [
      "set -e",
      "for t in tini stdbuf iptables-nft iptables-legacy ip6tables-nft ip6tables-legacy iptables-nft-save iptables-legacy-save ipset nft; do command -v $t >/dev/null || { echo missing $t; exit 1; }; done",
      "test ! -e node_modules/typescript && test ! -e node_modules/eslint && test ! -e node_modules/kubernetes-models",
      "test ! -e src && test ! -e test && test ! -e dist/test",
      "node -e \"require('cap')\"",
    ].join("\n");
    await must(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", IMAGE, "-c", script]);

    // The firewall tools work in the image (in a network namespace of the container's own).
    const tools = await run(
      ["docker", "run", "--rm", "--network", "none", "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
        "--entrypoint", "sh", IMAGE, "-c", "nft list ruleset && iptables-legacy -t mangle -S && iptables-nft -t mangle -S && ipset list -n"],
      { timeoutMs: 60_000 },
    );
    assert.equal(tools.code, 0, tools.stderr);
    assert.match(tools.stdout, /-P PREROUTING ACCEPT/);
  });

  test("`docker run --rm --network host IMAGE knock HOST PORTS...` sends the knocks", { timeout: 60_000 }, async () => {
    const target = await net.listen(7201);
    try {
      const r = await run(
        ["docker", "run", "--rm", "--network", "host", IMAGE, "knock", "-v", "--wait", "7201", "--timeout", "3000", CLIENT_V4, "7201:udp"],
        { timeoutMs: 30_000 },
      );
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, new RegExp(`hitting udp ${CLIENT_V4}:7201`));
      await waitUntil("the knock and the connection at the target", 3000, async () =>
        target.seen.includes(`udp ${HOST_V4}`) && target.seen.includes(`tcp ${HOST_V4}`) ? true : undefined,
      );
    } finally {
      await target.stop();
    }
  });
});

describe("knockgate in a container on the host network", { concurrency: false }, () => {
  test("only --network host + NET_ADMIN + NET_RAW: protects, opens for the knocker, keeps and adopts across a restart", { timeout: 180_000 }, async () => {
    const name = CONTAINERS.keep;
    await must([
      "docker", "run", "-d", "--name", name, "--network", "host", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
      "--health-interval", "1s", "--health-start-period", "30s", ...daemonEnv("keep"), IMAGE,
    ]);
    const installed = await waitForEvent(name, "firewall_installed");
    assert.equal(installed["backend"], `iptables-${variant}`, "the daemon must pick the iptables variant this machine uses");
    await waitForEvent(name, "ready");
    assert.equal((await waitForEvent(name, "starting"))["revision"], BUILD_ARGS.REVISION);
    const metrics = await daemonHttp(name, "/metrics");
    assert.ok(
      metrics.includes(`knockgate_build_info{version="${BUILD_ARGS.VERSION}",revision="${BUILD_ARGS.REVISION}",backend="${installed["backend"]}",nodejs="v24.`),
      `knockgate_build_info must name this build and Node.js 24:\n${metrics.split("\n").filter((l) => l.includes("build_info")).join("\n")}`,
    );
    const pid1 = await must(["docker", "exec", name, "sh", "-c", "tr '\\0' ' ' </proc/1/cmdline"]);
    assert.equal(pid1.trim(), "tini -- node /app/dist/src/cli/main.js run", "PID 1 must be tini, with the daemon under it");

    const objects = await knockgateObjects();
    assert.match(objects, /-A PREROUTING -j KNOCKGATE/);
    assert.match(objects, new RegExp(`ipset: knockgate-${TEST_DOOR}-4`));
    const drops = objects.split("\n").filter((l) => / -j DROP/.test(l));
    assert.ok(drops.length > 0 && drops.every((l) => l.includes(`--dports ${PROTECTED} `)), `only the test port may be dropped:\n${objects}`);

    assert.equal((await net.connect(HOST_V4, PROTECTED)).ok, false, "the protected port must be closed before knocking");
    const knock = await net.knock([HOST_V4, ...KNOCKS]);
    assert.equal(knock.code, 0, knock.stderr);
    const open = await waitForEvent(name, "open");
    assert.equal(open["src"], CLIENT_V4);
    assert.equal(open["door"], TEST_DOOR);
    const conn = await net.connect(HOST_V4, PROTECTED, { banner: true });
    assert.deepEqual(conn, { ok: true, banner: "protected service" }, "the knocker must get in");
    assert.equal((await net.connect(HOST_V4, PROTECTED, { from: OTHER_V4 })).ok, false, "another address must stay out");

    await waitUntil("HEALTHCHECK (knockgate healthcheck) to report healthy", 30_000, async () =>
      (await inspect(name, "{{.State.Health.Status}}")) === "healthy" ? true : undefined,
    );

    // docker restart = SIGTERM to tini, which passes it on; KNOCK_ON_EXIT=keep; then a new start.
    await must(["docker", "restart", "-t", "20", name], { timeoutMs: 60_000 });
    const stopping = await waitForEvent(name, "stopping");
    assert.equal(stopping["signal"], "SIGTERM", "SIGTERM must reach the daemon through tini");
    await waitForEvent(name, "firewall_kept");
    await waitForEvent(name, "firewall_adopted", { timeoutMs: 30_000 });
    await waitForEvent(name, "ready", { count: 2 });
    assert.equal((await containerLogs(name)).filter((l) => l.event === "firewall_installed").length, 1, "the restart must adopt, not reinstall");
    assert.equal((await net.connect(HOST_V4, PROTECTED)).ok, true, "the grant from before the restart must still work");

    await must(["docker", "stop", "-t", "20", name], { timeoutMs: 60_000 });
    assert.equal(await inspect(name, "{{.State.ExitCode}}"), "0");
    await waitForEvent(name, "firewall_kept", { count: 2 });
    assert.match(await knockgateObjects(), /-A PREROUTING -j KNOCKGATE/, "keep: the protection stays after the container stops");
    assert.equal((await net.connect(HOST_V4, PROTECTED, { from: OTHER_V4 })).ok, false, "still closed to others without the daemon");
    await must(["docker", "rm", name]);
  });

  test("hardened like the Helm chart (cap-drop ALL, read-only, no-new-privileges): adopts, then KNOCK_ON_EXIT=remove cleans up", { timeout: 120_000 }, async () => {
    const name = CONTAINERS.hardened;
    await must([
      "docker", "run", "-d", "--name", name, "--network", "host",
      "--cap-drop", "ALL", "--cap-add", "NET_ADMIN", "--cap-add", "NET_RAW",
      "--read-only", "--tmpfs", "/run", "--security-opt", "no-new-privileges:true",
      ...daemonEnv("remove"), IMAGE,
    ]);
    await waitForEvent(name, "firewall_adopted", { timeoutMs: 30_000 });
    await waitForEvent(name, "ready");
    const ready = await daemonHttp(name, "/readyz");
    assert.match(ready, /^200 /, ready);
    assert.equal((await net.connect(HOST_V4, PROTECTED)).ok, true, "the grant made under the previous container must still work");
    assert.equal((await net.connect(HOST_V4, PROTECTED, { from: OTHER_V4 })).ok, false);

    await must(["docker", "stop", "-t", "20", name], { timeoutMs: 60_000 });
    assert.equal(await inspect(name, "{{.State.ExitCode}}"), "0");
    await waitForEvent(name, "firewall_removed");
    assert.equal(await knockgateObjects(), "", "remove: no knockgate object may stay in the host's namespace");
    assert.equal((await net.connect(HOST_V4, PROTECTED, { from: OTHER_V4 })).ok, true, "without protection the port is open to all again");
    await must(["docker", "rm", name]);
  });
});

describe("compose demo", { concurrency: false }, () => {
  test("docker compose config -q validates compose.yaml, which has the documented shape", { timeout: 60_000 }, async () => {
    await compose(["config", "-q"]);
    const config = JSON.parse(await compose(["--profile", "cleanup", "config", "--format", "json"])) as {
      services: Record<string, Record<string, unknown> & { environment?: Record<string, string | null> }>;
      secrets?: Record<string, { file?: string }>;
    };
    const kg = config.services["knockgate"];
    const sshd = config.services["demo-sshd"];
    const cleanup = config.services["cleanup"];
    assert.ok(kg && sshd && cleanup, "services knockgate, demo-sshd and cleanup");
    assert.equal(kg["network_mode"], "host");
    assert.equal(kg["image"], "knockgate:local");
    assert.equal(kg["restart"], "unless-stopped");
    assert.deepEqual([...(kg["cap_add"] as string[])].sort(), ["NET_ADMIN", "NET_RAW"]);
    // The sshd's port comes from its label, through the socket, mounted read-only.
    assert.equal(kg.environment?.["KNOCK_DOOR_SSH_PORTS"], "none");
    assert.equal(kg.environment?.["KNOCK_DOCKER"], "on");
    assert.deepEqual(sshd["labels"], { "knockgate.door": "SSH" });
    assert.deepEqual(kg["volumes"], [{ type: "bind", source: "/var/run/docker.sock", target: "/var/run/docker.sock", read_only: true, bind: { create_host_path: true } }]);
    assert.equal(kg.environment?.["KNOCK_ON_EXIT"] ?? "keep", "keep", "fail closed: stopping knockgate must not open 2222 to all");
    // The sequence only in a secret file, mounted where KNOCK_DOOR_SSH_SEQUENCE_FILE points.
    assert.equal(kg.environment?.["KNOCK_DOOR_SSH_SEQUENCE"], undefined, "the sequence must not be a variable (docker inspect shows those)");
    const [secret] = kg["secrets"] as { source: string; target: string }[];
    assert.equal(kg.environment?.["KNOCK_DOOR_SSH_SEQUENCE_FILE"], secret?.target);
    assert.equal(config.secrets?.[secret?.source ?? ""]?.file, join(ROOT, "demo", "knock-sequence"));
    // The uninstall step: the same image, in the host's namespace, only NET_ADMIN, only on request.
    assert.deepEqual(cleanup["profiles"], ["cleanup"]);
    assert.deepEqual(cleanup["command"], ["cleanup"]);
    for (const key of ["image", "network_mode", "cap_drop", "read_only", "security_opt"]) assert.deepEqual(cleanup[key], kg[key], key);
    assert.deepEqual(cleanup["cap_add"], ["NET_ADMIN"]);
    const dependsOn = sshd["depends_on"] as Record<string, { condition?: string }> | undefined;
    assert.equal(dependsOn?.["knockgate"]?.condition, "service_healthy", "the sshd must start only behind a protecting knockgate");
    assert.equal((sshd["ports"] as { published: string; target: number }[])[0]?.published, "2222");
    // No key material in the demo's build context: keys come at run time.
    for (const file of readdirSync(join(ROOT, "demo"), { recursive: true }) as string[]) {
      const path = join(ROOT, "demo", file);
      if (statSync(path).isFile()) assert.doesNotMatch(readFileSync(path, "utf8"), /PRIVATE KEY|ssh-(ed25519|rsa) AAAA/, path);
    }
  });

  test("docker compose up: 2222 is closed until a knock, the sshd answers the knocker; down keeps 2222 closed, the cleanup profile uninstalls", { timeout: 420_000 }, async () => {
    const busy = await new Promise<boolean>((resolve) => {
      const probe = createServer();
      probe.once("error", () => resolve(true));
      probe.listen(2222, "0.0.0.0", () => probe.close(() => resolve(false)));
    });
    assert.equal(busy, false, "port 2222 is in use on this machine; the compose demo publishes it");
    for (const image of ["knockgate:local", "knockgate-demo-sshd:local"]) {
      if ((await run(["docker", "image", "inspect", image])).code === 0) composeImagesBefore.add(image);
    }
    composeUp = true;
    // Knocks arrive on the test veth here (a real host: on the default-route interface, the default).
    await compose(["up", "-d", "--build", "--wait", "--wait-timeout", "180"], 360_000, {
      KNOCK_INTERFACE: HOST_IFACE,
      DEMO_AUTHORIZED_KEYS: "",
    });
    assert.match(await compose(["logs", "--no-color", "knockgate"]), /"event":"ready"/);

    assert.equal((await net.connect(HOST_V4, 2222, { banner: true, timeoutMs: 1000 })).ok, false, "2222 must be closed before knocking");
    const knock = await net.knock(["--wait", "2222", "--timeout", "5000", HOST_V4, "7000", "8000", "9000"]);
    assert.equal(knock.code, 0, knock.stderr);
    const conn = await net.connect(HOST_V4, 2222, { banner: true, timeoutMs: 5000 });
    assert.equal(conn.ok, true, "the knocker must reach the sshd");
    assert.match(conn.banner, /^SSH-2\.0-OpenSSH/);
    assert.equal((await net.connect(HOST_V4, 2222, { from: OTHER_V4, timeoutMs: 1000 })).ok, false, "others must stay out");

    // `stop` first, as `down` does, so that the daemon's whole log (to its last line) can be read.
    await compose(["stop", "--timeout", "20"], 120_000);
    const logs = await compose(["logs", "--no-color", "knockgate"]);
    assert.match(logs, /"event":"firewall_kept"/, "the default exit policy, keep");
    const sequence = readFileSync(join(ROOT, "demo", "knock-sequence"), "utf8").trim().split(",").map((p) => p.split(":")[0]);
    const leak = new RegExp(`(?<![\\d.])(?:${sequence.join("|")})(?![\\d.])`);
    assert.deepEqual(logs.split("\n").filter((l) => leak.test(l)), [], "no knock port of the secret sequence may show in the daemon's log");

    // Fail closed: with the stack down, a new listener on 2222 is still out of reach, until the cleanup.
    await compose(["down", "-v", "--timeout", "20"], 120_000);
    assert.match(await knockgateObjects(), /-A PREROUTING -j KNOCKGATE/, "`docker compose down` must leave the protection in place");
    const standIn = await greeter(2222, "stand-in");
    try {
      // From OTHER_V4: the knocker's grant may not have run out yet, and rightly still works.
      assert.equal((await net.connect(HOST_V4, 2222, { from: OTHER_V4, timeoutMs: 1000 })).ok, false, "after down, 2222 must stay closed");
      const cleanup = await compose(["--profile", "cleanup", "run", "--rm", "cleanup"], 120_000);
      assert.match(cleanup, /removed knockgate objects from: /);
      assert.equal(await knockgateObjects(), "", "the cleanup profile must remove every knockgate chain, set and table");
      for (const save of ["iptables-save", "ip6tables-save"]) assert.doesNotMatch(await must([save]), /knock/i, save);
      assert.equal((await net.connect(HOST_V4, 2222, { from: OTHER_V4, timeoutMs: 1000 })).ok, true, "after the cleanup, 2222 is open to all again");
    } finally {
      standIn.close();
    }

    // The README's last teardown steps: `run` made the project's network again; then the images.
    await compose(["down", "-v"], 120_000);
    composeUp = false;
    for (const image of ["knockgate:local", "knockgate-demo-sshd:local"]) {
      if (!composeImagesBefore.has(image)) await run(["docker", "rmi", image], { timeoutMs: 30_000 });
    }
  });
});
