/** What either backend keeps of what it protects: the targets, their plan and the plan's marker. */
import { firewallPlan, planMarker, type FirewallPlan } from "../../core/firewall/plan.js";
import type { OwnedTarget } from "../../core/protection/targets.js";
import type { Config } from "../../core/types.js";
import type { BackendOptions, PlanId } from "./firewall.js";

export class Planned {
  readonly config: Config;
  /** The marker is made with the plan: each reconcile pass reads it, and the plan changes only with the targets. */
  private current: { targets: readonly OwnedTarget[]; plan: FirewallPlan; marker: string };

  constructor(
    { config, targets }: Pick<BackendOptions, "config" | "targets">,
    private readonly planId: PlanId,
  ) {
    this.config = config;
    this.current = this.planFor(targets);
  }

  get targets(): readonly OwnedTarget[] {
    return this.current.targets;
  }

  get plan(): FirewallPlan {
    return this.current.plan;
  }

  /** The comment the plan's chain ends with: "knockgate plan ID". */
  get marker(): string {
    return this.current.marker;
  }

  /** Protects `targets` from now on. */
  retarget(targets: readonly OwnedTarget[]): void {
    this.current = this.planFor(targets);
  }

  private planFor(targets: readonly OwnedTarget[]): { targets: readonly OwnedTarget[]; plan: FirewallPlan; marker: string } {
    const plan = firewallPlan(this.config, targets);
    return { targets, plan, marker: planMarker(this.planId(plan)) };
  }
}
