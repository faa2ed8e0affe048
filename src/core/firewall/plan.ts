/**
 * Firewall rule planning: pure functions from configuration to the exact scripts the adapters feed
 * to iptables-restore, ipset and nft. Everything knockgate owns is named here.
 *
 * Shape of the protection (both backends): in mangle PREROUTING, i.e. before any DNAT, so host
 * services, Docker-published ports and Kubernetes hostPorts/NodePorts are covered alike:
 *   loopback -> leave alone; established/related -> leave alone (sessions outlive grants);
 *   source in the allow set -> leave alone; source in a door's grant set for that door's ports ->
 *   leave alone; anything else new to a protected port -> drop.
 */
import { createHash } from "node:crypto";
import type { Config, Family, Proto } from "../types.js";
import { doorPorts, type Destination, type OwnedTarget, type Target } from "../protection/targets.js";
import { KEPT_CHAIN, keptRecords, NFT_KEPT_CHAIN } from "./kept.js";
import { FAMILIES, NFT_TABLE, nftPutLine, nftSetElements, nftTakeOutLine, type KernelGrant } from "./common.js";
import { ipsetReplayName, IPSET_REPLAY_SPEC, iptablesSpaMatch, ipsetSpaName, ipsetSpaSetSpec, nftSpaMatch, nftSpaSetLines, signedDoors, spaSetSize } from "./spa-plan.js";

export const CHAIN = "KNOCKGATE";
export const NFT_CHAIN = "prerouting";
/** An always-empty set: listing it is how the long-lived nft session confirms a command. */
export const NFT_ACK_SET = "ack";
const SET_PREFIX = "knockgate-";

export function ipsetName(door: string, family: Family): string {
  return `${SET_PREFIX}${door}-${family}`;
}
/** Lower case cannot collide with a door set: door names are upper case. */
export function ipsetAllowName(family: Family): string {
  return `${SET_PREFIX}allow-${family}`;
}
export function isOurIpset(name: string): boolean {
  return name.startsWith(SET_PREFIX);
}
export function nftSetName(door: string, family: Family): string {
  return `door_${door}_v${family}`;
}
export function nftAllowName(family: Family): string {
  return `allow_v${family}`;
}

/** Targets that one rule can match together: one destination, one protocol, up to 15 ports (multiport's limit). */
interface TargetGroup {
  dest: Destination;
  proto: Proto;
  ports: number[];
}

/** Whether a destination is reached over `family`: every host address is reached over both. */
const inFamily = (dest: Destination, family: Family): boolean => dest.kind === "host" || dest.family === family;

/** Targets grouped by destination and protocol, in first-seen order, ports sorted, chunked for multiport. */
function groups(targets: readonly Target[], family: Family): TargetGroup[] {
  const byKey = new Map<string, { dest: Destination; proto: Proto; ports: Set<number> }>();
  for (const t of targets) {
    if (!inFamily(t.dest, family)) continue;
    const key = `${t.dest.kind === "host" ? "" : t.dest.address} ${t.dest.kind === "container" ? (t.dest.peers ?? "") : ""} ${t.port.proto}`;
    let g = byKey.get(key);
    if (!g) byKey.set(key, (g = { dest: t.dest, proto: t.port.proto, ports: new Set() }));
    g.ports.add(t.port.port);
  }
  return [...byKey.values()].flatMap((g) => chunks([...g.ports].sort((a, b) => a - b), 15).map((ports) => ({ dest: g.dest, proto: g.proto, ports })));
}

/** iptables' multiport takes at most 15 ports per rule. */
function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

const doorTargets = (targets: readonly Target[], door: string): Target[] => targets.filter((t) => t.door === door);
/** Signed grants name host ports: a container's own address is not theirs to open. */
const onHost = (t: Target): boolean => t.dest.kind !== "container";

/**
 * A packet to one group: the port first (the cheap test), then the destination. Only packets to
 * this host or to a labelled container are ever matched: forwarded traffic to anywhere else passes.
 */
function iptablesMatch(g: TargetGroup, family: Family): string {
  const ports = `-p ${g.proto} -m multiport --dports ${g.ports.join(",")}`;
  if (g.dest.kind === "host") return `${ports} -m addrtype --dst-type LOCAL`;
  return `-d ${g.dest.address}${family === 4 ? "/32" : "/128"} ${ports}`;
}

/** The rules of our chain, as arguments after "-A KNOCKGATE", without the plan marker. */
function iptablesRules(config: Config, targets: readonly Target[], family: Family): string[] {
  const rules = [
    "-i lo -j RETURN",
    "-m conntrack --ctstate RELATED,ESTABLISHED -j RETURN",
    `-m set --match-set ${ipsetAllowName(family)} src -j RETURN`,
  ];
  for (const door of config.doors) {
    const own = doorTargets(targets, door.name);
    for (const g of groups(own, family)) rules.push(`${iptablesMatch(g, family)} -m set --match-set ${ipsetName(door.name, family)} src -j RETURN`);
    if (door.spa) for (const g of groups(own.filter(onHost), family)) rules.push(`${iptablesMatch(g, family)} ${iptablesSpaMatch(door.name, family)} -j RETURN`);
  }
  // A container's own network reaches it as before, but only from where that network is routed
  // (rpfilter): the same source address arriving on any other interface is not let through.
  for (const g of groups(targets, family)) {
    if (g.dest.kind === "container" && g.dest.peers !== null) rules.push(`${iptablesMatch(g, family)} -s ${g.dest.peers} -m rpfilter -j RETURN`);
  }
  for (const g of groups(targets, family)) rules.push(`${iptablesMatch(g, family)} -j DROP`);
  return rules;
}

/**
 * A short digest of the planned rules. It rides on the chain as a rule comment, so a reconcile can
 * tell "our chain, as planned" from "flushed, edited or from another configuration" with one read,
 * without depending on how each iptables/nft version prints rules back.
 */
export function planId(config: Config, targets: readonly OwnedTarget[]): string {
  const text = JSON.stringify([FAMILIES.map((f) => iptablesRules(config, targets, f)), nftRules(config, targets), keptRecords(targets)]);
  return createHash("sha256").update(text).digest("hex").slice(0, 12);
}

export function planMarker(config: Config, targets: readonly OwnedTarget[]): string {
  return `knockgate plan ${planId(config, targets)}`;
}

export interface IptablesChainPlan {
  /** Input for `iptables-restore --noflush`: declaring the chain flushes it, so this rewrites it atomically. */
  restore: string;
  /** Number of rules the chain holds when it is as planned. */
  ruleCount: number;
}

export function iptablesChainPlan(config: Config, targets: readonly OwnedTarget[], family: Family): IptablesChainPlan {
  const rules = iptablesRules(config, targets, family);
  const marker = `-m comment --comment "${planMarker(config, targets)}" -j RETURN`;
  // The kept records ride in the IPv4 table only: one copy is enough to read back.
  const kept = family === 4 ? [`:${KEPT_CHAIN} - [0:0]`, ...keptRecords(targets).map((r) => `-A ${KEPT_CHAIN} -m comment --comment "${r}" -j RETURN`)] : [];
  const lines = ["*mangle", `:${CHAIN} - [0:0]`, ...kept, ...[...rules, marker].map((r) => `-A ${CHAIN} ${r}`), "COMMIT", ""];
  return { restore: lines.join("\n"), ruleCount: rules.length + 1 };
}

/** The jump from PREROUTING as `iptables -S` and `iptables-save` print it. */
export const JUMP_RULE = `-A PREROUTING -j ${CHAIN}`;

/** Entry count per set name, from `ipset list -t` (headers of every set, no members). */
export function ipsetSizes(terse: string): Map<string, number> {
  return perSet(terse, /^Number of entries: (\d+)/m, 0);
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

/** Elements of `nft -j list set ...`: a bare value has no timeout, an object says when it `expires`. */
export function nftElements(json: string): KernelGrant[] {
  return nftSetElements(json).flatMap(({ val, remainingMs }) => (typeof val === "string" ? [{ src: val, remainingMs }] : []));
}

/** Each set's `maxelem` from `ipset list -t`: how many entries its kernel set takes at most. */
export function ipsetMaxelems(terse: string): Map<string, number> {
  return perSet(terse, /^Header: .*\bmaxelem (\d+)/m);
}

/**
 * Entries a door's kernel set is made to hold: KNOCK_MAX_GRANTS, which the daemon enforces, plus
 * room for what is briefly there beyond it (a replaced grant whose delete is still queued behind
 * the add, an expired entry the kernel has not collected yet), so a bounded grant is never refused.
 */
export function grantSetSize(config: Config): number {
  return config.maxGrants + GRANT_SET_HEADROOM;
}
const GRANT_SET_HEADROOM = 1024;

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

const ipsetFamily = (family: Family) => (family === 4 ? "inet" : "inet6");

/**
 * `ipset restore -exist` input creating the sets named in `only` (default: every set); existing sets
 * (and their grants) are kept. Only missing ones should be named: -exist tolerates a set that
 * exists with the same parameters, not one with another size.
 */
export function ipsetCreateScript(config: Config, targets: readonly OwnedTarget[], only?: readonly string[]): string {
  const lines: [string, string][] = [];
  for (const family of FAMILIES) {
    lines.push([ipsetAllowName(family), allowSetSpec(family)]);
    for (const set of ipsetGrantSets(config, targets, family)) lines.push([set.name, set.spec]);
  }
  for (const door of signedDoors(config)) lines.push([ipsetReplayName(door.name), IPSET_REPLAY_SPEC]);
  return lines
    .filter(([name]) => only === undefined || only.includes(name))
    .map(([name, spec]) => `create ${name} ${spec}\n`)
    .join("");
}

/** Replaces the allow set's members atomically: fill a temporary set, swap, destroy. */
export function ipsetAllowScript(config: Config, family: Family): string {
  const name = ipsetAllowName(family);
  const members = config.allow.filter((c) => c.family === family).map((c) => c.text);
  return swapInScript(`${name}-new`, name, allowSetSpec(family), members);
}

/** What follows a set's name in `create`: its type and options. */
const allowSetSpec = (family: Family) => `hash:net family ${ipsetFamily(family)}`;
const grantSetSpec = (config: Config, family: Family) => `hash:ip family ${ipsetFamily(family)} timeout 0 maxelem ${grantSetSize(config)}`;

/** Replaces a set's content atomically: fill `tmp`, made with `spec`, swap it in, destroy the old content. */
function swapInScript(tmp: string, target: string, spec: string, members: readonly string[]): string {
  const lines = [`create ${tmp} ${spec}`, `flush ${tmp}`, ...members.map((m) => `add ${tmp} ${m}`), `swap ${tmp} ${target}`, `destroy ${tmp}`];
  return lines.join("\n") + "\n";
}

/** A set that holds grants: a door's address set, or a signed door's (address, port) set. */
export interface IpsetGrantSet {
  name: string;
  spec: string;
  maxelem: number;
}

/** Every grant set the configuration asks for, with the create spec and size it must have. */
export function ipsetGrantSets(config: Config, targets: readonly OwnedTarget[], only?: Family): IpsetGrantSet[] {
  const size = grantSetSize(config);
  const sets: IpsetGrantSet[] = [];
  for (const family of FAMILIES.filter((f) => only === undefined || f === only)) {
    for (const door of config.doors) {
      sets.push({ name: ipsetName(door.name, family), spec: grantSetSpec(config, family), maxelem: size });
      if (!door.spa) continue;
      const spaSize = spaSetSize(size, doorPorts(targets, door.name).length);
      sets.push({ name: ipsetSpaName(door.name, family), spec: ipsetSpaSetSpec(family, spaSize), maxelem: spaSize });
    }
  }
  return sets;
}

/** Set names are at most 31 characters and a door's may use them all: one shared temporary name. */
const IPSET_SWAP = "knockgate-swap";

/**
 * Rebuilds a grant set with `set.spec` (the size the configuration asks for), keeping every grant
 * with the time it has left (members as `ipset list` printed them): fill a temporary set, swap it
 * in (the iptables rules follow the name), destroy.
 */
export function ipsetRebuildScript(set: Pick<IpsetGrantSet, "name" | "spec">, grants: readonly KernelGrant[]): string {
  const members = grants.map((g) => `${g.src} timeout ${g.remainingMs === null ? 0 : Math.max(1, Math.ceil(g.remainingMs / 1000))}`);
  return swapInScript(IPSET_SWAP, set.name, set.spec, members);
}

/** Allow-set members as `ipset list` prints them (a /32 or /128 shows as the bare address). */
export function expectedAllowMembers(config: Config, family: Family): string[] {
  const full = family === 4 ? "/32" : "/128";
  return config.allow
    .filter((c) => c.family === family)
    .map((c) => (c.text.endsWith(full) ? c.text.slice(0, -full.length) : c.text))
    .sort();
}

/** A grant: `-exist` makes a repeated knock refresh the timeout instead of failing. */
export function ipsetGrantLine(door: string, family: Family, src: string, openForMs: number): string {
  return `add ${ipsetName(door, family)} ${src} timeout ${Math.round(openForMs / 1000)} -exist`;
}
export function ipsetRevokeLine(door: string, family: Family, src: string): string {
  return `del ${ipsetName(door, family)} ${src} -exist`;
}

const nftAddrType = (family: Family) => (family === 4 ? "ipv4_addr" : "ipv6_addr");
const nftSaddr = (family: Family) => (family === 4 ? "ip saddr" : "ip6 saddr");

/** As iptablesMatch, for the inet table: every host address through the fib, of both families. */
function nftMatch(g: TargetGroup): string {
  const ports = `${g.proto} dport { ${g.ports.join(", ")} }`;
  if (g.dest.kind === "host") return `${ports} fib daddr type local`;
  return `${nftDaddr(g.dest.family)} ${g.dest.address} ${ports}`;
}
const nftDaddr = (f: Family) => (f === 4 ? "ip daddr" : "ip6 daddr");

/** Each group once, with the family a source set of it is matched in (host groups: both). */
function nftGroups(targets: readonly Target[]): { g: TargetGroup; family: Family }[] {
  return FAMILIES.flatMap((family) => groups(targets, family).map((g) => ({ g, family })));
}

function nftRules(config: Config, targets: readonly Target[]): string[] {
  const rules = ['iifname "lo" accept', "ct state established,related accept"];
  for (const family of FAMILIES) rules.push(`${nftSaddr(family)} @${nftAllowName(family)} accept`);
  for (const door of config.doors) {
    const own = doorTargets(targets, door.name);
    for (const { g, family } of nftGroups(own)) rules.push(`${nftMatch(g)} ${nftSaddr(family)} @${nftSetName(door.name, family)} accept`);
    if (door.spa) for (const { g, family } of nftGroups(own.filter(onHost))) rules.push(`${nftMatch(g)} ${nftSpaMatch(door.name, family)} accept`);
  }
  for (const { g, family } of nftGroups(targets)) {
    if (g.dest.kind === "container" && g.dest.peers !== null) rules.push(`${nftMatch(g)} ${nftSaddr(family)} ${g.dest.peers} fib saddr . iif oif exists accept`);
  }
  // A host group appears once per family above; one drop covers both.
  for (const g of groups(targets, 4)) rules.push(`${nftMatch(g)} drop`);
  for (const g of groups(targets, 6).filter((g) => g.dest.kind !== "host")) rules.push(`${nftMatch(g)} drop`);
  return rules;
}

export interface NftPlan {
  /** One `nft -f` transaction: creates what is missing, rewrites the chain and the allow sets, keeps grants. */
  script: string;
  ruleCount: number;
}

export function nftPlan(config: Config, targets: readonly OwnedTarget[]): NftPlan {
  const t = `inet ${NFT_TABLE}`;
  const lines = [`add table ${t}`];
  for (const family of FAMILIES) {
    lines.push(`add set ${t} ${nftAllowName(family)} { type ${nftAddrType(family)}; flags interval; auto-merge; }`);
    lines.push(`flush set ${t} ${nftAllowName(family)}`);
    const members = config.allow.filter((c) => c.family === family).map((c) => c.text);
    if (members.length > 0) lines.push(`add element ${t} ${nftAllowName(family)} { ${members.join(", ")} }`);
    for (const door of config.doors) {
      lines.push(`add set ${t} ${nftSetName(door.name, family)} { type ${nftAddrType(family)}; flags timeout; size ${grantSetSize(config)}; }`);
    }
  }
  lines.push(...nftSpaSetLines(config, targets, grantSetSize(config)));
  lines.push(`add set ${t} ${NFT_ACK_SET} { type ipv4_addr; }`);
  // Priority -150 is "mangle": after conntrack (-200), before DNAT (-100).
  lines.push(`add chain ${t} ${NFT_CHAIN} { type filter hook prerouting priority -150; policy accept; }`);
  lines.push(`flush chain ${t} ${NFT_CHAIN}`);
  const rules = nftRules(config, targets);
  for (const rule of rules) lines.push(`add rule ${t} ${NFT_CHAIN} ${rule}`);
  lines.push(`add rule ${t} ${NFT_CHAIN} counter comment "${planMarker(config, targets)}"`);
  // No hook: no packet enters this chain; its comments are the kept records (kept.ts).
  lines.push(`add chain ${t} ${NFT_KEPT_CHAIN}`, `flush chain ${t} ${NFT_KEPT_CHAIN}`);
  for (const record of keptRecords(targets)) lines.push(`add rule ${t} ${NFT_KEPT_CHAIN} counter comment "${record}"`);
  return { script: lines.join("\n") + "\n", ruleCount: rules.length + 1 };
}

/**
 * Grants of one door and family as one nft transaction. `add` alone would not refresh the timeout of
 * an address that is already in the set, so: make sure it is there, remove it, add it back with a
 * fresh timeout.
 */
export function nftGrantLine(door: string, family: Family, srcs: readonly string[], openForMs: number): string {
  return nftPutLine(`inet ${NFT_TABLE} ${nftSetName(door, family)}`, srcs, openForMs > 0 ? Math.round(openForMs / 1000) : null);
}
export function nftRevokeLine(door: string, family: Family, srcs: readonly string[]): string {
  return nftTakeOutLine(`inet ${NFT_TABLE} ${nftSetName(door, family)}`, srcs);
}
