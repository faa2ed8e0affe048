/** The benchmark's verdicts (bench/report.ts evaluateTargets): the kernel engine's (8x) and 4b's guard. */
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { evaluateTargets, type ContenderReport, type Report } from "../../bench/report.js";
import { SMOKE, type FloodStage, type GrantsResult, type LatencyResult, type SweepResult } from "../../bench/scenarios.js";

const latency = (p50: number, p99: number, opened = 200): LatencyResult => ({ n: 200, opened, openedPct: (100 * opened) / 200, p50, p90: p50, p99, max: p99, coldMs: null, samples: [], notes: [] });
const stage = (requestedPps: number, opened: number, chanceGrants: number): FloodStage =>
  ({ requestedPps, n: 40, opened, openedPct: (100 * opened) / 40, chanceGrants, p50: 0.2, p90: 0.3, p99: 0.5, max: 0.6, achievedPps: requestedPps, sent: 0, cpuPct: null, samples: [], notes: [] }) as FloodStage;
const grants = (addedNs: { estimate: number; lo: number; hi: number }, invalid: string[] = []): GrantsResult =>
  ({ addedCostUs: { estimate: 1, lo: -5, hi: 7 }, synPathNs: { hidden: 10_000, present: 10_000, added: addedNs }, invalid }) as GrantsResult;
const sweep = (fullest: number, rssMaxMb: number, growthMb: number): SweepResult =>
  ({ n: 100, opened: 30, rssStartMb: 60, rssMaxMb, rssEndMb: rssMaxMb, rssGrowthAfterCapMb: growthMb, knockSets: { bound: 65536, sets: [{ set: "knock_SSH_open_v6_first", elements: fullest, size: 65536 }, { set: "knock_SSH_open_v6_s1", elements: 12, size: 65536 }] } }) as SweepResult;

function report(contenders: Partial<ContenderReport>[]): Report {
  return {
    mode: "smoke",
    params: SMOKE,
    contenders: contenders.map((c) => ({ id: "knockgate", label: "", status: "ok", errors: [], ...c })),
    targets: [],
  } as unknown as Report;
}
const target = (r: Report, id: string) => evaluateTargets(r).find((t) => t.id === id)!;

describe("kernel engine targets", () => {
  test("8a: p50 within 2x of the hand-compiled door's, judged against that door", () => {
    const door = { id: "kernel" as const, latency: latency(0.13, 0.4) };
    assert.equal(target(report([door, { id: "knockgate-kernel", latency: latency(0.25, 0.5) }]), "8a").met, true);
    assert.equal(target(report([door, { id: "knockgate-kernel", latency: latency(0.3, 0.5) }]), "8a").met, false);
    assert.equal(target(report([{ id: "knockgate-kernel", latency: latency(0.25, 0.5) }]), "8a").met, null);
  });

  test("8b: p99 under 1 ms with every round opened", () => {
    assert.equal(target(report([{ id: "knockgate-kernel", latency: latency(0.2, 0.9) }]), "8b").met, true);
    assert.equal(target(report([{ id: "knockgate-kernel", latency: latency(0.2, 1.2) }]), "8b").met, false);
    assert.equal(target(report([{ id: "knockgate-kernel", latency: latency(0.2, 0.9, 199) }]), "8b").met, false);
  });

  test("8c: every legitimate knock opened at every rate; chance completions shown beside the capture engine's", () => {
    const capture = { id: "knockgate" as const, flood: [stage(0, 40, 0), stage(50_000, 40, 1475)] };
    const ok = target(report([capture, { id: "knockgate-kernel", flood: [stage(0, 40, 0), stage(50_000, 40, 1300)] }]), "8c");
    assert.equal(ok.met, true);
    assert.match(ok.detail, /50k: 100%, 1300 chance completions \(capture engine 1475\)/);
    assert.equal(target(report([{ id: "knockgate-kernel", flood: [stage(50_000, 39, 0)] }]), "8c").met, false);
  });

  test("8d: the fullest knock set within the bound, RSS under 150 MB and flat", () => {
    assert.equal(target(report([{ id: "knockgate-kernel", sweep: sweep(65536, 80, 2) }]), "8d").met, true);
    assert.equal(target(report([{ id: "knockgate-kernel", sweep: sweep(65537, 80, 2) }]), "8d").met, false);
    assert.equal(target(report([{ id: "knockgate-kernel", sweep: sweep(100, 160, 2) }]), "8d").met, false);
    assert.equal(target(report([{ id: "knockgate-kernel", sweep: sweep(100, 80, 11) }]), "8d").met, false);
    assert.match(target(report([{ id: "knockgate-kernel", sweep: sweep(65536, 80, 2) }]), "8d").detail, /knock_SSH_open_v6_first 65536 of 65536/);
  });

  test("8e: judged as 4b, on the kernel engine's grant scenario", () => {
    assert.equal(target(report([{ id: "knockgate-kernel", grants: grants({ estimate: 100, lo: -300, hi: 600 }) }]), "8e").met, true);
    assert.equal(target(report([{ id: "knockgate-kernel", grants: grants({ estimate: 2000, lo: 1500, hi: 2500 }) }]), "8e").met, false);
    assert.equal(target(report([{ id: "knockgate-kernel", grants: grants({ estimate: 900, lo: 100, hi: 1700 }) }]), "8e").met, null);
  });

  test("8f: the nftables signed door against the nftables sequence door; ipset's ratio beside it", () => {
    const sequence = { id: "knockgate-nft" as const, latency: latency(1.5, 4) };
    const ipset = [
      { id: "knockgate" as const, latency: latency(1, 4) },
      { id: "knockgate-spa" as const, latency: latency(1.7, 4) },
    ];
    const met = target(report([sequence, ...ipset, { id: "knockgate-spa-nft", latency: latency(1.8, 4) }]), "8f");
    assert.equal(met.met, true);
    assert.match(met.detail, /p50 1\.8 ms, 1\.20x the nftables sequence door's 1\.5 ms; iptables\+ipset \(two round trips\): 1\.70x/);
    assert.equal(target(report([sequence, { id: "knockgate-spa-nft", latency: latency(1.9, 4) }]), "8f").met, false);
    assert.equal(target(report([sequence, { id: "knockgate-spa-nft", latency: latency(1.5, 4, 199) }]), "8f").met, false);
    assert.equal(target(report([{ id: "knockgate-spa-nft", latency: latency(1.5, 4) }]), "8f").met, null);
  });
});

describe("target 4b", () => {
  test("is not judged when the hiding did not hold, whatever the figures say", () => {
    const r = report([{ id: "knockgate", grants: grants({ estimate: 100, lo: -300, hi: 600 }, ["2 of 16 hidden blocks ended with grants in the door's sets (up to 10004)"]) }]);
    assert.equal(target(r, "4b").met, null);
    assert.match(target(r, "4b").detail, /not judged, the hiding did not hold: 2 of 16 hidden blocks/);
    assert.equal(target(r, "4b'").met, null);
  });
});
