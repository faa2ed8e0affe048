/** Grants as the kernel sets hold them, turned into the port's listing (ListedGrant). */
import { FAMILIES, type KernelGrant } from "../../core/firewall/common.js";
import type { Door, Family, PortSpec } from "../../core/types.js";
import type { ListedGrant } from "./firewall.js";

/** A grant of one port found in a per-port set: the set holds one entry per port. */
export interface KernelPortGrant extends KernelGrant {
  port: PortSpec;
}

/** One door and family's per-port entries as grants: one per address, its ports, the longest time left. */
export function byAddress(door: string, family: Family, entries: readonly KernelPortGrant[]): ListedGrant[] {
  const bySrc = new Map<string, ListedGrant & { ports: PortSpec[] }>();
  for (const e of entries) {
    const g = bySrc.get(e.src) ?? { door, family, src: e.src, ports: [], remainingMs: e.remainingMs };
    g.ports.push(e.port);
    if (g.remainingMs !== null && (e.remainingMs === null || e.remainingMs > g.remainingMs)) g.remainingMs = e.remainingMs;
    bySrc.set(e.src, g);
  }
  return [...bySrc.values()];
}

/**
 * Every grant of `doors` in the kernel: each door and family's door-wide ones (`readDoorSet`), then
 * each signed door and family's grants of some ports (`readPortSet`).
 */
export async function listGrants(
  doors: readonly Door[],
  readDoorSet: (door: string, family: Family) => Promise<KernelGrant[]>,
  readPortSet: (door: string, family: Family) => Promise<KernelPortGrant[]>,
): Promise<ListedGrant[]> {
  const all: ListedGrant[] = [];
  for (const door of doors) {
    for (const family of FAMILIES) for (const g of await readDoorSet(door.name, family)) all.push({ ...g, door: door.name, family, ports: null });
  }
  for (const door of doors.filter((d) => d.spa !== null)) {
    for (const family of FAMILIES) all.push(...byAddress(door.name, family, await readPortSet(door.name, family)));
  }
  return all;
}
