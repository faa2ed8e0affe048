/**
 * What the soak samples from its daemon, and the verdict on growth: pure, so the rule is tested on
 * its own (test/unit/soak-judge.test.ts).
 *
 * Warm-up: the first quarter of a phase, at most 5 minutes. Until then the heap, the JIT, the
 * bounded tables (attempts, replay sets) and the helper processes are still settling. Growth is the
 * median of the samples over the last window against the median over the window right after
 * warm-up (window: a tenth of the phase, at most 60 s), so one sample taken just before a GC or
 * during a burst of connections decides nothing. Phases shorter than 2 minutes are not judged on
 * growth at all: warm-up would be most of them.
 */
import { median } from "./stats.js";

export interface Sample {
  /** ms since the daemon was ready. */
  tMs: number;
  rssMb: number;
  /** Entries of /proc/PID/fd. */
  fds: number;
  /** Direct children (the long-lived ipset/nft helpers, a firewall command in flight). */
  children: number;
  heapUsedMb: number;
  lagP99Ms: number;
  lagMaxMs: number;
  /** Entries in the daemon's kernel sets (grants, replay records), all doors. */
  setEntries: number;
}

export const GROWTH_LIMIT_PCT = 5;
export const MIN_JUDGED_MS = 2 * 60_000;
const MAX_WARM_UP_MS = 5 * 60_000;
const MAX_WINDOW_MS = 60_000;

/** null: the phase is too short for its growth to be judged. */
export function warmUpMs(phaseMs: number): number | null {
  return phaseMs < MIN_JUDGED_MS ? null : Math.min(MAX_WARM_UP_MS, phaseMs / 4);
}

export interface Growth {
  metric: "rssMb" | "fds";
  /** Median right after warm-up, median at the end. */
  baseline: number;
  end: number;
  pct: number;
  ok: boolean;
}

/** Samples with tMs in [from, to], or the one nearest to that window when none falls inside it. */
function within(samples: readonly Sample[], from: number, to: number): Sample[] {
  const inside = samples.filter((s) => s.tMs >= from && s.tMs <= to);
  if (inside.length > 0 || samples.length === 0) return inside;
  const mid = (from + to) / 2;
  return [samples.reduce((a, b) => (Math.abs(b.tMs - mid) < Math.abs(a.tMs - mid) ? b : a))];
}

/** RSS and fd growth after warm-up; null when the phase is too short to judge. */
export function growth(samples: readonly Sample[], phaseMs: number): Growth[] | null {
  const warm = warmUpMs(phaseMs);
  if (warm === null || samples.length === 0) return null;
  const windowMs = Math.min(MAX_WINDOW_MS, phaseMs / 10);
  const last = Math.max(...samples.map((s) => s.tMs));
  const base = within(samples, warm, warm + windowMs);
  const tail = within(samples, last - windowMs, last);
  return (["rssMb", "fds"] as const).map((metric) => {
    const baseline = median(base.map((s) => s[metric]));
    const end = median(tail.map((s) => s[metric]));
    const pct = baseline > 0 ? (100 * (end - baseline)) / baseline : NaN;
    return { metric, baseline, end, pct, ok: Number.isFinite(pct) && pct <= GROWTH_LIMIT_PCT };
  });
}
