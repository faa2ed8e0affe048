/**
 * Which iptables the host uses. Rules must go where the host's other rules are, or Docker's and
 * ours would sit in different kernels' tables. Same idea as kube-proxy's iptables-wrapper: the
 * variant with more rules in it wins, nf_tables on a tie (Debian's default since bullseye).
 */
import { access } from "node:fs/promises";
import type { Family } from "../../core/types.js";
import type { Runner } from "./exec.js";

export type IptablesVariant = "nft" | "legacy";

export function chooseVariant(legacyRules: number, nftRules: number): IptablesVariant {
  return legacyRules > nftRules ? "legacy" : "nft";
}

export function countRuleLines(save: string): number {
  return save.split("\n").filter((l) => l.startsWith("-")).length;
}

/** The command that lists `table` of `family` in the variant's kernel tables: every reader of iptables rules runs this one. */
export function saveArgv(variant: IptablesVariant, table: string, family: Family = 4): string[] {
  return [`${family === 4 ? "iptables" : "ip6tables"}-${variant}-save`, "-t", table];
}

async function ruleCount(run: Runner, variant: IptablesVariant): Promise<number> {
  let total = 0;
  for (const tool of [`iptables-${variant}-save`, `ip6tables-${variant}-save`]) {
    try {
      const r = await run([tool]);
      if (r.code === 0) total += countRuleLines(r.stdout);
    } catch {
      // A variant whose tools are absent has no rules on this host.
    }
  }
  return total;
}

export async function detectVariant(run: Runner): Promise<IptablesVariant> {
  return chooseVariant(await ruleCount(run, "legacy"), await ruleCount(run, "nft"));
}

export async function onPath(tool: string): Promise<boolean> {
  for (const dir of (process.env["PATH"] ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      await access(`${dir}/${tool}`);
      return true;
    } catch {
      // try the next directory
    }
  }
  return false;
}
