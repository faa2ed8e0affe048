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

/**
 * The real clock with timers that hold the process: for a pause inside work that someone awaits (a
 * retry of a firewall command in `knockgate cleanup`), where nothing else may be left to keep the
 * process running, which would end with the work half done.
 */
export const holdingClock: Clock = {
  ...systemClock,
  after(ms, fn) {
    const timer = setTimeout(fn, ms);
    return () => clearTimeout(timer);
  },
  every(ms, fn) {
    const timer = setInterval(fn, ms);
    return () => clearInterval(timer);
  },
};
