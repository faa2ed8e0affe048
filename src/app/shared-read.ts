/**
 * A kernel read that /readyz and /metrics share: callers at the same moment get one read, and for
 * `ttlMs` after it started they get its result. A burst of scrapes or probes then costs one
 * `ipset list` or `nft list`, not one each.
 */
import type { Clock } from "../core/clock.js";

export interface SharedRead<T> {
  (): Promise<T>;
  /** Forget the last result: the next call reads again (after a repair changed what it would see). */
  invalidate(): void;
}

export function sharedRead<T>(read: () => Promise<T>, ttlMs: number, clock: Clock): SharedRead<T> {
  let last: Promise<T> | null = null;
  let startedAt = -Infinity;
  const shared = (() => {
    if (last === null || clock.now() - startedAt >= ttlMs) {
      startedAt = clock.now();
      last = read();
    }
    return last;
  }) as SharedRead<T>;
  shared.invalidate = () => {
    last = null;
  };
  return shared;
}
