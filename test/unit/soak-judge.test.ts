/** The soak's verdict on memory and file descriptors (bench/soak-judge.ts). */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { growth, warmUpMs, type Sample } from "../../bench/soak-judge.js";

const MIN = 60_000;

/** One sample every 10 s over `phaseMs`, RSS and fds from the functions given. */
function series(phaseMs: number, rss: (tMs: number) => number, fds: (tMs: number) => number = () => 40): Sample[] {
  const out: Sample[] = [];
  for (let t = 0; t <= phaseMs; t += 10_000) out.push({ tMs: t, rssMb: rss(t), fds: fds(t), children: 1, heapUsedMb: 20, lagP99Ms: 5, lagMaxMs: 9, setEntries: 3 });
  return out;
}

const verdict = (g: ReturnType<typeof growth>, metric: "rssMb" | "fds") => g?.find((x) => x.metric === metric);

describe("soak growth verdict", () => {
  test("warm-up is a quarter of the phase, at most 5 minutes; under 2 minutes nothing is judged", () => {
    assert.equal(warmUpMs(MIN), null);
    assert.equal(warmUpMs(8 * MIN), 2 * MIN);
    assert.equal(warmUpMs(30 * MIN), 5 * MIN);
    assert.equal(growth(series(MIN, () => 50), MIN), null);
  });

  test("growth during warm-up does not count; flat after it passes, noise and a lone spike included", () => {
    const phase = 15 * MIN;
    const g = growth(
      series(phase, (t) => (t < 3 * MIN ? 40 + t / 10_000 : 60 + ((t / 10_000) % 3) - 1 + (t === 14 * MIN ? 30 : 0))),
      phase,
    );
    assert.equal(verdict(g, "rssMb")?.ok, true, JSON.stringify(g));
  });

  test("RSS or fds more than 5% above the post-warm-up level at the end fail", () => {
    const phase = 15 * MIN;
    const rising = (base: number) => (t: number) => (t < 4 * MIN ? base : base * (1 + (0.08 * (t - 4 * MIN)) / (11 * MIN)));
    const g = growth(series(phase, rising(60), rising(40)), phase);
    assert.equal(verdict(g, "rssMb")?.ok, false, JSON.stringify(g));
    assert.equal(verdict(g, "fds")?.ok, false, JSON.stringify(g));
    assert.ok((verdict(g, "rssMb")?.pct ?? 0) > 5);
    const flat = growth(series(phase, () => 60, (t) => (t > 10 * MIN ? 41 : 40)), phase);
    assert.equal(verdict(flat, "fds")?.ok, true, "one more fd of 40 is 2.5%");
  });
});
