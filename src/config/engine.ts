/**
 * KNOCK_ENGINE: capture (the daemon recognises knocks in captured packets) or kernel (the door
 * sequences compile to nftables rules, core/knock/compile.ts). Problems join the rest of the
 * configuration's, so they are all reported at once.
 */
import type { ConfigProblem } from "../core/errors.js";
import { kernelRefusal } from "../core/knock/compile.js";
import type { Door, FirewallChoice, KnockEngine } from "../core/types.js";

export const ENGINE_VARIABLES = ["KNOCK_ENGINE"] as const;
export const DEFAULT_ENGINE = "capture" satisfies KnockEngine;

/**
 * The engine, and the firewall it leaves: `auto` becomes nftables with the kernel engine, which
 * iptables cannot carry. Each door the kernel cannot run exactly is a problem of its own.
 */
export function parseEngine(env: Readonly<Record<string, string | undefined>>, firewall: FirewallChoice, doors: readonly Door[], problems: ConfigProblem[]): { engine: KnockEngine; firewall: FirewallChoice } {
  const engine = env["KNOCK_ENGINE"] ?? DEFAULT_ENGINE;
  if (engine !== "capture" && engine !== "kernel") {
    problems.push({ variable: "KNOCK_ENGINE", message: `"${engine}" is not one of capture, kernel` });
    return { engine: DEFAULT_ENGINE, firewall };
  }
  if (engine === "capture") return { engine, firewall };
  if (firewall === "iptables") problems.push({ variable: "KNOCK_ENGINE", message: "kernel needs nftables, and KNOCK_FIREWALL is iptables; set KNOCK_FIREWALL=nftables (or auto), or KNOCK_ENGINE=capture" });
  for (const door of doors) {
    const refused = kernelRefusal(door);
    if (refused) problems.push({ variable: `KNOCK_DOOR_${door.name}_SEQUENCE`, message: `${refused}; shorten it, or use KNOCK_ENGINE=capture` });
  }
  // Set on purpose, it would be silently not applied: the kernel's sets count sources, not networks.
  if (env["KNOCK_MAX_TRACKED_PER_PREFIX"] !== undefined) {
    problems.push({ variable: "KNOCK_MAX_TRACKED_PER_PREFIX", message: "the kernel engine cannot apply it: its sets hold at most KNOCK_MAX_TRACKED sources, whatever their network; unset it, or use KNOCK_ENGINE=capture" });
  }
  return { engine, firewall: "nftables" };
}
