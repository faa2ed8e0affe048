/** The last checks before packet-derived values reach a command line, whichever backend runs it. */
import { isIP } from "node:net";
import { FirewallError } from "../../core/errors.js";
import { doorPorts, type OwnedTarget } from "../../core/protection/targets.js";
import { hasPort, portName, type Door, type Family, type PortSpec } from "../../core/types.js";

/** An address must be an IP of the family. */
export function checkedAddress(src: string, family: Family): string {
  if (isIP(src) !== family) throw new FirewallError(`refusing "${src}": not an IPv${family} address`, [], "");
  return src;
}

/** The ports of a grant of some ports: each must be one the door protects in `targets`. */
export function checkedPorts(door: Door, targets: readonly OwnedTarget[], ports: readonly PortSpec[]): readonly PortSpec[] {
  const own = doorPorts(targets, door.name);
  const foreign = ports.find((p) => !hasPort(own, p));
  if (foreign || ports.length === 0) throw new FirewallError(`refusing a grant of ${foreign ? portName(foreign) : "no port"}: not among door ${door.name}'s ports`, [], "");
  return ports;
}
