/** What either backend keeps of what it protects: the targets, their plan and the plan's marker. */
import { firewallPlan, planMarker, type FirewallPlan } from "../../core/firewall/plan.js";
import type { OwnedTarget } from "../../core/protection/targets.js";
import type { Config } from "../../core/types.js";
import type { BackendOptions, PlanId } from "./firewall.js";

export class Planned {
  readonly config: Config;
  private current: { targets: readonly OwnedTarget[]; plan: FirewallPlan };

  constructor(
    { config, targets }: Pick<BackendOptions, "config" | "targets">,
    private readonly planId: PlanId,
  ) {
    this.config = config;
    this.current = { targets, plan: firewallPlan(config, targets) };
  }

  get targets(): readonly OwnedTarget[] {
    return this.current.targets;
  }

  get plan(): FirewallPlan {
    return this.current.plan;
  }

  /** The comment the plan's chain ends with: "knockgate plan ID". */
  get marker(): string {
    return planMarker(this.planId(this.current.plan));
  }

  /** Protects `targets` from now on. */
  retarget(targets: readonly OwnedTarget[]): void {
    this.current = { targets, plan: firewallPlan(this.config, targets) };
  }
}
