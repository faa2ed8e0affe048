/**
 * Signed doors' replay records under load, with the real iptables+ipset or nftables: a burst of
 * new datagrams mixed with replays never has a new one refused as seen, a full set makes room for
 * a new one, and a restart after KNOCK_ON_EXIT=remove still refuses a datagram the last run accepted. Datagrams come from
 * src/core/spa/encode.ts, held byte-equal to the fwknop client by the unit tests.
 * Needs root.
 */
import assert from "node:assert/strict";
import { randomBytes, randomInt } from "node:crypto";
import { after, before, describe, test } from "node:test";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { CLIENT_V4, SERVER_V4, SERVICE_PORT, removeStaleNamespaces, sleep, withLab, type Lab } from "../support/lab.js";
import { encodeSpa, spaPlaintext } from "../../src/core/spa/encode.js";
import { SpaType } from "../../src/core/spa/message.js";
import { REPLAY_SET_SIZE } from "../../src/core/firewall/spa-plan.js";
import { formatIPv6 } from "../../src/core/packet/address.js";
import { replayKey } from "../../src/core/spa/verify.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const FIXTURE = JSON.parse(readFileSync(`${ROOT}test/fixtures/spa/vectors.json`, "utf8")) as { keyBase64: string; hmacKeyBase64: string };
const KEYS = { encryptionKey: Buffer.from(FIXTURE.keyBase64, "base64"), hmacKey: Buffer.from(FIXTURE.hmacKeyBase64, "base64"), hmacDigest: "sha256" as const };
const SPA_PORT = 62201;
/** New datagrams in a burst, and replays mixed into it: bounded, so the capture ring keeps up. */
const NEW = 120;
const REPLAYS = 40;

before(() => {
  assert.equal(process.getuid?.(), 0, "the namespace tests need root: run them as root (CI does)");
  removeStaleNamespaces();
});
after(() => removeStaleNamespaces());

/** A datagram for CLIENT_V4's (or `address`'s) port 22, stamped now, with a fresh salt: never the same twice. */
const datagram = (address = CLIENT_V4): string =>
  encodeSpa(
    spaPlaintext({ rand: `${randomInt(1e7, 1e8)}${randomInt(1e7, 1e8)}`, username: "alice", timestamp: Math.floor(Date.now() / 1000), type: SpaType.access, message: `${address},tcp/${SERVICE_PORT}` }),
    KEYS,
    randomBytes(8),
  );

/** A datagram's element in the replay sets. */
const elementOf = (payload: string): string => replayKey(Buffer.from(payload, "latin1"));

const chunks = <T>(items: readonly T[], size: number): T[][] => Array.from({ length: Math.ceil(items.length / size) }, (_, i) => items.slice(i * size, (i + 1) * size));

/** All at once: the agent sends each as its request arrives. */
const burst = (lab: Lab, payloads: readonly string[]) => Promise.all(payloads.map((data) => lab.call({ op: "udp", host: SERVER_V4, port: SPA_PORT, data })));

async function count(lab: Lab, result: string): Promise<number> {
  return Number(new RegExp(`knockgate_spa_packets_total\\{door="SSH",result="${result}"\\} (\\d+)`).exec(await lab.metrics())?.[1] ?? 0);
}

/** Waits until `total` datagrams are counted as accepted or replay; returns both counts. */
async function settled(lab: Lab, total: number): Promise<{ accepted: number; replay: number }> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const got = { accepted: await count(lab, "accepted"), replay: await count(lab, "replay") };
    if (got.accepted + got.replay >= total) return got;
    assert.ok(Date.now() < deadline, `only ${got.accepted} accepted and ${got.replay} replays of ${total} datagrams counted`);
    await sleep(200);
  }
}

for (const backend of ["iptables", "nftables"] as const) {
  describe(`signed doors' replay records, ${backend} backend`, { concurrency: false }, () => {
    const env = (extra: Record<string, string> = {}) => ({
      KNOCK_FIREWALL: backend,
      KNOCK_DOOR_SSH_SPA_KEY: FIXTURE.keyBase64,
      KNOCK_DOOR_SSH_SPA_HMAC_KEY: FIXTURE.hmacKeyBase64,
      KNOCK_DOOR_SSH_PORTS: `${SERVICE_PORT}/tcp`,
      KNOCK_RECONCILE_INTERVAL: "0.5",
      ...extra,
    });
    /** Puts elements into the door's kernel replay set behind the daemon's back, in one transaction. */
    const addToReplaySet = async (lab: Lab, entries: readonly { element: string; ttlS: number }[]) => {
      const r =
        backend === "iptables"
          ? await lab.exec(lab.server, ["ipset", "restore"], entries.map((e) => `add knockgate-SSH:r ${e.element} timeout ${e.ttlS}\n`).join(""))
          : await lab.exec(
              lab.server,
              ["nft", "-f", "-"],
              chunks(entries, 4096)
                .map((part) => `add element inet knockgate spa_SSH_replay { ${part.map((e) => `${e.element} timeout ${e.ttlS}s`).join(", ")} }\n`)
                .join(""),
            );
      assert.equal(r.code, 0, r.stderr);
    };
    /** Whether the door's kernel replay set holds `element`. */
    const inReplaySet = async (lab: Lab, element: string) =>
      (await lab.exec(lab.server, backend === "iptables" ? ["ipset", "test", "knockgate-SSH:r", element] : ["nft", `get element inet knockgate spa_SSH_replay { ${element} }`])).code === 0;

    test("a burst after a restart, replays of the last run's datagrams among new ones: every new one is accepted", () =>
      withLab(async (lab) => {
        const first = await lab.startDaemon(env());
        const old = Array.from({ length: REPLAYS }, datagram);
        await burst(lab, old);
        assert.deepEqual(await settled(lab, REPLAYS), { accepted: REPLAYS, replay: 0 });
        assert.equal(await first.stop(), 0);
        // The new daemon's memory is empty: the kernel set, adopted at start, is the record.
        await lab.startDaemon(env());
        const fresh = Array.from({ length: NEW }, datagram);
        await burst(lab, fresh.flatMap((d, i) => (i % 3 === 0 && old[i / 3] !== undefined ? [d, old[i / 3]!] : [d])));
        assert.deepEqual(await settled(lab, NEW + REPLAYS), { accepted: NEW, replay: REPLAYS });
      }));

    test("replays only the kernel knows, concurrent with new datagrams: each failed add is its own, no new datagram is refused as seen", () =>
      withLab(async (lab) => {
        await lab.startDaemon(env());
        // Put into the kernel set behind the daemon's back, so the adds reach the kernel and fail there.
        const known = Array.from({ length: REPLAYS }, datagram);
        await addToReplaySet(lab, known.map((d) => ({ element: elementOf(d), ttlS: 240 })));
        const fresh = Array.from({ length: NEW }, datagram);
        await burst(lab, fresh.flatMap((d, i) => (i % 3 === 0 && known[i / 3] !== undefined ? [d, known[i / 3]!] : [d])));
        assert.deepEqual(await settled(lab, NEW + REPLAYS), { accepted: NEW, replay: REPLAYS });
      }));

    test("a replay only the kernel knows, on a full door: nothing is written for it and no grant gives way", () =>
      withLab(async (lab) => {
        await lab.startService();
        const daemon = await lab.startDaemon(env({ KNOCK_MAX_GRANTS: "1" }));
        await burst(lab, [datagram()]);
        await daemon.waitFor("open");
        const other = "198.18.0.77";
        const replayed = datagram(other);
        await addToReplaySet(lab, [{ element: elementOf(replayed), ttlS: 240 }]);
        await burst(lab, [replayed]);
        assert.deepEqual(await settled(lab, 2), { accepted: 1, replay: 1 });
        const perPort = await lab.exec(lab.server, backend === "iptables" ? ["ipset", "list", "knockgate-SSH:4"] : ["nft", "list", "set", "inet", "knockgate", "spa_SSH_v4"]);
        assert.equal(perPort.code, 0, perPort.stderr);
        assert.match(perPort.stdout, new RegExp(CLIENT_V4.replaceAll(".", "\\.")), "the grant of the full door stays");
        assert.doesNotMatch(perPort.stdout, /198\.18\.0\.77/, "the replay opened nothing");
        assert.deepEqual(daemon.events("close"), []);
        assert.equal(await lab.canConnect(SERVER_V4), true);
      }));

    if (backend === "nftables") {
      test("the nft helper dies right after a record and its grant went in: the datagram opens, once, and is not taken for a replay", () =>
        withLab(async (lab) => {
          // An `nft` first on the daemon's PATH: the real one, except that the interactive session it
          // runs is killed 0.3 s after it was handed the first record (which by then has committed).
          const dir = mkdtempSync(join(tmpdir(), "knockgate-nft-dies-"));
          const trigger = join(dir, "die");
          try {
            writeFileSync(
              join(dir, "nft"),
              `#!${process.execPath}
const { spawn, spawnSync } = require("node:child_process");
const { existsSync, rmSync } = require("node:fs");
const args = process.argv.slice(2);
if (args.join(" ") !== "-i") process.exit(spawnSync("/usr/sbin/nft", args, { stdio: "inherit" }).status ?? 1);
const nft = spawn("/usr/sbin/nft", ["-i"], { stdio: ["pipe", "inherit", "inherit"] });
nft.on("exit", (code) => process.exit(code ?? 1));
let text = "";
process.stdin.on("end", () => nft.stdin.end());
process.stdin.on("data", (chunk) => {
  text += chunk;
  for (let at = text.indexOf("\\n"); at >= 0; at = text.indexOf("\\n")) {
    const line = text.slice(0, at + 1);
    text = text.slice(at + 1);
    nft.stdin.write(line);
    if (line.includes("create element") && existsSync(${JSON.stringify(trigger)})) {
      rmSync(${JSON.stringify(trigger)});
      process.stdin.pause();
      setTimeout(() => nft.kill("SIGKILL"), 300);
      return;
    }
  }
});
`,
            );
            chmodSync(join(dir, "nft"), 0o755);
            writeFileSync(trigger, "");
            await lab.startService();
            const daemon = await lab.startDaemon(env({ PATH: `${dir}:${process.env["PATH"] ?? "/usr/sbin:/usr/bin"}` }));
            await burst(lab, [datagram()]);
            await daemon.waitFor("open", 5000);
            assert.equal(existsSync(trigger), false, "the helper was killed under the record");
            assert.deepEqual(await settled(lab, 1), { accepted: 1, replay: 0 });
            assert.equal(await lab.canConnect(SERVER_V4), true);
            assert.equal(daemon.events("open").length, 1);
          } finally {
            rmSync(dir, { recursive: true, force: true });
          }
        }));
    }

    test("a full replay set, adopted at a restart, makes room for a new datagram (the entry that expires first gives way) and still refuses replays", () =>
      withLab(async (lab) => {
        const first = await lab.startDaemon(env());
        // A key holder's flood, as the kernel keeps it: a recent datagram, four whose window closes
        // sooner, and random elements up to REPLAY_SET_SIZE, the set's size in both kernels.
        const recent = datagram();
        const soonest = Array.from({ length: 4 }, () => formatIPv6(randomBytes(16), 0));
        const flood = Array.from({ length: REPLAY_SET_SIZE - 1 - soonest.length }, () => ({ element: formatIPv6(randomBytes(16), 0), ttlS: 240 }));
        await addToReplaySet(lab, [{ element: elementOf(recent), ttlS: 240 }, ...soonest.map((element) => ({ element, ttlS: 120 })), ...flood]);
        assert.equal(await first.stop(), 0);
        const second = await lab.startDaemon(env());
        assert.equal((await second.waitFor("spa_replay_adopted"))["datagrams"], REPLAY_SET_SIZE, "the set is full");
        const fresh = datagram();
        await burst(lab, [fresh]);
        assert.deepEqual(await settled(lab, 1), { accepted: 1, replay: 0 }, "a new datagram is never refused for want of room");
        await burst(lab, [fresh]);
        await burst(lab, [recent]);
        assert.deepEqual(await settled(lab, 3), { accepted: 1, replay: 2 }, "the new one's copy and the recent one are replays");
        assert.deepEqual(
          await Promise.all([elementOf(fresh), elementOf(recent), flood[0]!.element, flood.at(-1)!.element].map((e) => inReplaySet(lab, e))),
          [true, true, true, true],
        );
        const gone = [];
        for (const e of soonest) if (!(await inReplaySet(lab, e))) gone.push(e);
        assert.equal(gone.length, 1, "one entry gave way, one of those that expire first");
      }));

    test("after KNOCK_ON_EXIT=remove and a restart, a datagram the last run accepted opens nothing", () =>
      withLab(async (lab) => {
        await lab.startService();
        const first = await lab.startDaemon(env({ KNOCK_ON_EXIT: "remove" }));
        const payload = datagram();
        await burst(lab, [payload]);
        await first.waitFor("open");
        assert.equal(await first.stop(), 0);
        const second = await lab.startDaemon(env());
        assert.equal(await lab.canConnect(SERVER_V4), false, "removed with the rest");
        await burst(lab, [payload]);
        assert.deepEqual(await settled(lab, 1), { accepted: 0, replay: 1 });
        assert.equal(second.events("open").length, 0);
        assert.equal(await lab.canConnect(SERVER_V4), false, "the replay after the restart opened nothing");
        assert.equal(second.events("spa_replay_guard").length, 1, "the empty set is said");
        // A datagram stamped after the start opens as ever.
        await sleep(1100);
        await burst(lab, [datagram()]);
        await second.waitFor("open");
        assert.equal(await lab.canConnect(SERVER_V4), true);
      }));
  });
}
