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
import { knockLines } from "./nftables/knock.js";
import { nftRules } from "./nftables/rules.js";

export const planId: PlanId = (plan) => {
  // The kernel engine's knock chains too: the chain's jumps name only the ports and flags, so a new
  // SEQ_TIMEOUT, OPEN_FOR or report statement would otherwise find the chain as planned and leave
  // the old rules in the kernel. Without knock chains (capture mode) the id is what it was.
  const knock = knockLines(plan);
  const text = JSON.stringify([FAMILIES.map((f) => iptablesRules(plan, f)), nftRules(plan), plan.kept, ...(knock.length > 0 ? [knock] : [])]);
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
};
