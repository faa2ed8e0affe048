/** What the backends render for a configuration and its targets, marker included, as they build it. */
import type { OwnedTarget } from "../../src/core/protection/targets.js";
import type { Family } from "../../src/core/types.js";
import { firewallPlan, planMarker, type FirewallPlan, type PlanConfig } from "../../src/core/firewall/plan.js";
import { planId } from "../../src/adapters/firewall/plan-id.js";
import { iptablesChainPlan, type IptablesChainPlan } from "../../src/adapters/firewall/iptables/rules.js";
import { nftPlan, type NftPlan } from "../../src/adapters/firewall/nftables/rules.js";
import { envTargets } from "./protection.js";

type Planned = PlanConfig;

/** The plan of `config` (by default without Docker: its doors' own ports). */
export const planOf = (config: Planned, targets: readonly OwnedTarget[] = envTargets(config)): FirewallPlan => firewallPlan(config, targets);
export const planIdOf = (config: Planned, targets?: readonly OwnedTarget[]): string => planId(planOf(config, targets));
export const markerOf = (config: Planned, targets?: readonly OwnedTarget[]): string => planMarker(planIdOf(config, targets));

export function iptablesChain(config: Planned, family: Family, targets?: readonly OwnedTarget[]): IptablesChainPlan {
  return iptablesChainPlan(planOf(config, targets), family, markerOf(config, targets));
}
export function nftScript(config: Planned, targets?: readonly OwnedTarget[]): NftPlan {
  return nftPlan(planOf(config, targets), markerOf(config, targets));
}

/**
 * Doors of the kernel engine for the render fixture (test/fixtures/firewall/rendered.txt) and the
 * listing nft gave of them (kernel-listing.txt): a TCP sequence, and a mixed one with flags and a
 * close sequence.
 */
export const KERNEL_DOORS: Readonly<Record<string, string>> = {
  KNOCK_ENGINE: "kernel",
  KNOCK_DOOR_SSH_SEQUENCE: "7000,8000,9000",
  KNOCK_DOOR_WEB_SEQUENCE: "7001,8001:udp,9001",
  KNOCK_DOOR_WEB_CLOSE_SEQUENCE: "9001,8001:udp,7001",
  KNOCK_DOOR_WEB_TCPFLAGS: "syn,ack",
  KNOCK_DOOR_WEB_SEQ_TIMEOUT: "10",
  KNOCK_DOOR_WEB_PORTS: "443",
};
