/** Small statistics helpers: percentiles, trimmed means, a bootstrap interval for a difference. */

/** Nearest-rank percentile of the finite values (NaN when there are none). */
export function percentile(values: readonly number[], p: number): number {
  const v = values.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return NaN;
  const rank = Math.min(v.length, Math.max(1, Math.ceil((p / 100) * v.length)));
  return v[rank - 1]!;
}

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

export function mean(values: readonly number[]): number {
  return values.length ? values.reduce((a, b) => a + b, 0) / values.length : NaN;
}

/** Mean of the middle (1 - 2*trim) of the values: robust to the event loop's occasional stalls. */
export function trimmedMean(values: readonly number[], trim = 0.1): number {
  const v = [...values].sort((a, b) => a - b);
  const k = Math.floor(v.length * trim);
  return mean(v.slice(k, v.length - k));
}

/** Seeded uniform [0,1): the report must not change from run to run because of the bootstrap. */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

export interface Difference {
  /** stat(b) - stat(a). */
  estimate: number;
  lo: number;
  hi: number;
}

/** Percentile-bootstrap 95% interval of stat(b) - stat(a). */
export function bootstrapDiff(a: readonly number[], b: readonly number[], stat: (v: number[]) => number = (v) => trimmedMean(v), iterations = 1000): Difference {
  const rnd = lcg(12345);
  const resample = (v: readonly number[]) => Array.from({ length: v.length }, () => v[Math.floor(rnd() * v.length)]!);
  const diffs: number[] = [];
  for (let i = 0; i < iterations; i++) diffs.push(stat(resample(b)) - stat(resample(a)));
  return { estimate: stat([...b]) - stat([...a]), lo: percentile(diffs, 2.5), hi: percentile(diffs, 97.5) };
}

/** Least-squares slope of y over x. */
export function slope(points: readonly { x: number; y: number }[]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = mean(points.map((p) => p.x));
  const my = mean(points.map((p) => p.y));
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.x - mx) * (p.y - my);
    den += (p.x - mx) ** 2;
  }
  return den === 0 ? NaN : num / den;
}

export const round = (x: number, digits = 2): number => (Number.isFinite(x) ? Math.round(x * 10 ** digits) / 10 ** digits : x);
