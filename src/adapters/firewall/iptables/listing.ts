/** What iptables-save and ipset list print, read back: our chain and jumps, sets, members, kept records. */
import type { KernelGrant } from "../../../core/firewall/common.js";
import type { PortSpec } from "../../../core/types.js";
import type { KernelPortGrant } from "../listed.js";
import { CHAIN, JUMP_RULE, KEPT_CHAIN } from "./rules.js";

/**
 * Our objects in `iptables-save -t mangle` output: is the chain there, its rules, how many jumps,
 * and the first rule of PREROUTING (ours must be it: an ACCEPT above it would bypass the doors).
 */
export function mangleView(save: string): { chain: boolean; rules: string[]; jumps: number; firstPrerouting: string | undefined } {
  const lines = save.split("\n");
  return {
    chain: lines.some((l) => l.startsWith(`:${CHAIN} `)),
    rules: lines.filter((l) => l.startsWith(`-A ${CHAIN} `)),
    jumps: lines.filter((l) => l === JUMP_RULE).length,
    firstPrerouting: lines.find((l) => l.startsWith("-A PREROUTING ")),
  };
}

/** The comments of KNOCKGATE-KEPT's rules in `iptables-save` output. */
export function keptComments(save: string): string[] {
  return save.split("\n").flatMap((l) => {
    const m = l.startsWith(`-A ${KEPT_CHAIN} `) ? /--comment (?:"([^"]*)"|(\S+))/.exec(l) : null;
    return m ? [m[1] ?? m[2] ?? ""] : [];
  });
}

/** Entry count per set name, from `ipset list -t` (headers of every set, no members). */
export function ipsetSizes(terse: string): Map<string, number> {
  return perSet(terse, /^Number of entries: (\d+)/m, 0);
}

/** Each set's `maxelem` from `ipset list -t`: how many entries its kernel set takes at most. */
export function ipsetMaxelems(terse: string): Map<string, number> {
  return perSet(terse, /^Header: .*\bmaxelem (\d+)/m);
}

/** One number per set from `ipset list -t`, read from each set's block; sets without it get `missing` (or none). */
function perSet(terse: string, field: RegExp, missing?: number): Map<string, number> {
  const values = new Map<string, number>();
  for (const block of terse.split(/\n(?=Name: )/)) {
    const name = /^Name: (\S+)/m.exec(block)?.[1];
    const value = field.exec(block)?.[1];
    if (name === undefined) continue;
    if (value !== undefined) values.set(name, Number(value));
    else if (missing !== undefined) values.set(name, missing);
  }
  return values;
}

/** Members of `ipset list NAME`; "timeout 0" (or none) is an entry without expiry. */
export function ipsetMembers(listing: string): KernelGrant[] {
  const at = listing.indexOf("Members:\n");
  if (at === -1) return [];
  const members: KernelGrant[] = [];
  for (const line of listing.slice(at + "Members:\n".length).split("\n")) {
    const [src, key, value] = line.trim().split(" ");
    if (!src) continue;
    const seconds = key === "timeout" ? Number(value) : 0;
    members.push({ src, remainingMs: seconds > 0 ? seconds * 1000 : null });
  }
  return members;
}

/** Members of a per-port set: `198.18.0.2,tcp:22` or `fd00::2,udp:53`, with the time left. */
export function ipsetSpaMembers(members: readonly KernelGrant[]): KernelPortGrant[] {
  return members.flatMap((m) => {
    const match = /^(.+),(tcp|udp):(\d+)$/.exec(m.src);
    return match ? [{ src: match[1]!, remainingMs: m.remainingMs, port: { proto: match[2] as PortSpec["proto"], port: Number(match[3]) } }] : [];
  });
}
