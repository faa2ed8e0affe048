/**
 * The plan (core/firewall/plan.ts) as one `nft -f` transaction: our table `inet knockgate` with its
 * sets, chain `prerouting` (hooked at mangle priority) and the hookless chain `kept`.
 */
import { FAMILIES } from "../../../core/firewall/common.js";
import type { FirewallPlan, Rule, TargetGroup } from "../../../core/firewall/plan.js";
import type { Family } from "../../../core/types.js";
import { knockEntryText, knockLines } from "./knock.js";
import { addSetLine, NFT_ACK_SET, NFT_TABLE, nftAllowName, nftSetName, nftSpaSetName } from "./sets.js";

export const NFT_CHAIN = "prerouting";
/** No hook: no packet enters this chain; its rules' comments are the kept records (core/firewall/kept.ts). */
export const NFT_KEPT_CHAIN = "kept";

const saddr = (family: Family) => (family === 4 ? "ip saddr" : "ip6 saddr");
const daddr = (family: Family) => (family === 4 ? "ip daddr" : "ip6 daddr");

/** A packet to one group: every host address through the fib, of both families. */
function match(g: TargetGroup): string {
  const ports = `${g.proto} dport { ${g.ports.join(", ")} }`;
  if (g.dest.kind === "host") return `${ports} fib daddr type local`;
  return `${daddr(g.dest.family)} ${g.dest.address} ${ports}`;
}

function ruleText(rule: Rule, family: Family, plan: FirewallPlan): string {
  switch (rule.kind) {
    case "knock":
      return knockEntryText(rule, plan, family);
    case "loopback":
      return 'iifname "lo" accept';
    case "established":
      return "ct state established,related accept";
    case "allow":
      return `${saddr(family)} @${nftAllowName(family)} accept`;
    case "door":
      return `${match(rule.match)} ${saddr(family)} @${nftSetName(rule.door, family)} accept`;
    case "ports":
      return `${match(rule.match)} ${saddr(family)} . meta l4proto . th dport @${nftSpaSetName(rule.door, family)} accept`;
    case "peers":
      return `${match(rule.match)} ${saddr(family)} ${rule.peers} fib saddr . iif oif exists accept`;
    case "drop":
      return `${match(rule.match)} drop`;
  }
}

/** A rule that names no family (a host group's drop, loopback, established) is one rule of the inet table for both. */
const eitherFamily = (rule: Rule): boolean => rule.kind === "loopback" || rule.kind === "established" || (rule.kind === "drop" && rule.match.dest.kind === "host");

/** The chain's rules, without the plan marker: each section's IPv4 rules, then its IPv6 ones. */
export function nftRules(plan: FirewallPlan): string[] {
  return plan.sections.flatMap((s) => FAMILIES.flatMap((f) => s[f].filter((r) => f === 4 || !eitherFamily(r)).map((r) => ruleText(r, f, plan))));
}

export interface NftPlan {
  /** One `nft -f` transaction: creates what is missing, rewrites the chain and the allow sets, keeps grants. */
  script: string;
  ruleCount: number;
}

/** `marker`: the plan's marker (core planMarker), the chain's last rule's comment. */
export function nftPlan(plan: FirewallPlan, marker: string): NftPlan {
  const t = `inet ${NFT_TABLE}`;
  const lines = [`add table ${t}`];
  for (const family of FAMILIES) {
    for (const set of plan.sets) {
      if (set.kind === "allow" && set.family === family) {
        lines.push(addSetLine(set), `flush set ${t} ${nftAllowName(family)}`);
        if (set.members.length > 0) lines.push(`add element ${t} ${nftAllowName(family)} { ${set.members.join(", ")} }`);
      } else if (set.kind === "door" && set.family === family) {
        lines.push(addSetLine(set));
      }
    }
  }
  // Each signed door's per-port sets, both families, then the replay sets.
  const ports = plan.sets.filter((s) => s.kind === "ports");
  for (const door of new Set(ports.map((s) => s.door))) lines.push(...ports.filter((s) => s.door === door).map(addSetLine));
  lines.push(...plan.sets.filter((s) => s.kind === "replay").map(addSetLine));
  lines.push(`add set ${t} ${NFT_ACK_SET} { type ipv4_addr; }`);
  // The knock chains before prerouting, which jumps to them.
  lines.push(...knockLines(plan));
  // Priority -150 is "mangle": after conntrack (-200), before DNAT (-100).
  lines.push(`add chain ${t} ${NFT_CHAIN} { type filter hook prerouting priority -150; policy accept; }`);
  lines.push(`flush chain ${t} ${NFT_CHAIN}`);
  const rules = nftRules(plan);
  for (const rule of rules) lines.push(`add rule ${t} ${NFT_CHAIN} ${rule}`);
  lines.push(`add rule ${t} ${NFT_CHAIN} counter comment "${marker}"`);
  lines.push(`add chain ${t} ${NFT_KEPT_CHAIN}`, `flush chain ${t} ${NFT_KEPT_CHAIN}`);
  for (const record of plan.kept) lines.push(`add rule ${t} ${NFT_KEPT_CHAIN} counter comment "${record}"`);
  return { script: lines.join("\n") + "\n", ruleCount: rules.length + 1 };
}
