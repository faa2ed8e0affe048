/** Default capture interfaces: those that carry a default route, IPv4 or IPv6. */
import { readFile } from "node:fs/promises";

/** /proc/net/route: Iface Destination Gateway Flags RefCnt Use Metric Mask ... (hex). */
export function defaultRouteInterfacesV4(procNetRoute: string): string[] {
  return procNetRoute
    .split("\n")
    .slice(1)
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[1] === "00000000" && f[7] === "00000000" && f[0] !== undefined)
    .map((f) => f[0] as string);
}

/** /proc/net/ipv6_route: dest destlen src srclen nexthop metric refcnt use flags iface. */
export function defaultRouteInterfacesV6(procNetIpv6Route: string): string[] {
  return procNetIpv6Route
    .split("\n")
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f[0] === "0".repeat(32) && f[1] === "00" && f[9] !== undefined && f[9] !== "lo")
    .map((f) => f[9] as string);
}

/** Why `run` refuses to start when KNOCK_INTERFACE is unset and no default route gives an interface. */
export const NO_DEFAULT_ROUTE = "no default route, so no interface to watch: set KNOCK_INTERFACE";

export async function defaultInterfaces(): Promise<string[]> {
  const read = (path: string) => readFile(path, "utf8").catch(() => "");
  const v4 = defaultRouteInterfacesV4(await read("/proc/net/route"));
  const v6 = defaultRouteInterfacesV6(await read("/proc/net/ipv6_route"));
  return [...new Set([...v4, ...v6])];
}
