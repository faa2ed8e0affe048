import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { TcpFlag, type Door, type Family, type Knock, type PortSpec, type Proto } from "../../src/core/types.js";
import { KnockMachine, REPEAT_WINDOW_MS, type KnockEvent } from "../../src/core/knock/machine.js";
import { ipBytes } from "../support/frames.js";
import { door, seq } from "../support/doors.js";

const SYN = TcpFlag.syn;
const ACK = TcpFlag.ack;
const A = "198.18.0.2";
const B = "198.18.0.3";

function knock(dstPort: number, src = A, opts: { proto?: Proto; tcpFlags?: number; family?: Family } = {}): Knock {
  const proto = opts.proto ?? "tcp";
  return {
    family: opts.family ?? (src.includes(":") ? 6 : 4),
    addr: ipBytes(src),
    src,
    proto,
    dstPort,
    tcpFlags: opts.tcpFlags ?? (proto === "tcp" ? SYN : 0),
  };
}

/** A machine whose events land in `events`. */
function machine(doors: Door[], maxTracked = 1000, seed = 0x5eed, maxTrackedPerPrefix = Number.MAX_SAFE_INTEGER) {
  const events: KnockEvent[] = [];
  const m = new KnockMachine(doors, { maxTracked, maxTrackedPerPrefix, prefixes: { v4: 24, v6: 64 } }, (e) => events.push({ result: e.result, door: e.door, kind: e.kind, src: e.src, family: e.family, stage: e.stage }), seed);
  return { m, events };
}

const completions = (events: readonly KnockEvent[]) =>
  events.filter((e) => e.result === "completed").map((e) => ({ door: e.door.name, kind: e.kind, src: e.src }));
const results = (events: readonly KnockEvent[]) => events.map((e) => e.result);

const SSH = door("SSH", "7000,8000,9000");

describe("KnockMachine", () => {
  test("the full sequence in time completes once with kind open", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000), 0);
    m.handle(knock(8000), 1000);
    m.handle(knock(9000), 2000);
    assert.deepEqual(results(events), ["progressed", "progressed", "completed"]);
    const done = events[2];
    assert.ok(done);
    assert.equal(done.door, SSH);
    assert.equal(done.kind, "open");
    assert.equal(done.src, A);
    assert.equal(done.family, 4);
    assert.equal(done.stage, 3);
    assert.equal(m.tracked, 0);
  });

  test("the ports in the wrong order do not open", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(8000), 0);
    m.handle(knock(7000), 100);
    m.handle(knock(9000), 200);
    assert.deepEqual(completions(events), []);
    assert.deepEqual(results(events), ["progressed", "wrong_port"]);
  });

  test("a knock slower than seq_timeout, counted from the first knock, does not open", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000), 0);
    m.handle(knock(8000), 3000);
    m.handle(knock(9000), 6000);
    assert.deepEqual(completions(events), []);
    assert.deepEqual(results(events), ["progressed", "progressed", "timed_out"]);
    assert.equal(m.tracked, 0);
  });

  test("the last knock exactly at seq_timeout still opens", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000), 0);
    m.handle(knock(8000), 2500);
    m.handle(knock(9000), 5000);
    assert.deepEqual(completions(events), [{ door: "SSH", kind: "open", src: A }]);
  });

  test("a repeat of the previous knock within the repeat window is ignored and the sequence completes", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000), 0);
    m.handle(knock(7000), 1000);
    m.handle(knock(8000), 1500);
    m.handle(knock(8000), 1500 + REPEAT_WINDOW_MS);
    m.handle(knock(9000), 4000);
    assert.deepEqual(results(events), ["progressed", "repeated", "progressed", "repeated", "completed"]);
  });

  test("a repeat after the repeat window breaks the attempt and restarts it as a first knock", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000), 0);
    m.handle(knock(7000), REPEAT_WINDOW_MS + 500);
    assert.deepEqual(results(events), ["progressed", "wrong_port", "progressed"]);
    // Only the restart at 2500 makes these in time: 6000 is past 5 s from the first knock at 0.
    m.handle(knock(8000), 5500);
    m.handle(knock(9000), 6000);
    assert.deepEqual(completions(events), [{ door: "SSH", kind: "open", src: A }]);
  });

  test("a knock on a sequence port out of place ends the attempt; the next first knock starts anew", () => {
    const { m, events } = machine([SSH]);
    for (const [i, port] of [7000, 9000, 7000, 8000, 9000].entries()) m.handle(knock(port), i * 100);
    assert.deepEqual(results(events), ["progressed", "wrong_port", "progressed", "progressed", "completed"]);
  });

  test("a wrong knock that is the first port restarts the attempt at once", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000), 0);
    m.handle(knock(8000), 100);
    m.handle(knock(7000), 200); // not a repeat of the previous knock (8000)
    m.handle(knock(8000), 300);
    m.handle(knock(9000), 400);
    assert.deepEqual(results(events), ["progressed", "progressed", "wrong_port", "progressed", "progressed", "completed"]);
  });

  test("knocks on ports outside every sequence are ignored and do not break progress", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000), 0);
    m.handle(knock(22), 100);
    m.handle(knock(443), 200);
    m.handle(knock(8000, A, { proto: "udp" }), 250); // 8000/udp is not in the sequence
    m.handle(knock(8000), 300);
    m.handle(knock(9000), 400);
    assert.deepEqual(results(events), ["progressed", "progressed", "completed"]);
  });

  test("a TCP knock whose flags do not match is ignored and does not break progress", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000), 0);
    m.handle(knock(9000, A, { tcpFlags: ACK }), 100);
    m.handle(knock(8000, A, { tcpFlags: SYN | ACK }), 150);
    m.handle(knock(8000), 200);
    m.handle(knock(9000), 300);
    assert.deepEqual(results(events), ["progressed", "flags_mismatch", "flags_mismatch", "progressed", "completed"]);
    assert.equal(events[1]?.stage, 1);
  });

  test("a TCP knock with only ACK never starts an attempt", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000, A, { tcpFlags: ACK }), 0);
    assert.equal(m.tracked, 0);
    assert.deepEqual(results(events), ["flags_mismatch"]);
  });

  test("UDP knocks in a mixed sequence complete without a flag check", () => {
    const mixed = door("MIX", "7000,8000:udp,9000:udp");
    const { m, events } = machine([mixed]);
    m.handle(knock(7000), 0);
    m.handle(knock(8000, A, { proto: "udp" }), 100);
    m.handle(knock(9000, A, { proto: "udp", tcpFlags: 0 }), 200);
    assert.deepEqual(completions(events), [{ door: "MIX", kind: "open", src: A }]);
  });

  test("a TCP knock on a port the sequence wants as UDP is ignored", () => {
    const mixed = door("MIX", "7000,8000:udp,9000");
    const { m, events } = machine([mixed]);
    m.handle(knock(7000), 0);
    m.handle(knock(8000), 100);
    m.handle(knock(9000), 200);
    assert.deepEqual(completions(events), []);
    assert.deepEqual(results(events), ["progressed", "wrong_port"]);
  });

  test("two sources knocking interleaved both complete", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000, A), 0);
    m.handle(knock(7000, B), 10);
    m.handle(knock(8000, A), 20);
    m.handle(knock(8000, B), 30);
    m.handle(knock(9000, B), 40);
    m.handle(knock(9000, A), 50);
    assert.deepEqual(completions(events), [
      { door: "SSH", kind: "open", src: B },
      { door: "SSH", kind: "open", src: A },
    ]);
  });

  test("a wrong knock from one source does not disturb another source", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000, A), 0);
    m.handle(knock(8000, A), 10);
    m.handle(knock(7000, B), 15);
    m.handle(knock(9000, B), 20); // B out of place
    m.handle(knock(9000, A), 30);
    assert.deepEqual(
      events.filter((e) => e.result === "wrong_port").map((e) => e.src),
      [B],
    );
    assert.deepEqual(completions(events), [{ door: "SSH", kind: "open", src: A }]);
  });

  test("an IPv6 source completes and is reported with family 6", () => {
    const { m, events } = machine([SSH]);
    const src = "2001:db8::7";
    for (const [i, port] of [7000, 8000, 9000].entries()) m.handle(knock(port, src, { family: 6 }), i * 100);
    const done = events.find((e) => e.result === "completed");
    assert.ok(done);
    assert.equal(done.src, src);
    assert.equal(done.family, 6);
  });

  test("the close sequence completes with kind close", () => {
    const d = door("SSH", "7000,8000,9000", { closeSequence: seq("6000,5000,4000") });
    const { m, events } = machine([d]);
    for (const [i, port] of [6000, 5000, 4000].entries()) m.handle(knock(port), i * 100);
    assert.deepEqual(completions(events), [{ door: "SSH", kind: "close", src: A }]);
  });

  test("open and close sequences sharing ports are tracked independently", () => {
    const d = door("SSH", "7000,8000,9000", { closeSequence: seq("7000,9000,8000") });
    const { m, events } = machine([d]);
    m.handle(knock(7000), 0);
    assert.equal(m.tracked, 2);
    // 9000 breaks the open attempt but is the close sequence's next port.
    m.handle(knock(9000), 100);
    m.handle(knock(8000), 200);
    assert.deepEqual(completions(events), [{ door: "SSH", kind: "close", src: A }]);
    // And the other way round: 8000 breaks the close attempt, the open one goes on.
    m.handle(knock(7000), 1000);
    m.handle(knock(8000), 1100);
    m.handle(knock(9000), 1200);
    assert.deepEqual(completions(events), [
      { door: "SSH", kind: "close", src: A },
      { door: "SSH", kind: "open", src: A },
    ]);
  });

  test("two doors whose sequences share a port are tracked independently", () => {
    const web = door("WEB", "7000,6000,5000", { ports: [{ port: 443, proto: "tcp" }] });
    const { m, events } = machine([SSH, web]);
    m.handle(knock(7000), 0);
    m.handle(knock(6000), 100);
    m.handle(knock(5000), 200);
    assert.deepEqual(completions(events), [{ door: "WEB", kind: "open", src: A }]);
  });

  test("a single-port sequence completes on its one knock and tracks nothing", () => {
    const { m, events } = machine([door("ONE", "7000")]);
    m.handle(knock(7000), 0);
    assert.deepEqual(results(events), ["completed"]);
    assert.equal(events[0]?.stage, 1);
    assert.equal(m.tracked, 0);
  });

  test("tracking is bounded by maxTracked and the oldest attempts are evicted", () => {
    const { m, events } = machine([SSH], 3);
    const srcs = ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4", "198.18.0.5"];
    for (const [i, src] of srcs.entries()) m.handle(knock(7000, src), i * 10);
    assert.equal(m.tracked, 3);
    const evicted = events.filter((e) => e.result === "evicted");
    assert.deepEqual(
      evicted.map((e) => ({ src: e.src, stage: e.stage, door: e.door.name, kind: e.kind })),
      [
        { src: "198.18.0.1", stage: 1, door: "SSH", kind: "open" },
        { src: "198.18.0.2", stage: 1, door: "SSH", kind: "open" },
      ],
    );
  });

  test("an evicted source has to start over while the others go on", () => {
    const { m, events } = machine([SSH], 3);
    const srcs = ["198.18.0.1", "198.18.0.2", "198.18.0.3", "198.18.0.4"];
    for (const [i, src] of srcs.entries()) m.handle(knock(7000, src), i * 10);
    m.handle(knock(8000, "198.18.0.1"), 100);
    m.handle(knock(9000, "198.18.0.1"), 110);
    m.handle(knock(8000, "198.18.0.4"), 120);
    m.handle(knock(9000, "198.18.0.4"), 130);
    assert.deepEqual(
      completions(events).map((c) => c.src),
      ["198.18.0.4"],
    );
  });

  test("after attempts end in the middle of the queue, eviction still takes the oldest remaining one", () => {
    const { m, events } = machine([SSH], 3);
    m.handle(knock(7000, "198.18.0.1"), 0);
    m.handle(knock(7000, "198.18.0.2"), 10);
    m.handle(knock(7000, "198.18.0.3"), 20);
    // .2 (the middle) completes and .1 (the oldest) breaks its attempt: only .3 is left.
    m.handle(knock(8000, "198.18.0.2"), 30);
    m.handle(knock(9000, "198.18.0.2"), 40);
    m.handle(knock(9000, "198.18.0.1"), 50);
    assert.equal(m.tracked, 1);
    for (const [i, src] of ["198.18.0.4", "198.18.0.5", "198.18.0.6"].entries()) m.handle(knock(7000, src), 60 + i * 10);
    assert.equal(m.tracked, 3);
    assert.deepEqual(
      events.filter((e) => e.result === "evicted").map((e) => e.src),
      ["198.18.0.3"],
    );
  });

  test("a flood of first knocks evicts only other first knocks, never a client two knocks in", () => {
    const { m, events } = machine([SSH], 256);
    m.handle(knock(7000, A), 0);
    m.handle(knock(8000, A), 10);
    // 300 spoofed first knocks, more than the table holds, from all over the address space.
    for (let i = 0; i < 300; i++) m.handle(knock(7000, `203.0.${i >> 8}.${i & 255}`), 20 + i);
    assert.equal(m.tracked, 256);
    assert.ok(!events.some((e) => e.result === "evicted" && e.src === A), "the real attempt stays");
    m.handle(knock(9000, A), 400);
    assert.deepEqual(
      completions(events).map((c) => c.src),
      [A],
    );
  });

  test("when every attempt has got past its first knock, the oldest is evicted", () => {
    const { m, events } = machine([door("LONG", "7000,8000,9000,10000")], 2);
    for (const [i, src] of ["198.18.0.1", "198.18.0.2", "198.18.0.3"].entries()) {
      m.handle(knock(7000, src), i * 10);
      m.handle(knock(8000, src), i * 10 + 1);
    }
    assert.deepEqual(
      events.filter((e) => e.result === "evicted").map((e) => [e.src, e.stage]),
      [["198.18.0.1", 2]],
    );
  });

  test("one source prefix gets at most its share of attempts; other prefixes and finished attempts free it", () => {
    const { m, events } = machine([SSH], 1000, 0x5eed, 2);
    m.handle(knock(7000, "2001:db8:1:1::1"), 0);
    m.handle(knock(7000, "2001:db8:1:1::2"), 1);
    m.handle(knock(7000, "2001:db8:1:1:ffff::3"), 2); // the same /64: refused
    m.handle(knock(7000, "2001:db8:1:2::1"), 3); // another /64
    assert.deepEqual(
      events.map((e) => [e.src, e.result]),
      [
        ["2001:db8:1:1::1", "progressed"],
        ["2001:db8:1:1::2", "progressed"],
        ["2001:db8:1:1:ffff::3", "prefix_full"],
        ["2001:db8:1:2::1", "progressed"],
      ],
    );
    assert.equal(m.tracked, 3);
    m.handle(knock(8000, "2001:db8:1:1::1"), 10);
    m.handle(knock(9000, "2001:db8:1:1::1"), 11); // completes: its slot in the prefix is free again
    m.handle(knock(7000, "2001:db8:1:1:ffff::3"), 12);
    assert.equal(events.at(-1)?.result, "progressed");
    m.sweep(10_000); // timeouts free slots too
    assert.equal(m.tracked, 0);
    m.handle(knock(7000, "2001:db8:1:1::7"), 10_001);
    m.handle(knock(7000, "2001:db8:1:1::8"), 10_002);
    assert.deepEqual(
      events.slice(-2).map((e) => e.result),
      ["progressed", "progressed"],
    );
  });

  test("IPv4 sources share a /24 by default", () => {
    const { m, events } = machine([SSH], 1000, 0x5eed, 1);
    m.handle(knock(7000, "198.18.5.1"), 0);
    m.handle(knock(7000, "198.18.5.200"), 1);
    m.handle(knock(7000, "198.18.6.1"), 2);
    assert.deepEqual(
      events.map((e) => e.result),
      ["progressed", "prefix_full", "progressed"],
    );
  });

  test("sweep removes timed-out attempts and reports them", () => {
    const { m, events } = machine([SSH]);
    m.handle(knock(7000, A), 0);
    m.handle(knock(8000, A), 100);
    m.handle(knock(7000, B), 3000);
    m.sweep(5000);
    assert.equal(m.tracked, 2, "nothing is over time at exactly seq_timeout");
    m.sweep(5001);
    assert.equal(m.tracked, 1);
    const timedOut = events.filter((e) => e.result === "timed_out");
    assert.deepEqual(
      timedOut.map((e) => ({ src: e.src, stage: e.stage })),
      [{ src: A, stage: 2 }],
    );
    // B's attempt survived the sweep and can still complete.
    m.handle(knock(8000, B), 6000);
    m.handle(knock(9000, B), 7000);
    assert.deepEqual(completions(events), [{ door: "SSH", kind: "open", src: B }]);
  });

  test("knockPorts lists each sequence port and protocol once", () => {
    const d = door("SSH", "7000,8000:udp,9000", { closeSequence: seq("9000,8000:udp,7000,7000") });
    const { m } = machine([d, door("WEB", "7000,8000,6000")]);
    const key = (p: PortSpec) => `${p.port}/${p.proto}`;
    assert.deepEqual(m.knockPorts().map(key).sort(), ["6000/tcp", "7000/tcp", "8000/tcp", "8000/udp", "9000/tcp"]);
  });
});
