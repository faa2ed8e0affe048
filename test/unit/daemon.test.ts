/**
 * Daemon wiring on the dry-run firewall, a fake capture and a fake clock: how knocks become grants,
 * and how failures surface in /readyz, metrics and logs. Faults are injected by replacing one
 * method of the dry-run backend; time moves only when a test advances it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { parseConfig } from "../../src/config/config.js";
import { Daemon, type Deps } from "../../src/app/daemon.js";
import type { InterfaceState } from "../../src/adapters/capture.js";
import { CAPTURE_CHECK_MS } from "../../src/app/captures.js";
import { doorWide } from "../support/dry-run.js";
import { forbidUnhandledRejections } from "../support/unhandled.js";
import { CLIENT, daemonHarness, failing, repairsOnce } from "../support/daemon-harness.js";

function setup(env: Record<string, string> = {}, overrides: Partial<Deps> = {}) {
  return daemonHarness({ env: { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", ...env }, overrides });
}

const OPEN = [7000, 8000, 9000];

/** A rejection nobody handles would end the real process: every test here must leave none. */
forbidUnhandledRejections();

test("a completed sequence grants through the firewall and logs one open line", async () => {
  const { daemon, firewall, events, knockAll } = setup();
  await daemon.start();
  await knockAll(OPEN);
  assert.deepEqual((await doorWide(firewall)).map((g) => g.src), [CLIENT]);
  const opens = events("open");
  assert.equal(opens.length, 1);
  assert.equal(opens[0]?.["src"], CLIENT);
  assert.equal(opens[0]?.["expires"], new Date(Date.UTC(2026, 0, 1) + 30_000).toISOString());
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("a throw in the timed sweep (a metrics or logging bug) is logged, never escapes, and the other grants still close", async () => {
  const { daemon, firewall, events, knockAll, metrics, clock } = setup({ KNOCK_DOOR_SSH_OPEN_FOR: "2" });
  await daemon.start();
  await knockAll(OPEN);
  await knockAll(OPEN, "198.18.0.3");
  const closed = metrics.closed.bind(metrics);
  let throwsLeft = 1;
  metrics.closed = (door, reason) => {
    if (throwsLeft-- > 0) throw new Error("planted");
    closed(door, reason);
  };
  await clock.advance(2000);
  assert.equal(events("expiry_followup_failed").length, 1);
  assert.equal(events("close").length, 1, "the other grant still closes with its line");
  assert.deepEqual(await doorWide(firewall), [], "the kernel expired both");
  await knockAll(OPEN);
  assert.equal(events("open").length, 3, "the daemon goes on");
  await daemon.stop();
});

test("no line above debug names a knock port: the ports are as secret as the sequence", async () => {
  const { daemon, lines, knockAll } = setup({ KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9100,9200" });
  await daemon.start();
  await knockAll(OPEN);
  await knockAll([9100, 9200]);
  await daemon.stop();
  const port = /(?<![\d.])(?:7000|8000|9000|9100|9200)(?![\d.])/;
  const leaks = lines.filter((l) => Number(l["level"]) > 20 && port.test(JSON.stringify(l)));
  assert.ok(lines.some((l) => l["event"] === "close"), "the test must get as far as a close");
  assert.deepEqual(leaks, []);
});

test("a failed grant is logged with its code, counted by operation and makes /readyz fail until a grant succeeds", async () => {
  const { daemon, firewall, events, metrics, knockAll } = setup();
  await daemon.start();
  const grant = firewall.grant.bind(firewall);
  firewall.grant = () => Promise.reject(new Error("ipset: set does not exist"));
  await knockAll(OPEN);
  assert.deepEqual(
    events("grant_failed").map((l) => [l["code"], l["err"]]),
    [["KNOCK_E_FIREWALL", "ipset: set does not exist"]],
  );
  assert.deepEqual(await failing(daemon), ["grants"]);
  const text = await metrics.registry.metrics();
  assert.match(text, /knockgate_firewall_errors_total\{operation="grant"\} 1/);
  assert.match(text, /knockgate_firewall_errors_total\{operation="revoke"\} 0/);
  firewall.grant = grant;
  await knockAll(OPEN);
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("a firewall object that went missing fails /readyz at once and is repaired and counted", async () => {
  const { daemon, firewall, events, metrics, clock } = setup();
  await daemon.start();
  let lost = ["jump PREROUTING -> KNOCKGATE missing (IPv4)"];
  firewall.reconcile = (mode) => {
    if (mode === "check") return Promise.resolve([...lost]);
    const found = lost;
    lost = [];
    return Promise.resolve(found);
  };
  const checks = await daemon.readiness();
  assert.deepEqual(checks.find((c) => c.name === "firewall"), { name: "firewall", ok: false, detail: "jump PREROUTING -> KNOCKGATE missing (IPv4)" });
  await clock.advance(100);
  assert.deepEqual(await failing(daemon), []);
  assert.equal(events("firewall_repaired").length, 1);
  assert.match(await metrics.registry.metrics(), /knockgate_firewall_repairs_total 1/);
  await daemon.stop();
});

test("grants the kernel lost in a repaired set go back for the time they had left, logged and counted once", async () => {
  const { daemon, firewall, events, metrics, clock, knockAll } = setup();
  await daemon.start();
  await knockAll(OPEN);
  await clock.advance(10_400);
  // The set was destroyed and made again empty: the kernel lists nothing until a grant puts it back.
  const granted: [string, number | undefined][] = [];
  const grant = firewall.grant.bind(firewall);
  firewall.grant = (key, forMs) => {
    granted.push([key.src, forMs]);
    return grant(key, forMs);
  };
  const listGrants = firewall.grants.bind(firewall);
  let listings = 0;
  firewall.grants = () => (listings++ === 0 ? Promise.reject(new Error("ipset: busy")) : Promise.resolve([]));
  repairsOnce(firewall, ["sets missing: knockgate-SSH-4"]);
  await clock.advance(100);
  // The listing failed: tried again on the next pass, though that pass has nothing to repair.
  assert.deepEqual(granted, []);
  assert.equal(events("firewall_reconcile_failed").length, 1);
  await clock.advance(100);
  assert.deepEqual(granted, [[CLIENT, 20_000]], "OPEN_FOR 30 s, 10.6 s gone: 19.4 s left, in whole seconds");
  firewall.grants = listGrants;
  await clock.advance(300);
  assert.equal(granted.length, 1, "put back once");
  assert.deepEqual(
    events("grants_restored").map((l) => [l["grants"], l["lost"], l["doors"]]),
    [[1, 1, ["SSH"]]],
  );
  assert.match(await metrics.registry.metrics(), /knockgate_grants_restored_total\{door="SSH"\} 1/);
  await daemon.stop();
});

test("a grant is written for OPEN_FOR exactly, whatever fraction of a millisecond the monotonic clock reads", async () => {
  const { daemon, firewall, clock, knockAll } = setup();
  await daemon.start();
  const written: (number | undefined)[] = [];
  const grant = firewall.grant.bind(firewall);
  firewall.grant = (key, forMs) => {
    written.push(forMs);
    return grant(key, forMs);
  };
  // (2770.19 + 30000) - 2770.19 is 30000.000000000004 in floating point: 31 s once rounded up.
  await clock.advance(2770.19 - clock.now());
  await knockAll(OPEN);
  assert.deepEqual(written, [30_000]);
  await daemon.stop();
});

test("a grant set emptied in place (no repair to make) is noticed: its grants go back on the next pass", async () => {
  const { daemon, firewall, events, clock, knockAll } = setup();
  await daemon.start();
  await knockAll(OPEN);
  const granted: string[] = [];
  const grant = firewall.grant.bind(firewall);
  firewall.grant = (key, forMs) => {
    granted.push(key.src);
    return grant(key, forMs);
  };
  // `ipset flush` / `nft flush set`: the plan is all there, the entries are gone.
  const listGrants = firewall.grants.bind(firewall);
  firewall.grants = () => Promise.resolve([]);
  await clock.advance(100);
  assert.deepEqual(granted, [CLIENT]);
  assert.deepEqual(events("firewall_repaired"), []);
  assert.deepEqual(events("grants_restored").map((l) => l["grants"]), [1]);
  firewall.grants = listGrants;
  await clock.advance(300);
  assert.deepEqual(granted, [CLIENT], "put back once");
  await daemon.stop();
});

test("a grant whose kernel write is still in flight, or that was closed while it went back, is not put back", async () => {
  const { daemon, firewall, events, clock, knockAll } = setup({ KNOCK_DOOR_SSH_OPEN_FOR: "0", KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9100,9200" });
  await daemon.start();
  let release = () => undefined as void;
  const grant = firewall.grant.bind(firewall);
  firewall.grant = (key, forMs) => new Promise<void>((resolve) => (release = resolve)).then(() => grant(key, forMs));
  await knockAll(OPEN);
  await clock.advance(300);
  assert.deepEqual(events("grants_restored"), [], "a write in flight is not a lost grant");
  release();
  await clock.advance(0);
  assert.equal(events("open").length, 1);
  // Now lost; the pass puts it back, and a close sequence lands while that write is in flight.
  const listGrants = firewall.grants.bind(firewall);
  firewall.grants = () => Promise.resolve([]);
  await clock.advance(100);
  firewall.grants = listGrants;
  await knockAll([9100, 9200]);
  assert.deepEqual(events("close").map((l) => l["reason"]), ["close_sequence"]);
  release();
  await clock.advance(0);
  assert.deepEqual(await doorWide(firewall), [], "the closed grant is not left in the kernel");
  assert.deepEqual(events("grants_restored").map((l) => [l["grants"], l["lost"]]), [[0, 1]]);
  await daemon.stop();
});

test("an expired grant the sweep has not closed yet is not put back", async () => {
  const { daemon, firewall, clock, knockAll } = setup();
  await daemon.start();
  // Off the sweep's beat: the grant ends at 30.5 s, a reconcile runs then, the sweep at 31 s.
  await clock.advance(500);
  await knockAll(OPEN);
  await clock.advance(29_900);
  firewall.grants = () => Promise.resolve([]);
  const reconcile = firewall.reconcile.bind(firewall);
  firewall.reconcile = (mode) => (mode === "check" ? reconcile(mode) : Promise.resolve(["sets missing: knockgate-SSH-4"]));
  const granted: string[] = [];
  firewall.grant = (key) => {
    granted.push(key.src);
    return Promise.resolve();
  };
  await clock.advance(100);
  assert.deepEqual(granted, [], "a grant with no time left would go back with timeout 0: for ever");
  await daemon.stop();
});

test("a failing reconcile is logged once, with its code, and reported by /readyz", async () => {
  const { daemon, firewall, events, metrics, clock } = setup();
  await daemon.start();
  const reconcile = firewall.reconcile.bind(firewall);
  firewall.reconcile = (mode) => (mode === "check" ? reconcile(mode) : Promise.reject(new Error("iptables: permission denied")));
  await clock.advance(300);
  assert.deepEqual(await failing(daemon), ["reconcile"]);
  const failed = events("firewall_reconcile_failed");
  assert.equal(failed.length, 1, "repeats of the same error are not re-logged");
  assert.equal(failed[0]?.["code"], "KNOCK_E_FIREWALL");
  assert.match(await metrics.registry.metrics(), /knockgate_firewall_errors_total\{operation="reconcile"\} 3/);
  await daemon.stop();
});

test("start fails when the firewall cannot be installed", async () => {
  const { daemon, firewall } = setup();
  const reconcile = firewall.reconcile.bind(firewall);
  firewall.reconcile = (mode) => (mode === "check" ? reconcile(mode) : Promise.reject(new Error("iptables: permission denied")));
  await assert.rejects(daemon.start(), /permission denied/);
});

test("a capture that cannot be opened fails /readyz and is retried", async () => {
  let attempts = 0;
  const { daemon, clock, events } = setup(
    {},
    {
      openCapture: () => {
        attempts++;
        throw new Error("capture on eth0: No such device exists");
      },
    },
  );
  await daemon.start();
  assert.deepEqual(await failing(daemon), ["capture:eth0"]);
  await clock.advance(2 * CAPTURE_CHECK_MS);
  assert.equal(attempts, 3, "one try at start, then one per check");
  assert.equal(events("capture_failed")[0]?.["code"], "KNOCK_E_CAPTURE");
  await daemon.stop();
});

test("a malformed frame is counted and ignored", async () => {
  const { daemon, metrics, raw } = setup();
  await daemon.start();
  raw(Buffer.from([1, 2, 3]));
  assert.match(await metrics.registry.metrics(), /knockgate_packets_total\{result="malformed"\} 1/);
  await daemon.stop();
});

test("kernel capture drops are counted per interface across a reopen, and warned about", async () => {
  const { daemon, events, metrics, ring, kill, clock } = setup();
  await daemon.start();
  assert.match(await metrics.registry.metrics(), /knockgate_capture_dropped_packets_total\{interface="eth0"\} 0/);
  ring.dropped = 5;
  kill();
  await clock.advance(CAPTURE_CHECK_MS);
  assert.equal(ring.dropped, 0, "the capture was reopened");
  ring.dropped = 2;
  assert.match(await metrics.registry.metrics(), /knockgate_capture_dropped_packets_total\{interface="eth0"\} 7/);
  // The sweep right after the reopen warned of the first 5; the next warning waits a minute.
  await clock.advance(30_000);
  assert.deepEqual(events("capture_dropped").length, 1, "at most one warning a minute");
  await clock.advance(30_000);
  assert.deepEqual(
    events("capture_dropped").map((l) => [l["dropped"], l["total"]]),
    [
      [5, 5],
      [2, 7],
    ],
  );
  await daemon.stop();
});

test("an interface that went away fails /readyz and its capture is reopened", async () => {
  const { daemon, events, kill, clock } = setup();
  await daemon.start();
  kill();
  assert.deepEqual(await failing(daemon), ["capture:eth0"]);
  await clock.advance(CAPTURE_CHECK_MS);
  assert.equal(events("capture_lost").length, 1);
  assert.equal(events("capture_started").length, 2, "capture must be reopened");
  await daemon.stop();
});

const UP: InterfaceState = { index: 2, up: true, linkType: "ETHERNET" };
const problems = async (d: Daemon) => (await d.readiness()).filter((c) => !c.ok).map((c) => [c.name, c.detail]);

test("an interface absent at start is waited for without trying it, and `ready` is logged once it is captured", async () => {
  const { daemon, events, link, opened, clock } = setup();
  link.state = undefined;
  await daemon.start();
  assert.deepEqual(await problems(daemon), [["capture:eth0", "interface does not exist"]]);
  await clock.advance(5 * CAPTURE_CHECK_MS);
  assert.deepEqual(opened, [], "libpcap is not asked for an interface that is not there");
  assert.equal(events("capture_waiting").length, 1, "one line for the whole wait");
  assert.equal(events("ready").length, 0);
  link.state = { ...UP, index: 7 };
  await clock.advance(CAPTURE_CHECK_MS);
  assert.deepEqual(opened, ["eth0"]);
  assert.equal(events("capture_started")[0]?.["after"], "interface does not exist");
  assert.equal(events("ready").length, 1);
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("an interface that goes down keeps every grant, says so once, and is captured again when it is up; `ready` is not logged twice", async () => {
  const { daemon, firewall, events, link, kill, clock, knockAll } = setup();
  await daemon.start();
  assert.equal(events("ready").length, 1);
  await knockAll(OPEN);
  kill();
  link.state = { ...UP, up: false };
  assert.deepEqual(await problems(daemon), [["capture:eth0", "interface is down"]], "before the next check too");
  await clock.advance(3 * CAPTURE_CHECK_MS);
  assert.deepEqual(
    events("capture_lost").map((l) => l["reason"]),
    ["interface is down"],
  );
  assert.equal(events("capture_waiting").length, 0, "the loss said it already");
  assert.deepEqual(await problems(daemon), [["capture:eth0", "interface is down"]]);
  assert.deepEqual((await doorWide(firewall)).map((g) => g.src), [CLIENT]);
  link.state = UP;
  await clock.advance(CAPTURE_CHECK_MS);
  assert.equal(events("capture_started").length, 2);
  assert.deepEqual(await failing(daemon), []);
  await knockAll(OPEN, "198.18.0.3");
  assert.deepEqual((await doorWide(firewall)).map((g) => g.src).sort(), [CLIENT, "198.18.0.3"]);
  assert.equal(events("ready").length, 1);
  await daemon.stop();
});

test("an interface deleted and created again under its name (a new index) is captured again", async () => {
  const { daemon, events, link, kill, opened, clock } = setup();
  await daemon.start();
  kill();
  link.state = undefined;
  await clock.advance(2 * CAPTURE_CHECK_MS);
  assert.deepEqual(
    events("capture_lost").map((l) => l["reason"]),
    ["interface does not exist"],
  );
  link.state = { ...UP, index: 9 };
  await clock.advance(CAPTURE_CHECK_MS);
  assert.deepEqual(opened, ["eth0", "eth0"]);
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("without KNOCK_INTERFACE the watched set follows the default routes, and stays when there is none at all", async () => {
  let routes = ["eth0"];
  const { daemon, events, opened, closed, clock } = setup({}, { followDefaultRoutes: () => Promise.resolve(routes) });
  await daemon.start();
  const watched = async () => (await daemon.readiness()).filter((c) => c.name.startsWith("capture:")).map((c) => c.name);
  routes = ["eth1", "eth0"];
  await clock.advance(CAPTURE_CHECK_MS);
  assert.deepEqual(await watched(), ["capture:eth0", "capture:eth1"]);
  routes = ["eth1"];
  await clock.advance(CAPTURE_CHECK_MS);
  assert.deepEqual([opened, closed], [["eth0", "eth1"], ["eth0"]]);
  assert.deepEqual(await watched(), ["capture:eth1"]);
  assert.deepEqual(
    events("interfaces_changed").map((l) => l["to"]),
    [["eth0", "eth1"], ["eth1"]],
  );
  routes = [];
  await clock.advance(3 * CAPTURE_CHECK_MS);
  assert.equal(events("no_default_route").length, 1);
  assert.deepEqual(await watched(), ["capture:eth1"]);
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("a throw while handling a packet drops that packet, is counted, and is logged at most once a minute", async () => {
  const { daemon, events, metrics, knock, knockAll, clock, firewall } = setup();
  await daemon.start();
  // The decoded-packets counter throws when bumped: a metrics bug in the middle of the packet path.
  let decoded = 0;
  let broken = true;
  Object.defineProperty(metrics.packets.decoded, "n", {
    get: () => decoded,
    set: (n: number) => {
      if (broken) throw new Error("metrics broke");
      decoded = n;
    },
  });
  for (let i = 0; i < 3; i++) knock(7000);
  await clock.advance(60_000);
  knock(7000);
  assert.match(await metrics.registry.metrics(), /knockgate_packet_errors_total 4/);
  assert.doesNotMatch(await metrics.publicRegistry.metrics(), /knockgate_packet_errors_total/, "it moves with a packet: for the token holder only");
  assert.deepEqual(
    events("packet_failed").map((l) => [l["dropped"], l["err"]]),
    [
      [1, "metrics broke"],
      [3, "metrics broke"],
    ],
  );
  broken = false;
  await knockAll(OPEN, "198.18.0.3");
  assert.deepEqual((await doorWide(firewall)).map((g) => g.src), ["198.18.0.3"]);
  await daemon.stop();
});

test("the wall clock set an hour back or forward: grants still end on time, and an expiry line reads the new wall time", async () => {
  for (const step of [-3_600_000, 3_600_000]) {
    const { daemon, firewall, events, knockAll, clock } = setup({ KNOCK_DOOR_SSH_OPEN_FOR: "30" });
    await daemon.start();
    await knockAll(OPEN);
    clock.stepWall(step);
    await clock.advance(29_000);
    assert.equal((await doorWide(firewall)).length, 1, `step ${step}: not before its time`);
    assert.equal(events("close").length, 0);
    await clock.advance(2_000);
    assert.deepEqual(await doorWide(firewall), [], `step ${step}: on time`);
    assert.deepEqual(
      events("close").map((l) => l["reason"]),
      ["expired"],
    );
    await knockAll(OPEN);
    assert.equal(events("open")[1]?.["expires"], new Date(Date.UTC(2026, 0, 1) + step + 31_000 + 30_000).toISOString());
    await daemon.stop();
  }
});

test("a grant expires on the clock: one close line and ON_CLOSE, at OPEN_FOR and not before", async () => {
  const { daemon, events, hooks, knockAll, clock } = setup({ KNOCK_DOOR_SSH_OPEN_FOR: "30", KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %IP%" });
  await daemon.start();
  await knockAll(OPEN);
  await clock.advance(29_000);
  assert.deepEqual(events("close"), []);
  await clock.advance(1_000);
  assert.deepEqual(
    events("close").map((l) => [l["src"], l["reason"]]),
    [[CLIENT, "expired"]],
  );
  assert.deepEqual(
    hooks.map((h) => [h.kind, h.ip]),
    [["on_close", CLIENT]],
  );
  await daemon.stop();
  assert.equal(clock.pending, 0, "a stopped daemon leaves no timer behind");
});

test("grants left in the kernel by an earlier run are adopted: their expiry is logged and runs ON_CLOSE", async () => {
  const { daemon, firewall, events, hooks, clock } = setup({ KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %IP%" });
  const [door] = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000", KNOCK_DOOR_SSH_OPEN_FOR: "10" }).doors;
  await firewall.grant({ door: door!, family: 4, src: "198.18.0.7", ports: null }, door!.openForMs); // what the earlier run left: 10 s to go
  await daemon.start();
  assert.deepEqual(
    events("grants_adopted").map((l) => l["grants"]),
    [1],
  );
  await clock.advance(9_000);
  assert.deepEqual(events("close"), []);
  await clock.advance(1_000);
  assert.deepEqual(
    events("close").map((l) => [l["src"], l["reason"]]),
    [["198.18.0.7", "expired"]],
  );
  assert.deepEqual(
    hooks.map((h) => [h.kind, h.ip]),
    [["on_close", "198.18.0.7"]],
  );
  await daemon.stop();
});

test("a close sequence closes a live grant once; without a grant it logs and runs nothing", async () => {
  const { daemon, events, hooks, knockAll, lines } = setup({ KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9000,8000,7000", KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %IP%" });
  await daemon.start();
  await knockAll([9000, 8000, 7000]);
  assert.deepEqual(
    events("close_ignored").map((l) => [l["src"], l["reason"]]),
    [[CLIENT, "no_grant"]],
  );
  assert.equal(hooks.length, 0);
  assert.deepEqual(events("dry_run_revoke"), [], "nothing is revoked when there is nothing to revoke");
  assert.deepEqual(events("close"), []);
  await knockAll(OPEN);
  await knockAll([9000, 8000, 7000]);
  assert.deepEqual(
    events("close").map((l) => [l["src"], l["reason"]]),
    [[CLIENT, "close_sequence"]],
  );
  assert.deepEqual(
    hooks.map((h) => h.kind),
    ["on_close"],
  );
  assert.equal(lines.filter((l) => l["event"] === "close_ignored").length, 1);
  await daemon.stop();
});

test("an exception after a grant (in logging or metrics) is logged and never ends the process", async () => {
  const { daemon, events, metrics, knockAll } = setup();
  await daemon.start();
  metrics.opened = () => {
    throw new Error("metrics broke");
  };
  await knockAll(OPEN);
  assert.deepEqual(
    events("open_followup_failed").map((l) => [l["code"], l["err"]]),
    [["KNOCK_E_INTERNAL", "metrics broke"]],
  );
  await daemon.stop();
});

test("a hook runner that rejects is counted as a hook error, not thrown", async () => {
  const { daemon, metrics, knockAll } = setup(
    { KNOCK_DOOR_SSH_ON_OPEN: "/bin/true" },
    { runHook: () => Promise.reject(new Error("spawn failed")) },
  );
  await daemon.start();
  await knockAll(OPEN);
  assert.match(await metrics.registry.metrics(), /knockgate_hook_errors_total\{door="SSH",hook="on_open"\} 1/);
  await daemon.stop();
});

test("with KNOCK_ON_EXIT=remove a failed removal is logged with its code, counted, and reported by stop()", async () => {
  const { daemon, firewall, events, metrics } = setup({ KNOCK_ON_EXIT: "remove" });
  await daemon.start();
  const shutdown = firewall.shutdown.bind(firewall);
  firewall.shutdown = (remove) => (remove ? Promise.reject(new Error("ipset v7.17: Set cannot be destroyed: it is in use by a kernel component")) : shutdown(remove));
  assert.equal(await daemon.stop(), false);
  assert.deepEqual(
    events("remove_failed").map((l) => l["code"]),
    ["KNOCK_E_FIREWALL"],
  );
  assert.deepEqual(events("firewall_removed"), []);
  assert.match(await metrics.registry.metrics(), /knockgate_firewall_errors_total\{operation="remove"\} 1/);
});

test("with KNOCK_ON_EXIT=remove a successful removal takes the grants away", async () => {
  const { daemon, firewall, events, knockAll } = setup({ KNOCK_ON_EXIT: "remove" });
  await daemon.start();
  await knockAll(OPEN);
  assert.equal(await daemon.stop(), true);
  assert.equal(events("firewall_removed").length, 1);
  assert.deepEqual(await doorWide(firewall), []);
});

test("a knock that refreshes a live grant extends it without running ON_OPEN again", async () => {
  const { daemon, events, hooks, knockAll, clock } = setup({ KNOCK_DOOR_SSH_ON_OPEN: "/bin/true %IP%", KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %IP%" });
  await daemon.start();
  await knockAll(OPEN);
  await clock.advance(20_000);
  await knockAll(OPEN);
  assert.deepEqual(
    events("open").map((l) => l["refresh"]),
    [false, true],
  );
  await clock.advance(29_000);
  assert.deepEqual(events("close"), [], "the refresh moved the expiry");
  await clock.advance(1_000);
  assert.deepEqual(
    hooks.map((h) => h.kind),
    ["on_open", "on_close"],
  );
  await daemon.stop();
});

test("a knock right after a grant ran out, before the sweep saw it, closes the old grant first: ON_CLOSE then ON_OPEN", async () => {
  const { daemon, events, hooks, knockAll, clock } = setup({ KNOCK_DOOR_SSH_OPEN_FOR: "2", KNOCK_DOOR_SSH_ON_OPEN: "/bin/true", KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true" });
  await daemon.start();
  await clock.advance(500); // sweeps run at whole seconds; these knocks land half-way
  await knockAll(OPEN);
  await clock.advance(2_000); // the grant ended just now; the next sweep is 0.5 s away
  await knockAll(OPEN);
  assert.deepEqual(
    events("close").map((l) => l["reason"]),
    ["expired"],
  );
  assert.deepEqual(
    events("open").map((l) => l["refresh"]),
    [false, false],
  );
  assert.deepEqual(
    hooks.map((h) => h.kind),
    ["on_open", "on_close", "on_open"],
  );
  await daemon.stop();
});

test("a hook dropped by the queue is counted apart from hook errors", async () => {
  const { daemon, metrics, knockAll } = setup(
    { KNOCK_DOOR_SSH_ON_OPEN: "/bin/true" },
    { runHook: () => Promise.resolve({ ok: false, code: null, error: "dropped: hook queue full", dropped: true }) },
  );
  await daemon.start();
  await knockAll(OPEN);
  const text = await metrics.registry.metrics();
  assert.match(text, /knockgate_hook_dropped_total\{door="SSH",hook="on_open"\} 1/);
  assert.doesNotMatch(text, /knockgate_hook_errors_total\{door="SSH",hook="on_open"\} 1/);
  await daemon.stop();
});

test("a grant that must make room closes the replaced one like any other: revoked, logged, ON_CLOSE, counted", async () => {
  const { daemon, firewall, events, hooks, knockAll, metrics } = setup({ KNOCK_MAX_GRANTS_PER_PREFIX: "1", KNOCK_DOOR_SSH_ON_CLOSE: "/bin/true %IP%" });
  await daemon.start();
  await knockAll(OPEN, "198.18.0.2");
  await knockAll(OPEN, "198.18.0.3");
  assert.deepEqual(
    (await doorWide(firewall)).map((g) => g.src),
    ["198.18.0.3"],
  );
  assert.deepEqual(
    events("close").map((l) => [l["src"], l["reason"], l["because"], l["by"]]),
    [["198.18.0.2", "replaced", "prefix_full", "198.18.0.3"]],
  );
  assert.deepEqual(
    hooks.map((h) => [h.kind, h.ip, h.replaced]),
    [["on_close", "198.18.0.2", true]],
    "marked as a replaced grant's, which a full hook queue drops first",
  );
  const text = await metrics.registry.metrics();
  assert.match(text, /knockgate_grants_replaced_total\{door="SSH",reason="prefix_full"\} 1/);
  assert.match(text, /knockgate_closes_total\{door="SSH",reason="replaced"\} 1/);
  await daemon.stop();
});

test("a grant the kernel refused is taken out of the book again, so it does not count against the bounds", async () => {
  const { daemon, firewall, knockAll, events } = setup({ KNOCK_MAX_GRANTS_PER_PREFIX: "1" });
  await daemon.start();
  const grant = firewall.grant.bind(firewall);
  firewall.grant = () => Promise.reject(new Error("ipset: Hash is full"));
  await knockAll(OPEN, "198.18.0.2");
  firewall.grant = grant;
  await knockAll(OPEN, "198.18.0.3");
  assert.deepEqual(events("close"), [], "nothing had to be replaced: the refused grant holds no place");
  await daemon.stop();
});

test("nothing logged at info level names a knock port, not even the capture filter", async () => {
  const { daemon, lines, knockAll } = setup({ KNOCK_DOOR_SSH_SEQUENCE: "7123,8234,9345" });
  await daemon.start();
  await knockAll([7123, 8234, 9345]);
  const info = lines.filter((l) => Number(l["level"]) >= 30);
  assert.ok(info.some((l) => l["event"] === "open") && info.some((l) => l["event"] === "capture_started"));
  assert.doesNotMatch(JSON.stringify(info), /7123|8234|9345/);
  assert.match(JSON.stringify(lines.filter((l) => l["event"] === "capture_filter")), /7123/, "the filter is there at debug level");
  await daemon.stop();
});

test("/readyz probes share one look at the kernel per second, and a reconcile refreshes it", async () => {
  const { daemon, firewall, clock } = setup({ KNOCK_RECONCILE_INTERVAL: "5" });
  await daemon.start();
  let checks = 0;
  const reconcile = firewall.reconcile.bind(firewall);
  firewall.reconcile = (mode) => {
    if (mode === "check") checks++;
    return reconcile(mode);
  };
  await Promise.all(Array.from({ length: 100 }, () => daemon.readiness()));
  assert.equal(checks, 1);
  await clock.advance(999);
  await daemon.readiness();
  assert.equal(checks, 1);
  await clock.advance(1);
  await daemon.readiness();
  assert.equal(checks, 2);
  await clock.advance(3_500);
  await daemon.readiness(); // at 4.5 s
  assert.equal(checks, 3);
  await clock.advance(500); // the reconcile at 5 s (its own check() is counted too) drops what /readyz saw
  const afterReconcile = checks;
  await daemon.readiness();
  assert.equal(checks, afterReconcile + 1, "read again, though the last look is only 0.5 s old");
  await daemon.stop();
});

test("/readyz is not ready until capture is open: a knock before that would be missed", async () => {
  let release: () => void = () => undefined;
  const { daemon, firewall } = setup();
  const listGrants = firewall.grants.bind(firewall);
  // Hold start() between installing the firewall and opening the capture.
  firewall.grants = () => new Promise((resolve) => (release = () => void listGrants().then(resolve)));
  const started = daemon.start();
  await new Promise((resolve) => setImmediate(resolve));
  assert.deepEqual(
    (await daemon.readiness()).filter((c) => !c.ok).map((c) => [c.name, c.detail]),
    [["capture:eth0", "not capturing yet"]],
  );
  release();
  await started;
  assert.deepEqual(await failing(daemon), []);
  await daemon.stop();
});

test("a throw while handling a completed sequence (here, making room) is logged and does not escape the capture callback", async () => {
  const { daemon, events, metrics, knockAll } = setup({ KNOCK_MAX_GRANTS_PER_PREFIX: "1" });
  await daemon.start();
  await knockAll(OPEN, "198.18.0.2");
  metrics.closed = () => {
    throw new Error("metrics broke");
  };
  await knockAll(OPEN, "198.18.0.3"); // replaces .2, and closing it throws
  assert.deepEqual(
    events("open_followup_failed").map((l) => [l["src"], l["err"]]),
    [["198.18.0.3", "metrics broke"]],
  );
  await daemon.stop();
});

/** A ClusterLink that records what the daemon hands it. */
function clusterLink(problem: string | null = null) {
  const published: Record<string, unknown>[] = [];
  const closed: string[] = [];
  return {
    published,
    closed,
    link: {
      opened: (g: Record<string, unknown>) => void published.push(g),
      closed: (door: { name: string }, family: number, src: string) => void closed.push(`${door.name} ${family} ${src}`),
      check: () => (problem === null ? { name: "cluster", ok: true, advisory: true } : { name: "cluster", ok: false, detail: problem, advisory: true }),
    },
  };
}

test("cluster: a local grant is published after the kernel has it, a close sequence is published as a close", async () => {
  const { published, closed, link } = clusterLink();
  const { daemon, firewall, knockAll, clock, events } = setup({ KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9100,9200" }, { cluster: link });
  await daemon.start();
  const grant = firewall.grant.bind(firewall);
  firewall.grant = () => Promise.reject(new Error("ipset: set is full"));
  await knockAll(OPEN);
  assert.deepEqual(published, [], "a grant the kernel refused is not published");
  firewall.grant = grant;
  await knockAll(OPEN);
  assert.deepEqual(published, [
    { door: "SSH", address: CLIENT, family: 4, expiresAt: clock.wallNow() + 30_000, grantedAt: clock.wallNow(), how: "sequence", ports: null },
  ]);
  const revoke = firewall.revoke.bind(firewall);
  firewall.revoke = () => Promise.reject(new Error("ipset: busy"));
  await knockAll([9100, 9200]);
  assert.deepEqual(closed, [], "a close the kernel refused is not published: the grant is still here");
  assert.equal(events("revoke_failed").length, 1);
  firewall.revoke = revoke;
  await knockAll([9100, 9200]);
  assert.deepEqual(closed, [`SSH 4 ${CLIENT}`]);
  await daemon.stop();
});

test("cluster: another node's grant goes into the kernel for the time it has left, with ON_OPEN once; its deletion revokes it", async () => {
  const { link } = clusterLink();
  const { daemon, firewall, hooks, events } = setup({ KNOCK_DOOR_SSH_ON_OPEN: "/bin/true %IP%" }, { cluster: link });
  await daemon.start();
  const door = (daemon as unknown as { deps: Deps }).deps.config.doors[0]!;
  assert.equal(await daemon.grants.open({ door, family: 4, src: CLIENT, via: "sequence", openForMs: 12_300, origin: "node-a" }), "opened");
  assert.deepEqual((await doorWide(firewall)).map((g) => [g.src, g.remainingMs]), [[CLIENT, 13_000]], "whole seconds, rounded up");
  assert.equal(await daemon.grants.open({ door, family: 4, src: CLIENT, via: "sequence", openForMs: 5_000, origin: "node-c" }), "unchanged", "a shorter grant changes nothing");
  assert.equal(await daemon.grants.open({ door, family: 4, src: CLIENT, via: "sequence", openForMs: 20_000, origin: "node-c" }), "opened", "a longer one extends it");
  assert.deepEqual(
    hooks.map((h) => h.kind),
    ["on_open"],
    "ON_OPEN once, pairing with the ON_CLOSE of its end",
  );
  assert.equal(events("open")[0]?.["origin"], "node-a");
  assert.equal(await daemon.grants.close({ door, family: 4, src: CLIENT, via: "sequence", remote: true }), true);
  assert.equal(await daemon.grants.close({ door, family: 4, src: CLIENT, via: "sequence", remote: true }), false, "nothing left to revoke");
  assert.deepEqual(await doorWide(firewall), []);
  assert.equal(events("close")[0]?.["remote"], true);
  await daemon.stop();
});

test("cluster: the cluster check is shown in /readyz but does not make the node unready", async () => {
  const { link } = clusterLink("watch of KnockGrants failed: connect ECONNREFUSED");
  const { daemon } = setup({}, { cluster: link });
  await daemon.start();
  const cluster = (await daemon.readiness()).find((c) => c.name === "cluster");
  assert.deepEqual(cluster, { name: "cluster", ok: false, detail: "watch of KnockGrants failed: connect ECONNREFUSED", advisory: true });
  await daemon.stop();
});
