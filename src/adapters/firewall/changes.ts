/** How the backends change the kernel: big changes one at a time, replay records one line at a time. */
import { FirewallError } from "../../core/errors.js";
import type { Logger } from "../log.js";
import { patientRunner, type LineSession, type Runner } from "./exec.js";
import type { ReplayRecord } from "./firewall.js";

/**
 * Records datagrams in the replay sets through a session of their own (a spawn per datagram cost
 * ~20 ms), one line at a time. A line that fails is then the only one pending, so the session's
 * stderr is that line's own: "already added" means this element was there, never that another
 * line failed (sharing the session, 600 concurrent records refused 303 of 400 new datagrams as
 * seen). Only when the session itself fails (it exits, or cannot start) is the outcome unknown:
 * the backend's `unknown` may tell from what the kernel holds; otherwise the line runs again as a
 * command of its own, whose "already added" can then be the line's own earlier success, and such
 * a datagram is refused, never a replay accepted.
 */
export class ReplayWriter {
  private last: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly session: Pick<LineSession, "send">,
    private readonly run: Runner,
    /** The line as a command of its own. */
    private readonly argvOf: (line: string) => string[],
    /**
     * What the tool's message for a failed add says: the element was there, the set is full, an
     * element of a grant in the same line was there (`instead` goes), or none of these.
     */
    private readonly failure: (stderr: string) => "seen" | "full" | "exists" | null,
  ) {}

  /**
   * Runs `deletes` (each must succeed), then the add that `add` makes when its turn comes; after
   * every earlier record has finished. `unknown`: what the add's outcome was when the session
   * ended under it (the kernel may or may not have taken it); null: nothing was written, run it
   * again. `instead`: the line to run when the add failed as "exists", made only then.
   */
  record(deletes: readonly string[], add: () => string, unknown?: () => Promise<ReplayRecord | null>, instead?: () => string): Promise<ReplayRecord> {
    const result = this.last.then(async () => {
      for (const line of deletes) {
        const r = (await this.send(line)) ?? (await this.run(this.argvOf(line)));
        if (r.code !== 0) throw new FirewallError(`exit code ${r.code}`, this.argvOf(line), r.stderr);
      }
      return this.write(add(), unknown, instead);
    });
    this.last = result.catch(() => undefined);
    return result;
  }

  private async write(add: string, unknown?: () => Promise<ReplayRecord | null>, instead?: () => string): Promise<ReplayRecord> {
    const sent = await this.send(add);
    const known = sent === null && unknown ? await unknown() : null;
    if (known !== null) return known;
    const r = sent ?? (await this.run(this.argvOf(add)));
    if (r.code === 0) return "recorded";
    const failure = this.failure(r.stderr);
    if (failure === "exists" && instead) return this.write(instead(), unknown);
    if (failure === null || failure === "exists") throw new FirewallError(`exit code ${r.code}`, this.argvOf(add), r.stderr);
    return failure;
  }

  /** The line through the session: its result, or null when the session ended under it (no message of the line's own). */
  private async send(line: string): Promise<{ code: number; stderr: string } | null> {
    try {
      await this.session.send(line);
      return { code: 0, stderr: "" };
    } catch (err) {
      // What the tool wrote on stderr for this line, the only one in flight.
      return err instanceof FirewallError && err.stderr !== "" ? { code: 1, stderr: err.stderr } : null;
    }
  }
}

/**
 * How both backends make their big changes. One at a time: a periodic reconcile still in flight when
 * removal starts reads a half-removed firewall and puts back the jump that removal just deleted, so
 * deleting the chain fails ("Device or resource busy") and the daemon exits 70 with objects left.
 * And with transient tool failures retried where one costs the most: the install and removal.
 */
export class ChangeQueue {
  private last: Promise<unknown> = Promise.resolve();
  private installed = false;
  private readonly patient: Runner;

  constructor(
    private readonly run: Runner,
    log: Logger,
  ) {
    this.patient = patientRunner(run, log);
  }

  /** Retries transient failures until a reconcile has succeeded once: that one is the install at start. */
  reconcile<T>(pass: (run: Runner) => Promise<T>): Promise<T> {
    return this.next(async () => {
      const result = await pass(this.installed ? this.run : this.patient);
      this.installed = true;
      return result;
    });
  }

  remove(removal: (run: Runner) => Promise<void>): Promise<void> {
    return this.next(() => removal(this.patient));
  }

  private next<T>(change: () => Promise<T>): Promise<T> {
    const result = this.last.then(change);
    this.last = result.catch(() => undefined);
    return result;
  }
}
