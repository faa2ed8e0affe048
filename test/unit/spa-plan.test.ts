/** The firewall plan of signed doors: per-port grant sets and their rule, the replay set, and what the kernel's listings say back. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { parseConfig } from "../../src/config/config.js";
import type { Config, Family } from "../../src/core/types.js";
import { CHAIN } from "../../src/adapters/firewall/iptables/rules.js";
import * as sets from "../../src/adapters/firewall/iptables/sets.js";
import { ipsetReplayAddLine, ipsetReplayDelLine, ipsetReplayFailure, ipsetSpaGrantLines, ipsetSpaName, ipsetSpaRevokeLines } from "../../src/adapters/firewall/iptables/sets.js";
import { ipsetMembers, ipsetSpaMembers } from "../../src/adapters/firewall/iptables/listing.js";
import { nftReplayAddLine, nftReplayDelLine, nftReplayFailure, nftSpaGrantLine } from "../../src/adapters/firewall/nftables/sets.js";
import { nftSpaElements } from "../../src/adapters/firewall/nftables/listing.js";
import { REPLAY_SET_SIZE } from "../../src/core/firewall/spa-plan.js";
import { ReplayWriter } from "../../src/adapters/firewall/changes.js";
import { iptablesChain, nftScript, planIdOf, planOf } from "../support/render.js";

/** The plan of a configuration without Docker: its doors' own ports. */
const ipsetCreateScript = (c: Config, only?: readonly string[]) => sets.ipsetCreateScript(planOf(c), only);
const ipsetGrantSets = (c: Config, only?: Family) => sets.ipsetGrantSets(planOf(c), only);
const iptablesChainPlan = (c: Config, f: Family) => iptablesChain(c, f);
const nftPlan = (c: Config) => nftScript(c);
const planId = (c: Config) => planIdOf(c);
import { FirewallError } from "../../src/core/errors.js";

const SIGNED = {
  KNOCK_DOOR_SSH_SPA_KEY: Buffer.alloc(32, 1).toString("base64"),
  KNOCK_DOOR_SSH_SPA_HMAC_KEY: Buffer.alloc(64, 2).toString("base64"),
  KNOCK_DOOR_SSH_PORTS: "22/tcp,53/udp",
  KNOCK_MAX_GRANTS: "1000",
};
const signed = parseConfig(SIGNED);
const plain = parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000" });

describe("signed door firewall plan", () => {
  test("a signed door's per-port set name fits ipset's 31 characters with the longest door name", () => {
    assert.equal(ipsetSpaName("A".repeat(19), 6).length, 31);
    assert.notEqual(ipsetSpaName("SSH", 4), "knockgate-SSH-4");
  });

  test("iptables: a rule per target group lets a source through to the (protocol, port) pairs its set holds on this host, before the drops", () => {
    const rules = iptablesChainPlan(signed, 4).restore.split("\n").filter((l) => l.startsWith(`-A ${CHAIN} `));
    const at = rules.indexOf(`-A ${CHAIN} -p tcp -m multiport --dports 22 -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH:4 src,dst -j RETURN`);
    assert.ok(at > 0, rules.join("\n"));
    assert.ok(rules.includes(`-A ${CHAIN} -p udp -m multiport --dports 53 -m addrtype --dst-type LOCAL -m set --match-set knockgate-SSH:4 src,dst -j RETURN`));
    assert.ok(rules.findIndex((r) => r.endsWith("-j DROP")) > at);
    assert.ok(iptablesChainPlan(signed, 6).restore.includes("--match-set knockgate-SSH:6 src,dst"));
  });

  test("ipset: per-port sets sized for every port of KNOCK_MAX_GRANTS grants, and a replay set per signed door; none without a signed door", () => {
    const script = ipsetCreateScript(signed);
    assert.match(script, /^create knockgate-SSH:4 hash:ip,port family inet timeout 0 maxelem 4048$/m);
    assert.match(script, /^create knockgate-SSH:6 hash:ip,port family inet6 timeout 0 maxelem 4048$/m);
    assert.match(script, new RegExp(`^create knockgate-SSH:r hash:ip family inet6 timeout 0 maxelem ${REPLAY_SET_SIZE}$`, "m"));
    assert.deepEqual(ipsetGrantSets(signed).map((s) => s.name), ["knockgate-SSH-4", "knockgate-SSH:4", "knockgate-SSH-6", "knockgate-SSH:6"]);
    assert.doesNotMatch(ipsetCreateScript(plain), /:4|replay/);
  });

  test("nftables: concatenated (address, protocol, port) sets with timeouts, their accept rules and the replay set", () => {
    const { script } = nftPlan(signed);
    assert.match(script, /add set inet knockgate spa_SSH_v4 \{ type ipv4_addr \. inet_proto \. inet_service; flags timeout; size 4048; \}/);
    assert.match(script, /add set inet knockgate spa_SSH_v6 \{ type ipv6_addr \. inet_proto \. inet_service; flags timeout; size 4048; \}/);
    assert.match(script, /add rule inet knockgate prerouting tcp dport \{ 22 \} fib daddr type local ip6 saddr \. meta l4proto \. th dport @spa_SSH_v6 accept/);
    assert.match(script, /add set inet knockgate spa_SSH_replay \{ type ipv6_addr; flags timeout; size 65536; \}/);
    assert.doesNotMatch(nftPlan(plain).script, /spa_/);
  });

  test("signing a door changes the plan id, so a running chain is rewritten", () => {
    const both = parseConfig({ ...SIGNED, KNOCK_DOOR_SSH_SEQUENCE: "7000,8000" });
    assert.notEqual(planId(both), planId(parseConfig({ KNOCK_DOOR_SSH_SEQUENCE: "7000,8000", KNOCK_DOOR_SSH_PORTS: "22/tcp,53/udp", KNOCK_MAX_GRANTS: "1000" })));
  });

  test("grant lines name each asked-for port with the grant's own timeout; revokes take the ports the grant opened", () => {
    assert.deepEqual(ipsetSpaGrantLines("SSH", 4, "198.18.0.2", [{ port: 22, proto: "tcp" }], 5000), ["add knockgate-SSH:4 198.18.0.2,tcp:22 timeout 5 -exist"]);
    assert.deepEqual(ipsetSpaRevokeLines("SSH", 6, "fd00:198:18::2", [{ port: 22, proto: "tcp" }, { port: 53, proto: "udp" }]), [
      "del knockgate-SSH:6 fd00:198:18::2,tcp:22 -exist",
      "del knockgate-SSH:6 fd00:198:18::2,udp:53 -exist",
    ]);
    assert.equal(
      nftSpaGrantLine("SSH", 4, "198.18.0.2", [{ port: 53, proto: "udp" }], 300_000),
      "add element inet knockgate spa_SSH_v4 { 198.18.0.2 . udp . 53 }; delete element inet knockgate spa_SSH_v4 { 198.18.0.2 . udp . 53 }; add element inet knockgate spa_SSH_v4 { 198.18.0.2 . udp . 53 timeout 300s }",
    );
    const both = [{ port: 22, proto: "tcp" as const }, { port: 53, proto: "udp" as const }];
    assert.equal(
      nftSpaGrantLine("SSH", 6, "fd00:198:18::2", both, 300_000, "create"),
      "create element inet knockgate spa_SSH_v6 { fd00:198:18::2 . tcp . 22 timeout 300s, fd00:198:18::2 . udp . 53 timeout 300s }",
    );
  });

  test("the replay lines, for an element as replayKey makes it", () => {
    const element = "123:4567:89ab:cdef:123:4567:89ab:cdef";
    assert.equal(nftReplayAddLine("SSH", element, 240), `create element inet knockgate spa_SSH_replay { ${element} timeout 240s }`);
    assert.equal(nftReplayDelLine("SSH", ["::1"]), "add element inet knockgate spa_SSH_replay { ::1 }; delete element inet knockgate spa_SSH_replay { ::1 }");
    assert.equal(ipsetReplayAddLine("SSH", element, 240), `add knockgate-SSH:r ${element} timeout 240`);
    assert.equal(ipsetReplayDelLine("SSH", "::1"), "del knockgate-SSH:r ::1 -exist");
  });

  test("a failed record reads as present, full, or neither, from each tool's message", () => {
    assert.equal(ipsetReplayFailure("ipset v7.17: Element cannot be added to the set: it's already added"), "seen");
    assert.equal(ipsetReplayFailure("ipset v7.17: Hash is full, cannot add more elements"), "full");
    assert.equal(ipsetReplayFailure("ipset v7.17: The set with the given name does not exist"), null);
  });

  test("nft's errors for a record written with its grant are told by the command the carets mark", () => {
    // As nft 1.0.6 words them: the line echoed under each error, the failing command marked.
    const line = "create element inet knockgate spa_SSH_replay { ::1 timeout 10s }; add element inet knockgate spa_SSH_4 { 198.18.0.2 . tcp . 22 timeout 5s }";
    const error = (message: string, command: "replay" | "grant") => {
      const at = command === "replay" ? line.indexOf("::1") : line.indexOf("198.18.0.2");
      return `Error: Could not process rule: ${message}\n${line}\n${" ".repeat(at)}^^^\n`;
    };
    assert.equal(nftReplayFailure(error("File exists", "replay")), "seen");
    assert.equal(nftReplayFailure(error("Too many open files in system", "replay")), "full");
    assert.equal(nftReplayFailure(error("Too many open files in system", "grant")), null, "a full grant set is the grant's failure, not a full replay set");
    assert.equal(nftReplayFailure(error("File exists", "replay") + error("Too many open files in system", "grant")), "seen");
    assert.equal(nftReplayFailure(error("No such file or directory", "replay")), null);
    assert.equal(nftReplayFailure("Error: Could not process rule: File exists"), null, "no command marked: not known to be the record's");
  });

  test("nft's File exists under a grant created with the record is \"exists\" (the put goes next); a replay or a full replay set outweighs it", () => {
    // Carets where nft 1.0.6 put them for this line (under the failing element).
    const line = "create element inet knockgate spa_SSH_replay { ::1 timeout 121s }; create element inet knockgate spa_SSH_v4 { 198.18.0.2 . tcp . 22 timeout 30s }";
    const error = (command: "replay" | "grant") => {
      const at = command === "replay" ? line.indexOf("::1") : line.indexOf("198.18.0.2");
      return `Error: Could not process rule: File exists\n${line}\n${" ".repeat(at)}^^^\n`;
    };
    assert.equal(nftReplayFailure(error("grant")), "exists");
    assert.equal(nftReplayFailure(error("replay") + error("grant")), "seen");
    assert.equal(nftReplayFailure(error("grant") + error("replay")), "seen");
    const full = `Error: Could not process rule: Too many open files in system\n${line}\n${" ".repeat(line.indexOf("::1"))}^^^\n`;
    assert.equal(nftReplayFailure(error("grant") + full), "full");
    const put = "create element inet knockgate spa_SSH_replay { ::1 timeout 121s }; add element inet knockgate spa_SSH_v4 { 198.18.0.2 . tcp . 22 }";
    const underAdd = `Error: Could not process rule: File exists\n${put}\n${" ".repeat(put.indexOf("198.18.0.2"))}^^^\n`;
    assert.equal(nftReplayFailure(underAdd), null, "an add never fails for an element that is there: not a refresh, an error");
  });

  test("the kernel's listings of per-port sets read back as address, port and time left", () => {
    const listing = "Name: knockgate-SSH:6\nType: hash:ip,port\nMembers:\nfd00:198:18::2,tcp:22 timeout 28\n198.18.0.2,udp:53 timeout 0\n";
    assert.deepEqual(ipsetSpaMembers(ipsetMembers(listing)), [
      { src: "fd00:198:18::2", port: { proto: "tcp", port: 22 }, remainingMs: 28_000 },
      { src: "198.18.0.2", port: { proto: "udp", port: 53 }, remainingMs: null },
    ]);
    const json = JSON.stringify({
      nftables: [{ metainfo: {} }, { set: { elem: [{ elem: { val: { concat: ["198.18.0.2", "tcp", 22] }, timeout: 30, expires: 29 } }, { elem: { val: "bogus" } }] } }],
    });
    assert.deepEqual(nftSpaElements(json), [{ src: "198.18.0.2", port: { proto: "tcp", port: 22 }, remainingMs: 29_000 }]);
  });
});

describe("recording a datagram in the kernel's replay set", () => {
  const failed = (stderr: string) => new FirewallError("command failed", ["ipset", "-"], stderr);
  /** A session that answers each line by `answer`, recording what it was sent. */
  const session = (answer: (line: string) => Error | null) => {
    const sent: string[] = [];
    const send = (line: string) => {
      sent.push(line);
      const err = answer(line);
      return err ? Promise.reject(err) : Promise.resolve();
    };
    return { send, sent };
  };
  const runner = (code: number, stderr: string) => {
    const calls: string[][] = [];
    const run = (argv: readonly string[]) => {
      calls.push([...argv]);
      return Promise.resolve({ code, stderr, stdout: "" });
    };
    return { run, calls };
  };
  const argvOf = (line: string) => ["ipset", ...line.split(" ")];
  const add = "add knockgate-SSH:r 1::1 timeout 240";

  test("an add the session takes is a new datagram, with no command of its own", async () => {
    const { run, calls } = runner(0, "");
    assert.equal(await new ReplayWriter(session(() => null), run, argvOf, ipsetReplayFailure).record([], () => add), "recorded");
    assert.deepEqual(calls, []);
  });

  test("the session's message for the line is the line's own: present or full, with no command of its own", async () => {
    const { run, calls } = runner(0, "");
    const seen = new ReplayWriter(session(() => failed("ipset v7.17: Element cannot be added to the set: it's already added")), run, argvOf, ipsetReplayFailure);
    assert.equal(await seen.record([], () => add), "seen");
    const full = new ReplayWriter(session(() => failed("ipset v7.17: Hash is full, cannot add more elements")), run, argvOf, ipsetReplayFailure);
    assert.equal(await full.record([], () => add), "full");
    assert.deepEqual(calls, []);
  });

  test("a session that died is replaced by a command of its own, whose message tells present from full", async () => {
    const died = () => new Error("ipset exited");
    const seen = runner(1, "ipset v7.17: Element cannot be added to the set: it's already added");
    assert.equal(await new ReplayWriter(session(died), seen.run, argvOf, ipsetReplayFailure).record([], () => add), "seen");
    assert.deepEqual(seen.calls, [argvOf(add)]);
    assert.equal(await new ReplayWriter(session(died), runner(0, "").run, argvOf, ipsetReplayFailure).record([], () => add), "recorded", "the session died, the add itself was fine");
  });

  test("a session that died under a line: the backend's reading of the kernel decides, or the line runs again when it finds nothing written", async () => {
    const died = () => new Error("nft exited");
    const committed = runner(1, "Error: Could not process rule: File exists");
    assert.equal(await new ReplayWriter(session(died), committed.run, argvOf, ipsetReplayFailure).record([], () => add, () => Promise.resolve("recorded")), "recorded");
    assert.deepEqual(committed.calls, [], "the transaction was found in the kernel: not run again, where its own record would read as a replay");
    const nothing = runner(0, "");
    assert.equal(await new ReplayWriter(session(died), nothing.run, argvOf, ipsetReplayFailure).record([], () => add, () => Promise.resolve(null)), "recorded");
    assert.deepEqual(nothing.calls, [argvOf(add)]);
  });

  test("each add is made when its turn comes, after the record before it has finished", async () => {
    const order: string[] = [];
    const slow = {
      send: async (line: string) => {
        order.push(`sent ${line}`);
        await new Promise((r) => setImmediate(r));
      },
    };
    const writer = new ReplayWriter(slow, runner(0, "").run, argvOf, ipsetReplayFailure);
    const made = (line: string) => () => {
      order.push(`made ${line}`);
      return line;
    };
    await Promise.all([writer.record([], made("add A")), writer.record([], made("add B"))]);
    assert.deepEqual(order, ["made add A", "sent add A", "made add B", "sent add B"]);
  });

  test("records go one at a time, each line after the last one's answer, deletes before the add", async () => {
    let inFlight = 0;
    let most = 0;
    const sent: string[] = [];
    const slow = {
      send: async (line: string) => {
        sent.push(line);
        most = Math.max(most, ++inFlight);
        await new Promise((r) => setImmediate(r));
        inFlight--;
        if (line.includes("2::2")) throw failed("ipset v7.17: Element cannot be added to the set: it's already added");
      },
    };
    const writer = new ReplayWriter(slow, runner(0, "").run, argvOf, ipsetReplayFailure);
    const results = await Promise.all([
      writer.record([], () => "add knockgate-SSH:r 1::1 timeout 9"),
      writer.record([], () => "add knockgate-SSH:r 2::2 timeout 9"),
      writer.record(["del knockgate-SSH:r 1::1 -exist"], () => "add knockgate-SSH:r 3::3 timeout 9"),
    ]);
    assert.deepEqual(results, ["recorded", "seen", "recorded"], "a failing line is its own element's, never another's");
    assert.equal(most, 1);
    assert.deepEqual(sent, ["add knockgate-SSH:r 1::1 timeout 9", "add knockgate-SSH:r 2::2 timeout 9", "del knockgate-SSH:r 1::1 -exist", "add knockgate-SSH:r 3::3 timeout 9"]);
  });

  test("the line instead goes only when nft found a grant's element there", async () => {
    const create = "create element inet knockgate spa_SSH_replay { ::1 timeout 121s }; create element inet knockgate spa_SSH_v4 { 198.18.0.2 . tcp . 22 timeout 30s }";
    const put = "create element inet knockgate spa_SSH_replay { ::1 timeout 121s }; add element inet knockgate spa_SSH_v4 { 198.18.0.2 . tcp . 22 }; delete element inet knockgate spa_SSH_v4 { 198.18.0.2 . tcp . 22 }; add element inet knockgate spa_SSH_v4 { 198.18.0.2 . tcp . 22 timeout 30s }";
    const under = (at: string) => failed(`Error: Could not process rule: File exists\n${create}\n${" ".repeat(create.indexOf(at))}^^^\n`);
    const nftArgv = (line: string) => ["nft", line];
    const refresh = session((line) => (line === create ? under("198.18.0.2") : null));
    assert.equal(await new ReplayWriter(refresh, runner(0, "").run, nftArgv, nftReplayFailure).record([], () => create, undefined, () => put), "recorded");
    assert.deepEqual(refresh.sent, [create, put]);
    const replayed = session(() => under("::1"));
    assert.equal(await new ReplayWriter(replayed, runner(0, "").run, nftArgv, nftReplayFailure).record([], () => create, undefined, () => put), "seen");
    assert.deepEqual(replayed.sent, [create], "a replay is final: no second form");
    const always = session(() => under("198.18.0.2"));
    await assert.rejects(new ReplayWriter(always, runner(0, "").run, nftArgv, nftReplayFailure).record([], () => create), /File exists/, "the last form's exists is an error");
    // The session died under the create and the kernel holds no record: the create runs as a command of its own, then the put.
    const died = session((line) => (line === create ? new Error("nft exited") : null));
    const alone = { calls: [] as string[][], run: (argv: readonly string[]) => (alone.calls.push([...argv]), Promise.resolve({ code: 1, stdout: "", stderr: under("198.18.0.2").stderr })) };
    assert.equal(await new ReplayWriter(died, alone.run, nftArgv, nftReplayFailure).record([], () => create, () => Promise.resolve(null), () => put), "recorded");
    assert.deepEqual([alone.calls, died.sent], [[nftArgv(create)], [create, put]]);
  });

  test("any other failure is an error, never a pass", async () => {
    const gone = session(() => failed("ipset v7.17: The set with the given name does not exist"));
    await assert.rejects(new ReplayWriter(gone, runner(0, "").run, argvOf, ipsetReplayFailure).record([], () => add), /does not exist/);
    await assert.rejects(new ReplayWriter(gone, runner(0, "").run, argvOf, ipsetReplayFailure).record(["del knockgate-SSH:r 1::1 -exist"], () => add), /does not exist/);
  });
});
