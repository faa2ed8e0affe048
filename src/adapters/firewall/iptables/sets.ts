/**
 * The plan's sets (core/firewall/plan.ts) as ipsets, and the lines that change them: `ipset restore`
 * scripts, and `ipset -` lines for grants and the replay sets.
 *
 *   knockgate-allow-4|6   hash:net                      KNOCK_ALLOW
 *   knockgate-DOOR-4|6    hash:ip with timeouts         door-wide grants
 *   knockgate-DOOR:4|6    hash:ip,port with timeouts    grants of some ports, matched `src,dst`
 *   knockgate-DOOR:r      hash:ip family inet6          a signed door's datagrams accepted
 */
import type { Family, PortSpec } from "../../../core/types.js";
import type { KernelGrant } from "../../../core/firewall/common.js";
import { grantSets, type FirewallPlan, type PlannedSet } from "../../../core/firewall/plan.js";

const SET_PREFIX = "knockgate-";

/** 31 characters at most: `knockgate-` + a 19-character door + `-4` just fits. */
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
/** As the door's address set, `:4` in place of `-4`. */
export const ipsetSpaName = (door: string, family: Family): string => `${SET_PREFIX}${door}:${family}`;
/** `:r` fits ipset's 31 characters as `:4` does. */
export const ipsetReplayName = (door: string): string => `${SET_PREFIX}${door}:r`;

const ipsetFamily = (family: Family) => (family === 4 ? "inet" : "inet6");

/** A planned set's name. */
export function setName(set: PlannedSet): string {
  switch (set.kind) {
    case "allow":
      return ipsetAllowName(set.family);
    case "door":
      return ipsetName(set.door, set.family);
    case "ports":
      return ipsetSpaName(set.door, set.family);
    case "replay":
      return ipsetReplayName(set.door);
  }
}

/** What follows a set's name in `create`: its type and options ("timeout 0": entries take a timeout each). */
function setSpec(set: PlannedSet): string {
  switch (set.kind) {
    case "allow":
      return `hash:net family ${ipsetFamily(set.family)}`;
    case "door":
      return `hash:ip family ${ipsetFamily(set.family)} timeout 0 maxelem ${set.size}`;
    case "ports":
      return `hash:ip,port family ${ipsetFamily(set.family)} timeout 0 maxelem ${set.size}`;
    case "replay":
      return `hash:ip family inet6 timeout 0 maxelem ${set.size}`;
  }
}

/** Every set the plan needs, by name: the allow sets, the grant sets, the replay sets. */
export const ipsetNames = (plan: FirewallPlan): string[] =>
  [...plan.sets.filter((s) => s.kind === "allow"), ...grantSets(plan), ...plan.sets.filter((s) => s.kind === "replay")].map(setName);

/**
 * `ipset restore -exist` input creating the sets named in `only` (default: every set); existing sets
 * (and their grants) are kept. Only missing ones should be named: -exist tolerates a set that
 * exists with the same parameters, not one with another size.
 */
export function ipsetCreateScript(plan: FirewallPlan, only?: readonly string[]): string {
  return plan.sets
    .map((set) => [setName(set), setSpec(set)])
    .filter(([name]) => only === undefined || only.includes(name!))
    .map(([name, spec]) => `create ${name} ${spec}\n`)
    .join("");
}

/** Replaces the allow set's members atomically: fill a temporary set, swap, destroy. */
export function ipsetAllowScript(plan: FirewallPlan, family: Family): string {
  const set = allowSet(plan, family);
  return swapInScript(`${setName(set)}-new`, setName(set), setSpec(set), set.members);
}

const allowSet = (plan: FirewallPlan, family: Family) => plan.sets.find((s): s is Extract<PlannedSet, { kind: "allow" }> => s.kind === "allow" && s.family === family)!;

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

/** Every grant set the plan asks for, with the create spec and size it must have. */
export function ipsetGrantSets(plan: FirewallPlan, only?: Family): IpsetGrantSet[] {
  return grantSets(plan, only).map((set) => ({ name: setName(set), spec: setSpec(set), maxelem: set.size }));
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
export function expectedAllowMembers(plan: FirewallPlan, family: Family): string[] {
  const full = family === 4 ? "/32" : "/128";
  return allowSet(plan, family)
    .members.map((text) => (text.endsWith(full) ? text.slice(0, -full.length) : text))
    .sort();
}

/** A grant: `-exist` makes a repeated knock refresh the timeout instead of failing. */
export function ipsetGrantLine(door: string, family: Family, src: string, openForMs: number): string {
  return `add ${ipsetName(door, family)} ${src} timeout ${Math.round(openForMs / 1000)} -exist`;
}
export function ipsetRevokeLine(door: string, family: Family, src: string): string {
  return `del ${ipsetName(door, family)} ${src} -exist`;
}

const seconds = (ms: number) => Math.max(1, Math.round(ms / 1000));
const ipsetMember = (src: string, p: PortSpec) => `${src},${p.proto}:${p.port}`;

/** One line per port: a repeated grant refreshes the timeout (-exist). */
export function ipsetSpaGrantLines(door: string, family: Family, src: string, ports: readonly PortSpec[], openForMs: number): string[] {
  return ports.map((p) => `add ${ipsetSpaName(door, family)} ${ipsetMember(src, p)} timeout ${seconds(openForMs)} -exist`);
}
/** The ports the grant opened, each: what it holds goes, whatever the door protects now. */
export function ipsetSpaRevokeLines(door: string, family: Family, src: string, ports: readonly PortSpec[]): string[] {
  return ports.map((p) => `del ${ipsetSpaName(door, family)} ${ipsetMember(src, p)} -exist`);
}

/**
 * The lines that change a door's replay set: an add without -exist, which fails when the element
 * is there, and a delete that is fine when it is gone (the kernel may have expired it already).
 */
export const ipsetReplayAddLine = (door: string, element: string, ttlS: number): string => `add ${ipsetReplayName(door)} ${element} timeout ${ttlS}`;
export const ipsetReplayDelLine = (door: string, element: string): string => `del ${ipsetReplayName(door)} ${element} -exist`;

/** What ipset says when a replay add fails: the element was there (a replay), or the set is full. */
export function ipsetReplayFailure(stderr: string): "seen" | "full" | null {
  if (/already added/i.test(stderr)) return "seen";
  if (/is full/i.test(stderr)) return "full";
  return null;
}
