/**
 * The kernel engine's programs (core/knock/compile.ts) in our table: per program and family a
 * chain `knock_DOOR_open_v4` (or _close_), entered from prerouting by the plan's knock entries, and
 * its sets `knock_DOOR_open_v4_first`, `_s1` .. `_sN`, `_recent` (dynamic: the packet path writes
 * them). A completed sequence writes the grant into the door's grant set itself and is reported on
 * NFLOG group KNOCK_NFLOG_GROUP, prefix "knockgate open DOOR" (or close), which the daemon reads.
 */
import { FAMILIES } from "../../../core/firewall/common.js";
import type { FirewallPlan, KnockEntry } from "../../../core/firewall/plan.js";
import type { KnockAction, KnockProgram, KnockSet } from "../../../core/knock/compile.js";
import type { SequenceKind } from "../../../core/knock/machine.js";
import { TcpFlag, type Family, type TcpFlagMatch } from "../../../core/types.js";
import { NFT_TABLE, nftSetName } from "./sets.js";

/** The NFLOG group completed sequences are reported on: "KG". */
export const KNOCK_NFLOG_GROUP = 0x4b47;

/** The log prefix of a completion, which the daemon parses back (knockReport). */
export const knockPrefix = (kind: SequenceKind, door: string): string => `knockgate ${kind} ${door}`;

/** A completion's prefix as the daemon reads it from NFLOG; null: not ours. */
export function knockReport(prefix: string): { kind: SequenceKind; door: string } | null {
  const m = /^knockgate (open|close) ([A-Z0-9_]+)$/.exec(prefix);
  return m ? { kind: m[1] as SequenceKind, door: m[2] as string } : null;
}

export const knockChainName = (p: Pick<KnockProgram, "door" | "kind">, family: Family): string => `knock_${p.door}_${p.kind}_v${family}`;
const setOf = (p: KnockProgram, family: Family, set: KnockSet): string => `${knockChainName(p, family)}_${set.role === "stage" ? `s${set.stage}` : set.role}`;

const saddr = (family: Family) => (family === 4 ? "ip saddr" : "ip6 saddr");
const timeout = (ms: number) => `${Math.max(1, Math.round(ms))}ms`;

function flagsText(match: TcpFlagMatch): string {
  const names = (bits: number) => Object.entries(TcpFlag).flatMap(([name, bit]) => (bits & bit ? [name] : []));
  const set = names(match.set);
  return `tcp flags & (${names(match.set | match.clear).join(" | ")}) == ${set.length > 0 ? set.join(" | ") : "0x0"}`;
}

/** The prerouting rule of one entry: into its program's chain. */
export function knockEntryText(entry: KnockEntry, plan: FirewallPlan, family: Family): string {
  const p = plan.knock[entry.program] as KnockProgram;
  const flags = entry.tcpFlags ? ` ${flagsText(entry.tcpFlags)}` : "";
  return `meta nfproto ipv${family} ${entry.proto} dport { ${entry.ports.join(", ")} }${flags} jump ${knockChainName(p, family)}`;
}

function actionText(p: KnockProgram, family: Family, a: KnockAction): string {
  const src = saddr(family);
  switch (a.op) {
    case "add":
    case "update":
      return `${a.op} @${setOf(p, family, a.set)} { ${src} timeout ${timeout(a.timeoutMs)} }`;
    case "delete":
      return `delete @${setOf(p, family, a.set)} { ${src} }`;
    case "grant":
      // Until the close sequence: no timeout. Else the door's OPEN_FOR, as the daemon writes it (whole seconds).
      return a.openForMs > 0 ? `update @${nftSetName(p.door, family)} { ${src} timeout ${Math.ceil(a.openForMs / 1000)}s }` : `add @${nftSetName(p.door, family)} { ${src} }`;
    case "revoke":
      return `delete @${nftSetName(p.door, family)} { ${src} }`;
    case "report":
      return `log prefix "${knockPrefix(p.kind, p.door)}" group ${KNOCK_NFLOG_GROUP}`;
  }
}

/** Every program's sets and chains, made if missing and the chains rewritten: lines of the plan's transaction. */
export function knockLines(plan: FirewallPlan): string[] {
  const t = `inet ${NFT_TABLE}`;
  const lines: string[] = [];
  for (const p of plan.knock) {
    for (const family of FAMILIES) {
      const type = family === 4 ? "ipv4_addr" : "ipv6_addr";
      const sets: KnockSet[] = [{ role: "first" }, ...Array.from({ length: p.stages }, (_, i): KnockSet => ({ role: "stage", stage: i + 1 })), { role: "recent" }];
      for (const set of sets) lines.push(`add set ${t} ${setOf(p, family, set)} { type ${type}; flags dynamic,timeout; size ${p.setSize}; }`);
      const chain = knockChainName(p, family);
      lines.push(`add chain ${t} ${chain}`, `flush chain ${t} ${chain}`);
      for (const rule of p.rules) {
        const when = [...rule.in.map((s) => `${saddr(family)} @${setOf(p, family, s)}`), ...(rule.port ? [`meta l4proto ${rule.port.proto} th dport ${rule.port.port}`] : [])];
        lines.push(`add rule ${t} ${chain} ${[...when, ...rule.then.map((a) => actionText(p, family, a)), "return"].join(" ")}`);
      }
    }
  }
  return lines;
}
