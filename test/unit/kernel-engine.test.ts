import { test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/config.js";
import { ConfigError } from "../../src/core/errors.js";
import { nflogFlushTimeout, nflogFlushTimeoutRequest, nflogParts } from "../../src/core/packet/nflog.js";
import { hideKnockSecrets, knockPrefix, knockProblems, knockReport } from "../../src/adapters/firewall/nftables/knock.js";
import { NftablesFirewall, nftablesText } from "../../src/adapters/firewall/nftables/firewall.js";
import type { Runner } from "../../src/adapters/firewall/exec.js";
import { pino } from "pino";
import { planId } from "../../src/adapters/firewall/plan-id.js";
import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { firewallPlan } from "../../src/core/firewall/plan.js";
import { envTargets } from "../support/protection.js";
import { KERNEL_DOORS, nftScript, planIdOf } from "../support/render.js";
import type { ClusterLink } from "../../src/app/daemon.js";
import type { NflogCapture } from "../../src/adapters/capture.js";
import type { Door } from "../../src/core/types.js";
import type { DryRunFirewall } from "../../src/adapters/firewall/dry-run.js";
import { daemonHarness } from "../support/daemon-harness.js";
import { buildFrame, macBytes } from "../support/frames.js";
import type { FrameHandler } from "../../src/adapters/capture.js";

const DOOR = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000:udp,9000" };

/**
 * The daemon's NFLOG reader, faked: `report` hands it a message as the kernel would; `asked` the
 * flush timeouts it was opened with, `kernelFlushMs` what the kernel's table then says.
 */
function fakeNflog(kernelFlushMs: (asked: number) => number | null = (asked) => asked * 10) {
  let onReport: FrameHandler = () => undefined;
  const asked: number[] = [];
  const nflog = (_group: number, onFrame: FrameHandler, flushHundredths: number): NflogCapture => {
    onReport = onFrame;
    asked.push(flushHundredths);
    return { iface: "nflog:19271", linkType: "RAW", alive: () => true, stats: () => ({ received: 0, dropped: 0 }), close: () => undefined, flushMs: kernelFlushMs(flushHundredths) };
  };
  return { nflog, asked, report: (frame: Buffer, length: number) => onReport(frame, length) };
}

/**
 * The dry-run firewall with the kernel engine's unread marks of door SSH (IPv4): `marked` are the
 * addresses the rules granted unseen; a grant the daemon writes takes its mark, as the nftables
 * backend does in the same transaction.
 */
function markingFirewall(f: DryRunFirewall, marks: Set<string>): DryRunFirewall {
  const grant = f.grant.bind(f);
  f.grant = async (g, forMs) => {
    await grant(g, forMs);
    if (g.ports === null) marks.delete(g.src);
  };
  f.unreported = async () => (await f.grants()).filter((g) => g.ports === null && marks.has(g.src));
  return f;
}

/** An NFLOG message as libpcap delivers it: header, NFULA_PACKET_HDR, NFULA_PREFIX, NFULA_PAYLOAD. */
function nflogFrame(prefix: string, payload: readonly number[]): Buffer {
  const tlv = (type: number, body: readonly number[]) => {
    const size = 4 + body.length;
    return [size & 0xff, size >> 8, type, 0, ...body, ...new Array<number>((4 - (size % 4)) % 4).fill(0)];
  };
  return Buffer.from([2, 0, 0x4b, 0x47, ...tlv(1, [8, 0, 1, 0]), ...tlv(10, [...new TextEncoder().encode(prefix), 0]), ...tlv(9, payload)]);
}
const problems = (env: Record<string, string>): string[] => {
  try {
    parseConfig(env);
    return [];
  } catch (err) {
    return (err as ConfigError).problems.map((p) => `${p.variable}: ${p.message}`);
  }
};

test("KNOCK_ENGINE=kernel picks nftables for auto, and with KNOCK_FIREWALL=iptables is a configuration error listed with the others", () => {
  assert.equal(parseConfig(DOOR).engine, "capture");
  assert.deepEqual(((c) => [c.engine, c.firewall])(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel" })), ["kernel", "nftables"]);
  const found = problems({ ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_FIREWALL: "iptables", KNOCK_MAX_TRACKED: "0" });
  assert.ok(found.some((p) => /^KNOCK_ENGINE: kernel needs nftables/.test(p)), found.join("\n"));
  assert.ok(found.some((p) => p.startsWith("KNOCK_MAX_TRACKED:")));
  assert.deepEqual(problems({ ...DOOR, KNOCK_ENGINE: "fast" }), ['KNOCK_ENGINE: "fast" is not one of capture, kernel']);
});

test("KNOCK_MAX_TRACKED_PER_PREFIX set with the kernel engine is refused, which could not apply it; left unset it is capture's alone", () => {
  assert.deepEqual(problems({ ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_MAX_TRACKED_PER_PREFIX: "64" }), [
    "KNOCK_MAX_TRACKED_PER_PREFIX: the kernel engine cannot apply it: its sets hold at most KNOCK_MAX_TRACKED sources, whatever their network; unset it, or use KNOCK_ENGINE=capture",
  ]);
  assert.deepEqual(problems({ ...DOOR, KNOCK_MAX_TRACKED_PER_PREFIX: "64" }), []);
  assert.deepEqual(problems({ ...DOOR, KNOCK_ENGINE: "kernel" }), []);
});

test("KNOCK_INTERFACE confines the kernel engine's knocks to its interfaces, as it does the capture engine's; unset or any, every interface", () => {
  const entries = (env: Record<string, string>) => nftScript(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel", ...env })).script.split("\n").filter((l) => l.includes(" jump knock_"));
  assert.deepEqual(entries({ KNOCK_INTERFACE: "eth0,wg0" }), [
    'add rule inet knockgate prerouting meta nfproto ipv4 iifname { "eth0", "wg0" } tcp dport { 7000, 9000 } tcp flags & (syn | ack) == syn jump knock_SSH_open_v4',
    'add rule inet knockgate prerouting meta nfproto ipv4 iifname { "eth0", "wg0" } udp dport { 8000 } jump knock_SSH_open_v4',
    'add rule inet knockgate prerouting meta nfproto ipv6 iifname { "eth0", "wg0" } tcp dport { 7000, 9000 } tcp flags & (syn | ack) == syn jump knock_SSH_open_v6',
    'add rule inet knockgate prerouting meta nfproto ipv6 iifname { "eth0", "wg0" } udp dport { 8000 } jump knock_SSH_open_v6',
  ]);
  for (const env of [{}, { KNOCK_INTERFACE: "any" }, { KNOCK_INTERFACE: "eth0,any" }] as Record<string, string>[]) assert.ok(entries(env).every((l) => !l.includes("iifname")), JSON.stringify(env));
  assert.notEqual(planIdOf(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_INTERFACE: "eth0" })), planIdOf(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel" })), "a restart with other interfaces rewrites the rules");
  assert.equal(planIdOf(parseConfig({ ...DOOR, KNOCK_INTERFACE: "eth0" })), planIdOf(parseConfig(DOOR)), "capture's rules have no knock entries");
});

test("a door the kernel engine cannot run exactly is refused at start, naming the door", () => {
  const long = Array.from({ length: 17 }, (_, i) => String(7000 + i)).join(",");
  assert.match(problems({ KNOCK_ENGINE: "kernel", KNOCK_DOOR_LONG_SEQUENCE: long }).join("\n"), /^KNOCK_DOOR_LONG_SEQUENCE: the kernel engine takes sequences of at most 16 knocks/);
  assert.deepEqual(problems({ KNOCK_DOOR_LONG_SEQUENCE: long }), []);
});

test("the kernel engine's rules enter each sequence's chain with the door's TCP flags, report on NFLOG and write the grant; capture mode has none", () => {
  const script = nftScript(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_MAX_TRACKED: "500" })).script;
  assert.match(script, /add rule inet knockgate prerouting meta nfproto ipv4 tcp dport \{ 7000, 9000 \} tcp flags & \(syn \| ack\) == syn jump knock_SSH_open_v4\n/);
  assert.match(script, /add rule inet knockgate prerouting meta nfproto ipv6 udp dport \{ 8000 \} jump knock_SSH_open_v6\n/);
  assert.match(script, /add set inet knockgate knock_SSH_open_v4_s2 \{ type ipv4_addr; flags dynamic,timeout; size 500; \}/);
  // No queue-threshold: the report waits for the group's flush timeout, off the knocker's path.
  assert.match(script, /th dport 9000 .*log prefix "knockgate open SSH" group 19271 update @door_SSH_v4 \{ ip saddr timeout 30s \} update @knock_SSH_open_v4_unread /);
  // The rules write the door's set from the packet path, which makes the kernel flag it dynamic: declared so.
  assert.match(script, /add set inet knockgate door_SSH_v4 \{ type ipv4_addr; flags dynamic,timeout; size \d+; \}/);
  assert.doesNotMatch(nftScript(parseConfig(DOOR)).script, /knock_|dynamic/);
});

test("the plan id covers the kernel engine's knock chains, so a restart with another OPEN_FOR or SEQ_TIMEOUT rewrites them; capture mode's id ignores them", () => {
  const id = (env: Record<string, string>) => planIdOf(parseConfig(env));
  const kernel = { KNOCK_ENGINE: "kernel", KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000" };
  // The same jump rules in prerouting: only the knock chains differ.
  assert.notEqual(id(kernel), id({ ...kernel, KNOCK_DOOR_SSH_SEQ_TIMEOUT: "9" }));
  assert.notEqual(id(kernel), id({ ...kernel, KNOCK_DOOR_SSH_OPEN_FOR: "7" }));
  const capture = { KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000" };
  assert.equal(id(capture), id({ ...capture, KNOCK_DOOR_SSH_SEQ_TIMEOUT: "9" }), "capture mode renders no knock chain: its id is unchanged");
});

test("an NFLOG message gives its prefix and the logged packet; one that does not parse gives null", () => {
  const payload = [0x45, 0, 0, 40];
  const frame = nflogFrame(knockPrefix("open", "SSH"), payload);
  const parts = nflogParts(frame, frame.length);
  assert.ok(parts);
  assert.equal(parts.prefix, "knockgate open SSH");
  assert.deepEqual([...frame.subarray(parts.payloadAt, parts.payloadEnd)], payload);
  assert.deepEqual(knockReport(parts.prefix), { kind: "open", door: "SSH" });
  assert.equal(knockReport("somebody else"), null);
  assert.equal(nflogParts(frame, frame.length - 3), null);
});

test("the NFLOG flush-timeout request is one NFULNL_MSG_CONFIG to the kernel: netlink header in host order, group and timeout in network order", () => {
  const le = nflogFlushTimeoutRequest(0x4b47, 1, true);
  assert.deepEqual(
    [...le],
    [
      ...[28, 0, 0, 0], // nlmsg_len
      ...[0x01, 0x04], // NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_CONFIG
      ...[1, 0], // NLM_F_REQUEST, no ACK
      ...[0, 0, 0, 0, 0, 0, 0, 0], // seq, pid 0: the kernel
      ...[0, 0, 0x4b, 0x47], // AF_UNSPEC, NFNETLINK_V0, res_id = group
      ...[8, 0, 4, 0], // nla_len 8, NFULA_CFG_TIMEOUT
      ...[0, 0, 0, 1], // 1/100 s
    ],
  );
  const be = nflogFlushTimeoutRequest(7, 300, false);
  assert.deepEqual([...be.subarray(0, 8)], [0, 0, 0, 28, 0x04, 0x01, 0, 1]);
  assert.deepEqual([...be.subarray(18, 28)], [0, 7, 0, 8, 0, 4, 0, 0, 1, 44]);
});

test("the flush timeout is read back from the kernel's table of NFLOG groups, for the group asked about only", () => {
  const table = "    0   1234     0 2 65535    100  1\n19271   5678     3 2 65535      1  2\n";
  assert.equal(nflogFlushTimeout(table, 19271), 1);
  assert.equal(nflogFlushTimeout(table, 0), 100);
  assert.equal(nflogFlushTimeout(table, 5), undefined);
  assert.equal(nflogFlushTimeout("", 19271), undefined);
});

test("the kernel engine asks for reports within 10 ms, and says so when the kernel holds them longer", async () => {
  for (const [kernelMs, warned] of [[10, false], [1000, true], [null, true]] as const) {
    const { nflog, asked } = fakeNflog(() => kernelMs);
    const { daemon, events } = daemonHarness({ env: { ...DOOR, KNOCK_ENGINE: "kernel" }, overrides: { openNflog: nflog } });
    await daemon.start();
    assert.deepEqual(asked, [1]);
    assert.deepEqual(events("kernel_engine").map((l) => l["flush_ms"]), [kernelMs]);
    assert.deepEqual(events("kernel_reports_slow").map((l) => l["flush_ms"]), warned ? [kernelMs] : [], String(kernelMs));
    await daemon.stop();
  }
});

test("the kernel engine's rules refuse sources no knock can come from, and mark each grant they make until a daemon takes its report", () => {
  const script = nftScript(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9000,7000" })).script;
  // First in each chain: refused sources go back before any set is touched.
  assert.match(script, /flush chain inet knockgate knock_SSH_open_v4\nadd rule inet knockgate knock_SSH_open_v4 ip saddr \{ 0\.0\.0\.0\/8, 127\.0\.0\.0\/8, 169\.254\.0\.0\/16, 224\.0\.0\.0\/3 \} return\n/);
  assert.match(script, /flush chain inet knockgate knock_SSH_close_v6\nadd rule inet knockgate knock_SSH_close_v6 ip6 saddr \{ ::\/96, [^}]*fe80::\/10, [^}]*64:ff9b::7f00:0\/104[^}]*\} return\n/);
  // The mark comes after the grant, so a full mark set never costs the grant; a close makes none.
  assert.match(script, /update @door_SSH_v4 \{ ip saddr timeout 30s \} update @knock_SSH_open_v4_unread \{ ip saddr timeout 30000ms \} return\n/);
  assert.match(script, /add set inet knockgate knock_SSH_open_v6_unread \{ type ipv6_addr; flags dynamic,timeout; size \d+; \}/);
  assert.doesNotMatch(script, /knock_SSH_close_v4_unread/);
  // A door open until its close sequence marks without a timeout too.
  const untilClosed = nftScript(parseConfig({ ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_DOOR_SSH_OPEN_FOR: "0", KNOCK_DOOR_SSH_CLOSE_SEQUENCE: "9000,7000" })).script;
  assert.match(untilClosed, /add @door_SSH_v4 \{ ip saddr \} update @knock_SSH_open_v4_unread \{ ip saddr \} return\n/);
});

test("a grant the kernel engine made while no daemon read its reports is opened at start, late: audit line, ON_OPEN and its cluster object; one already reported is adopted quietly", async () => {
  const published: unknown[] = [];
  const cluster: ClusterLink = { opened: (g) => void published.push(g), closed: () => undefined, check: () => ({ name: "cluster", ok: true }) };
  const { nflog } = fakeNflog();
  const marked = new Set<string>();
  const env = { ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_DOOR_SSH_OPEN_FOR: "30", KNOCK_DOOR_SSH_ON_OPEN: "/bin/true %IP%" };
  const { daemon, firewall, events, hooks, clock, config } = daemonHarness({
    env,
    overrides: { openNflog: nflog, cluster },
    firewallOf: (f) => markingFirewall(f, marked),
  });
  const door = config.doors[0] as Door;
  // What the kernel left: one grant reported to the last daemon, one made after it died (20 s to go).
  await firewall.grant({ door, family: 4, src: "198.18.0.8", ports: null }, 30_000);
  await firewall.grant({ door, family: 4, src: "198.18.0.7", ports: null }, 20_000);
  marked.add("198.18.0.7");
  await daemon.start();
  await clock.settle();
  assert.deepEqual(events("grants_adopted").map((l) => l["grants"]), [1]);
  const opens = events("open");
  assert.deepEqual(opens.map((l) => [l["src"], l["via"], l["while_down"], l["open_for_s"]]), [["198.18.0.7", "sequence", true, 20]]);
  assert.deepEqual(hooks.map((h) => [h.kind, h.ip]), [["on_open", "198.18.0.7"]]);
  assert.deepEqual(published.map((g) => (g as { address: string; expiresAt: number }).address), ["198.18.0.7"]);
  assert.equal((published[0] as { expiresAt: number }).expiresAt, clock.wallNow() + 20_000);
  await clock.advance(20_000);
  assert.deepEqual(events("close").map((l) => [l["src"], l["reason"]]), [["198.18.0.7", "expired"]]);
  await daemon.stop();
});

/**
 * A kernel-engine daemon (OPEN_FOR 30 s, a reconcile pass every 10 s) on the marking firewall;
 * `ruleGrants` does what the open rule does as a last knock passes, its report left unread.
 */
function reportsUnread(extra: Record<string, string> = {}) {
  const { nflog } = fakeNflog();
  const marked = new Set<string>();
  const env = { ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_DOOR_SSH_OPEN_FOR: "30", KNOCK_RECONCILE_INTERVAL: "10", ...extra };
  const h = daemonHarness({ env, overrides: { openNflog: nflog }, firewallOf: (f) => markingFirewall(f, marked) });
  const door = h.config.doors[0] as Door;
  const ruleGrants = async (src: string) => {
    await h.firewall.grant({ door, family: 4, src, ports: null }, 30_000);
    marked.add(src);
  };
  return { ...h, marked, ruleGrants };
}

test("a grant whose report was lost while the daemon ran is opened late once its mark outlives a reconcile interval; one whose report came meanwhile opens nothing", async () => {
  const { daemon, events, hooks, clock, marked, ruleGrants } = reportsUnread({ KNOCK_DOOR_SSH_ON_OPEN: "/bin/true %IP%" });
  await daemon.start();
  // The rule granted 198.18.0.7 and marked it; its report never reached the daemon.
  await ruleGrants("198.18.0.7");
  await clock.advance(10_000);
  assert.deepEqual(events("open"), [], "one pass: its report may still be on its way");
  await clock.advance(10_000);
  await clock.settle();
  assert.deepEqual(events("open").map((l) => [l["src"], l["report_lost"], l["open_for_s"]]), [["198.18.0.7", true, 10]]);
  assert.deepEqual(events("kernel_reports_lost").map((l) => [l["grants"], l["opened"]]), [[1, 1]]);
  assert.deepEqual(hooks.map((h) => [h.kind, h.ip]), [["on_open", "198.18.0.7"]]);
  assert.deepEqual([...marked], [], "its write took the mark");
  // A mark seen at one pass and gone at the next (its report came, its write took it) opens nothing.
  await ruleGrants("198.18.0.8");
  await clock.advance(10_000);
  marked.delete("198.18.0.8");
  await clock.advance(10_000);
  await clock.settle();
  assert.equal(events("open").length, 1);
  await daemon.stop();
});

test("a completion the kernel reports is a grant like any other, without a knock-to-open time (the rule granted as the knock passed)", async () => {
  const { nflog, report } = fakeNflog();
  const { daemon, events, metrics, clock } = daemonHarness({ env: { ...DOOR, KNOCK_ENGINE: "kernel" }, overrides: { openNflog: nflog } });
  await daemon.start();
  // The logged packet is IP: the last knock, a SYN from 198.18.0.9 to 9000.
  const ip = buildFrame({ srcMac: macBytes("02:00:00:00:00:02"), dstMac: macBytes("02:00:00:00:00:01"), src: "198.18.0.9", dst: "198.18.0.1", proto: "tcp", srcPort: 40000, dstPort: 9000 }).subarray(14);
  const frame = nflogFrame(knockPrefix("open", "SSH"), [...ip]);
  report(frame, frame.length);
  await clock.settle();
  const [open] = events("open");
  assert.deepEqual([open?.["src"], open?.["via"], open?.["latency_ms"]], ["198.18.0.9", "sequence", undefined]);
  assert.match(await metrics.publicRegistry.metrics(), /knockgate_knock_to_open_seconds_count 0\n/);
  // Not ours, or not a door: nothing.
  const other = nflogFrame("somebody else", [...ip]);
  report(other, other.length);
  await clock.settle();
  assert.equal(events("open").length, 1);
  await daemon.stop();
});

test("an unread grant whose time went back up between two passes was granted anew (the client knocked again): it waits one more pass for that report", async () => {
  const { daemon, events, clock, ruleGrants } = reportsUnread();
  await daemon.start();
  await ruleGrants("198.18.0.9");
  await clock.advance(10_000);
  assert.deepEqual(events("open"), [], "seen unread once");
  await clock.advance(9_990);
  // The client knocks again just before the next pass: the rule grants anew, its report not read yet.
  await ruleGrants("198.18.0.9");
  await clock.advance(10);
  await clock.settle();
  assert.deepEqual(events("open"), []);
  await clock.advance(10_000);
  await clock.settle();
  assert.deepEqual(events("open").map((l) => [l["src"], l["report_lost"]]), [["198.18.0.9", true]], "still unread a whole interval later: lost");
  await daemon.stop();
});

test("a listing of the unread marks that keeps failing is logged once, not as a recovery and a new failure at every pass", async () => {
  const { nflog } = fakeNflog();
  const { daemon, events, clock } = daemonHarness({
    env: { ...DOOR, KNOCK_ENGINE: "kernel" },
    overrides: { openNflog: nflog },
    firewallOf: (f) => {
      let passes = 0;
      // The first pass (the install) lists fine; every later one fails the same way.
      f.unreported = () => (passes++ === 0 ? Promise.resolve([]) : Promise.reject(new Error("nft: No such file or directory")));
      return f;
    },
  });
  await daemon.start();
  for (let i = 0; i < 5; i++) await clock.advance(100);
  assert.equal(events("firewall_reconcile_failed").length, 1, "one distinct error: one line");
  assert.deepEqual(events("firewall_recovered"), [], "it never recovered");
  await daemon.stop();
});

/** What nft 1.0.6 lists (-t) for the render fixture's kernel-engine case (KERNEL_DOORS and a signed door), installed in a namespace. */
const KERNEL_LISTING = readFileSync(fileURLToPath(new URL("../../../test/fixtures/firewall/kernel-listing.txt", import.meta.url)), "utf8");
/** The listing with chain `chain` emptied, as `nft flush chain` leaves it. */
const emptied = (listing: string, chain: string) => listing.replace(new RegExp(`\\tchain ${chain} \\{\\n[\\s\\S]*?\\n\\t\\}\\n`), `\tchain ${chain} {\n\t}\n`);

test("the reconcile finds a knock chain flushed, emptied of a rule or gone, by name", () => {
  const listing = KERNEL_LISTING;
  const config = parseConfig(KERNEL_DOORS);
  const problems = (text: string) => knockProblems(firewallPlan(config, envTargets(config)), text);
  const chain = (name: string) => new RegExp(`\\tchain ${name} \\{\\n[\\s\\S]*?\\n\\t\\}\\n`);
  assert.deepEqual(problems(listing), [], "as installed");
  assert.deepEqual(problems(emptied(listing, "knock_SSH_open_v4")), ["chain inet knockgate knock_SSH_open_v4 differs from the plan"], "flushed");
  assert.deepEqual(problems(listing.replace(/\n\t\ttcp dport 9001 [^\n]*/, "")), ["chain inet knockgate knock_WEB_close_v4 differs from the plan"], "a rule deleted");
  assert.deepEqual(problems(listing.replace(chain("knock_WEB_open_v6"), "")), ["chain inet knockgate knock_WEB_open_v6 missing"], "deleted");
  // Every chain is read: the last one too.
  assert.match(problems(listing.replace(/\n\t\t[^\n]*dport[^\n]*/g, "")).join("\n"), /knock_WEB_close_v6 differs/);
});

test("no text the daemon may log shows a knock port: the dry run's plan, and nft's echo of a knock rule it refused", () => {
  const config = parseConfig({ KNOCK_ENGINE: "kernel", KNOCK_DOOR_SSH_SEQUENCE: "7123,8234:udp,9345", KNOCK_DOOR_SSH_PORTS: "22" });
  const plan = nftablesText(planId).install(firewallPlan(config, envTargets(config)));
  assert.doesNotMatch(plan, /7123|8234|9345/);
  assert.match(plan, /knock_SSH_open_v4 .*l4proto … th dport … /, "the rules are there, their ports and protocols hidden");
  assert.doesNotMatch(plan, /knock_.*(?:tcp|udp) (?:th )?dport|l4proto (?:tcp|udp)/, "no knock's protocol either");
  assert.match(plan, /prerouting meta nfproto ipv4 … dport … jump knock_SSH_open_v4/, "so are the entries'");
  assert.match(plan, /tcp dport \{ 22 \} fib daddr type local drop/, "the protected port is no secret");
  // nft under an error: the command, then carets under the part it refused.
  const refused = [
    "Error: Could not process rule: Operation not supported",
    "add rule inet knockgate knock_SSH_open_v4 ip saddr @knock_SSH_open_v4_first meta l4proto udp th dport 8234 delete @knock_SSH_open_v4_s1 { ip saddr } return",
    "                                                                                                         ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^",
    "add rule inet knockgate prerouting meta nfproto ipv4 tcp dport { 7123, 9345 } jump knock_SSH_open_v4",
    "add rule inet knockgate prerouting tcp dport { 22 } fib daddr type local drop",
  ].join("\n");
  const hidden = hideKnockSecrets(refused);
  assert.doesNotMatch(hidden, /7123|8234|9345/);
  assert.equal(hidden.split("\n")[4], "add rule inet knockgate prerouting tcp dport { 22 } fib daddr type local drop");
});

test("an install nft refuses, repeating a knock rule under its error, fails with the rule's ports hidden", async () => {
  const config = parseConfig({ KNOCK_ENGINE: "kernel", KNOCK_DOOR_SSH_SEQUENCE: "7123,8234:udp,9345", KNOCK_DOOR_SSH_PORTS: "22" });
  const echoed = "add rule inet knockgate knock_SSH_open_v4 ip saddr @knock_SSH_open_v4_first ip saddr @knock_SSH_open_v4_s1 meta l4proto udp th dport 8234 delete @knock_SSH_open_v4_s1 { ip saddr } return";
  const run: Runner = (argv) => {
    const command = argv.join(" ");
    if (command.startsWith("nft -t list")) return Promise.resolve({ code: 1, stdout: "", stderr: "Error: No such file or directory" });
    if (command === "nft -f -") return Promise.resolve({ code: 1, stdout: "", stderr: `Error: Could not process rule: Operation not supported\n${echoed}\n${" ".repeat(80)}^^^^^^^^^\n` });
    return Promise.resolve({ code: 0, stdout: "", stderr: "" });
  };
  const firewall = new NftablesFirewall({ config, targets: envTargets(config), planId, run, log: pino({ level: "silent" }) });
  try {
    const err = await firewall.reconcile("repair").then(
      () => assert.fail("the install went through"),
      (e: unknown) => e as Error,
    );
    assert.match(err.message, /Operation not supported/);
    assert.match(err.message, /knock_SSH_open_v4 .*l4proto … th dport … delete/, "the rule is named, its port hidden");
    assert.doesNotMatch(err.message, /7123|8234|9345/);
  } finally {
    await firewall.shutdown(false);
  }
});

test("a KNOCK_INTERFACE name this host lacks fails /readyz with the kernel engine, warned once, until it comes", async () => {
  const { nflog } = fakeNflog();
  const present = new Set(["eth0"]);
  const { daemon, events, clock } = daemonHarness({
    env: { ...DOOR, KNOCK_ENGINE: "kernel", KNOCK_INTERFACE: "eth0,wg9" },
    overrides: { openNflog: nflog, interfaceState: (name) => (present.has(name) ? { index: 2, up: true, linkType: "ETHERNET" } : undefined) },
  });
  await daemon.start();
  const check = async () => (await daemon.readiness()).find((c) => c.name === "kernel_interfaces");
  assert.deepEqual(await check(), { name: "kernel_interfaces", ok: false, detail: "KNOCK_INTERFACE names wg9, which this host does not have: knocks there open nothing" });
  await clock.advance(3000);
  assert.deepEqual(events("kernel_interface_missing").map((l) => l["iface"]), ["wg9"], "warned once, not at every sweep");
  present.add("wg9");
  await clock.advance(1500);
  assert.deepEqual(await check(), { name: "kernel_interfaces", ok: true });
  assert.equal(events("kernel_engine")[0]?.["interfaces"], "eth0,wg9");
  await daemon.stop();
});

test("the nftables backend's check reads the whole kernel-engine table: as installed nothing to repair; a flushed knock chain and a deleted knock set by name", async () => {
  const signed = { KNOCK_DOOR_SSH_SPA_KEY: Buffer.alloc(32, 1).toString("base64"), KNOCK_DOOR_SSH_SPA_HMAC_KEY: Buffer.alloc(64, 2).toString("base64") };
  const config = parseConfig({ ...signed, ...KERNEL_DOORS });
  let listing = KERNEL_LISTING;
  const run: Runner = (argv) => Promise.resolve(argv.join(" ") === "nft -t list table inet knockgate" ? { code: 0, stdout: listing, stderr: "" } : { code: 0, stdout: "", stderr: "" });
  const firewall = new NftablesFirewall({ config, targets: envTargets(config), planId, run, log: pino({ level: "silent" }) });
  try {
    assert.deepEqual(await firewall.reconcile("check"), [], "the listing is of this plan (its id unchanged)");
    listing = emptied(KERNEL_LISTING, "knock_WEB_close_v6").replace(/\tset knock_SSH_open_v6_s2 \{[\s\S]*?\n\t\}\n/, "");
    assert.deepEqual(await firewall.reconcile("check"), ["sets missing: knock_SSH_open_v6_s2", "chain inet knockgate knock_WEB_close_v6 differs from the plan"]);
  } finally {
    await firewall.shutdown(false);
  }
});
