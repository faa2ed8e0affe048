/**
 * The kernel engine's programs (core/knock/compile.ts) in our table: per program and family a
 * chain `knock_DOOR_open_v4` (or _close_), entered from prerouting by the plan's knock entries, and
 * its sets `knock_DOOR_open_v4_first`, `_s1` .. `_sN`, `_recent` (dynamic: the packet path writes
 * them). A completed sequence writes the grant into the door's grant set itself and is reported on
 * NFLOG group KNOCK_NFLOG_GROUP, prefix "knockgate open DOOR" (or close), which the daemon reads.
 */
import { FAMILIES } from "../../../core/firewall/common.js";
import { BOGUS_SOURCE_PREFIXES } from "../../../core/packet/address.js";
import type { FirewallPlan, KnockEntry } from "../../../core/firewall/plan.js";
import type { KnockAction, KnockProgram, KnockSet } from "../../../core/knock/compile.js";
import type { SequenceKind } from "../../../core/knock/machine.js";
import { TcpFlag, type Family, type TcpFlagMatch } from "../../../core/types.js";
import { FirewallError } from "../../../core/errors.js";
import type { RunResult, Runner } from "../exec.js";
import { chainBody, countNftRules } from "./listing.js";
import { NFT_TABLE, nftSetName } from "./sets.js";

/** The NFLOG group completed sequences are reported on: "KG". */
export const KNOCK_NFLOG_GROUP = 0x4b47;
/**
 * How long the kernel holds the group's reports for a batch, in hundredths of a second (the
 * daemon's reader sets it: adapters/capture.ts openNflog). Not at once: a report sent as the last
 * knock passes wakes the daemon on the knocker's path, which a client on the same host paid for in
 * its opening time (docs/kernel-engine.md). 10 ms later the grant is long in place.
 */
export const KNOCK_NFLOG_FLUSH_HUNDREDTHS = 1;

/** The log prefix of a completion, which the daemon parses back (knockReport). */
export const knockPrefix = (kind: SequenceKind, door: string): string => `knockgate ${kind} ${door}`;

/** A completion's prefix as the daemon reads it from NFLOG; null: not ours. */
export function knockReport(prefix: string): { kind: SequenceKind; door: string } | null {
  const m = /^knockgate (open|close) ([A-Z0-9_]+)$/.exec(prefix);
  return m ? { kind: m[1] as SequenceKind, door: m[2] as string } : null;
}

export const knockChainName = (p: Pick<KnockProgram, "door" | "kind">, family: Family): string => `knock_${p.door}_${p.kind}_v${family}`;
/** What a set's name adds to its chain's: `first`, `s1` .. `sN`, `recent`, `unread`. */
const setSuffix = (set: KnockSet): string => (set.role === "stage" ? `s${set.stage}` : set.role);
const setOf = (p: Pick<KnockProgram, "door" | "kind">, family: Family, set: KnockSet): string => `${knockChainName(p, family)}_${setSuffix(set)}`;

/** A door's grants that the kernel made and no daemon has taken the report of (its `unread` set). */
export const unreadSetName = (door: string, family: Family): string => setOf({ door, kind: "open" }, family, { role: "unread" });

/** The doors whose grants the kernel makes: those with an open program. */
export const kernelGrantDoors = (plan: FirewallPlan): Set<string> => new Set(plan.knock.filter((p) => p.kind === "open").map((p) => p.door));

const saddr = (family: Family) => (family === 4 ? "ip saddr" : "ip6 saddr");
/** 0: none (a grant until the close sequence, and its mark). */
const timeout = (ms: number) => (ms > 0 ? ` timeout ${Math.max(1, Math.round(ms))}ms` : "");

function flagsText(match: TcpFlagMatch): string {
  const names = (bits: number) => Object.entries(TcpFlag).flatMap(([name, bit]) => (bits & bit ? [name] : []));
  const set = names(match.set);
  return `tcp flags & (${names(match.set | match.clear).join(" | ")}) == ${set.length > 0 ? set.join(" | ") : "0x0"}`;
}

/** The prerouting rule of one entry: into its program's chain. */
export function knockEntryText(entry: KnockEntry, plan: FirewallPlan, family: Family): string {
  const p = plan.knock[entry.program] as KnockProgram;
  const flags = entry.tcpFlags ? ` ${flagsText(entry.tcpFlags)}` : "";
  // Names as KNOCK_INTERFACE takes them ([A-Za-z0-9_.:@-]): nothing to escape in the quotes.
  const on = entry.interfaces ? ` iifname { ${entry.interfaces.map((n) => `"${n}"`).join(", ")} }` : "";
  return `meta nfproto ipv${family}${on} ${entry.proto} dport { ${entry.ports.join(", ")} }${flags} jump ${knockChainName(p, family)}`;
}

function actionText(p: KnockProgram, family: Family, a: KnockAction): string {
  const src = saddr(family);
  switch (a.op) {
    case "add":
    case "update":
      return `${a.op} @${setOf(p, family, a.set)} { ${src}${timeout(a.timeoutMs)} }`;
    case "delete":
      return `delete @${setOf(p, family, a.set)} { ${src} }`;
    case "grant":
      // Until the close sequence: no timeout. Else the door's OPEN_FOR, as the daemon writes it (whole seconds).
      return a.openForMs > 0 ? `update @${nftSetName(p.door, family)} { ${src} timeout ${Math.ceil(a.openForMs / 1000)}s }` : `add @${nftSetName(p.door, family)} { ${src} }`;
    case "revoke":
      return `delete @${nftSetName(p.door, family)} { ${src} }`;
    case "report":
      // No queue-threshold: the group's flush timeout (KNOCK_NFLOG_FLUSH_HUNDREDTHS) says when it goes.
      return `log prefix "${knockPrefix(p.kind, p.door)}" group ${KNOCK_NFLOG_GROUP}`;
  }
}

/** What `knockgate check` says of a program: the objects it makes and what a completion does, never its ports. */
export interface ProgramDescription {
  sequence: SequenceKind;
  /** One per family. */
  chains: string[];
  /** Rules per chain. */
  rules: number;
  /** Each chain's sets, by the suffix to its name. */
  sets: string[];
  /** Sources each set holds at most. */
  setSize: number;
  /** What a completed sequence does. */
  completion: string;
}

export function describeProgram(p: KnockProgram, openForMs: number): ProgramDescription {
  const grantSets = FAMILIES.map((f) => nftSetName(p.door, f)).join(" and ");
  const time = openForMs > 0 ? `for ${Math.ceil(openForMs / 1000)} s` : "until the close sequence";
  return {
    sequence: p.kind,
    chains: FAMILIES.map((f) => knockChainName(p, f)),
    // The refused-source rule comes first.
    rules: p.rules.length + 1,
    sets: p.sets.map(setSuffix),
    setSize: p.setSize,
    completion: `reported on NFLOG group ${KNOCK_NFLOG_GROUP}; ${p.kind === "open" ? `the source goes into ${grantSets} ${time}` : `the source leaves ${grantSets}`}`,
  };
}

/**
 * `text` with the knocks hidden on every line that names a knock chain or set (each port, and which
 * protocol it takes: both are the sequence), and every plan id. The knock rules hold the sequences,
 * and nft repeats a rule it could not take under its error message, which would carry them into the
 * error log and /readyz. The plan id digests the rules, ports included, and all else it digests can
 * be read around it: it would let the ports be guessed offline. The dry run's plan goes through here too.
 */
export function hideKnockSecrets(text: string): string {
  const knock = (line: string) => line.replace(/\b(?:tcp|udp) dport (?:\{[^}]*\}|\d+)/g, "… dport …").replace(/\bl4proto (?:tcp|udp) th dport \d+/g, "l4proto … th dport …");
  return text.replace(/^.*knock_.*$/gm, knock).replace(/knockgate plan [0-9a-f]+/g, "knockgate plan …");
}

/**
 * A Runner whose errors hide the knocks and plan ids (hideKnockSecrets): the stderr it returns, and the
 * message of a command it rejects (killed at its deadline or by a signal), which holds the stderr.
 */
export const hidingKnockSecrets =
  (run: Runner): Runner =>
  async (argv, input) => {
    let r: RunResult;
    try {
      r = await run(argv, input);
    } catch (err) {
      if (err instanceof FirewallError) throw new FirewallError(hideKnockSecrets(err.message), [], "");
      if (err instanceof Error) err.message = hideKnockSecrets(err.message);
      throw err;
    }
    return { ...r, stderr: hideKnockSecrets(r.stderr) };
  };

/** Every program's sets, both families. */
export const knockSetNames = (plan: FirewallPlan): string[] => plan.knock.flatMap((p) => FAMILIES.flatMap((family) => p.sets.map((s) => setOf(p, family, s))));

/**
 * What a terse listing of our table (`nft -t list table`) lacks of the programs' chains: one
 * missing, or flushed or changed by hand (other than its count of rules). Without them the door
 * opens for nobody, quietly: the reconcile puts them back. Named by chain only: the rules' text
 * holds the sequence's ports. (Their sets are among the table's: knockSetNames.)
 */
export function knockProblems(plan: FirewallPlan, listing: string): string[] {
  return plan.knock.flatMap((p) =>
    FAMILIES.flatMap((family) => {
      const chain = knockChainName(p, family);
      const body = chainBody(listing, chain);
      if (body === null) return [`chain inet ${NFT_TABLE} ${chain} missing`];
      return countNftRules(body) === p.rules.length + 1 ? [] : [`chain inet ${NFT_TABLE} ${chain} differs from the plan`];
    }),
  );
}

/** Every program's sets and chains, made if missing and the chains rewritten: lines of the plan's transaction. */
export function knockLines(plan: FirewallPlan): string[] {
  const t = `inet ${NFT_TABLE}`;
  const lines: string[] = [];
  for (const p of plan.knock) {
    for (const family of FAMILIES) {
      const type = family === 4 ? "ipv4_addr" : "ipv6_addr";
      for (const set of p.sets) lines.push(`add set ${t} ${setOf(p, family, set)} { type ${type}; flags dynamic,timeout; size ${p.setSize}; }`);
      const chain = knockChainName(p, family);
      lines.push(`add chain ${t} ${chain}`, `flush chain ${t} ${chain}`);
      // No knock can honestly come from these (core/packet/address.ts): they neither knock nor get a grant.
      lines.push(`add rule ${t} ${chain} ${saddr(family)} { ${BOGUS_SOURCE_PREFIXES[family].join(", ")} } return`);
      for (const rule of p.rules) {
        const when = [...rule.in.map((s) => `${saddr(family)} @${setOf(p, family, s)}`), ...(rule.port ? [`meta l4proto ${rule.port.proto} th dport ${rule.port.port}`] : [])];
        lines.push(`add rule ${t} ${chain} ${[...when, ...rule.then.map((a) => actionText(p, family, a)), "return"].join(" ")}`);
      }
    }
  }
  return lines;
}
