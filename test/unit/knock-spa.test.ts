/**
 * `knockgate knock` on a signed door, no root needed: the datagram it sends to a loopback socket
 * standing in for the server is checked with verifySpa, and every option or value it cannot send
 * is refused before anything goes out, in the knock command's error style. (That stock fwknopd and
 * knockgate's daemon accept it is test/integration/spa-client.test.ts.)
 */
import { after, describe, test } from "node:test";
import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { once } from "node:events";
import { userInfo } from "node:os";
import { ReplayCache } from "../../src/core/spa/replay.js";
import { verifySpa } from "../../src/core/spa/verify.js";
import { ShimmedCli } from "../support/cli-run.js";
import { SPA_FIXTURE, fixtureKeys, spaLimits } from "../support/spa-vectors.js";

const KEY = SPA_FIXTURE.keyBase64;
const HMAC = SPA_FIXTURE.hmacKeyBase64;
const DOOR = { KNOCK_DOOR_SSH_SPA_KEY: KEY, KNOCK_DOOR_SSH_SPA_HMAC_KEY: HMAC, KNOCK_DOOR_SSH_PORTS: "22/tcp,2222/tcp" };
const LIMITS = spaLimits([
  { proto: "tcp", port: 22 },
  { proto: "tcp", port: 2222 },
]);

const cli = new ShimmedCli();
after(() => cli.remove());

/**
 * Runs `knockgate knock ARGS` against a UDP socket on 127.0.0.1 (its port as the door's SPA_PORT in
 * the environment, or given to `args` to place elsewhere); returns the datagrams it got.
 */
async function knockAt(args: string[] | ((spaPort: number) => string[]), env: Record<string, string> = DOOR) {
  const socket = createSocket("udp4");
  const got: Buffer[] = [];
  socket.on("message", (m) => got.push(m));
  socket.bind(0, "127.0.0.1");
  await once(socket, "listening");
  const port = socket.address().port;
  const r = cli.run(["knock", ...(typeof args === "function" ? args(port) : args), "127.0.0.1"], { ...env, KNOCK_DOOR_SSH_SPA_PORT: `${port}/udp` });
  // spawnSync held the event loop: what was sent is queued on the socket by now.
  await new Promise((resolve) => setTimeout(resolve, 50));
  socket.close();
  return { ...r, got };
}

const verify = (payload: Buffer) =>
  verifySpa(
    { payload, source: { family: 4, src: "198.18.0.9" } },
    fixtureKeys("sha256"),
    LIMITS,
    new ReplayCache(4),
    Math.floor(Date.now() / 1000),
  );

describe("knockgate knock --door on a signed door", () => {
  test("sends one datagram with -a's address, -A's ports, -f's timeout and -U's name", async () => {
    const r = await knockAt(["--door", "ssh", "-a", "198.18.0.7", "-A", "tcp/2222", "-f", "45", "-U", "alice"]);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.got.length, 1);
    const v = verify(r.got[0]!);
    assert.ok(v.ok, JSON.stringify(v));
    assert.deepEqual([v.request.address, v.request.ports, v.request.openForS, v.request.username], ["198.18.0.7", [{ proto: "tcp", port: 2222 }], 45, "alice"]);
  });

  test("by default: every door port, the login name, this machine's address; --source sends 0.0.0.0", async () => {
    const r = await knockAt(["--door", "SSH"]);
    assert.equal(r.status, 0, r.stderr);
    // The address towards 127.0.0.1 is 127.0.0.1, which no grant may name: the refusal shows it was named.
    const v = verify(r.got[0]!);
    assert.ok(!v.ok && v.result === "address_refused" && v.detail.startsWith("127.0.0.1 "), JSON.stringify(v));
    const asked = await knockAt(["--door", "SSH", "-a", "198.18.0.7"]);
    const a = verify(asked.got[0]!);
    assert.ok(a.ok, JSON.stringify(a));
    assert.deepEqual([a.request.ports.length, a.request.username, a.request.openForS, a.request.type], [2, userInfo().username, 30, 1]);
    // Loopback is an address no grant may name, but the door here takes 0.0.0.0, the source.
    const source = await knockAt(["--door", "ssh", "--source", "-v"]);
    assert.equal(source.status, 0, source.stderr);
    assert.match(source.stderr, /^sent an SPA datagram to udp 127\.0\.0\.1:\d+ for 0\.0\.0\.0 \(22\/tcp,2222\/tcp\)$/m);
    const s = verify(source.got[0]!);
    assert.ok(s.ok && s.request.address === "198.18.0.9", JSON.stringify(s));
    assert.notEqual(source.got[0]!.toString(), r.got[0]!.toString(), "fresh salt and digits each time");
  });

  test("options and values it cannot send are refused before anything is sent, with exit 64", async () => {
    const cases: [string[], RegExp][] = [
      [["--door", "ssh", "-a", "not-an-ip"], /^knockgate knock: -a: "not-an-ip" is not an IP address/],
      [["--door", "ssh", "-a", "198.18.0.7", "--source"], /^knockgate knock: -a and --source exclude each other/],
      [["--door", "ssh", "-A", "23/tcp"], /^knockgate knock: -A: 23\/tcp not among door ssh's ports \(22\/tcp,2222\/tcp\)/],
      [["--door", "ssh", "-A", "tcp/x"], /^knockgate knock: -A: /],
      [["--door", "ssh", "-f", "0"], /^knockgate knock: -f: "0" is not a whole number of seconds above 0/],
      [["--door", "ssh", "-U", "é"], /^knockgate knock: -U: the username must be 1-64 printable characters/],
      [["--door", "ssh", "7000"], /^knockgate knock: door ssh is signed: give HOST only/],
    ];
    for (const [args, message] of cases) {
      const r = await knockAt(args);
      assert.equal(r.status, 64, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.equal(r.got.length, 0, `${args.join(" ")} sent nothing`);
    }
  });

  test("a door it cannot use is reported by variable, exit 1, never showing a key", async () => {
    const half = await knockAt(["--door", "ssh"], { KNOCK_DOOR_SSH_SPA_KEY: KEY });
    assert.equal(half.status, 1);
    assert.match(half.stderr, /^knockgate knock: KNOCK_DOOR_SSH_SPA_HMAC_KEY: must be set too/);
    const bad = await knockAt(["--door", "ssh"], { ...DOOR, KNOCK_DOOR_SSH_SPA_KEY: "c2hvcnQ=", KNOCK_DOOR_SSH_SPA_HMAC_DIGEST: "md5" });
    assert.equal(bad.status, 1);
    assert.deepEqual(
      bad.stderr.split("\n").filter(Boolean).map((l) => l.split(":").slice(0, 2).join(":")),
      ["knockgate knock: KNOCK_DOOR_SSH_SPA_KEY", "knockgate knock: KNOCK_DOOR_SSH_SPA_HMAC_DIGEST"],
    );
    for (const r of [half, bad]) {
      assert.ok(!r.stderr.includes(KEY) && !r.stderr.includes(HMAC) && !r.stderr.includes("c2hvcnQ"), "no key in the output");
      assert.equal(r.got.length, 0);
    }
    const file = await knockAt(["--door", "ssh"], { KNOCK_DOOR_SSH_SPA_KEY_FILE: "/nonexistent/key", KNOCK_DOOR_SSH_SPA_HMAC_KEY: HMAC });
    assert.equal(file.status, 1);
    assert.match(file.stderr, /^knockgate knock: KNOCK_DOOR_SSH_SPA_KEY_FILE: cannot read \/nonexistent\/key \(ENOENT\)/);
  });

  test("--env-file reads the door from a file, as --config does", async () => {
    const envFile = (port: number) => cli.file("client.env", Object.entries({ ...DOOR, KNOCK_DOOR_SSH_SPA_PORT: String(port) }).map(([k, v]) => `${k}=${v}\n`).join(""));
    const r = await knockAt((port) => ["--door", "ssh", "--env-file", envFile(port), "-a", "198.18.0.7"], {});
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.got.length, 1);
    assert.ok(verify(r.got[0]!).ok);
    const file = envFile(62201);
    const both = await knockAt(["--door", "ssh", "--env-file", file, "--config", file], {});
    assert.equal(both.status, 64);
    assert.match(both.stderr, /^knockgate knock: give --env-file or --config, not both/);
  });

  test("the SPA options on a sequence door are a usage error", async () => {
    const r = await knockAt(["--door", "ssh", "-a", "198.18.0.7"], { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000" });
    assert.equal(r.status, 64);
    assert.match(r.stderr, /^knockgate knock: --allow-ip is for signed doors/);
  });
});
