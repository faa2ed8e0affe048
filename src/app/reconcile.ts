/**
 * The reconcile step: compare the kernel with the plan, put back what differs, and say so. The
 * kernel is the truth; this keeps it as planned against flushes, firewalld reloads and other tools.
 */
import { errorFields } from "../core/errors.js";
import type { Firewall } from "../adapters/firewall/firewall.js";
import type { Logger } from "../adapters/log.js";
import type { Metrics } from "../adapters/metrics/metrics.js";

export class Reconciler {
  /** Why the last reconcile failed; null when it succeeded. */
  error: string | null = "not reconciled yet";

  constructor(
    private readonly firewall: Firewall,
    private readonly log: Logger,
    private readonly metrics: Metrics,
  ) {}

  /** One pass. `initial`: the install at start, whose changes are the install, not repairs. */
  async run(initial: boolean): Promise<void> {
    const { firewall, log, metrics } = this;
    try {
      const changes = await firewall.reconcile();
      if (this.error !== null && !initial) log.info({ event: "firewall_recovered" }, "firewall is in place again");
      this.error = null;
      if (changes.length > 0) {
        if (initial) log.info({ event: "firewall_installed", backend: firewall.backend, changes }, `firewall ready (${firewall.backend})`);
        else {
          metrics.firewallRepairs.inc(changes.length);
          log.warn({ event: "firewall_repaired", changes }, `put back: ${changes.join("; ")}`);
        }
      } else if (initial) {
        log.info({ event: "firewall_adopted", backend: firewall.backend }, `firewall already in place (${firewall.backend})`);
      }
    } catch (err) {
      const fields = errorFields(err, "KNOCK_E_FIREWALL");
      metrics.firewallFailed("reconcile");
      // Logged once per distinct error: a broken firewall must not flood the log every interval.
      if (this.error !== fields.err) log.error({ event: "firewall_reconcile_failed", ...fields }, fields.err);
      this.error = fields.err;
    }
  }
}
