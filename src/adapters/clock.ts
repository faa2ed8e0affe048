/** The real clock: performance.now for durations, Date.now for timestamps, unref'd Node timers. */
import { performance } from "node:perf_hooks";
import type { Clock } from "../core/clock.js";

export const systemClock: Clock = {
  now: () => performance.now(),
  wallNow: () => Date.now(),
  after(ms, fn) {
    const timer = setTimeout(fn, ms).unref();
    return () => clearTimeout(timer);
  },
  every(ms, fn) {
    const timer = setInterval(fn, ms).unref();
    return () => clearInterval(timer);
  },
};
