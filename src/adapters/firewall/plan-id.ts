/**
 * A plan's id: a short digest of the planned rules. It rides on the chain as a rule comment, so a
 * reconcile can tell "our chain, as planned" from "flushed, edited or from another configuration"
 * with one read, without depending on how each iptables/nft version prints rules back.
 *
 * It digests both backends' rules and the kept records, as every earlier version's id did: an
 * upgrade that renders the same rules finds its chain as planned and rewrites nothing. So it lives
 * here, the one module beside index.ts that knows both backends, and reaches each backend from
 * createFirewall (neither backend imports the other).
 */
import { createHash } from "node:crypto";
import { FAMILIES } from "../../core/firewall/common.js";
import type { PlanId } from "./firewall.js";
import { iptablesRules } from "./iptables/rules.js";
import { nftRules } from "./nftables/rules.js";

export const planId: PlanId = (plan) => {
  const text = JSON.stringify([FAMILIES.map((f) => iptablesRules(plan, f)), nftRules(plan), plan.kept]);
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
};
