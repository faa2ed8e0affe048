/** A Clock for tests: time moves only when the test calls advance(), and timers fire in order. */
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

  /** Changes whenever a timer is armed or one goes (fired or cancelled). */
  get timerState(): string {
    return `${this.seq}/${this.timers.size}`;
  }

  /** settle(), also waiting for this clock's timers to stop changing. */
  settle(): Promise<void> {
    return settle(this);
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
      await settle(this);
      let next: Timer | undefined;
      for (const timer of this.timers) if (timer.at <= end && (!next || timer.at < next.at || (timer.at === next.at && timer.seq < next.seq))) next = timer;
      if (!next) break;
      this.t = next.at;
      if (next.every > 0) next.at += next.every;
      else this.timers.delete(next);
      next.fn();
    }
    this.t = end;
    await settle(this);
  }
}

/** Event-loop turns settle() waits at most: work that keeps going that long never ends by itself. */
const MAX_TURNS = 10_000;
/**
 * What process.getActiveResourcesInfo() lists that completes by itself: immediates, and I/O
 * requests in flight (a file read, a lookup, a write or connect on a socket). Handles (servers,
 * sockets, child processes, real timers) wait on the world, not on the test, and do not count.
 */
const SELF_COMPLETING = /Req|^Immediate$|^(Write|Shutdown|Send|Connect|TCPConnect|PipeConnect)Wrap$/;

/** Turns that settle() calls (several may run at once) are waiting for: their immediates are not the test's work. */
let ownTurns = 0;

function turn(): Promise<void> {
  ownTurns++;
  return new Promise((resolve) =>
    setImmediate(() => {
      ownTurns--;
      resolve();
    }),
  );
}

function pendingWork(): string[] {
  const work = process.getActiveResourcesInfo().filter((r) => SELF_COMPLETING.test(r));
  // Listed once per immediate: as many as settle() itself waits for are not counted.
  let own = ownTurns;
  return work.filter((r) => r !== "Immediate" || own-- <= 0);
}

/**
 * Waits until nothing the test could observe is still on its way: every promise chain has run,
 * every immediate and I/O request has completed, and `clock`'s timers have stopped changing. Each
 * turn of the real event loop runs all microtasks; two quiet turns in a row are required, because
 * a microtask queued behind the check of the first runs before the second. Throws, instead of
 * hanging, when the work never goes quiet.
 */
export async function settle(clock?: FakeClock): Promise<void> {
  let timers = clock?.timerState;
  let quiet = 0;
  for (let turns = 0; turns < MAX_TURNS; turns++) {
    await turn();
    const now = clock?.timerState;
    quiet = pendingWork().length === 0 && now === timers ? quiet + 1 : 0;
    timers = now;
    if (quiet === 2) return;
  }
  const busy = pendingWork();
  throw new Error(`settle: still busy after ${MAX_TURNS} event-loop turns (${busy.length > 0 ? busy.join(", ") : "fake timers armed and cancelled on every turn"}): work that never goes quiet`);
}
