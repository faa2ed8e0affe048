/**
 * The reconcile step: compare the kernel with the plan, put back what differs, and say so. The
 * kernel is the truth; this keeps it as planned against flushes, firewalld reloads and other tools.
 * A set or table removed underneath, or a set emptied in place, takes its grants with it: the book
 * says which grants the kernel lost, and they go back with the time they have left.
 */
import { errorFields } from "../core/errors.js";
import type { GrantRecord } from "../core/grants/grant-book.js";
import { listedKey, type Firewall, type ListedGrant } from "../adapters/firewall/firewall.js";
import type { Logger } from "../adapters/log.js";
import type { Metrics } from "../adapters/metrics/metrics.js";

/** The grant lifecycle's side of lost grants: what its book holds, and putting some of them back. */
export interface GrantKeeper {
  /** Every live grant the book holds whose kernel write has finished. */
  held(): GrantRecord[];
  /** The kernel lost these: put each back for the time it has left; resolves to those put back. */
  restore(lost: readonly GrantRecord[]): Promise<GrantRecord[]>;
  /** The kernel engine's grants whose reports were lost (every pass, none too): open each late; resolves to how many were, and opened. */
  openUnreported(marks: readonly ListedGrant[]): Promise<{ lost: number; opened: number }>;
}

export class Reconciler {
  /** Why the last reconcile failed; null when it succeeded. */
  error: string | null = "not reconciled yet";
  /** The kernel engine's unread grants at the last pass (listedKey), with the time each had left. */
  private unread = new Map<string, number | null>();

  constructor(
    private readonly firewall: Firewall,
    private readonly log: Logger,
    private readonly metrics: Metrics,
    private readonly keeper: GrantKeeper,
    /** KNOCK_RECONCILE_INTERVAL: how far apart passes are. */
    private readonly intervalMs: number,
  ) {}

  /** One pass. `initial`: the install at start, whose changes are the install, not repairs. */
  async run(initial: boolean): Promise<void> {
    const { firewall, log, metrics } = this;
    try {
      const changes = await firewall.reconcile("repair");
      if (changes.length > 0) {
        if (initial) log.info({ event: "firewall_installed", backend: firewall.backend, changes }, `firewall ready (${firewall.backend})`);
        else {
          metrics.firewallRepairs.inc(changes.length);
          log.warn({ event: "firewall_repaired", changes }, `put back: ${changes.join("; ")}`);
        }
      } else if (initial) {
        log.info({ event: "firewall_adopted", backend: firewall.backend }, `firewall already in place (${firewall.backend})`);
      }
      await this.restoreLostGrants();
      await this.openUnreported();
      // Only a whole pass recovers: one whose later listings keep failing is the same failure.
      if (this.error !== null && !initial) log.info({ event: "firewall_recovered" }, "firewall is in place again");
      this.error = null;
    } catch (err) {
      const fields = errorFields(err, "KNOCK_E_FIREWALL");
      metrics.firewallFailed("reconcile");
      // Logged once per distinct error: a broken firewall must not flood the log every interval.
      if (this.error !== fields.err) log.error({ event: "firewall_reconcile_failed", ...fields }, fields.err);
      this.error = fields.err;
    }
  }

  /**
   * A grant the kernel engine made is marked until a daemon takes its report, which takes
   * milliseconds; one found unread at two passes in a row, an interval apart, had its report lost
   * (the NFLOG reader was being opened again, or the kernel dropped the message), so it is opened
   * late, with its audit line, ON_OPEN and cluster object. Found again with its time gone back up,
   * it was granted anew meanwhile (the client knocked again), and that report may be on its way.
   */
  private async openUnreported(): Promise<void> {
    const grants = await this.firewall.unreported();
    const lost = grants.filter((g) => {
      const before = this.unread.get(listedKey(g));
      if (before === undefined) return false;
      if (g.remainingMs === null || before === null) return g.remainingMs === before;
      return before - g.remainingMs >= this.intervalMs / 2;
    });
    this.unread = new Map(grants.map((g) => [listedKey(g), g.remainingMs]));
    // Handed over every pass, none lost too: what was reported since the last pass counts from here.
    const { lost: late, opened } = await this.keeper.openUnreported(lost);
    if (late === 0) return;
    this.log.warn(
      { event: "kernel_reports_lost", grants: late, opened },
      `${late} grant${late === 1 ? "" : "s"} the kernel engine made had no report for a whole reconcile interval; opened ${opened} late`,
    );
  }

  /**
   * Grants in the book and not in the kernel go back, every pass: a set removed with its table and
   * made again by the repair above, or emptied in place (`ipset flush`, `nft flush set`), which no
   * repair notices. Only grants the book held unchanged before and after the listing count: one
   * opened, refreshed or closed meanwhile is not lost, its own write or revoke says what it is.
   */
  private async restoreLostGrants(): Promise<void> {
    const { firewall, keeper, log, metrics } = this;
    const before = keeper.held();
    if (before.length === 0) return;
    const inKernel = new Set<string>();
    for (const g of await firewall.grants()) inKernel.add(`${g.ports === null ? "sequence" : "signed"} ${g.door} ${g.src}`);
    const after = new Set(keeper.held());
    const lost = before.filter((g) => after.has(g) && !inKernel.has(`${g.via} ${g.door.name} ${g.src}`));
    if (lost.length === 0) return;
    const restored = await keeper.restore(lost);
    for (const g of restored) metrics.grantsRestored.labels(g.door.name).inc();
    const doors = [...new Set(restored.map((g) => g.door.name))];
    log.warn(
      { event: "grants_restored", grants: restored.length, lost: lost.length, doors },
      `put back ${restored.length} of ${lost.length} grant${lost.length === 1 ? "" : "s"} the kernel lost, for the time they had left`,
    );
  }
}
