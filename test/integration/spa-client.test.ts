/**
 * `knockgate knock` on signed doors against the reference server: Debian's stock fwknopd in test
 * mode (-t: it checks datagrams fully but changes no firewall) and UDP server mode (-U), in the
 * lab's server namespace. What knockgate sends, fwknopd must decode and grant, with the ports,
 * address, username and client timeout asked for; and `knockgate convert access.conf` must give a
 * client env that fwknopd's own access.conf accepts. Also IPv6, which fwknopd cannot receive:
 * there the datagram is caught by a plain UDP socket and checked with verifySpa.
 * Needs root (namespaces) and the fwknop-client and fwknop-server packages.
 */
import assert from "node:assert/strict";
import { execFileSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { after, before, describe, test } from "node:test";
import { CLI, CLIENT_V4, CLIENT_V6, OTHER_V4, SERVER_V4, SERVER_V6, removeStaleNamespaces, withLab, type Lab } from "../support/lab.js";
import { explainFailures, tail } from "../support/failure-report.js";
import { ReplayCache } from "../../src/core/spa/replay.js";
import { verifySpa } from "../../src/core/spa/verify.js";

const SPA_PORT = 62201;
/** Addresses the datagrams ask to open for: never the client's own, so the message is what counts. */
const OPEN_FOR_V4 = "198.18.0.7";

let dir = "";
let keys = { key: "", hmac: "" };
/** What fwknopd printed during the running test, for the failure report. */
let fwknopdOutput: string[] = [];
explainFailures(
  () => {
    fwknopdOutput = [];
  },
  () => tail("fwknopd output", fwknopdOutput),
);

before(() => {
  assert.equal(process.getuid?.(), 0, "the namespace tests need root: run them as root (CI does)");
  removeStaleNamespaces();
  dir = mkdtempSync(join(tmpdir(), "knockgate-spa-client-"));
  const generated = execFileSync("fwknop", ["--key-gen"], { encoding: "utf8" });
  const line = (name: string) => new RegExp(`^${name}: (\\S+)$`, "m").exec(generated)?.[1] ?? assert.fail(`fwknop --key-gen printed no ${name}`);
  keys = { key: line("KEY_BASE64"), hmac: line("HMAC_KEY_BASE64") };
});
after(() => {
  rmSync(dir, { recursive: true, force: true });
  removeStaleNamespaces();
});

/** fwknopd as its documentation sets it up, in test and UDP server mode, on the lab's server side. */
class Fwknopd {
  readonly lines: string[] = [];
  private waiters: (() => void)[] = [];

  private constructor(readonly child: ChildProcess) {
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on("line", (l) => {
        this.lines.push(l);
        fwknopdOutput.push(l);
        for (const w of this.waiters.splice(0)) w();
      });
    }
  }

  static async start(lab: Lab, accessConf: string, name: string): Promise<Fwknopd> {
    const files = { conf: join(dir, `${name}-fwknopd.conf`), access: join(dir, `${name}-access.conf`) };
    // fwknopd warns about files others can read; the docs install them 0600.
    writeFileSync(files.conf, `PCAP_INTF ${lab.serverIface}\nUDPSERV_PORT ${SPA_PORT}\n`, { mode: 0o600 });
    writeFileSync(files.access, accessConf, { mode: 0o600 });
    const argv = ["fwknopd", "-f", "-t", "-U", "-v", "-c", files.conf, "-a", files.access];
    argv.push("-d", join(dir, `${name}-digest.cache`), "-p", join(dir, `${name}.pid`), "-r", join(dir, `${name}-run`));
    const server = new Fwknopd(lab.spawnIn(lab.server, argv));
    await server.waitFor(/Kicking off UDP server to listen on port/);
    return server;
  }

  /** Waits for a line matching `pattern` after line `from`; returns every line from `from` up to it. */
  async waitFor(pattern: RegExp, from = 0, timeoutMs = 5000): Promise<string[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const at = this.lines.findIndex((l, i) => i >= from && pattern.test(l));
      if (at >= 0) return this.lines.slice(from, at + 1);
      const left = deadline - Date.now();
      if (left <= 0 || this.child.exitCode !== null) throw new Error(`fwknopd printed no line matching ${pattern} (its output follows the failure)`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, Math.min(left, 200));
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** The "Field: value" dump fwknopd -v prints for a datagram it decoded. */
  static fields(lines: readonly string[]): Record<string, string> {
    return Object.fromEntries(lines.flatMap((l) => {
      const m = /^\s*([A-Za-z ]+): (.*)$/.exec(l);
      return m ? [[m[1]!.trim(), m[2]!]] : [];
    }));
  }
}

/** `knockgate knock ARGS` in the client namespace with an env file. */
async function knockgateKnock(lab: Lab, env: string, args: string[]): Promise<{ code: number; stderr: string }> {
  const file = join(dir, `client-${Date.now()}-${Math.random().toString(36).slice(2)}.env`);
  writeFileSync(file, env, { mode: 0o600 });
  const r = await lab.exec(lab.client, [process.execPath, CLI, "knock", "--config", file, ...args]);
  return { code: r.code, stderr: r.stderr };
}

const accessConf = (extra = "") => `SOURCE ANY\nOPEN_PORTS tcp/22,tcp/2222\nKEY_BASE64 ${keys.key}\nHMAC_KEY_BASE64 ${keys.hmac}\nFW_ACCESS_TIMEOUT 30\n${extra}`;
const clientEnv = () => `KNOCK_DOOR_SSH_SPA_KEY=${keys.key}\nKNOCK_DOOR_SSH_SPA_HMAC_KEY=${keys.hmac}\nKNOCK_DOOR_SSH_PORTS=22/tcp,2222/tcp\n`;

/** fwknopd's verdict on the next datagram: the decoded fields, once it has granted (test mode) or refused. */
async function nextVerdict(server: Fwknopd, from: number): Promise<{ granted: boolean; fields: Record<string, string>; lines: string[] }> {
  const lines = await server.waitFor(/--test mode enabled, skipping firewall manipulation|denied|required|not match|Error|error/i, from);
  return { granted: /--test mode enabled/.test(lines.at(-1)!), fields: Fwknopd.fields(lines), lines };
}

describe("knockgate knock on a signed door, against stock fwknopd", { concurrency: false }, () => {
  test("fwknopd grants what knockgate sends: the address of -a, every door port by default, the login name", () =>
    withLab(async (lab) => {
      const server = await Fwknopd.start(lab, accessConf("REQUIRE_SOURCE_ADDRESS Y\n"), "default");
      const from = server.lines.length;
      const r = await knockgateKnock(lab, clientEnv(), ["--door", "ssh", "-a", OPEN_FOR_V4, SERVER_V4]);
      assert.equal(r.code, 0, r.stderr);
      const v = await nextVerdict(server, from);
      assert.ok(v.granted, v.lines.join("\n"));
      assert.equal(v.fields["Message String"], `${OPEN_FOR_V4},tcp/22,tcp/2222`);
      assert.equal(v.fields["Message Type"], "1 (Access msg)");
      assert.equal(v.fields["Username"], execFileSync("id", ["-un"], { encoding: "utf8" }).trim());
      assert.match(v.lines.join("\n"), new RegExp(`from IP: ${CLIENT_V4.replaceAll(".", "\\.")} received`));
    }));

  test("-A, -f and -U reach fwknopd as its own client's -A, -f and -U; a second datagram is granted too", () =>
    withLab(async (lab) => {
      const server = await Fwknopd.start(lab, accessConf("REQUIRE_USERNAME alice\n"), "options");
      let from = server.lines.length;
      let r = await knockgateKnock(lab, clientEnv(), ["--door", "SSH", "-a", OPEN_FOR_V4, "-A", "tcp/2222", "-f", "45", "-U", "alice", SERVER_V4]);
      assert.equal(r.code, 0, r.stderr);
      let v = await nextVerdict(server, from);
      assert.ok(v.granted, v.lines.join("\n"));
      assert.deepEqual([v.fields["Message String"], v.fields["Client Timeout"], v.fields["Message Type"], v.fields["Username"]], [
        `${OPEN_FOR_V4},tcp/2222`,
        "45",
        "3 (Client timeout access msg)",
        "alice",
      ]);
      // Fresh randomness each time: fwknopd's replay cache takes the next datagram too.
      from = server.lines.length;
      r = await knockgateKnock(lab, clientEnv(), ["--door", "SSH", "-a", OPEN_FOR_V4, "-A", "22/tcp", "-U", "alice", SERVER_V4]);
      assert.equal(r.code, 0, r.stderr);
      v = await nextVerdict(server, from);
      assert.ok(v.granted, v.lines.join("\n"));
      assert.equal(v.fields["Message String"], `${OPEN_FOR_V4},tcp/22`);
    }));

  test("--source sends 0.0.0.0, which fwknopd grants only where no address is required", () =>
    withLab(async (lab) => {
      const server = await Fwknopd.start(lab, accessConf("REQUIRE_SOURCE_ADDRESS Y\n"), "source");
      const from = server.lines.length;
      const r = await knockgateKnock(lab, clientEnv(), ["--door", "ssh", "--source", SERVER_V4]);
      assert.equal(r.code, 0, r.stderr);
      const v = await nextVerdict(server, from);
      assert.equal(v.granted, false);
      assert.match(v.lines.at(-1)!, /Got 0\.0\.0\.0 when valid source IP was required/);

      // fwknopd -U holds the SPA port: the second server, which takes 0.0.0.0, replaces the first.
      server.child.kill("SIGKILL");
      await once(server.child, "exit");
      const open = await Fwknopd.start(lab, accessConf(), "source-open");
      const from2 = open.lines.length;
      assert.equal((await knockgateKnock(lab, clientEnv(), ["--door", "ssh", "--source", SERVER_V4])).code, 0);
      const granted = await nextVerdict(open, from2);
      assert.ok(granted.granted, granted.lines.join("\n"));
      assert.equal(granted.fields["Message String"], "0.0.0.0,tcp/22,tcp/2222");
    }));

  test("an env from `knockgate convert access.conf` opens fwknopd's own door, a passphrase KEY included", () =>
    withLab(async (lab) => {
      const conf = `# the stanza fwknopd reads\nSOURCE ANY\nOPEN_PORTS tcp/22\nKEY correct horse battery\nHMAC_KEY_BASE64 ${keys.hmac}\nHMAC_DIGEST_TYPE SHA512\nREQUIRE_SOURCE_ADDRESS Y\n`;
      const file = join(dir, "convert-access.conf");
      writeFileSync(file, conf, { mode: 0o600 });
      const converted = await lab.exec(lab.client, [process.execPath, CLI, "convert", file]);
      assert.equal(converted.code, 0, converted.stderr);
      const server = await Fwknopd.start(lab, conf, "convert");
      const from = server.lines.length;
      const r = await knockgateKnock(lab, converted.stdout, ["--door", "FWKNOP", "-a", OPEN_FOR_V4, SERVER_V4]);
      assert.equal(r.code, 0, r.stderr);
      const v = await nextVerdict(server, from);
      assert.ok(v.granted, v.lines.join("\n"));
      assert.equal(v.fields["HMAC Type"], "5 (SHA512)");
      assert.equal(v.fields["Message String"], `${OPEN_FOR_V4},tcp/22`);
    }));
});

describe("knockgate knock on a signed door over IPv6", () => {
  test("the datagram goes to the SPA port over IPv6 and opens for the client's own address by default; keys from _FILE", () =>
    withLab(async (lab) => {
      // A plain UDP socket stands in for the server: fwknopd does not listen on IPv6.
      const script = `const s = require("dgram").createSocket("udp6"); s.on("message", (m, r) => { console.log(JSON.stringify({ payload: m.toString("latin1"), src: r.address })); s.close(); }); s.bind(${SPA_PORT}, "${SERVER_V6}", () => console.log("{}"));`;
      const listener = lab.spawnIn(lab.server, [process.execPath, "-e", script]);
      const lines = createInterface({ input: listener.stdout! })[Symbol.asyncIterator]();
      assert.equal((await lines.next()).value, "{}");
      // The keys from files this time, as a deployment keeps them.
      const keyFile = join(dir, "v6.key");
      const hmacFile = join(dir, "v6.hmac");
      writeFileSync(keyFile, `${keys.key}\n`, { mode: 0o600 });
      writeFileSync(hmacFile, `${keys.hmac}\n`, { mode: 0o600 });
      const env = `KNOCK_DOOR_SSH_SPA_KEY_FILE=${keyFile}\nKNOCK_DOOR_SSH_SPA_HMAC_KEY_FILE=${hmacFile}\n`;
      const r = await knockgateKnock(lab, env, ["--door", "ssh", SERVER_V6]);
      assert.equal(r.code, 0, r.stderr);
      const got = JSON.parse((await lines.next()).value as string) as { payload: string; src: string };
      assert.equal(got.src, CLIENT_V6);
      const verdict = verifySpa(
        { payload: Buffer.from(got.payload, "latin1"), source: { family: 6, src: got.src } },
        { encryptionKey: Buffer.from(keys.key, "base64"), hmacKey: Buffer.from(keys.hmac, "base64"), hmacDigest: "sha256" },
        { maxAgeS: 120, defaultOpenForS: 30, maxOpenForS: 300, requireSourceAddress: true, username: null, ports: [{ proto: "tcp", port: 22 }] },
        new ReplayCache(4),
        Math.floor(Date.now() / 1000),
      );
      assert.ok(verdict.ok, JSON.stringify(verdict));
      assert.deepEqual([verdict.request.address, verdict.request.family], [CLIENT_V6, 6]);
    }));
});

describe("knockgate knock opens knockgate's own signed door", { concurrency: false }, () => {
  for (const [family, server, client] of [
    ["IPv4", SERVER_V4, CLIENT_V4],
    ["IPv6", SERVER_V6, CLIENT_V6],
  ] as const) {
    test(`${family}: the client's address gets in, only on the port asked for, and another address stays out`, () =>
      withLab(async (lab) => {
        await lab.startService(22);
        await lab.startService(2222);
        const daemon = await lab.startDaemon({ KNOCK_DOOR_SSH_SPA_KEY: keys.key, KNOCK_DOOR_SSH_SPA_HMAC_KEY: keys.hmac, KNOCK_DOOR_SSH_PORTS: "22/tcp,2222/tcp" });
        assert.equal(await lab.canConnect(server), false, "closed before the datagram");
        const r = await knockgateKnock(lab, clientEnv(), ["--door", "ssh", "-A", "22/tcp", "-U", "alice", server, "--wait", "22", "--timeout", "3000"]);
        assert.equal(r.code, 0, r.stderr);
        const open = await daemon.waitFor("open", 3000);
        assert.deepEqual([open["via"], open["src"], open["username"]], ["signed", client, "alice"]);
        assert.equal(await lab.canConnect(server, { port: 2222 }), false, "a port not asked for stays closed");
        if (family === "IPv4") assert.equal(await lab.canConnect(server, { localAddress: OTHER_V4 }), false, "another address stays out");
      }));
  }
});
