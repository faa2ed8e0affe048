/**
 * The plan's rules (core/firewall/plan.ts) as iptables rules: chain KNOCKGATE in the mangle table of
 * each family, jumped to first from PREROUTING, and the kept records in chain KNOCKGATE-KEPT.
 */
import type { Family } from "../../../core/types.js";
import { familyRules, type FirewallPlan, type KnockEntry, type Rule, type TargetGroup } from "../../../core/firewall/plan.js";
import { ipsetAllowName, ipsetName, ipsetSpaName } from "./sets.js";

export const CHAIN = "KNOCKGATE";
/** No rule jumps here: its rules' comments are the kept records (core/firewall/kept.ts). */
export const KEPT_CHAIN = "KNOCKGATE-KEPT";

/** The jump from PREROUTING as `iptables -S` and `iptables-save` print it. */
export const JUMP_RULE = `-A PREROUTING -j ${CHAIN}`;

/**
 * A packet to one group: the port first (the cheap test), then the destination. Only packets to
 * this host or to a labelled container are ever matched: forwarded traffic to anywhere else passes.
 */
function match(g: TargetGroup, family: Family): string {
  const ports = `-p ${g.proto} -m multiport --dports ${g.ports.join(",")}`;
  if (g.dest.kind === "host") return `${ports} -m addrtype --dst-type LOCAL`;
  return `-d ${g.dest.address}${family === 4 ? "/32" : "/128"} ${ports}`;
}

function ruleText(rule: Exclude<Rule, KnockEntry>, family: Family): string {
  switch (rule.kind) {
    case "loopback":
      return "-i lo -j RETURN";
    case "established":
      return "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN";
    case "allow":
      return `-m set --match-set ${ipsetAllowName(family)} src -j RETURN`;
    case "door":
      return `${match(rule.match, family)} -m set --match-set ${ipsetName(rule.door, family)} src -j RETURN`;
    case "ports":
      // The source and the destination port in the door's per-port set.
      return `${match(rule.match, family)} -m set --match-set ${ipsetSpaName(rule.door, family)} src,dst -j RETURN`;
    case "peers":
      // Only from where that network is routed (rpfilter): the same source address arriving on any
      // other interface is not let through.
      return `${match(rule.match, family)} -s ${rule.peers} -m rpfilter -j RETURN`;
    case "drop":
      return `${match(rule.match, family)} -j DROP`;
  }
}

/** The rules of our chain, as arguments after "-A KNOCKGATE", without the plan marker. */
export function iptablesRules(plan: FirewallPlan, family: Family): string[] {
  // The kernel engine's entries are nftables' only: the configuration refuses it with iptables.
  return familyRules(plan, family).flatMap((r) => (r.kind === "knock" ? [] : [ruleText(r, family)]));
}

export interface IptablesChainPlan {
  /** Input for `iptables-restore --noflush`: declaring the chain flushes it, so this rewrites it atomically. */
  restore: string;
  /** Number of rules the chain holds when it is as planned. */
  ruleCount: number;
}

/** `marker`: the plan's marker (core planMarker), the chain's last rule. */
export function iptablesChainPlan(plan: FirewallPlan, family: Family, marker: string): IptablesChainPlan {
  const rules = iptablesRules(plan, family);
  const last = `-m comment --comment "${marker}" -j RETURN`;
  // The kept records ride in the IPv4 table only: one copy is enough to read back.
  const kept = family === 4 ? [`:${KEPT_CHAIN} - [0:0]`, ...plan.kept.map((r) => `-A ${KEPT_CHAIN} -m comment --comment "${r}" -j RETURN`)] : [];
  const lines = ["*mangle", `:${CHAIN} - [0:0]`, ...kept, ...[...rules, last].map((r) => `-A ${CHAIN} ${r}`), "COMMIT", ""];
  return { restore: lines.join("\n"), ruleCount: rules.length + 1 };
}
