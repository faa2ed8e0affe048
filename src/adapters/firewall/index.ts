/** Picks the backend: KNOCK_FIREWALL, or for "auto" iptables+ipset when present, else nftables. */
import type { Logger } from "pino";
import type { Clock } from "../../core/clock.js";
import type { Config } from "../../core/types.js";
import type { OwnedTarget } from "../../core/protection/targets.js";
import { FirewallError } from "../../core/errors.js";
import { detectVariant, onPath, type IptablesVariant } from "./detect.js";
import { DryRunFirewall } from "./dry-run.js";
import { execRunner, patientRunner, type Runner } from "./exec.js";
import type { Firewall } from "./firewall.js";
import { planId } from "./plan-id.js";
import { IptablesFirewall, iptablesText, readKeptIptables, removeIptables } from "./iptables/firewall.js";
import { NftablesFirewall, nftablesText, readKeptNftables, removeNftables } from "./nftables/firewall.js";

export { countPerDoor, type Firewall } from "./firewall.js";

/**
 * The backend createFirewall builds; finding it only reads (PATH, and the iptables-*-save listings).
 * A dry run names the backend whose plan it logs: the one a real run would pick here.
 */
export type BackendChoice = { backend: "dry-run"; renders: "iptables" | "nftables" } | { backend: "iptables"; variant: IptablesVariant } | { backend: "nftables" };

/** Which backend `config` gets on this host; a FirewallError when the tools it needs are missing (a dry run needs none). */
export async function chooseBackend(config: Config, run: Runner = execRunner): Promise<BackendChoice> {
  const hasIptables = (await onPath("iptables")) && (await onPath("ipset"));
  const choice = config.firewall === "auto" ? (hasIptables ? "iptables" : "nftables") : config.firewall;
  if (config.dryRun) return { backend: "dry-run", renders: choice };
  if (choice === "iptables") {
    if (!hasIptables) throw new FirewallError("KNOCK_FIREWALL=iptables needs iptables and ipset on PATH", [], "");
    return { backend: "iptables", variant: await detectVariant(run) };
  }
  if (!(await onPath("nft"))) {
    const needs = config.firewall === "auto" ? "KNOCK_FIREWALL=auto found neither iptables with ipset nor nft on PATH: install one of them" : "KNOCK_FIREWALL=nftables needs nft on PATH";
    throw new FirewallError(needs, [], "");
  }
  return { backend: "nftables" };
}

/**
 * `choice`: chooseBackend's answer for `config`; `targets`: what to protect at the first install
 * (the configuration's ports and what Docker labels gave at start). Builds the backend; nothing is
 * touched until its first reconcile.
 */
export function createFirewall(config: Config, choice: BackendChoice, targets: readonly OwnedTarget[], log: Logger, clock: Clock, run: Runner = execRunner): Firewall {
  switch (choice.backend) {
    case "dry-run":
      return new DryRunFirewall({ config, targets, log, clock, text: choice.renders === "iptables" ? iptablesText(planId) : nftablesText(planId) });
    case "iptables":
      return new IptablesFirewall({ config, targets, planId, run, log }, choice.variant);
    case "nftables":
      return new NftablesFirewall({ config, targets, planId, run, log });
  }
}

/**
 * The kept records a previous run left in the kernel of `choice`'s backend (core/firewall/kept.ts):
 * what Docker labels gave it, to protect until the engine answers again.
 */
export function readKept(choice: BackendChoice, run: Runner = execRunner): Promise<string[]> {
  switch (choice.backend) {
    case "dry-run":
      return Promise.resolve([]);
    case "iptables":
      return readKeptIptables(run, choice.variant);
    case "nftables":
      return readKeptNftables(run);
  }
}

/**
 * `knockgate cleanup`: every object of ours in every backend present, whatever the configuration
 * says; transient failures are retried, each retry logged.
 */
export async function removeEverything(log: Logger, runOnce: Runner = execRunner): Promise<string[]> {
  const run = patientRunner(runOnce, log);
  const removed: string[] = [];
  if (await onPath("ipset")) {
    for (const variant of ["nft", "legacy"] as IptablesVariant[]) {
      if (await onPath(`iptables-${variant}`)) {
        await removeIptables(run, variant);
        removed.push(`iptables-${variant}`);
      }
    }
  }
  if (await onPath("nft")) {
    await removeNftables(run);
    removed.push("nftables");
  }
  return removed;
}
