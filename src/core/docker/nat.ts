/**
 * Docker's DNAT rules as `iptables-save -t nat` prints them. While a container starts, its random
 * host ports are in the kernel (and its address in the network's endpoint list) well before the
 * engine answers an inspect or sends the start event: read here, they let knockgate protect those
 * ports before the container's process runs. Pure; only reads what the caller read.
 */
import type { PortSpec, Proto } from "../types.js";

export interface NatBinding {
  host: PortSpec;
  containerPort: number;
}

const DNAT = /^-A DOCKER (?:.* )?-p (tcp|udp) (?:.* )?--dport (\d{1,5}) (?:.* )?-j DNAT --to-destination (\S+):(\d{1,5})$/;

/** The host ports Docker forwards to `address` (an IPv4 address, as Docker's rules name it). */
export function natBindings(save: string, address: string): NatBinding[] {
  const out: NatBinding[] = [];
  for (const line of save.split("\n")) {
    const m = DNAT.exec(line.trim());
    if (!m || m[3] !== address) continue;
    const [port, containerPort] = [Number(m[2]), Number(m[4])];
    if (port < 1 || port > 65535 || containerPort < 1 || containerPort > 65535) continue;
    out.push({ host: { port, proto: m[1] as Proto }, containerPort });
  }
  return out;
}
