/** Labelled containers as core/docker/labels.ts reads them, made up for tests. */
import type { ContainerAddress, HostPort, LabelledContainer } from "../../src/core/docker/labels.js";
import type { Family, PortSpec } from "../../src/core/types.js";

/**
 * A container naming `door`, publishing host ports ("22", "192.0.2.2:2222", "2001:db8::5:8082") to
 * its port 80; running when it has `addresses`.
 */
export function labelledContainer(
  name: string,
  door: string,
  ports: string[],
  { created = "2026-01-01T00:00:00Z", addresses = [], containerPorts = [{ port: 80, proto: "tcp" }] }: { created?: string; addresses?: ContainerAddress[]; containerPorts?: PortSpec[] } = {},
): LabelledContainer {
  // Docker's ids are hex: the name's bytes in hex, padded.
  const ref = { name, id: Buffer.from(name).toString("hex").padEnd(12, "0").slice(0, 12) };
  const hostPorts: HostPort[] = ports.map((p) => {
    const at = p.lastIndexOf(":");
    const hostIp = at < 0 ? "" : p.slice(0, at);
    const families: Family[] = hostIp === "" ? [4, 6] : hostIp.includes(":") ? [6] : [4];
    return { port: Number(p.slice(at + 1)), proto: "tcp", families, hostIp, containerPort: { port: 80, proto: "tcp" }, container: ref };
  });
  return { container: ref, running: addresses.length > 0, created, doors: [{ door, hostPorts, containerPorts, addresses }], hostPortsAtStart: [], problems: [] };
}
