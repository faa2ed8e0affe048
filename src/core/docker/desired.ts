/**
 * What the doors protect once Docker labels are counted: each door's own ports (KNOCK_DOOR_*_PORTS)
 * joined with the host ports of every container whose labels name it, and the containers' own
 * addresses. Pure, so the watcher's decisions are tested without an engine.
 */
import { parseAddress } from "../packet/address.js";
import { byProtoThenPort, portName, targetKey, type DirectTarget, type Door, type PortSpec } from "../types.js";
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

export const ENV_ORIGIN = "env";
export const containerOrigin = (c: ContainerRef): string => `container ${c.name} (${c.id})`;

/**
 * The doors as the firewall should protect them. A host port stays protected while any labelled
 * container still publishes it, so one container going away never opens another's port. Addresses
 * that do not parse as IPs are left out: they would end up on a firewall command line.
 */
export function desiredDoors(doors: readonly Door[], containers: Iterable<LabelledContainer>): { doors: Door[]; effective: EffectiveDoor[] } {
  const byDoor = new Map(doors.map((d) => [d.name, { ports: new Map<string, { spec: PortSpec; from: string[] }>(), targets: new Map<string, DirectTarget>(), containers: 0 }]));
  for (const door of doors) for (const p of door.ports) byDoor.get(door.name)?.ports.set(portName(p), { spec: p, from: [ENV_ORIGIN] });
  const sorted = [...containers].sort((a, b) => a.container.name.localeCompare(b.container.name) || a.container.id.localeCompare(b.container.id));
  for (const c of sorted) {
    for (const d of c.doors) {
      const entry = byDoor.get(d.door);
      if (!entry) continue;
      entry.containers++;
      for (const hp of d.hostPorts) {
        const key = portName(hp);
        const known = entry.ports.get(key) ?? { spec: { port: hp.port, proto: hp.proto }, from: [] };
        const origin = containerOrigin(c.container);
        if (!known.from.includes(origin)) known.from.push(origin);
        entry.ports.set(key, known);
      }
      if (!c.running) continue;
      for (const a of d.addresses) {
        if (parseAddress(a.address)?.family !== a.family) continue;
        for (const port of d.containerPorts) {
          const target = { family: a.family, address: a.address, port };
          entry.targets.set(targetKey(target), target);
        }
      }
    }
  }
  const result = doors.map((door) => {
    const entry = byDoor.get(door.name);
    const ports = [...(entry?.ports.values() ?? [])].sort((a, b) => byProtoThenPort(a.spec, b.spec));
    return {
      door: { ...door, ports: ports.map((p) => p.spec), targets: [...(entry?.targets.values() ?? [])] },
      effective: { door: door.name, ports: ports.map((p) => ({ port: portName(p.spec), from: p.from })), containers: entry?.containers ?? 0 },
    };
  });
  return { doors: result.map((r) => r.door), effective: result.map((r) => r.effective) };
}

/** The part of the doors the firewall plan depends on, to tell whether a rewrite is needed. */
export function protectionKey(doors: readonly Door[]): string {
  return JSON.stringify(doors.map((d) => [d.name, d.ports.map(portName), (d.targets ?? []).map(targetKey).sort()]));
}
