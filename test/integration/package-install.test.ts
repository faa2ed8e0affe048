/**
 * The package as users get it: `npm pack`, then an install of the tarball with no compiler, no
 * libpcap headers and without the optional `cap`. The client and the commands that touch no
 * capture must work; the daemon must name the missing binding when it opens a capture.
 *
 * It packs a copy of the repository, so prepack's build never rewrites the dist/ other tests run
 * from. The install fetches the dependencies from the npm registry: it must be reachable.
 */
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, symlinkSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { basename, delimiter, join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const PKG = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { name: string; version: string };
const INSTALL_TIMEOUT_MS = 4 * 60_000;

/** npm's own script, run with this node: the install below runs with a PATH that holds no npm. */
function npmCli(): string {
  for (const dir of (process.env["PATH"] ?? "").split(delimiter)) {
    const candidate = join(dir, "npm");
    if (existsSync(candidate)) return realpathSync(candidate);
  }
  throw new Error("npm is not on PATH");
}

const tmp = mkdtempSync(join(tmpdir(), "knockgate-pack-"));
/** The only commands an install gets: node for the scripts, sh for npm to run them. No cc, g++, make or python3. */
const bareBin = join(tmp, "bin");
/** The environment of the outer `npm run`, if any, is not the one under test. */
const bareEnv: Record<string, string> = {
  ...Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => !/^npm_/i.test(e[0]) && e[1] !== undefined)),
  PATH: bareBin,
};
const prefix = join(tmp, "prefix");
const knockgate = join(prefix, "node_modules", ".bin", "knockgate");
let packed: { filename: string; files: { path: string }[] };

before(() => {
  mkdirSync(bareBin);
  symlinkSync(process.execPath, join(bareBin, "node"));
  symlinkSync("/bin/sh", join(bareBin, "sh"));

  const source = join(tmp, "source");
  const skipped = new Set(["node_modules", "dist", ".git"]);
  cpSync(ROOT, source, { recursive: true, filter: (path) => !skipped.has(basename(path)) });
  symlinkSync(realpathSync(join(ROOT, "node_modules")), join(source, "node_modules"));
  const pack = spawnSync(process.execPath, [npmCli(), "pack", "--json", "--pack-destination", tmp], { cwd: source, encoding: "utf8", timeout: 120_000 });
  assert.equal(pack.status, 0, `npm pack failed:\n${pack.stderr}`);
  const [result] = JSON.parse(pack.stdout) as (typeof packed)[];
  assert.ok(result, `npm pack reported no tarball:\n${pack.stdout}`);
  packed = result;
});

after(() => rmSync(tmp, { recursive: true, force: true }));

describe("the packed tarball", () => {
  test("holds the built code, the postinstall, package.json, the README and the LICENSE, and nothing else", () => {
    const paths = packed.files.map((f) => f.path);
    for (const path of paths) assert.match(path, /^(package\.json|README\.md|LICENSE|patches\/cap\.mjs|dist\/src\/.+\.js)$/);
    for (const path of ["package.json", "LICENSE", "patches/cap.mjs", "dist/src/cli/main.js", "dist/src/cli/knock.js", "dist/src/adapters/capture.js"]) {
      assert.ok(paths.includes(path), `${path} is missing from ${packed.filename}`);
    }
  });
});

describe("installed without build tools and without the optional cap", () => {
  before(() => {
    // Fails in seconds where the install would retry for minutes.
    const ping = spawnSync(process.execPath, [npmCli(), "ping", "--fetch-retries=0", "--fetch-timeout=20000"], { env: bareEnv, encoding: "utf8", timeout: 30_000 });
    assert.ok(ping.status === 0, `the npm registry is unreachable, and the install needs it for the dependencies (npm ping: ${ping.error?.message ?? ping.stderr})`);
    const install = spawnSync(
      process.execPath,
      [npmCli(), "install", "--prefix", prefix, "--omit=optional", "--no-audit", "--no-fund", join(tmp, packed.filename)],
      { cwd: tmp, env: bareEnv, encoding: "utf8", timeout: INSTALL_TIMEOUT_MS, killSignal: "SIGKILL" },
    );
    assert.ok(
      install.status === 0,
      `npm install of ${packed.filename} failed (${install.error?.message ?? `exit ${install.status}`}):\n${install.stderr}`,
    );
    assert.ok(!existsSync(join(prefix, "node_modules", "cap")), "cap was installed: the test would not show the client works without it");
  });

  const run = (args: string[], env: Record<string, string> = {}) =>
    spawnSync(knockgate, args, { env: { ...bareEnv, ...env }, encoding: "utf8", timeout: 10_000, killSignal: "SIGKILL" });

  test("knockgate knock --help prints the client's usage", () => {
    const r = run(["knock", "--help"]);
    assert.equal(r.stderr, "");
    assert.equal(r.status, 0);
    assert.match(r.stdout, /^usage: knockgate knock /);
  });

  test("knockgate --version prints the version", () => {
    const r = run(["--version"]);
    assert.equal(r.status, 0);
    // Outside the image no revision is known: the installed package says so rather than guess.
    assert.equal(r.stdout, `knockgate ${PKG.version} (revision unknown, Node.js ${process.version})\n`);
  });

  test("knockgate check validates a configuration", () => {
    const r = run(["check"], { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", KNOCK_INTERFACE: "lo" });
    assert.equal(r.status, 0, r.stderr);
  });

  test("the daemon reports the missing binding when it opens a capture (a dry run, touching nothing)", async () => {
    const port = await freePort();
    const daemon = spawn(knockgate, ["run"], {
      env: { ...bareEnv, KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", KNOCK_INTERFACE: "lo", KNOCK_DRY_RUN: "true", KNOCK_HTTP_ADDR: `127.0.0.1:${port}` },
      stdio: ["ignore", "pipe", "inherit"],
    });
    try {
      const line = await new Promise<Record<string, unknown>>((resolve, reject) => {
        let text = "";
        const timer = setTimeout(() => reject(new Error(`no capture_failed line in 10 s:\n${text}`)), 10_000);
        daemon.stdout.setEncoding("utf8").on("data", (chunk: string) => {
          text += chunk;
          const found = text.split("\n").find((l) => l.includes('"event":"capture_failed"'));
          if (found === undefined) return;
          clearTimeout(timer);
          resolve(JSON.parse(found) as Record<string, unknown>);
        });
      });
      assert.equal(line["code"], "KNOCK_E_CAPTURE");
      assert.equal(
        line["err"],
        "capture on lo: the libpcap binding (npm cap) is not installed: install libpcap-dev, python3, make and g++ and reinstall, or use the image",
      );
    } finally {
      daemon.kill("SIGKILL");
    }
  });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer().listen(0, "127.0.0.1", () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on("error", reject);
  });
}
