/** A Clock for tests: time moves only when the test calls advance(), and timers fire in order. */
import { setImmediate as tick } from "node:timers/promises";
import type { Cancel, Clock } from "../../src/core/clock.js";

interface Timer {
  at: number;
  seq: number;
  fn: () => void;
  /** Repeat period; 0 for a one-shot timer. */
  every: number;
}

export class FakeClock implements Clock {
  private t = 0;
  /** How far the wall clock was stepped (set back or forward) by hand. */
  private wallStep = 0;
  private seq = 0;
  private readonly timers = new Set<Timer>();

  constructor(private readonly epochMs = Date.UTC(2026, 0, 1)) {}

  now(): number {
    return this.t;
  }

  wallNow(): number {
    return this.epochMs + this.t + this.wallStep;
  }

  /** Sets the wall clock `ms` forward (negative: back), as a person or a bad NTP server would; now() does not move. */
  stepWall(ms: number): void {
    this.wallStep += ms;
  }

  after(ms: number, fn: () => void): Cancel {
    return this.add({ at: this.t + ms, seq: this.seq++, fn, every: 0 });
  }

  every(ms: number, fn: () => void): Cancel {
    return this.add({ at: this.t + ms, seq: this.seq++, fn, every: ms });
  }

  /** Timers still armed (a stopped daemon must leave none). */
  get pending(): number {
    return this.timers.size;
  }

  private add(timer: Timer): Cancel {
    this.timers.add(timer);
    return () => this.timers.delete(timer);
  }

  /**
   * Moves time forward by `ms`, firing each due timer at its own instant, and lets the promise
   * work each one starts (firewall calls, logging) settle before the next fires.
   */
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      let next: Timer | undefined;
      for (const timer of this.timers) if (timer.at <= end && (!next || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))) next = timer;
      if (!next) break;
      this.t = next.at;
      if (next.every > 0) next.at += next.every;
      else this.timers.delete(next);
      next.fn();
    }
    this.t = end;
    await settle();
  }
}

/** Lets promise chains and child-free I/O callbacks run: a few turns of the real event loop. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await tick();
}
