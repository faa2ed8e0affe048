/** KNOCK_DRY_RUN: plans and logs what would change, touches nothing. */
import type { Logger } from "pino";
import type { Config, Door, Family } from "../../core/types.js";
import type { Firewall } from "./firewall.js";
import { FAMILIES, iptablesChainPlan, ipsetCreateScript, ipsetGrantLine, ipsetRevokeLine, nftPlan } from "../../core/firewall/plan.js";

export class DryRunFirewall implements Firewall {
  readonly backend = "dry-run";
  private planned = false;

  constructor(
    private readonly config: Config,
    private readonly log: Logger,
  ) {}

  check(): Promise<string[]> {
    return Promise.resolve([]);
  }

  reconcile(): Promise<string[]> {
    if (!this.planned) {
      this.planned = true;
      const iptables = [ipsetCreateScript(this.config), ...FAMILIES.map((f) => iptablesChainPlan(this.config, f).restore)];
      this.log.info({ event: "dry_run_plan", iptables: iptables.join(""), nftables: nftPlan(this.config).script }, "dry run: would install");
    }
    return Promise.resolve([]);
  }

  grant(door: Door, family: Family, src: string): Promise<void> {
    this.log.info({ event: "dry_run_grant", door: door.name, src, command: ipsetGrantLine(door.name, family, src, door.openForMs) });
    return Promise.resolve();
  }

  revoke(door: Door, family: Family, src: string): Promise<void> {
    this.log.info({ event: "dry_run_revoke", door: door.name, src, command: ipsetRevokeLine(door.name, family, src) });
    return Promise.resolve();
  }

  countGrants(): Promise<Map<string, number>> {
    return Promise.resolve(new Map(this.config.doors.map((d) => [d.name, 0])));
  }

  remove(): Promise<void> {
    return Promise.resolve();
  }

  close(): void {}
}
