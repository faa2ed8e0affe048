/**
 * What Docker labels ask knockgate to protect, as claims (core/protection/targets.ts decides them):
 * the host ports a labelled container publishes, and, while it runs, its own addresses on its
 * networks. Pure, so the watcher's decisions are tested without an engine.
 */
import { canonicalAddress, decideProtection, envClaims, hostDestination, networkOf, targetText, type Claim, type Conflict, type Protection } from "../protection/targets.js";
import type { PortSpec } from "../types.js";
import type { ContainerRef, LabelledContainer } from "./labels.js";

/** One protected port of a door and where it came from: the door's own variable, or containers. */
export interface PortOrigin {
  port: string;
  from: string[];
}

export interface EffectiveDoor {
  door: string;
  ports: PortOrigin[];
  /** Labelled containers (running or not) that name the door. */
  containers: number;
}

export const containerOrigin = (c: ContainerRef): string => `container ${c.name} (${c.id})`;

/**
 * Docker's creation time as text that sorts as time: Created is RFC 3339 in UTC with the fraction's
 * trailing zeros cut ("...:12Z", "...:12.1Z", "...:12.12Z"), which as text sorts 12Z after 12.5Z and
 * 12.1Z after 12.12Z. The fraction padded to nanoseconds does not.
 */
const createdKey = (created: string): string => created.replace(/(:\d\d)(?:\.(\d{1,9}))?Z$/, (_, seconds: string, fraction = "") => `${seconds}.${fraction.padEnd(9, "0")}Z`);

/** Oldest first (Docker's creation time), so a container cannot take a port from an older one. */
const byAge = (a: LabelledContainer, b: LabelledContainer): number =>
  createdKey(a.created).localeCompare(createdKey(b.created)) || a.container.name.localeCompare(b.container.name) || a.container.id.localeCompare(b.container.id);

/** What one container's labels claim, door by door in the labels' order. */
export function containerClaims(c: LabelledContainer): Claim[] {
  const origin = containerOrigin(c.container);
  const claims: Claim[] = [];
  for (const d of c.doors) {
    for (const hp of d.hostPorts) {
      const dest = hostDestination(hp.hostIp);
      if (dest) claims.push({ door: d.door, dest, port: { port: hp.port, proto: hp.proto }, origin });
    }
    if (!c.running) continue;
    for (const a of d.addresses) {
      // Addresses that do not parse as IPs of their family are left out: they would end up on a firewall command line.
      const own = canonicalAddress(a.address, a.family);
      if (!own) continue;
      const dest = { kind: "container" as const, ...own, peers: networkOf(own.address, a.prefixLen) };
      for (const port of d.containerPorts) claims.push({ door: d.door, dest, port, origin });
    }
  }
  return claims;
}

/**
 * The doors' own ports first, then every labelled container's claims, oldest container first, then
 * what a previous run's labels gave (`kept`, until Docker answers).
 */
export function decideDoors(doors: readonly { name: string; ports: readonly PortSpec[] }[], containers: Iterable<LabelledContainer>, kept: readonly Claim[] = []): Protection {
  return decideProtection([...envClaims(doors), ...[...containers].sort(byAge).flatMap(containerClaims), ...kept]);
}

/** Each door's host ports and where each came from, for /readyz, check and the metrics. */
export function effectiveDoors(doors: readonly { name: string }[], protection: Protection, containers: Iterable<LabelledContainer>): EffectiveDoor[] {
  const all = [...containers];
  return doors.map(({ name }) => ({
    door: name,
    ports: protection.targets.filter((t) => t.door === name && t.dest.kind !== "container").map((t) => ({ port: targetText(t), from: t.origins })),
    containers: all.filter((c) => c.doors.some((d) => d.door === name)).length,
  }));
}

/** A refused claim in one line, for logs, /readyz and check. */
export function conflictText(c: Conflict): string {
  return `${c.claim.origin} claims ${targetText(c.claim)} for door ${c.claim.door}, which door ${c.owner.door} owns (${c.owner.origin}): refused`;
}
