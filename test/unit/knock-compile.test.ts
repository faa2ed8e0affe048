import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { compileDoors, compileSequence, kernelRefusal, MAX_KERNEL_SEQUENCE, type KnockProgram, type KnockSet } from "../../src/core/knock/compile.js";
import type { Door } from "../../src/core/types.js";
import { door, seq } from "../support/doors.js";
import { attemptStream, knockStream, machineCompletions, type StreamKnock } from "../support/knock-streams.js";

/**
 * The programs run as the kernel runs them: per set, each source's expiry; `add` keeps an existing
 * entry's, `update` renews it; an entry is gone once its time is up.
 */
class Interpreter {
  private readonly sets = new Map<string, Map<string, number>>();
  constructor(private readonly programs: readonly KnockProgram[]) {}

  private set(p: KnockProgram, s: KnockSet): Map<string, number> {
    const key = `${p.door}/${p.kind}/${s.role === "stage" ? s.stage : s.role}`;
    let set = this.sets.get(key);
    if (!set) this.sets.set(key, (set = new Map()));
    return set;
  }

  /** The completions, as "DOOR kind src". */
  handle(k: StreamKnock): string[] {
    const out: string[] = [];
    for (const p of this.programs) {
      if (!p.ports.some((q) => q.port === k.port && q.proto === k.proto)) continue;
      const has = (s: KnockSet) => (this.set(p, s).get(k.src) ?? -Infinity) > k.at;
      const rule = p.rules.find((r) => r.in.every(has) && (r.port === null || (r.port.port === k.port && r.port.proto === k.proto)));
      for (const a of rule?.then ?? []) {
        if (a.op === "delete") this.set(p, a.set).delete(k.src);
        else if (a.op === "add" && !has(a.set)) this.set(p, a.set).set(k.src, k.at + a.timeoutMs);
        else if (a.op === "update") this.set(p, a.set).set(k.src, k.at + a.timeoutMs);
        else if (a.op === "report") out.push(`${p.door} ${p.kind} ${k.src}`);
      }
    }
    return out;
  }
}

const run = (doors: Door[], knocks: readonly StreamKnock[]) => {
  const it = new Interpreter(compileDoors(doors, 1000));
  return knocks.flatMap((k) => it.handle(k));
};
const at = (src: string, ...steps: [number, number][]): StreamKnock[] => steps.map(([ms, port]) => ({ at: ms, src, port, proto: "tcp" }));
const A = "198.18.0.2";

describe("kernel engine compilation", () => {
  test("the sequence in order within the timeout completes; the same knocks slower than SEQ_TIMEOUT from the first do not", () => {
    const doors = [door("SSH", "7000,8000,9000", { seqTimeoutMs: 3000 })];
    assert.deepEqual(run(doors, at(A, [0, 7000], [1000, 8000], [2900, 9000])), ["SSH open 198.18.0.2"]);
    // Each step within the timeout of the one before, the whole longer than it: refused.
    assert.deepEqual(run(doors, at(A, [0, 7000], [1600, 8000], [3200, 9000])), []);
  });

  test("a knock out of place ends the attempt and counts as a first knock; an abandoned attempt's later stage never completes a wrong order", () => {
    const doors = [door("SSH", "7000,8000,9000", { seqTimeoutMs: 3000 })];
    assert.deepEqual(run(doors, at(A, [0, 7000], [10, 9000], [20, 8000], [30, 9000])), []);
    assert.deepEqual(run(doors, at(A, [0, 7000], [10, 8000], [20, 7000], [30, 9000])), []);
    assert.deepEqual(run(doors, at(A, [0, 7000], [10, 8000], [2500, 7000], [2510, 8000], [4000, 9000])), ["SSH open 198.18.0.2"]);
  });

  test("an exact repeat of the previous knock is ignored", () => {
    const doors = [door("SSH", "7000,8000,9000")];
    assert.deepEqual(run(doors, at(A, [0, 7000], [10, 8000], [1010, 8000], [1020, 9000])), ["SSH open 198.18.0.2"]);
  });

  test("every set is sized from KNOCK_MAX_TRACKED; a door with no sequence has no program", () => {
    const signedOnly = door("VPN", "7000", { sequence: [] });
    const programs = compileDoors([door("SSH", "7000,8000:udp,9000", { closeSequence: seq("9000,8000:udp") }), signedOnly], 4242);
    assert.deepEqual(programs.map((p) => [p.door, p.kind, p.stages, p.setSize]), [["SSH", "open", 2, 4242], ["SSH", "close", 1, 4242]]);
    assert.deepEqual(programs[0]?.ports, seq("7000,8000:udp,9000"));
    assert.deepEqual(compileSequence(door("ONE", "7000"), "open", seq("7000"), 1).rules.map((r) => r.then.map((a) => a.op)), [["report", "grant", "update"]]);
  });

  test("a sequence longer than the kernel engine takes is refused with the reason", () => {
    const long = Array.from({ length: MAX_KERNEL_SEQUENCE + 1 }, (_, i) => String(7000 + i)).join(",");
    assert.match(kernelRefusal(door("LONG", long)) ?? "", /at most 16 knocks/);
    assert.equal(kernelRefusal(door("SSH", "7000,8000,9000")), null);
  });

  test("random knock streams give the same completions through the compiled program as through the knock machine", () => {
    const doors = [
      door("SSH", "7000,8000,9000", { closeSequence: seq("9000,8000,7000"), seqTimeoutMs: 6000 }),
      door("MIX", "7000,6000:udp,6000:udp,5000", { seqTimeoutMs: 6000 }),
      door("ONE", "4000:udp", { seqTimeoutMs: 8000 }),
    ];
    const sources = ["198.18.0.2", "198.18.0.3", "198.18.0.4", "fd00:198:18::2", "fd00:198:18::3"];
    let completions = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const stream = knockStream(seed, doors, sources, 400, seq("22,5001:udp"));
      const expected = machineCompletions(doors, stream);
      assert.deepEqual(run(doors, stream), expected, `seed ${seed}`);
      completions += expected.length;
    }
    // The streams do reach completions, of every kind.
    assert.ok(completions > 100, `only ${completions} completions`);
  });

  test("streams dense in timing (attempts that go on, late repeats, gaps either side of the timeouts) agree too", () => {
    const doors = [door("SSH", "7000,8000,9000", { closeSequence: seq("9000,8000"), seqTimeoutMs: 4000 }), door("MIX", "7000,6000:udp", { seqTimeoutMs: 4000 })];
    let completions = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const stream = attemptStream(seed, doors, ["198.18.0.2", "198.18.0.3", "fd00:198:18::2"], 300);
      const expected = machineCompletions(doors, stream);
      assert.deepEqual(run(doors, stream), expected, `seed ${seed}`);
      completions += expected.length;
    }
    assert.ok(completions > 1000, `only ${completions} completions`);
  });
});
