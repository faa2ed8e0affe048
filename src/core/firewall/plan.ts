/**
 * The firewall plan as data: what is protected and how, whichever backend installs it (the
 * backends in adapters/firewall render it in their tools' syntax). Everything knockgate owns is
 * described here; the kernel objects' names are each backend's.
 *
 * Shape of the protection (both backends): in the prerouting hook at mangle priority, i.e. before
 * any DNAT, so host services, Docker-published ports and Kubernetes hostPorts/NodePorts are covered
 * alike: loopback -> leave alone; established/related -> leave alone (sessions outlive grants);
 * source in the allow set -> leave alone; source in a door's grant set for that door's targets ->
 * leave alone; a container's own network from where it is routed -> leave alone; anything else new
 * to a protected target -> drop.
 */
import type { Config, Door, Family, Proto, TcpFlagMatch } from "../types.js";
import { compileDoors, type KnockProgram } from "../knock/compile.js";
import { doorPorts, type Destination, type OwnedTarget, type Target } from "../protection/targets.js";
import { keptRecords } from "./kept.js";
import { FAMILIES } from "./common.js";
import { REPLAY_SET_SIZE, signedDoors, spaSetSize } from "./spa-plan.js";

/** Targets that one rule matches together: one destination, one protocol, up to 15 ports (iptables multiport's limit). */
export interface TargetGroup {
  dest: Destination;
  proto: Proto;
  ports: number[];
}

/** One rule, in order: what it lets through (or, last, drops). */
export type Rule =
  | { kind: "loopback" }
  | { kind: "established" }
  /** Sources in the family's allow set (KNOCK_ALLOW). */
  | { kind: "allow" }
  /** Sources in the door's address set, to the group: the door-wide grants. */
  | { kind: "door"; door: string; match: TargetGroup }
  /** (source, protocol, destination port) in the door's per-port set, to the group: grants of some ports. */
  | { kind: "ports"; door: string; match: TargetGroup }
  /** A container's own network (`peers`), from where that network is routed (reverse path). */
  | { kind: "peers"; match: TargetGroup; peers: string }
  | { kind: "drop"; match: TargetGroup }
  | KnockEntry;

/**
 * The kernel engine's entry into a knock program (FirewallPlan.knock, by index): knocks of the
 * family on these ports, TCP ones with these flags, go through it. Only nftables renders it.
 */
export interface KnockEntry {
  kind: "knock";
  program: number;
  proto: Proto;
  ports: number[];
  /** null: UDP, or no flag condition. */
  tcpFlags: TcpFlagMatch | null;
  /** KNOCK_INTERFACE's names, which the knock must come in on; null: any interface. */
  interfaces: readonly string[] | null;
}

/**
 * The rules in sections, each with its rules for either family. A table per family (iptables)
 * holds every section's rules of its family; one table for both (nftables) takes the sections in
 * order, each with both families' rules. Sections: loopback, established, allow, per door its
 * grants and its per-port grants, peers, drops.
 */
export type RuleSection = Readonly<Record<Family, readonly Rule[]>>;

/**
 * A set the plan needs. Every one but the allow sets holds entries with a timeout each (the kernel
 * expires them); `size` is the most entries it takes.
 */
export type PlannedSet =
  /** KNOCK_ALLOW's networks of the family, as configured. */
  | { kind: "allow"; family: Family; members: string[] }
  /**
   * A door's door-wide grants: source addresses. `dynamic`: the kernel engine's rules write it from
   * the packet path, and the kernel then flags it so; it is declared so, since declaring an existing
   * set with other flags fails.
   */
  | { kind: "door"; door: string; family: Family; size: number; dynamic: boolean }
  /** A signed door's grants of some ports: (source, protocol, port). */
  | { kind: "ports"; door: string; family: Family; size: number }
  /** A signed door's datagrams accepted (core/firewall/spa-plan.ts): digests written as IPv6 addresses. */
  | { kind: "replay"; door: string; size: number };

export interface FirewallPlan {
  sections: RuleSection[];
  /** Per family: the allow set, then each door's grant sets; then each signed door's replay set. */
  sets: PlannedSet[];
  /** What labels gave, kept in the kernel across a restart (kept.ts). */
  kept: string[];
  /** KNOCK_ENGINE=kernel: each door sequence's program (core/knock/compile.ts); none for capture. */
  knock: KnockProgram[];
}

/** What the plan reads of the configuration; without an engine, capture's. */
export type PlanConfig = Pick<Config, "doors" | "allow" | "maxGrants"> & ({ engine?: "capture" } | Pick<Config, "engine" | "maxTracked" | "interfaces">);

export function firewallPlan(config: PlanConfig, targets: readonly OwnedTarget[]): FirewallPlan {
  const kernel = config.engine === "kernel";
  const knock = kernel ? compileDoors(config.doors, config.maxTracked) : [];
  return { sections: ruleSections(config.doors, targets, knock, kernel ? config.interfaces : null), sets: plannedSets(config, targets), kept: keptRecords(targets), knock };
}

/** Every rule of `family`'s table, in order. */
export const familyRules = (plan: FirewallPlan, family: Family): Rule[] => plan.sections.flatMap((s) => s[family]);

/** Grant sets of `plan` (door-wide and per-port), in the plan's order; of one family if asked. */
export const grantSets = (plan: FirewallPlan, family?: Family): Extract<PlannedSet, { kind: "door" | "ports" }>[] =>
  plan.sets.flatMap((s) => ((s.kind === "door" || s.kind === "ports") && (family === undefined || s.family === family) ? [s] : []));

/** The rule text that makes a plan's id: "knockgate plan ID" rides on the chain as a comment. */
export const planMarker = (id: string): string => `knockgate plan ${id}`;

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

function chunks<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** Grants of some ports name host ports: a container's own address is not theirs to open. */
const onHost = (t: Target): boolean => t.dest.kind !== "container";

/** One section: `rules(family)` for each family. */
const section = (rules: (family: Family) => Rule[]): RuleSection => ({ 4: rules(4), 6: rules(6) });

/** The interfaces the kernel engine's rules take knocks on (KNOCK_INTERFACE); null: every one. */
export const knockInterfaces = (interfaces: readonly string[] | null): readonly string[] | null => (interfaces === null || interfaces.includes("any") ? null : interfaces);

/**
 * Each program's entries, per protocol: right after loopback, so that every knock reaches them,
 * whatever follows. With KNOCK_INTERFACE set, only knocks coming in on its interfaces, as the
 * capture engine sees only those.
 */
function knockEntries(knock: readonly KnockProgram[], interfaces: readonly string[] | null): KnockEntry[] {
  const on = knockInterfaces(interfaces);
  return knock.flatMap((p, program) =>
    (["tcp", "udp"] as const).flatMap((proto): KnockEntry[] => {
      const ports = p.ports.filter((q) => q.proto === proto).map((q) => q.port);
      const flags = proto === "tcp" && (p.tcpFlags.set | p.tcpFlags.clear) !== 0 ? p.tcpFlags : null;
      return ports.length > 0 ? [{ kind: "knock", program, proto, ports, tcpFlags: flags, interfaces: on }] : [];
    }),
  );
}

function ruleSections(doors: readonly Door[], targets: readonly Target[], knock: readonly KnockProgram[], interfaces: readonly string[] | null): RuleSection[] {
  const sections: RuleSection[] = [section(() => [{ kind: "loopback" }])];
  if (knock.length > 0) sections.push(section(() => knockEntries(knock, interfaces)));
  sections.push(section(() => [{ kind: "established" }]), section(() => [{ kind: "allow" }]));
  for (const door of doors) {
    const own = targets.filter((t) => t.door === door.name);
    sections.push(section((f) => groups(own, f).map((match) => ({ kind: "door", door: door.name, match }))));
    if (door.spa) sections.push(section((f) => groups(own.filter(onHost), f).map((match) => ({ kind: "ports", door: door.name, match }))));
  }
  sections.push(
    section((f) => groups(targets, f).flatMap((match): Rule[] => (match.dest.kind === "container" && match.dest.peers !== null ? [{ kind: "peers", match, peers: match.dest.peers }] : []))),
    section((f) => groups(targets, f).map((match) => ({ kind: "drop", match }))),
  );
  return sections;
}

/**
 * Entries a door's kernel set is made to hold: KNOCK_MAX_GRANTS, which the daemon enforces, plus
 * room for what is briefly there beyond it (a replaced grant whose delete is still queued behind
 * the add, an expired entry the kernel has not collected yet), so a bounded grant is never refused.
 */
export function grantSetSize(config: Pick<Config, "maxGrants">): number {
  return config.maxGrants + GRANT_SET_HEADROOM;
}
const GRANT_SET_HEADROOM = 1024;

function plannedSets(config: PlanConfig, targets: readonly OwnedTarget[]): PlannedSet[] {
  const size = grantSetSize(config);
  const sets: PlannedSet[] = [];
  for (const family of FAMILIES) {
    sets.push({ kind: "allow", family, members: config.allow.filter((c) => c.family === family).map((c) => c.text) });
    for (const door of config.doors) {
      sets.push({ kind: "door", door: door.name, family, size, dynamic: config.engine === "kernel" });
      if (door.spa) sets.push({ kind: "ports", door: door.name, family, size: spaSetSize(size, doorPorts(targets, door.name).length) });
    }
  }
  for (const door of signedDoors(config)) sets.push({ kind: "replay", door: door.name, size: REPLAY_SET_SIZE });
  return sets;
}
