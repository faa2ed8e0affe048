/** The dry-run firewall the daemon's unit tests run on (logging the iptables backend's words), and its listing split by kind. */
import type { Logger } from "pino";
import type { Clock } from "../../src/core/clock.js";
import type { Config, PortSpec } from "../../src/core/types.js";
import { DryRunFirewall } from "../../src/adapters/firewall/dry-run.js";
import type { Firewall, ListedGrant } from "../../src/adapters/firewall/firewall.js";
import { iptablesText } from "../../src/adapters/firewall/iptables/firewall.js";
import { planId } from "../../src/adapters/firewall/plan-id.js";
import type { OwnedTarget } from "../../src/core/protection/targets.js";
import { envTargets } from "./protection.js";

/** `targets`: the configuration's own ports unless given. */
export function dryRunFirewall(config: Config, log: Logger, clock: Clock, opts: { targets?: readonly OwnedTarget[]; replaySetSize?: number } = {}): DryRunFirewall {
  return new DryRunFirewall({ config, targets: opts.targets ?? envTargets(config), log, clock, text: iptablesText(planId), replaySetSize: opts.replaySetSize });
}

/** The door-wide grants the firewall lists. */
export const doorWide = async (firewall: Firewall): Promise<ListedGrant[]> => (await firewall.grants()).filter((g) => g.ports === null);
/** The grants of some ports the firewall lists (signed grants). */
export const perPort = async (firewall: Firewall): Promise<(ListedGrant & { ports: PortSpec[] })[]> =>
  (await firewall.grants()).filter((g): g is ListedGrant & { ports: PortSpec[] } => g.ports !== null);
