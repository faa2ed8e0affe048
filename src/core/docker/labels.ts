/**
 * What knockgate must protect for one Docker container, read from its `docker inspect` JSON: the
 * knockgate.* labels name doors, and the container's published host ports go behind them. Pure:
 * the JSON comes in as a value, and nothing here throws on any shape of it; what is wrong with a
 * container's labels comes back as problems for the caller to log.
 */
import { splitList } from "../lists.js";
import { byProtoThenPort, portName, type Family, type PortSpec, type Proto } from "../types.js";

export const DOOR_LABEL = "knockgate.door";
export const DOORS_LABEL = "knockgate.doors";
export const PORTS_LABEL = "knockgate.ports";
/** Every label knockgate reads: a container with none of them is not knockgate's. */
export const KNOCK_LABELS = [DOOR_LABEL, DOORS_LABEL, PORTS_LABEL] as const;

/** Whether a container's labels (from a listing or an inspect) include any of knockgate's. */
export const hasKnockLabel = (labels: unknown): boolean => KNOCK_LABELS.some((l) => field(labels, l) !== undefined);

export interface ContainerRef {
  /** Without Docker's leading "/". */
  name: string;
  /** The first 12 hex digits of the id, as `docker ps` shows it. */
  id: string;
}

/** A host port to keep closed until knocked, and the container port it reaches. */
export interface HostPort extends PortSpec {
  /** The families it is bound on: [4], [6] or [4, 6]. */
  families: Family[];
  /** The one host address it is bound to (`-p 192.0.2.2:2222:22`); "" for every address. */
  hostIp: string;
  containerPort: PortSpec;
  container: ContainerRef;
}

/** One of the container's own addresses on one network (a route to it that bypasses the host port). */
export interface ContainerAddress {
  network: string;
  family: Family;
  address: string;
  /** The network's prefix length (IPPrefixLen, GlobalIPv6PrefixLen): its other members are peers. */
  prefixLen: number;
}

export interface DoorProtection {
  door: string;
  hostPorts: HostPort[];
  /** Published container ports the labels protect, including those whose host port is not known yet. */
  containerPorts: PortSpec[];
  addresses: ContainerAddress[];
}

export interface LabelledContainer {
  container: ContainerRef;
  running: boolean;
  /** When Docker created it (its inspect's Created): of two containers claiming one port, the older keeps it. */
  created: string;
  /** One entry per configured door the labels name; empty when they name none that is configured. */
  doors: DoorProtection[];
  /**
   * Protected container ports whose host port Docker picks only at start (`-p 80`, `-P`, a host
   * port range): hostPorts lacks them until the caller reads the container again once it runs.
   */
  hostPortsAtStart: PortSpec[];
  /** Label values that were ignored, and why; one sentence each. */
  problems: string[];
}

type Json = Record<string, unknown>;

const isObject = (v: unknown): v is Json => typeof v === "object" && v !== null && !Array.isArray(v);
const field = (v: unknown, key: string): unknown => (isObject(v) && Object.hasOwn(v, key) ? v[key] : undefined);
const text = (v: unknown): string => (typeof v === "string" ? v : "");
const entries = (v: unknown): [string, unknown][] => (isObject(v) ? Object.entries(v) : []);

/** "22/tcp", or "22" for tcp as Docker writes it; null when it is not a tcp or udp port. */
function parsePortSpec(item: string): PortSpec | null {
  const m = /^(\d{1,5})(?:\/(tcp|udp))?$/i.exec(item);
  if (!m) return null;
  const port = Number(m[1]);
  if (port < 1 || port > 65535) return null;
  return { port, proto: (m[2]?.toLowerCase() ?? "tcp") as Proto };
}


/** Docker leaves HostIp empty for "all addresses", which it binds on both families. */
function hostFamilies(hostIp: string): Family[] {
  if (hostIp === "") return [4, 6];
  return hostIp.includes(":") ? [6] : [4];
}

/** "" for a binding to every address of its family ("", 0.0.0.0, ::), else the one address. */
const boundAddress = (hostIp: string): string => (hostIp === "0.0.0.0" || hostIp === "::" ? "" : hostIp);

/** The doors the labels name; knockgate.door and knockgate.doors are both lists, so either spelling works. */
function readDoors(labels: unknown, configured: ReadonlySet<string>, problems: string[]): string[] {
  const named = [DOOR_LABEL, DOORS_LABEL].flatMap((label) => {
    const value = field(labels, label);
    return typeof value === "string" ? [{ label, names: splitList(value) }] : [];
  });
  const [first, second] = named;
  if (first && second && [...new Set(first.names)].sort().join(",") !== [...new Set(second.names)].sort().join(",")) {
    // Both are used: a port behind either door stays closed to everyone who knocked on neither.
    problems.push(`${DOOR_LABEL}="${first.names.join(",")}" and ${DOORS_LABEL}="${second.names.join(",")}" disagree; protecting the ports behind each door they name`);
  }
  const names = [...new Set(named.flatMap((n) => n.names))];
  for (const name of names.filter((n) => !configured.has(n))) {
    problems.push(`"${name}" is not a configured door (configured: ${[...configured].join(", ") || "none"})`);
  }
  if (named.length > 0 && names.length === 0) problems.push(`${DOOR_LABEL}/${DOORS_LABEL} name no door`);
  return names.filter((n) => configured.has(n));
}

interface Binding {
  containerPort: PortSpec;
  hostIp: string;
  /** Empty or a range ("8000-8010") until Docker picks the port at start. */
  hostPort: string;
}

/** Docker's map of "PORT/PROTO" to bindings, as in HostConfig.PortBindings and NetworkSettings.Ports. */
function readBindings(map: unknown, unsupported: Set<string>): Binding[] {
  return entries(map).flatMap(([key, list]) => {
    // null: exposed but not published.
    if (!Array.isArray(list)) return [];
    const containerPort = parsePortSpec(key);
    if (!containerPort || !key.includes("/")) {
      unsupported.add(key);
      return [];
    }
    return list.map((b: unknown) => ({ containerPort, hostIp: text(field(b, "HostIp")), hostPort: text(field(b, "HostPort")) }));
  });
}

function readAddresses(networks: unknown): ContainerAddress[] {
  return entries(networks).flatMap(([network, settings]) => {
    const v4 = text(field(settings, "IPAddress"));
    const v6 = text(field(settings, "GlobalIPv6Address"));
    const prefix = (key: string) => {
      const n = field(settings, key);
      return typeof n === "number" && Number.isInteger(n) ? n : 0;
    };
    return [
      ...(v4 ? [{ network, family: 4 as const, address: v4, prefixLen: prefix("IPPrefixLen") }] : []),
      ...(v6 ? [{ network, family: 6 as const, address: v6, prefixLen: prefix("GlobalIPv6PrefixLen") }] : []),
    ];
  });
}

/**
 * Reads one element of `docker inspect` (or the one-element array the CLI prints) against the doors
 * knockgate has configured. Returns null for a container without knockgate labels, which knockgate
 * leaves alone. A running container's actual bindings (NetworkSettings.Ports) are used; for one that
 * is not running, the requested ones (HostConfig.PortBindings), which lack the ports Docker picks at start.
 */
export function readContainer(inspect: unknown, configured: ReadonlySet<string>): LabelledContainer | null {
  const c = Array.isArray(inspect) && inspect.length === 1 ? inspect[0] : inspect;
  const labels = field(field(c, "Config"), "Labels");
  if (!hasKnockLabel(labels)) return null;

  const container: ContainerRef = { name: text(field(c, "Name")).replace(/^\//, ""), id: text(field(c, "Id")).slice(0, 12) };
  const running = field(field(c, "State"), "Running") === true;
  const problems: string[] = [];
  for (const label of KNOCK_LABELS) {
    const value = field(labels, label);
    if (value !== undefined && typeof value !== "string") problems.push(`${label} is not a string`);
  }
  if (field(labels, PORTS_LABEL) !== undefined && field(labels, DOOR_LABEL) === undefined && field(labels, DOORS_LABEL) === undefined) {
    problems.push(`${PORTS_LABEL} is set but no ${DOOR_LABEL} or ${DOORS_LABEL}`);
  }
  const doors = readDoors(labels, configured, problems);

  const hostConfig = field(c, "HostConfig");
  const unsupported = new Set<string>();
  let bindings: Binding[] = readBindings(running ? field(field(c, "NetworkSettings"), "Ports") : field(hostConfig, "PortBindings"), unsupported);
  if (!running && field(hostConfig, "PublishAllPorts") === true) {
    // -P publishes every exposed port on a port Docker picks at start.
    const bound = new Set(bindings.map((b) => portName(b.containerPort)));
    for (const [key] of entries(field(field(c, "Config"), "ExposedPorts"))) {
      const containerPort = parsePortSpec(key);
      if (containerPort && !bound.has(portName(containerPort))) bindings.push({ containerPort, hostIp: "", hostPort: "" });
    }
  }
  for (const key of unsupported) problems.push(`published port ${key} is ignored: knockgate guards tcp and udp ports only`);

  const filter = readPortsFilter(c, problems);
  if (filter) bindings = bindings.filter((b) => filter.has(portName(b.containerPort)));

  const hostPorts = new Map<string, HostPort>();
  const containerPorts = new Map<string, PortSpec>();
  const atStart = new Map<string, PortSpec>();
  for (const b of bindings) {
    containerPorts.set(portName(b.containerPort), b.containerPort);
    const spec = /^\d+$/.test(b.hostPort) ? parsePortSpec(`${b.hostPort}/${b.containerPort.proto}`) : null;
    if (!spec) {
      atStart.set(portName(b.containerPort), b.containerPort);
      continue;
    }
    // One entry per host address, host port and container port: Docker's IPv4 and IPv6 bindings of it merge.
    const hostIp = boundAddress(b.hostIp);
    const key = `${hostIp} ${portName(spec)}>${portName(b.containerPort)}`;
    const entry = hostPorts.get(key) ?? { ...spec, families: [], hostIp, containerPort: b.containerPort, container };
    entry.families = [...new Set([...entry.families, ...hostFamilies(b.hostIp)])].sort();
    hostPorts.set(key, entry);
  }
  // A running container's actual bindings are complete; only requested ones can be pending.
  const hostPortsAtStart = running ? [] : [...atStart.values()].sort(byProtoThenPort);

  const addresses = readAddresses(field(field(c, "NetworkSettings"), "Networks"));
  const sortedHostPorts = [...hostPorts.values()].sort((a, b) => byProtoThenPort(a, b) || byProtoThenPort(a.containerPort, b.containerPort));
  const sortedContainerPorts = [...containerPorts.values()].sort(byProtoThenPort);
  return {
    container,
    running,
    created: text(field(c, "Created")),
    doors: doors.map((door) => ({ door, hostPorts: sortedHostPorts, containerPorts: sortedContainerPorts, addresses })),
    hostPortsAtStart,
    problems,
  };
}

/**
 * The container ports knockgate.ports limits protection to, or null for all of them. A label that
 * leaves no usable entry is ignored as a whole, so a typo protects more ports, never fewer.
 */
function readPortsFilter(c: unknown, problems: string[]): Set<string> | null {
  const value = field(field(field(c, "Config"), "Labels"), PORTS_LABEL);
  if (typeof value !== "string") return null;
  const known = new Set(
    [field(field(c, "Config"), "ExposedPorts"), field(field(c, "HostConfig"), "PortBindings"), field(field(c, "NetworkSettings"), "Ports")]
      .flatMap((map) => entries(map).map(([key]) => parsePortSpec(key)))
      .flatMap((spec) => (spec ? [portName(spec)] : [])),
  );
  const filter = new Set<string>();
  for (const item of splitList(value)) {
    const spec = parsePortSpec(item);
    if (!spec) problems.push(`${PORTS_LABEL}: "${item}" is not PORT or PORT/PROTO with a tcp or udp port 1-65535`);
    else if (!known.has(portName(spec))) problems.push(`${PORTS_LABEL}: the container does not expose ${portName(spec)}`);
    else filter.add(portName(spec));
  }
  if (filter.size > 0) return filter;
  problems.push(`${PORTS_LABEL}="${value}" names no port the container exposes; protecting all its published ports`);
  return null;
}
