/**
 * Time, passed in: the app reads clocks and sets timers only through this, so tests drive time by
 * hand (test/support/fake-clock.ts) and nothing in the daemon sleeps for real in a unit test.
 */

/** Stops a timer; calling it again, or after the timer fired, does nothing. */
export type Cancel = () => void;

export interface Clock {
  /** Monotonic milliseconds: for durations and expiry, immune to wall-clock steps. */
  now(): number;
  /** Milliseconds since the Unix epoch: only for timestamps that people read. */
  wallNow(): number;
  /** Runs `fn` once after `ms`. Timers never keep the process alive on their own. */
  after(ms: number, fn: () => void): Cancel;
  /** Runs `fn` every `ms` until cancelled. */
  every(ms: number, fn: () => void): Cancel;
}
