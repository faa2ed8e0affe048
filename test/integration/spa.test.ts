/**
 * Signed doors against the stock client: Debian's `fwknop` in the client namespace sends single
 * packet authorization datagrams to knockgate in the server namespace, with real capture and the
 * real iptables+ipset or nftables. IPv6 datagrams (which fwknop cannot write) come from
 * src/core/spa/encode.ts, held byte-equal to the client by the unit tests.
 * Needs root and the fwknop client (`apt-get install fwknop-client`; CI installs it).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLIENT_V4, CLIENT_V6, ENGINE_SETUPS, OTHER_V4, SERVER_V4, SERVER_V6, SERVICE_PORT, removeStaleNamespaces, sleep, withLab, type DaemonProcess, type Lab } from "../support/lab.js";
import { encodeSpa, spaPlaintext } from "../../src/core/spa/encode.js";
import { SpaType } from "../../src/core/spa/message.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const FIXTURE = JSON.parse(readFileSync(`${ROOT}test/fixtures/spa/vectors.json`, "utf8")) as { keyBase64: string; hmacKeyBase64: string };
const KEY = FIXTURE.keyBase64;
const HMAC = FIXTURE.hmacKeyBase64;
const SPA_PORT = 62201;
const OTHER_PORT = 2222;

before(() => {
  assert.equal(process.getuid?.(), 0, "the namespace tests need root: run them as root (CI does)");
  removeStaleNamespaces();
});
after(() => removeStaleNamespaces());

let tmp = "";
before(() => {
  tmp = mkdtempSync(join(tmpdir(), "knockgate-spa-"));
});
after(() => rmSync(tmp, { recursive: true, force: true }));

/**
 * The stock client, as a user runs it (no rc file, keys on the command line), saving what it sent
 * to `saveAs` so a test can send the same bytes again.
 */
async function fwknop(lab: Lab, args: string[], saveAs?: string): Promise<void> {
  const argv = ["fwknop", "--no-rc-file", "--no-save-args", "-D", SERVER_V4, "--use-hmac", "--key-base64-rijndael", KEY, "--key-base64-hmac", HMAC, ...args];
  if (saveAs) argv.push("-B", saveAs);
  const r = await lab.exec(lab.client, argv);
  assert.equal(r.code, 0, `fwknop failed: ${r.stderr}`);
}

/** The datagram fwknop saved with -B: its payload text, as sent. */
const saved = (path: string) => readFileSync(path, "latin1").trim();

/** The daemon's `nft -i` helpers, by pid: a line nft fails ends its helper, and the next starts anew. */
const nftHelpers = (lab: Lab, daemon: DaemonProcess) => lab.exec(lab.server, ["pgrep", "-P", String(daemon.child.pid), "-x", "nft"]).then((r) => r.stdout.split("\n").filter(Boolean).sort());

/** Sends `data` as one UDP datagram from the client namespace. */
const sendUdp = (lab: Lab, host: string, data: string, localAddress?: string) =>
  lab.call({ op: "udp", host, port: SPA_PORT, data, ...(localAddress ? { localAddress } : {}) });

/** Waits until the daemon has counted `n` datagrams with `result` (refusals are not logged above debug). */
async function counted(lab: Lab, result: string, n = 1): Promise<void> {
  const deadline = Date.now() + 4000;
  for (;;) {
    const m = new RegExp(`knockgate_spa_packets_total\\{door="SSH",result="${result}"\\} (\\d+)`).exec(await lab.metrics());
    if (Number(m?.[1] ?? 0) >= n) return;
    assert.ok(Date.now() < deadline, `no ${n} datagram(s) counted as ${result}`);
    await sleep(100);
  }
}

// With the kernel engine its rules run beside the signed door (a sequence door of its own).
for (const { backend, engine } of ENGINE_SETUPS) {
  describe(`signed doors, ${backend} backend, ${engine} engine`, { concurrency: false }, () => {
    const env = (extra: Record<string, string> = {}) => ({
      KNOCK_FIREWALL: backend,
      KNOCK_ENGINE: engine,
      ...(engine === "kernel" ? { KNOCK_DOOR_WEB_SEQUENCE: "7000,8000,9000", KNOCK_DOOR_WEB_PORTS: "8443" } : {}),
      KNOCK_DOOR_SSH_SPA_KEY: KEY,
      KNOCK_DOOR_SSH_SPA_HMAC_KEY: HMAC,
      KNOCK_DOOR_SSH_PORTS: `${SERVICE_PORT}/tcp,${OTHER_PORT}/tcp`,
      KNOCK_RECONCILE_INTERVAL: "0.5",
      ...extra,
    });
    const opens = (daemon: DaemonProcess) => daemon.events("open").length;

    test("fwknop opens the port it asks for, for the address it names; a second address and other ports stay closed", () =>
      withLab(async (lab) => {
        await lab.startService();
        await lab.startService(OTHER_PORT);
        const daemon = await lab.startDaemon(env());
        assert.equal(await lab.canConnect(SERVER_V4), false, "closed before the datagram");
        await fwknop(lab, ["-A", `tcp/${SERVICE_PORT}`, "-a", CLIENT_V4, "-U", "alice"]);
        const open = await daemon.waitFor("open");
        assert.deepEqual([open["src"], open["via"], open["username"], open["ports"], open["open_for_s"]], [CLIENT_V4, "signed", "alice", "22/tcp", 30]);
        assert.equal(await lab.canConnect(SERVER_V4), true, "the named address gets in");
        assert.equal(await lab.canConnect(SERVER_V4, { localAddress: OTHER_V4 }), false, "a second address stays out");
        assert.equal(await lab.canConnect(SERVER_V4, { port: OTHER_PORT }), false, "a port of the door it did not ask for stays closed");
        assert.equal(await lab.canConnect(SERVER_V6), false, "an IPv4 grant does not open IPv6");
      }));

    test("both helpers killed, the replay records' one too: each loss is a repair of its own, and a datagram then opens", () =>
      withLab(async (lab) => {
        await lab.startService();
        const daemon = await lab.startDaemon(env());
        const tool = backend === "iptables" ? "ipset -" : "nft -i";
        // By the whole command line: the reconcile's one-shot `nft list` or `ipset list` children are not helpers.
        const helpers = (await lab.exec(lab.server, ["pgrep", "-P", String(daemon.child.pid), "-f", `^${tool}$`])).stdout.split("\n").filter(Boolean);
        assert.equal(helpers.length, 2, `the grants' helper and the replay records' (${helpers.join(" ")})`);
        for (const pid of helpers) process.kill(Number(pid), "SIGKILL");
        await daemon.waitFor("firewall_repaired", 4000);
        await sleep(1200); // two more passes: each loss is reported once
        const changes = daemon.events("firewall_repaired").flatMap((l) => l["changes"] as string[]);
        assert.deepEqual(
          changes.sort(),
          [`helper \`stdbuf -o0 ${tool}\` ended (signal SIGKILL); started again`, `replay records' helper \`stdbuf -o0 ${tool}\` ended (signal SIGKILL); started again`],
        );
        await fwknop(lab, ["-A", `tcp/${SERVICE_PORT}`, "-a", CLIENT_V4]);
        await daemon.waitFor("open");
        assert.equal(await lab.canConnect(SERVER_V4), true, "a datagram after the kill opens");
      }));

    test("a request for a port outside PORTS opens nothing, not even the ports it may have", () =>
      withLab(async (lab) => {
        await lab.startService();
        const daemon = await lab.startDaemon(env());
        await fwknop(lab, ["-A", `tcp/${SERVICE_PORT},tcp/23`, "-a", CLIENT_V4]);
        await counted(lab, "port_not_allowed");
        assert.equal(opens(daemon), 0);
        assert.equal(await lab.canConnect(SERVER_V4), false);
      }));

    test("fwknop -f 5 gets a 5 s grant, and the same datagram sent again after it expired opens nothing", () =>
      withLab(async (lab) => {
        await lab.startService();
        const daemon = await lab.startDaemon(env());
        const file = join(tmp, `f5-${backend}-${engine}.txt`);
        await fwknop(lab, ["-A", `tcp/${SERVICE_PORT}`, "-a", CLIENT_V4, "-f", "5"], file);
        const open = await daemon.waitFor("open");
        assert.equal(open["open_for_s"], 5);
        assert.equal(await lab.canConnect(SERVER_V4), true);
        await daemon.waitFor("close", 8000);
        assert.equal(await lab.canConnect(SERVER_V4), false, "closed once the 5 s are up");
        await sendUdp(lab, SERVER_V4, saved(file));
        await counted(lab, "replay");
        assert.equal(opens(daemon), 1);
        assert.equal(await lab.canConnect(SERVER_V4), false, "the replay opened nothing");
      }));

    test("a new datagram from an address with a grant refreshes it: the second grant's time holds", () =>
      withLab(async (lab) => {
        await lab.startService();
        const daemon = await lab.startDaemon(env());
        await fwknop(lab, ["-A", `tcp/${SERVICE_PORT}`, "-a", CLIENT_V4, "-f", "3"]);
        assert.equal((await daemon.waitFor("open"))["refresh"], false);
        const helpers = await nftHelpers(lab, daemon);
        await fwknop(lab, ["-A", `tcp/${SERVICE_PORT}`, "-a", CLIENT_V4, "-f", "30"]);
        await daemon.waitFor("open", 4000, (e) => e["refresh"] === true);
        assert.deepEqual(await nftHelpers(lab, daemon), helpers, "a refresh the daemon knows of is put in at once: no failed line, no helper started again");
        assert.equal(daemon.events("open").at(-1)?.["open_for_s"], 30);
        await sleep(4000);
        assert.equal(await lab.canConnect(SERVER_V4), true, "still open after the first grant's 3 s");
        assert.deepEqual(daemon.events("grant_failed"), []);
      }));

    test("an entry in the kernel that the daemon did not write (put there by hand) gets the grant's time", () =>
      withLab(async (lab) => {
        await lab.startService();
        const daemon = await lab.startDaemon(env());
        const [add, list] =
          backend === "iptables"
            ? [["ipset", "add", "knockgate-SSH:4", `${CLIENT_V4},tcp:${SERVICE_PORT}`, "timeout", "10"], ["ipset", "list", "knockgate-SSH:4"]]
            : [["nft", `add element inet knockgate spa_SSH_v4 { ${CLIENT_V4} . tcp . ${SERVICE_PORT} timeout 10s }`], ["nft", "list", "set", "inet", "knockgate", "spa_SSH_v4"]];
        assert.equal((await lab.exec(lab.server, add)).code, 0);
        const helpers = await nftHelpers(lab, daemon);
        await fwknop(lab, ["-A", `tcp/${SERVICE_PORT}`, "-a", CLIENT_V4, "-f", "30"]);
        const open = await daemon.waitFor("open");
        if (backend === "nftables") {
          const now = await nftHelpers(lab, daemon);
          assert.equal(now.filter((pid) => !helpers.includes(pid)).length, 1, "the create failed (its helper started again), the put went in");
        }
        assert.deepEqual([open["refresh"], open["open_for_s"]], [false, 30]);
        // Time left, in whole seconds: ipset's "timeout N", nft's "expires NsMMMms".
        const entry = (await lab.exec(lab.server, list)).stdout.split("\n").find((l) => l.includes(CLIENT_V4)) ?? "";
        const left = (backend === "iptables" ? / timeout (\d+)/ : / expires (\d+)s/).exec(entry);
        assert.ok(Number(left?.[1]) > 20, `the entry has the grant's 30 s, not the hand-made 10: ${left?.[0]}`);
        assert.deepEqual(daemon.events("grant_failed"), []);
      }));

    test("a datagram accepted before a daemon restart is refused after it", () =>
      withLab(async (lab) => {
        await lab.startService();
        const first = await lab.startDaemon(env({ KNOCK_DOOR_SSH_OPEN_FOR: "2" }));
        const file = join(tmp, `restart-${backend}-${engine}.txt`);
        await fwknop(lab, ["-A", `tcp/${SERVICE_PORT}`, "-a", CLIENT_V4], file);
        await first.waitFor("open");
        assert.equal(await first.stop(), 0);
        const second = await lab.startDaemon(env({ KNOCK_DOOR_SSH_OPEN_FOR: "2" }));
        // The grant from before the restart is adopted and expires; then the replay arrives. The
        // kernel lists time left in whole seconds, rounded down: its entry may outlive the close line by up to 1 s.
        await second.waitFor("close", 5000);
        await sleep(1100);
        assert.equal(await lab.canConnect(SERVER_V4), false);
        await sendUdp(lab, SERVER_V4, saved(file));
        await counted(lab, "replay");
        assert.equal(opens(second), 0);
        assert.equal(await lab.canConnect(SERVER_V4), false, "the replay after the restart opened nothing");
      }));

    test("IPv6: a datagram over IPv6 naming an IPv6 address opens IPv6 for it", () =>
      withLab(async (lab) => {
        await lab.startService();
        const daemon = await lab.startDaemon(env());
        const keys = { encryptionKey: Buffer.from(KEY, "base64"), hmacKey: Buffer.from(HMAC, "base64"), hmacDigest: "sha256" as const };
        const plaintext = spaPlaintext({ rand: "1234567890123456", username: "alice", timestamp: Math.floor(Date.now() / 1000), type: SpaType.access, message: `${CLIENT_V6},tcp/${SERVICE_PORT}` });
        await sendUdp(lab, SERVER_V6, encodeSpa(plaintext, keys, randomBytes(8)));
        const open = await daemon.waitFor("open");
        assert.deepEqual([open["src"], open["via"]], [CLIENT_V6, "signed"]);
        assert.equal(await lab.canConnect(SERVER_V6), true);
        assert.equal(await lab.canConnect(SERVER_V4), false, "an IPv6 grant does not open IPv4");
      }));

    test("/readyz reports the replay set, and a flushed replay set is put back", () =>
      withLab(async (lab) => {
        await lab.startDaemon(env());
        const ready = await lab.http("/readyz");
        assert.equal(ready.status, 200, ready.body);
        assert.match(ready.body, /"name":"spa_replay","ok":true/);
        const destroy =
          backend === "iptables" ? ["ipset", "destroy", "knockgate-SSH:r"] : ["nft", "delete", "set", "inet", "knockgate", "spa_SSH_replay"];
        assert.equal((await lab.exec(lab.server, destroy)).code, 0);
        const deadline = Date.now() + 4000;
        const present = backend === "iptables" ? ["ipset", "list", "-n", "knockgate-SSH:r"] : ["nft", "list", "set", "inet", "knockgate", "spa_SSH_replay"];
        while ((await lab.exec(lab.server, present)).code !== 0) {
          assert.ok(Date.now() < deadline, "the replay set was not put back");
          await sleep(100);
        }
      }));
  });
}
