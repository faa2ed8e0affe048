/**
 * Signed doors in the daemon, on the dry-run firewall, a fake capture and a fake clock: which
 * datagrams open what, for whom and for how long, and how every refusal shows in metrics and logs.
 * Datagrams are built by src/core/spa/encode.ts, held byte-equal to the real fwknop client.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { pino } from "pino";
import { type ClusterLink } from "../../src/app/daemon.js";
import { MAX_PENDING_RECORDS, SignedWay, WAKE_GAP_MS, WARM_UP_DATAGRAMS, warmUp, type SpaDeps } from "../../src/app/ways/signed/signed-way.js";
import { parseConfig } from "../../src/config/config.js";
import type { DryRunFirewall } from "../../src/adapters/firewall/dry-run.js";
import type { ReplayEntry, ReplaySets } from "../../src/adapters/firewall/firewall.js";
import { replayKey, type SpaLimits } from "../../src/core/spa/verify.js";
import { doorWide, perPort } from "../support/dry-run.js";
import { SpaType } from "../../src/core/spa/message.js";
import { portName, portsText, type Config, type Door } from "../../src/core/types.js";
import { FakeClock } from "../support/fake-clock.js";
import { doorPorts } from "../../src/core/protection/targets.js";
import { ProtectionService, type DoorPorts } from "../../src/app/protection.js";
import { envTargets } from "../support/protection.js";
import { forbidUnhandledRejections } from "../support/unhandled.js";
import { CLIENT, daemonHarness, failing, repairsOnce } from "../support/daemon-harness.js";
import { encodeSpa, spaPlaintext, type SpaFields } from "../../src/core/spa/encode.js";

const ROOT = fileURLToPath(new URL("../../..", import.meta.url));
const FIXTURE = JSON.parse(readFileSync(`${ROOT}test/fixtures/spa/vectors.json`, "utf8")) as { keyBase64: string; hmacKeyBase64: string };
const KEYS = { encryptionKey: Buffer.from(FIXTURE.keyBase64, "base64"), hmacKey: Buffer.from(FIXTURE.hmacKeyBase64, "base64"), hmacDigest: "sha256" as const };
const SIGNED = {
  KNOCK_DOOR_SSH_SPA_KEY: FIXTURE.keyBase64,
  KNOCK_DOOR_SSH_SPA_HMAC_KEY: FIXTURE.hmacKeyBase64,
  KNOCK_DOOR_SSH_PORTS: "22/tcp,2222/tcp",
};
const CLIENT6 = "fd00:198:18::2";

function setup(
  env: Record<string, string> = {},
  firewallOf?: (f: DryRunFirewall) => DryRunFirewall,
  clock = new FakeClock(),
  base: Record<string, string> = SIGNED,
  cluster?: ClusterLink,
  replaySetSize?: number,
) {
  const h = daemonHarness({ env: { ...base, ...env }, clock, ...(firewallOf ? { firewallOf } : {}), ...(replaySetSize ? { replaySetSize } : {}), overrides: cluster ? { cluster } : {} });
  const { daemon, metrics } = h;
  // A daemon whose replay set was empty at start waits for the next wall-clock second before it
  // captures (ways/signed/signed-way.ts): time moves here until it is up.
  const start = daemon.start.bind(daemon);
  daemon.start = async () => {
    let done = false;
    const started = start().finally(() => (done = true));
    while (!done) await clock.advance(50);
    await started;
  };
  /** A datagram stamped with the daemon's wall clock (or `ageS` seconds before it). */
  const datagram = (fields: Partial<SpaFields> & { ageS?: number } = {}) => {
    const { ageS = 0, ...rest } = fields;
    const timestamp = Math.floor(clock.wallNow() / 1000) - ageS;
    const plaintext = spaPlaintext({ rand: "1234567890123456", username: "alice", timestamp, type: SpaType.access, message: `${CLIENT},tcp/22`, ...rest });
    // A fresh salt each time, as a client draws it: two datagrams are never the same.
    return Buffer.from(encodeSpa(plaintext, KEYS, randomBytes(8)), "latin1");
  };
  const spaCount = async (result: string, door = "SSH") =>
    Number(new RegExp(`knockgate_spa_packets_total\\{door="${door}",result="${result}"\\} (\\d+)`).exec(await metrics.registry.metrics())?.[1] ?? 0);
  return { ...h, datagram, spaCount };
}


forbidUnhandledRejections();

test("a signed datagram opens the port it asks for, for the address it names, with via spa and the username", async () => {
  const { daemon, firewall, events, send, datagram, spaCount } = setup();
  await daemon.start();
  await send(datagram(), { src: "203.0.113.9" });
  assert.deepEqual(await perPort(firewall), [{ door: "SSH", family: 4, src: CLIENT, ports: [{ port: 22, proto: "tcp" }], remainingMs: 30_000 }]);
  assert.deepEqual(await doorWide(firewall), [], "the door's all-ports set is not touched");
  const open = events("open");
  assert.equal(open.length, 1);
  assert.deepEqual(
    [open[0]?.["src"], open[0]?.["ports"], open[0]?.["via"], open[0]?.["username"], open[0]?.["open_for_s"]],
    [CLIENT, "22/tcp", "signed", "alice", 30],
  );
  assert.equal(await spaCount("accepted"), 1);
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("the dry run logs a datagram's record and its grant as the backend writes them, in one line, and a replay as nothing", async () => {
  const { daemon, events, send, datagram } = setup();
  await daemon.start();
  const d = datagram();
  await send(d);
  await send(d);
  const element = replayKey(d);
  // The harness's dry run speaks ipset: the record (kept until the datagram is stale: max age 120 s, and
  // one more), then the grant it conditions.
  assert.deepEqual(
    events("dry_run_grant").map((l) => [l["door"], l["src"], l["command"]]),
    [["SSH", CLIENT, [`add knockgate-SSH:r ${element} timeout 121`, `add knockgate-SSH:4 ${CLIENT},tcp:22 timeout 30 -exist`].join("\n")]],
  );
  await daemon.stop();
});

test("the checks warmed up at start, and kept warm by the sweep, go all the way on throwaway datagrams; the door keeps nothing of them", async () => {
  const limits: SpaLimits = { maxAgeS: 120, defaultOpenForS: 30, maxOpenForS: 300, requireSourceAddress: true, username: "alice", ports: [{ proto: "udp", port: 500 }] };
  const nowS = 1_800_000_000;
  // Accepted, with a required username and source address: every check ran.
  assert.deepEqual(warmUp({ keys: KEYS, limits }, nowS, 20), { accepted: 20 });
  // A door with no port yet (Docker labels add them later): refused only at the last check.
  assert.deepEqual(warmUp({ keys: KEYS, limits: { ...limits, ports: [] } }, nowS, 20), { port_not_allowed: 20 });

  const { daemon, firewall, lines, datagram, spaCount, send, metrics, clock } = setup();
  await daemon.start();
  assert.deepEqual(lines.filter((l) => l["event"] === "spa_warm_up").map((l) => [l["digest"], l["results"]]), [["sha256", { accepted: WARM_UP_DATAGRAMS }]]);
  await clock.advance(5_000);
  const counted = [...(await metrics.registry.metrics()).matchAll(/^knockgate_spa_packets_total\{.*\} (\d+)$/gm)].map((m) => Number(m[1]));
  assert.ok(counted.length > 0 && counted.every((n) => n === 0), "no datagram counted");
  assert.deepEqual([await perPort(firewall), (await firewall.replay.list("SSH")).length], [[], 0]);
  assert.deepEqual(lines.filter((l) => String(l["event"]).startsWith("spa_")).map((l) => l["event"]), ["spa_warm_up", "spa_replay_guard"]);
  await send(datagram());
  assert.equal(await spaCount("accepted"), 1);
  await daemon.stop();
});

test("the sweep keeps each HMAC digest's checks warm: one throwaway datagram per digest, accepted", () => {
  const config = parseConfig({
    ...SIGNED,
    KNOCK_DOOR_WEB_SPA_KEY: FIXTURE.keyBase64,
    KNOCK_DOOR_WEB_SPA_HMAC_KEY: Buffer.alloc(48, 7).toString("base64"),
    KNOCK_DOOR_WEB_SPA_HMAC_DIGEST: "sha512",
    KNOCK_DOOR_WEB_SPA_PORT: "62202",
    KNOCK_DOOR_WEB_PORTS: "443/tcp",
  });
  const clock = new FakeClock();
  const deps = { clock, protection: { portsOf: (door: string) => config.doors.find((d) => d.name === door)?.ports ?? [] } } as unknown as SpaDeps;
  const way = SignedWay.forDoors(config.doors, deps, () => Promise.resolve("opened"));
  assert.deepEqual(way?.sweep(), new Map([["sha256", { accepted: 1 }], ["sha512", { accepted: 1 }]]));
});

test("capture keeps whole datagrams and sees the SPA port only when a door is signed", async () => {
  const signed = setup();
  await signed.daemon.start();
  assert.equal(signed.filters[0]?.snaplen, 1600);
  assert.match(signed.filters[0]?.filter ?? "", /udp dst port 62201/);
  await signed.daemon.stop();
  const plain = setup({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000" }, undefined, new FakeClock(), {});
  await plain.daemon.start();
  assert.equal(plain.filters[0]?.snaplen, 256);
  assert.doesNotMatch(plain.filters[0]?.filter ?? "", /62201/);
  assert.ok(!(await plain.daemon.readiness()).some((c) => c.name === "spa_replay"));
  await plain.daemon.stop();
});

test("the same datagram again opens nothing: refused from memory, and after a restart by the kernel's replay set", async () => {
  const clock = new FakeClock();
  const first = setup({}, undefined, clock);
  await first.daemon.start();
  const payload = first.datagram();
  await first.send(payload);
  await first.send(payload);
  assert.equal(await first.spaCount("replay"), 1);
  assert.equal(first.events("open").length, 1);
  await first.daemon.stop();
  // A new daemon on the same kernel (the same dry-run firewall): its memory cache is empty.
  const second = setup({}, () => first.firewall, clock);
  await second.daemon.start();
  await clock.advance(40_000);
  await second.send(payload);
  assert.equal(await second.spaCount("replay"), 1);
  assert.equal(second.events("open").length, 0);
  assert.deepEqual(await perPort(first.firewall), [], "the first grant expired and nothing reopened it");
  await second.daemon.stop();
});

test("one door's key holder fills only that door's replay set, and a full set makes room: no new datagram is refused", async () => {
  const TWO = { ...SIGNED, KNOCK_DOOR_WEB_SPA_KEY: SIGNED.KNOCK_DOOR_SSH_SPA_KEY, KNOCK_DOOR_WEB_SPA_HMAC_KEY: SIGNED.KNOCK_DOOR_SSH_SPA_HMAC_KEY, KNOCK_DOOR_WEB_SPA_PORT: "62202", KNOCK_DOOR_WEB_PORTS: "80/tcp" };
  const { daemon, firewall, send, datagram, spaCount, clock, events } = setup({}, undefined, undefined, TWO, undefined, 4);
  await daemon.start();
  const sent: Buffer[] = [];
  for (let i = 0; i < 10; i++) {
    sent.push(datagram());
    await send(sent.at(-1)!);
    await clock.advance(1000);
  }
  assert.equal(await spaCount("accepted"), 10);
  assert.equal(await spaCount("replay_set_full"), 0);
  assert.equal((await firewall.replay.list("SSH")).length, 4, "the set holds its bound, the newest");
  // The newest are still refused as replays, from the kernel's record too.
  for (const payload of sent.slice(-4)) await send(payload);
  assert.equal(await spaCount("replay"), 4);
  // The other door has a set of its own.
  await send(datagram({ message: `${CLIENT},tcp/80` }), { port: 62202 });
  assert.equal(await spaCount("accepted", "WEB"), 1);
  assert.equal(events("spa_replay_failed").length, 0);
  await daemon.stop();
});

test("a full replay set drops what can no longer be replayed before anything live", async () => {
  const { daemon, firewall, send, datagram, spaCount, clock } = setup({}, undefined, undefined, SIGNED, undefined, 3);
  await daemon.start();
  // Past the start's guard (the set was new), so a datagram stamped 110 s ago is read.
  await clock.advance(121_000);
  const first = datagram();
  await send(first);
  // Stamped 110 s ago: replayable for 10 s more, then stale.
  await send(datagram({ ageS: 110 }));
  const third = datagram();
  await send(third);
  await clock.advance(20_000);
  // Full, and the second is past its time: it makes room, not the first (the oldest to arrive).
  await send(datagram());
  await send(first);
  await send(third);
  assert.equal(await spaCount("accepted"), 4);
  assert.equal(await spaCount("replay"), 2);
  assert.equal((await firewall.replay.list("SSH")).length, 3);
  await daemon.stop();
});

test("after KNOCK_ON_EXIT=remove (or a flush) a restarted daemon refuses datagrams stamped before it started, for one max age", async () => {
  const clock = new FakeClock();
  const first = setup({ KNOCK_ON_EXIT: "remove" }, undefined, clock);
  await first.daemon.start();
  await clock.advance(1000);
  const payload = first.datagram();
  await first.send(payload);
  assert.equal(first.events("open").length, 1);
  await first.daemon.stop();
  assert.deepEqual(await first.firewall.replay.list("SSH"), [], "the replay set went with the rest");
  await clock.advance(2000);
  const second = setup({}, () => first.firewall, clock);
  await second.daemon.start();
  assert.equal(second.events("spa_replay_guard").length, 1);
  await second.send(payload);
  assert.equal(await second.spaCount("replay"), 1);
  assert.equal(second.events("open").length, 0);
  // Stamped before the start, never seen: refused all the same (its record may be what was lost).
  await second.send(second.datagram({ ageS: 5 }));
  assert.equal(await second.spaCount("replay"), 2);
  // Stamped after the start: opens.
  await clock.advance(1000);
  await second.send(second.datagram());
  assert.equal(second.events("open").length, 1);
  // One max age on, whatever was stamped before the start is stale anyway; the guard is gone.
  await clock.advance(120_000);
  await second.send(second.datagram({ ageS: 5 }));
  assert.equal(second.events("open").length, 2);
  await second.daemon.stop();
});

test("a replay set found holding entries is adopted: no guard, and what it holds is refused", async () => {
  const clock = new FakeClock();
  const first = setup({}, undefined, clock);
  await first.daemon.start();
  const payload = first.datagram();
  await first.send(payload);
  await first.daemon.stop();
  const second = setup({}, () => first.firewall, clock);
  await second.daemon.start();
  assert.equal(second.events("spa_replay_adopted").length, 1);
  assert.equal(second.events("spa_replay_guard").length, 0);
  await second.send(payload);
  assert.equal(await second.spaCount("replay"), 1);
  await second.send(second.datagram({ ageS: 5 }));
  assert.equal(second.events("open").length, 1);
  await second.daemon.stop();
});

test("the wall clock set an hour forward or back: a datagram accepted before is still refused, by the kernel's replay set too", async () => {
  const clock = new FakeClock();
  const first = setup({}, undefined, clock);
  await first.daemon.start();
  const payload = first.datagram();
  await first.send(payload);
  clock.stepWall(3_600_000);
  await first.send(payload);
  assert.equal(await first.spaCount("stale"), 1, "an hour forward: too old");
  // An hour back from where it was: the memory cache's entry (wall time) holds again.
  clock.stepWall(-7_200_000);
  await first.send(payload);
  clock.stepWall(3_600_000);
  await clock.advance(60_000);
  await first.send(payload);
  assert.equal(await first.spaCount("replay"), 2);
  await first.daemon.stop();
  // A new daemon (its memory cache empty) on the same kernel, whose entry lives on monotonic time.
  const second = setup({}, () => first.firewall, clock);
  await second.daemon.start();
  await second.send(payload);
  assert.equal(await second.spaCount("replay"), 1);
  assert.equal(first.events("open").length + second.events("open").length, 1);
  await second.daemon.stop();
});

test("the client's timeout sets the grant's time, capped at SPA_MAX_OPEN_FOR, and the grant closes when it is up", async () => {
  const { daemon, firewall, events, send, datagram, clock } = setup({ KNOCK_DOOR_SSH_SPA_MAX_OPEN_FOR: "60" });
  await daemon.start();
  await send(datagram({ type: SpaType.clientTimeoutAccess, clientTimeoutS: 5 }));
  assert.equal(events("open")[0]?.["open_for_s"], 5);
  await clock.advance(5000);
  assert.deepEqual(await perPort(firewall), []);
  assert.deepEqual(events("close").map((l) => [l["via"], l["reason"], l["ports"]]), [["signed", "expired", "22/tcp"]]);
  await send(datagram({ type: SpaType.clientTimeoutAccess, clientTimeoutS: 86_400 }));
  assert.equal(events("open")[1]?.["open_for_s"], 60);
  await daemon.stop();
});

test("a refresh never shortens a grant: a later datagram without -f leaves a port held longer its time, in the kernel and the book", async () => {
  const { daemon, firewall, events, send, datagram, clock } = setup({ KNOCK_DOOR_SSH_SPA_MAX_OPEN_FOR: "300" });
  await daemon.start();
  await send(datagram({ type: SpaType.clientTimeoutAccess, clientTimeoutS: 300 }));
  // No -f: OPEN_FOR, 30 s, for both ports; 22/tcp keeps its 300 s.
  await send(datagram({ message: `${CLIENT},tcp/22,tcp/2222` }));
  assert.equal(events("open")[1]?.["held_longer"], "22/tcp");
  await clock.advance(31_000);
  assert.deepEqual((await perPort(firewall)).map((g) => g.ports.map(portName)), [["22/tcp"]], "2222 ended on time, 22 did not");
  assert.deepEqual(events("close"), [], "the book still holds the address: its longest port is open");
  await clock.advance(270_000);
  assert.deepEqual(await perPort(firewall), []);
  assert.equal(events("close").length, 1);
  await daemon.stop();
});

test("a signed grant the kernel lost goes back port by port, each for the time it had left", async () => {
  const { daemon, firewall, events, send, datagram, clock } = setup({ KNOCK_DOOR_SSH_SPA_MAX_OPEN_FOR: "300" });
  await daemon.start();
  await send(datagram({ type: SpaType.clientTimeoutAccess, clientTimeoutS: 300 }));
  await send(datagram({ message: `${CLIENT},tcp/22,tcp/2222` }));
  await clock.advance(10_000);
  const written: [string, number][] = [];
  const grant = firewall.grant.bind(firewall);
  firewall.grant = (key, openForMs) => {
    if (key.ports === null) return grant(key, openForMs);
    written.push([key.ports.map(portName).join(","), openForMs]);
    return Promise.resolve();
  };
  const grants = firewall.grants.bind(firewall);
  firewall.grants = async () => (await grants()).filter((g) => g.ports === null);
  repairsOnce(firewall, ["sets missing: knockgate-SSH-spa-4"]);
  await clock.advance(100);
  assert.deepEqual(written.sort(), [["22/tcp", 290_000], ["2222/tcp", 20_000]]);
  assert.deepEqual(events("grants_restored").map((l) => l["grants"]), [1]);
  await daemon.stop();
});

test("a request for any port outside the door's PORTS opens nothing at all", async () => {
  const { daemon, firewall, send, datagram, spaCount, events } = setup();
  await daemon.start();
  await send(datagram({ message: `${CLIENT},tcp/22,tcp/23` }));
  assert.deepEqual(await perPort(firewall), []);
  assert.equal(await spaCount("port_not_allowed"), 1);
  assert.equal(events("spa_refused")[0]?.["level"], 20, "refusals are logged at debug");
  await send(datagram({ message: `${CLIENT},tcp/22,tcp/2222` }));
  assert.deepEqual((await perPort(firewall))[0]?.ports, [{ port: 22, proto: "tcp" }, { port: 2222, proto: "tcp" }]);
  await daemon.stop();
});

test("ports that Docker labels give the door while it runs can be asked for", async () => {
  const { daemon, firewall, send, datagram, spaCount } = setup();
  await daemon.start();
  const { config, protection } = (daemon as unknown as { deps: { config: Config; protection: DoorPorts } }).deps;
  await send(datagram({ message: `${CLIENT},tcp/8022` }));
  assert.equal(await spaCount("port_not_allowed"), 1, "not yet a port of the door");
  // What the protection does when a labelled container publishes 8022: readers and the firewall see it.
  const labelled = [...envTargets(config), { door: "SSH", dest: { kind: "host" as const }, port: { port: 8022, proto: "tcp" as const }, origins: ["container x (x)"] }];
  protection.portsOf = (door) => doorPorts(labelled, door);
  await firewall.protect(labelled);
  await send(datagram({ message: `${CLIENT},tcp/8022` }));
  assert.equal(await spaCount("port_not_allowed"), 1);
  assert.deepEqual((await perPort(firewall))[0]?.ports, [{ port: 8022, proto: "tcp" }]);
  await daemon.stop();
});

test("a label's claim on a port another door owns gives the signed door nothing: a datagram asking for it is refused", async () => {
  const { daemon, firewall, send, datagram, spaCount, clock } = setup({ KNOCK_DOOR_ADMIN_SEQUENCE: "6000,6001", KNOCK_DOOR_ADMIN_PORTS: "8022/tcp" });
  await daemon.start();
  const { config, protection } = (daemon as unknown as { deps: { config: Config; protection: DoorPorts } }).deps;
  // A container labelled for SSH publishing 8022, which ADMIN's _PORTS owns: refused, as the daemon's protection decides it.
  const decided = new ProtectionService({ config, log: pino({ level: "silent" }), clock });
  const ref = { name: "claimant", id: "c1a1a1a1a1a1" };
  await decided.propose([
    {
      container: ref,
      running: false,
      created: "2026-01-01T00:00:00Z",
      doors: [{ door: "SSH", hostPorts: [{ port: 8022, proto: "tcp", families: [4, 6], hostIp: "", containerPort: { port: 22, proto: "tcp" }, container: ref }], containerPorts: [], addresses: [] }],
      hostPortsAtStart: [],
      problems: [],
    },
  ]);
  assert.equal(decided.conflicts().length, 1);
  protection.portsOf = (door) => decided.portsOf(door);
  await firewall.protect(decided.targets());
  await send(datagram({ message: `${CLIENT},tcp/8022` }));
  assert.equal(await spaCount("port_not_allowed"), 1);
  assert.deepEqual(await perPort(firewall), []);
  await daemon.stop();
});

test("IPv6: an IPv6 address in the message is granted in the IPv6 set, and datagrams arriving over IPv6 are read", async () => {
  const { daemon, firewall, send, datagram } = setup();
  await daemon.start();
  await send(datagram({ message: `${CLIENT6},tcp/22` }));
  await send(datagram({ message: "fd00:198:18::3,tcp/2222" }), { src: CLIENT6 });
  assert.deepEqual(
    (await perPort(firewall)).map((g) => [g.family, g.src, g.ports.map((p) => p.port)]),
    [
      [6, CLIENT6, [22]],
      [6, "fd00:198:18::3", [2222]],
    ],
  );
  await daemon.stop();
});

test("0.0.0.0 is refused while a source address is required, and means the sender when it is not", async () => {
  const strict = setup();
  await strict.daemon.start();
  await strict.send(strict.datagram({ message: "0.0.0.0,tcp/22" }));
  assert.equal(await strict.spaCount("address_refused"), 1);
  await strict.daemon.stop();
  const loose = setup({ KNOCK_DOOR_SSH_SPA_REQUIRE_SOURCE_ADDRESS: "false" });
  await loose.daemon.start();
  await loose.send(loose.datagram({ message: "0.0.0.0,tcp/22" }), { src: "198.18.0.7" });
  assert.deepEqual((await perPort(loose.firewall)).map((g) => g.src), ["198.18.0.7"]);
  await loose.daemon.stop();
});

test("command and NAT messages, stale and future stamps, other users and garbage are refused and counted by result", async () => {
  const { daemon, firewall, send, datagram, spaCount, lines } = setup({ KNOCK_DOOR_SSH_SPA_REQUIRE_USERNAME: "alice" });
  await daemon.start();
  await send(datagram({ type: SpaType.command, message: `${CLIENT},touch /tmp/pwned` }));
  await send(datagram({ type: SpaType.natAccess, nat: "10.0.0.5,22" }));
  await send(datagram({ ageS: 121 }));
  await send(datagram({ ageS: -121 }));
  await send(datagram({ username: "mallory" }));
  await send(Buffer.alloc(200, 0x41));
  await send(Buffer.alloc(20, 0x41));
  await send(datagram(), { cut: 1 });
  const results = ["command_refused", "nat_refused", "stale", "future", "username_refused", "bad_hmac", "too_short", "truncated"];
  assert.deepEqual(await Promise.all(results.map((r) => spaCount(r))), results.map(() => 1));
  assert.deepEqual(await perPort(firewall), []);
  const above = lines.filter((l) => Number(l["level"]) > 20 && l["event"] === "spa_refused");
  assert.deepEqual(
    above.map((l) => [l["level"], l["result"]]),
    [
      [40, "command_refused"],
      [40, "nat_refused"],
    ],
    "only what a key holder asked for and knockgate never does is logged above debug",
  );
  assert.doesNotMatch(JSON.stringify(above), /pwned/, "the command itself is not logged");
  await daemon.stop();
});

test("a datagram that passed the free checks wakes the replay writer before its HMAC, a forged one too, at most once per WAKE_GAP_MS; one they refuse never", async () => {
  const calls: string[] = [];
  const { daemon, send, datagram, clock } = setup({}, (f) => {
    const record = f.replay.grant;
    f.replay.wake = () => void calls.push("wake");
    f.replay.grant = (entry, grants) => {
      calls.push("record");
      return record(entry, grants);
    };
    return f;
  });
  await daemon.start();
  await send(datagram());
  assert.deepEqual(calls, ["wake", "record"]);
  await send(Buffer.alloc(200, 0x41));
  assert.deepEqual(calls, ["wake", "record"], "within the gap: not woken again");
  await clock.advance(WAKE_GAP_MS);
  await send(Buffer.alloc(20, 0x41));
  await send(Buffer.alloc(200, 0));
  assert.deepEqual(calls, ["wake", "record"], "too short, or not base64: no HMAC, no wake");
  await send(Buffer.alloc(200, 0x41));
  assert.deepEqual(calls, ["wake", "record", "wake"], "a forged datagram of the right shape wakes it: the checks have not run yet");
  await daemon.stop();
});

test("a replay writer's wake that throws costs the datagram nothing: it opens", async () => {
  const { daemon, firewall, send, datagram } = setup({}, (f) => {
    f.replay.wake = () => {
      throw new Error("boom");
    };
    return f;
  });
  await daemon.start();
  await send(datagram());
  assert.deepEqual((await perPort(firewall)).map((g) => g.src), [CLIENT]);
  await daemon.stop();
});

test("SPA packet counts are served to the token holder only", async () => {
  const { daemon, metrics, send } = setup();
  await daemon.start();
  await send(Buffer.alloc(200, 0x41));
  assert.match(await metrics.registry.metrics(), /knockgate_spa_packets_total\{door="SSH",result="bad_hmac"\} 1/);
  assert.doesNotMatch(await metrics.publicRegistry.metrics(), /knockgate_spa_packets_total/);
  await daemon.stop();
});

test("a full replay set refuses the datagram and fails /readyz; a failing one too, counted as a grant error", async () => {
  let answer: ReplaySets["grant"] = () => Promise.resolve("full");
  let write: ReplaySets["grant"] = answer;
  const { daemon, firewall, send, datagram, spaCount, metrics, events } = setup({}, (f) => {
    write = f.replay.grant;
    f.replay.grant = (entry, grants) => answer(entry, grants);
    return f;
  });
  await daemon.start();
  await send(datagram());
  assert.equal(await spaCount("replay_set_full"), 1);
  assert.deepEqual(await failing(daemon), ["spa_replay"]);
  answer = () => Promise.reject(new Error("ipset: set knockgate-replay does not exist"));
  await send(datagram());
  assert.equal(await spaCount("replay_check_failed"), 1);
  assert.match(await metrics.registry.metrics(), /knockgate_firewall_errors_total\{operation="grant"\} 1/);
  assert.deepEqual(await failing(daemon), ["grants", "spa_replay"]);
  assert.equal(events("grant_failed").length, 1, "the failed write is logged once, by the grant lifecycle");
  assert.deepEqual(await perPort(firewall), []);
  answer = write;
  await send(datagram());
  assert.deepEqual(await failing(daemon), []);
  assert.equal((await perPort(firewall)).length, 1);
  await daemon.stop();
});

test("the grants written with a record say whether the book held a live grant of the address (a refresh)", async () => {
  const written: (boolean | undefined)[][] = [];
  const { daemon, send, datagram, events } = setup({}, (f) => {
    const write = f.replay.grant;
    f.replay.grant = (entry, grants) =>
      write(entry, () => {
        const g = grants();
        written.push(g.map((t) => t.refresh));
        return g;
      });
    return f;
  });
  await daemon.start();
  await send(datagram());
  await send(datagram());
  await send(datagram({ message: "198.18.0.3,tcp/22" }), { src: "198.18.0.3" });
  assert.deepEqual(written, [[undefined], [true], [undefined]]);
  assert.deepEqual(
    events("open").map((l) => l["refresh"]),
    [false, true, false],
  );
  await daemon.stop();
});

test("a datagram only the kernel's replay set knows (another daemon took it) opens nothing and takes no one's room", async () => {
  const { daemon, firewall, send, datagram, spaCount, events } = setup({ KNOCK_MAX_GRANTS: "1" });
  await daemon.start();
  await send(datagram());
  const replayed = datagram({ message: "198.18.0.3,tcp/22" });
  // What a second daemon on the host records when it takes the datagram first.
  assert.equal(await firewall.replay.grant({ door: "SSH", element: replayKey(replayed), ttlS: 240, evict: [] }, () => []), "recorded");
  await send(replayed, { src: "198.18.0.3" });
  assert.equal(await spaCount("replay"), 1);
  assert.deepEqual((await perPort(firewall)).map((g) => g.src), [CLIENT], "the grant of the full door stays");
  assert.deepEqual(events("close"), []);
  await send(datagram({ message: "198.18.0.3,tcp/22" }), { src: "198.18.0.3" });
  assert.deepEqual((await perPort(firewall)).map((g) => g.src), ["198.18.0.3"], "a new datagram still takes the room (the refused one was never booked)");
  assert.deepEqual(events("close").map((l) => [l["src"], l["reason"]]), [[CLIENT, "replaced"]]);
  await daemon.stop();
});

test("signed grants are bounded like sequence grants: a prefix over its share gives up its oldest", async () => {
  const { daemon, firewall, send, datagram, events } = setup({ KNOCK_MAX_GRANTS_PER_PREFIX: "1" });
  await daemon.start();
  await send(datagram({ message: `${CLIENT},tcp/22` }));
  await send(datagram({ message: "198.18.0.3,tcp/22" }));
  assert.deepEqual((await perPort(firewall)).map((g) => g.src), ["198.18.0.3"]);
  assert.deepEqual(events("close").map((l) => [l["src"], l["via"], l["reason"]]), [[CLIENT, "signed", "replaced"]]);
  await daemon.stop();
});

test("signed grants found in the kernel at start are adopted and close with their via", async () => {
  const clock = new FakeClock();
  const first = setup({}, undefined, clock);
  await first.daemon.start();
  await first.send(first.datagram());
  await first.daemon.stop();
  const second = setup({}, () => first.firewall, clock);
  await second.daemon.start();
  assert.equal(second.events("grants_adopted")[0]?.["grants"], 1);
  await clock.advance(31_000);
  assert.deepEqual(second.events("close").map((l) => [l["src"], l["via"], l["reason"]]), [[CLIENT, "signed", "expired"]]);
  await second.daemon.stop();
});

test("a door with a sequence and keys opens both ways, each in its own set", async () => {
  const { daemon, firewall, send, datagram, events } = setup({ KNOCK_DOOR_SSH_SEQUENCE: "7000:udp" });
  await daemon.start();
  await send(Buffer.alloc(1), { port: 7000, src: "198.18.0.9" });
  await send(datagram());
  assert.deepEqual((await doorWide(firewall)).map((g) => g.src), ["198.18.0.9"]);
  assert.deepEqual((await perPort(firewall)).map((g) => g.src), [CLIENT]);
  assert.deepEqual(events("open").map((l) => l["via"]).sort(), ["sequence", "signed"]);
  await daemon.stop();
});

test("ON_OPEN and ON_CLOSE of a signed grant see the ports it opened in %PORTS%", async () => {
  const { daemon, send, datagram, hooks, clock } = setup({ KNOCK_DOOR_SSH_ON_OPEN: "/bin/true %PORTS%", KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %PORTS%" });
  await daemon.start();
  await send(datagram({ message: `${CLIENT},tcp/2222` }));
  await clock.advance(30_000);
  assert.deepEqual(
    hooks.map((h) => [h.kind, h.ip, h.door.ports.map((p) => p.port)]),
    [
      ["on_open", CLIENT, [2222]],
      ["on_close", CLIENT, [2222]],
    ],
  );
  await daemon.stop();
});

test("a backend that throws at once on a verified datagram's grant is a failed grant: logged, counted, never an unhandled rejection", async () => {
  const { daemon, send, datagram, events } = setup({}, (f) => {
    // A verified datagram's grant goes in with its record.
    (f.replay as { grant: ReplaySets["grant"] }).grant = () => {
      throw new Error("boom");
    };
    return f;
  });
  await daemon.start();
  await send(datagram());
  assert.equal(events("grant_failed").length, 1);
  assert.match(String(events("grant_failed")[0]?.["err"]), /boom/);
  assert.match((await daemon.readiness()).find((c) => c.name === "grants")?.detail ?? "", /boom/);
  await daemon.stop();
});

/** A ClusterLink that records what the daemon hands it. */
function clusterLink() {
  const published: unknown[] = [];
  const closed: string[] = [];
  const link: ClusterLink = {
    opened: (g) => void published.push(g),
    closed: (door, family, src) => void closed.push(`${door.name} ${family} ${src}`),
    check: () => ({ name: "cluster", ok: true, advisory: true }),
  };
  return { published, closed, link };
}

const SEQUENCES = { KNOCK_DOOR_SSH_SEQUENCE: "7000:udp", KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "7100:udp", KNOCK_DOOR_SSH_SPA_MAX_OPEN_FOR: "120" };

test("cluster: a signed grant is published with the ports it opened and its own time, up to SPA_MAX_OPEN_FOR", async () => {
  const { published, link } = clusterLink();
  const { daemon, send, datagram, clock } = setup(SEQUENCES, undefined, new FakeClock(), SIGNED, link);
  await daemon.start();
  await send(datagram({ type: SpaType.clientTimeoutAccess, clientTimeoutS: 100, message: `${CLIENT},tcp/2222` }));
  assert.deepEqual(published, [{ door: "SSH", address: CLIENT, family: 4, expiresAt: clock.wallNow() + 100_000, grantedAt: clock.wallNow(), how: "signed", ports: ["2222/tcp"] }]);
  await daemon.stop();
});

test("a close sequence closes the source's sequence grant only: its signed grant ends by its time, so close knocks forged with its address take nothing", async () => {
  const { closed, link } = clusterLink();
  const { daemon, firewall, send, datagram, events, hooks, clock } = setup({ ...SEQUENCES, KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %PORTS%" }, undefined, new FakeClock(), SIGNED, link);
  await daemon.start();
  await send(datagram({ message: `${CLIENT},tcp/2222` }));
  await send(Buffer.alloc(1), { port: 7000 });
  await send(Buffer.alloc(1), { port: 7100 });
  assert.deepEqual(await doorWide(firewall), []);
  assert.deepEqual((await perPort(firewall)).map((g) => [g.src, g.ports.map(portName)]), [[CLIENT, ["2222/tcp"]]], "the signed grant stays");
  assert.deepEqual(
    events("close").map((l) => [l["via"], l["ports"], l["reason"]]),
    [["sequence", "22/tcp,2222/tcp", "close_sequence"]],
  );
  assert.deepEqual(hooks.filter((h) => h.kind === "on_close").map((h) => portsText(h.door)), ["22/tcp,2222/tcp"]);
  assert.deepEqual(closed, [`SSH 4 ${CLIENT}`], "one close for every node, of the sequence grant");
  // Only a signed grant: a close sequence (anyone can send one with the client's address) takes nothing.
  await send(datagram({ message: `198.18.0.7,tcp/22` }), { src: "198.18.0.7" });
  await send(Buffer.alloc(1), { port: 7100, src: "198.18.0.7" });
  assert.deepEqual((await perPort(firewall)).map((g) => g.src).sort(), [CLIENT, "198.18.0.7"]);
  assert.ok(events("close_ignored").some((l) => l["src"] === "198.18.0.7"));
  await clock.advance(31_000);
  assert.deepEqual(await perPort(firewall), [], "signed grants end by their time");
  await daemon.stop();
});

test("cluster: another node's signed grant opens only its ports for the time left; its deletion revokes them, not the sequence grant", async () => {
  const { link } = clusterLink();
  const { daemon, firewall, send, clock, events } = setup(SEQUENCES, undefined, new FakeClock(), SIGNED, link);
  await daemon.start();
  const door = (daemon as unknown as { deps: { config: { doors: Door[] } } }).deps.config.doors[0]!;
  await send(Buffer.alloc(1), { port: 7000 });
  assert.equal(await daemon.grants.open({ door, family: 4, src: CLIENT, via: "signed", ports: [{ port: 2222, proto: "tcp" }], openForMs: 45_500, origin: "node-a" }), "opened");
  assert.deepEqual(await perPort(firewall), [{ door: "SSH", family: 4, src: CLIENT, ports: [{ port: 2222, proto: "tcp" }], remainingMs: 46_000 }]);
  assert.deepEqual(
    events("open").map((l) => [l["via"], l["ports"], l["origin"]]),
    [
      ["sequence", "22/tcp,2222/tcp", undefined],
      ["signed", "2222/tcp", "node-a"],
    ],
  );
  assert.equal(await daemon.grants.close({ door, family: 4, src: CLIENT, via: "signed", remote: true }), true);
  assert.equal(await daemon.grants.close({ door, family: 4, src: CLIENT, via: "signed", remote: true }), false, "nothing left to revoke");
  assert.deepEqual(await perPort(firewall), []);
  assert.deepEqual((await doorWide(firewall)).map((g) => g.src), [CLIENT], "the sequence grant is another object's");
  assert.deepEqual(events("close").map((l) => [l["via"], l["remote"]]), [["signed", true]]);
  // One that ran out before the sweep saw it closes (expired) before the next opens, ON_OPEN again.
  // The sweep runs each whole second from the start: a grant from 0.3 s to 1.3 s is over at 1.3 s, unswept.
  await clock.advance(300);
  assert.equal(await daemon.grants.open({ door, family: 4, src: CLIENT, via: "signed", ports: [{ port: 22, proto: "tcp" }], openForMs: 1_000, origin: "node-a" }), "opened");
  await clock.advance(1_000);
  assert.equal(events("close").length, 1, "not swept yet");
  assert.equal(await daemon.grants.open({ door, family: 4, src: CLIENT, via: "signed", ports: [{ port: 22, proto: "tcp" }], openForMs: 5_000, origin: "node-c" }), "opened");
  assert.deepEqual(events("close").map((l) => [l["via"], l["reason"]]).slice(1), [["signed", "expired"]]);
  assert.deepEqual(events("open").slice(2).map((l) => l["refresh"]), [false, false]);
  await daemon.stop();
});

/** A daemon whose replay writes are held until `release`, in order, as the one nftables session runs them. */
function heldWrites(env: Record<string, string> = {}, replaySetSize?: number) {
  const held: (() => void)[] = [];
  /** Every record written, in order. */
  const entries: ReplayEntry[] = [];
  const h = setup(env, (f) => {
    const write = f.replay.grant;
    f.replay.grant = (entry, grants) => {
      entries.push(entry);
      const result = write(entry, grants);
      return new Promise((resolve) => held.push(() => resolve(result)));
    };
    return f;
  }, undefined, undefined, undefined, replaySetSize);
  /** Lets every held write through, and those that were waiting behind them. */
  const release = async () => {
    do {
      for (const r of held.splice(0)) r();
      await h.clock.advance(0);
    } while (held.length > 0);
  };
  /** What a second daemon on the host records when it takes `payload` first: only the kernel knows it. */
  const takenElsewhere = async (payload: Buffer) => {
    const taken = h.firewall.replay.grant({ door: "SSH", element: replayKey(payload), ttlS: 240, evict: [] }, () => []);
    await release();
    assert.equal(await taken, "recorded");
  };
  return { ...h, release, takenElsewhere, entries };
}

test("a replay only the kernel knows, in flight beside the client's new datagram, lends the new grant none of its time", async () => {
  const { daemon, firewall, send, datagram, spaCount, release, takenElsewhere } = heldWrites();
  await daemon.start();
  const replayed = datagram({ type: SpaType.clientTimeoutAccess, clientTimeoutS: 300 });
  await takenElsewhere(replayed);
  await send(replayed);
  await send(datagram()); // the client's own new datagram: 22/tcp for the door's 30 s
  await release();
  assert.equal(await spaCount("replay"), 1);
  assert.deepEqual((await perPort(firewall)).map((g) => [g.ports.map(portName), g.remainingMs]), [[["22/tcp"], 30_000]], "the refused datagram's 300 s are not granted");
  await daemon.stop();
});

test("a replay only the kernel knows, in flight beside the client's new datagram: its port is never granted, by restore neither, and the new grant runs ON_OPEN", async () => {
  const { daemon, firewall, send, datagram, spaCount, clock, hooks, events, release, takenElsewhere } = heldWrites({ KNOCK_DOOR_SSH_ON_OPEN: "/bin/true %IP%" });
  await daemon.start();
  const replayed = datagram({ type: SpaType.clientTimeoutAccess, message: `${CLIENT},tcp/2222`, clientTimeoutS: 300 });
  await takenElsewhere(replayed);
  await send(replayed);
  await send(datagram()); // the client's own new datagram: 22/tcp for the door's 30 s
  await release();
  assert.equal(await spaCount("replay"), 1);
  assert.deepEqual((await perPort(firewall)).map((g) => g.ports.map(portName)), [["22/tcp"]]);
  assert.deepEqual(events("open").map((l) => l["refresh"]), [false], "the new datagram's grant is an open, not a refresh of the refused one");
  assert.equal(hooks.filter((h) => h.kind === "on_open").length, 1);
  // Once 22/tcp's entry has expired in the kernel, reconcile must not put back what was never granted.
  await clock.advance(40_000);
  await release();
  assert.deepEqual(await perPort(firewall), [], "2222/tcp of the replayed datagram is not granted");
  assert.deepEqual(events("grants_restored"), []);
  await daemon.stop();
});

test("on a full door, a replay only the kernel knows in flight beside another new datagram: the bound holds and no grant that never opened is closed", async () => {
  const { daemon, firewall, send, datagram, spaCount, events, release, takenElsewhere } = heldWrites({ KNOCK_MAX_GRANTS: "1" });
  await daemon.start();
  await send(datagram());
  await release();
  const replayed = datagram({ message: "198.18.0.3,tcp/22" });
  await takenElsewhere(replayed);
  await send(replayed, { src: "198.18.0.3" });
  await send(datagram({ message: "198.18.0.4,tcp/22" }), { src: "198.18.0.4" });
  await release();
  assert.equal(await spaCount("replay"), 1);
  assert.deepEqual(events("close").map((l) => [l["src"], l["reason"]]), [[CLIENT, "replaced"]], "198.18.0.3 never opened: it is not closed");
  assert.deepEqual((await perPort(firewall)).map((g) => g.src), ["198.18.0.4"], "KNOCK_MAX_GRANTS=1: the newest grant alone");
  assert.equal(daemon.grants.size, 1);
  await daemon.stop();
});

test("a datagram the kernel refuses is logged with its own source, though others arrived while its write was held", async () => {
  const { daemon, send, datagram, events, release, takenElsewhere } = heldWrites();
  await daemon.start();
  const replayed = datagram({ message: "198.18.0.3,tcp/22" });
  await takenElsewhere(replayed);
  await send(replayed, { src: "198.18.0.3" });
  await send(datagram({ message: "198.18.0.4,tcp/22" }), { src: "198.18.0.4" });
  await release();
  assert.deepEqual(events("spa_refused").map((l) => [l["src"], l["result"]]), [["198.18.0.3", "replay"]]);
  await daemon.stop();
});

test("a key holder's flood queues at most MAX_PENDING_RECORDS writes per door: the rest are refused as busy, taking no room in the replay index, and the door takes datagrams again once the queue is written", async () => {
  // A replay index with room for one more than the queue holds: a busy datagram must take none of it.
  const { daemon, send, datagram, spaCount, events, release, entries } = heldWrites({}, MAX_PENDING_RECORDS + 1);
  await daemon.start();
  for (let i = 0; i < MAX_PENDING_RECORDS + 2; i++) await send(datagram());
  assert.equal(await spaCount("busy"), 2);
  assert.deepEqual(events("spa_busy").map((l) => [l["door"], l["pending"]]), [["SSH", MAX_PENDING_RECORDS]]);
  await release();
  assert.equal(await spaCount("accepted"), MAX_PENDING_RECORDS);
  assert.deepEqual(events("spa_busy_over").map((l) => l["refused"]), [2], "told once the queue is written");
  await send(datagram());
  await release();
  assert.equal(await spaCount("accepted"), MAX_PENDING_RECORDS + 1);
  assert.deepEqual(entries.at(-1)?.evict, [], "the index had room for it: the busy datagrams took none");
  // A second flood is warned and told again.
  for (let i = 0; i < MAX_PENDING_RECORDS + 1; i++) await send(datagram());
  await release();
  assert.equal(await spaCount("busy"), 3);
  assert.equal(events("spa_busy").length, 2);
  assert.deepEqual(events("spa_busy_over").map((l) => l["refused"]), [2, 1]);
  await daemon.stop();
});

test("a replay of a datagram the kernel set held at start, arriving while the door is busy, is refused as a replay, not as busy", async () => {
  const { daemon, send, datagram, spaCount, release, takenElsewhere } = heldWrites();
  const replayed = datagram();
  await takenElsewhere(replayed);
  await daemon.start();
  for (let i = 0; i < MAX_PENDING_RECORDS; i++) await send(datagram());
  await send(replayed);
  assert.equal(await spaCount("replay"), 1);
  assert.equal(await spaCount("busy"), 0);
  await release();
  assert.equal(await spaCount("accepted"), MAX_PENDING_RECORDS);
  await daemon.stop();
});

test("a refresh whose grant another datagram displaced while its record was in flight opens again (ON_OPEN after that ON_CLOSE) and stays in the kernel", async () => {
  const hooked = { KNOCK_MAX_GRANTS: "1", KNOCK_DOOR_SSH_ON_OPEN: "/bin/true %IP%", KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %IP%" };
  const { daemon, firewall, send, datagram, hooks, events, release } = heldWrites(hooked);
  await daemon.start();
  await send(datagram());
  await release();
  // Another address's new datagram, then the client's refresh: the first is booked first and displaces the client.
  await send(datagram({ message: "198.18.0.4,tcp/22" }), { src: "198.18.0.4" });
  await send(datagram());
  await release();
  const book = daemon.grants.held().map((g) => g.src);
  assert.deepEqual(book, [CLIENT], "KNOCK_MAX_GRANTS=1: the last booked holds the door");
  assert.deepEqual((await perPort(firewall)).map((g) => g.src), book, "the kernel holds what the book holds");
  const forClient = hooks.filter((h) => h.ip === CLIENT).map((h) => h.kind);
  assert.equal(forClient.at(-1), "on_open", `the client holds the door, so its last hook is ON_OPEN (got ${forClient.join(", ")})`);
  assert.equal(events("open").filter((l) => l["src"] === CLIENT).at(-1)?.["refresh"], false, "its grant was closed (replaced) before: this open is no refresh");
  await daemon.stop();
});

test("a refresh whose grant expired while its record was in flight runs ON_OPEN again after the expiry's ON_CLOSE", async () => {
  const hooked = { KNOCK_DOOR_SSH_ON_OPEN: "/bin/true %IP%", KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %IP%" };
  const { daemon, firewall, send, datagram, hooks, clock, release } = heldWrites(hooked);
  await daemon.start();
  await send(datagram());
  await release();
  await clock.advance(29_000);
  await send(datagram()); // the refresh, its record write held
  await clock.advance(2_000); // meanwhile the first grant's 30 s are up and the sweep closes it
  await release();
  assert.deepEqual((await perPort(firewall)).map((g) => g.src), [CLIENT], "the refresh is in the kernel");
  assert.deepEqual(hooks.map((h) => h.kind), ["on_open", "on_close", "on_open"], "the grant open in the kernel ends with ON_OPEN");
  await daemon.stop();
});

test("two datagrams of one address in flight together: the second's write starts from the first's longer time, never shortening it in the kernel", async () => {
  const { daemon, firewall, send, datagram, clock, release } = heldWrites();
  await daemon.start();
  await send(datagram({ type: SpaType.clientTimeoutAccess, clientTimeoutS: 300 }));
  await send(datagram()); // 22/tcp for the door's 30 s, sent before the first is written
  await release();
  assert.deepEqual((await perPort(firewall)).map((g) => [g.ports.map(portName), g.remainingMs]), [[["22/tcp"], 300_000]]);
  assert.deepEqual(daemon.grants.held().map((g) => (g.until?.get("22/tcp") ?? 0) - clock.now()), [300_000], "the book says the same");
  await daemon.stop();
});
