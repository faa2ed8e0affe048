/**
 * The Docker engine through dockerode: the containers that carry knockgate labels, their inspect
 * JSON, and the engine's event stream. Only reads: knockgate never changes a container.
 */
import type Docker from "dockerode";
import { createInterface } from "node:readline";
import { hasKnockLabel } from "../core/docker/labels.js";
import { natBindings, type NatBinding } from "../core/docker/nat.js";
import { execRunner, mustRun, type Runner } from "./firewall/exec.js";
import { detectVariant, saveArgv, type IptablesVariant } from "./firewall/detect.js";

/** One container (or network attachment) change: the watcher reads that container again. */
export interface DockerEvent {
  id: string;
  action: string;
  /** For network events: the network's id. */
  network?: string;
}

export interface EventStream {
  /** Settles when the stream ends or breaks: the engine restarted, the socket went away. */
  ended: Promise<void>;
  close(): void;
}

/** What the watcher needs from the engine; tests use a fake. */
export interface DockerEngine {
  /** Full ids of every container, running or not, with a knockgate label. */
  labelled(): Promise<string[]>;
  /** The container's inspect JSON; null when it no longer exists. */
  inspect(id: string): Promise<unknown>;
  /** Starts following container events; resolves once the engine accepted the subscription. */
  events(onEvent: (event: DockerEvent) => void): Promise<EventStream>;
  /**
   * A container joining `network` right now, during its start: its labels (as inspect JSON with
   * only Id, Name and Config.Labels) and the host ports Docker forwards to it, read from the
   * container list, the network's endpoints and Docker's NAT rules. None of them waits for the start
   * to finish, as an inspect does. Null when it is gone or its address is not known yet.
   */
  joining(network: string, id: string): Promise<{ container: unknown; bindings: NatBinding[] } | null>;
}

/** Container events that can change what a container publishes, its labels, name or addresses. */
const CONTAINER_ACTIONS = ["create", "start", "restart", "unpause", "die", "stop", "kill", "destroy", "rename", "update"];
/** A container joining or leaving a network changes its addresses. */
const NETWORK_ACTIONS = ["connect", "disconnect"];
/** Bounds one event line: the engine's are a few hundred bytes (label values included). */
const MAX_EVENT_LINE = 64 * 1024;

/** dockerode's connection options for unix:///path or tcp://host:port (validated by the configuration). */
export function dockerOptions(host: string): Docker.DockerOptions {
  if (host.startsWith("unix://")) return { socketPath: host.slice("unix://".length) };
  const url = new URL(host.replace(/^tcp:/, "http:"));
  return { protocol: "http", host: url.hostname.replace(/^\[|\]$/g, ""), port: Number(url.port) };
}

const statusOf = (err: unknown): number | undefined => (typeof err === "object" && err !== null && "statusCode" in err ? Number(err.statusCode) : undefined);

export function dockerEngine(host: string, timeoutMs = 10_000): DockerEngine {
  // dockerode and its ssh and gRPC dependencies load on first use (130 ms, ~8 MB): the knock client
  // and a daemon with KNOCK_DOCKER=off never pay for them.
  let loaded: Promise<typeof Docker> | null = null;
  const dockerode = () => (loaded ??= import("dockerode").then((m) => m.default));
  // No API version pinned: the engine serves its own, whatever it is (20.10 speaks 1.41).
  let client: Docker | null = null;
  const connect = async () => (client ??= new (await dockerode())({ ...dockerOptions(host), timeout: timeoutMs }));
  const nat = natRules();
  return {
    async labelled() {
      const list = await (await connect()).listContainers({ all: true });
      return list.filter((c) => hasKnockLabel(c.Labels)).map((c) => c.Id);
    },
    async inspect(id) {
      try {
        return await (await connect()).getContainer(id).inspect();
      } catch (err) {
        if (statusOf(err) === 404) return null;
        throw err;
      }
    },
    async events(onEvent) {
      // The request timeout would cut a quiet stream: the event request has none.
      const follower = new (await dockerode())({ ...dockerOptions(host) });
      const stream = (await follower.getEvents({
        filters: { type: ["container", "network"], event: [...CONTAINER_ACTIONS, ...NETWORK_ACTIONS] },
      })) as NodeJS.ReadableStream & { destroy(): void };
      const lines = createInterface({ input: stream, crlfDelay: Infinity });
      // readline passes the stream's errors on; `ended` below is where they are handled.
      lines.on("error", () => undefined);
      lines.on("line", (line) => {
        if (line.length > MAX_EVENT_LINE) return;
        const event = parseEvent(line);
        if (event) onEvent(event);
      });
      const ended = new Promise<void>((resolve, reject) => {
        stream.once("error", reject);
        stream.once("end", resolve);
        stream.once("close", resolve);
      });
      return { ended, close: () => stream.destroy() };
    },
    async joining(network, id) {
      const docker = await connect();
      const [listed] = await docker.listContainers({ all: true, filters: { id: [id] } });
      if (!listed || !hasKnockLabel(listed.Labels)) return null;
      const endpoints = ((await docker.getNetwork(network).inspect()) as { Containers?: Record<string, { IPv4Address?: string }> }).Containers;
      const address = endpoints?.[id]?.IPv4Address?.split("/")[0];
      if (!address) return null;
      const bindings = natBindings(await nat(), address);
      return { container: { Id: listed.Id, Name: listed.Names?.[0] ?? "", Config: { Labels: listed.Labels } }, bindings };
    },
  };
}

/**
 * Reads Docker's NAT rules (only reads, never changes them) with the save command of the iptables
 * variant that holds the host's rules (firewall/detect.ts, found at the first read): the plain
 * `iptables-save` may list the other variant's tables, not the ones Docker wrote to.
 */
export function natRules(run: Runner = execRunner): () => Promise<string> {
  let variant: Promise<IptablesVariant> | null = null;
  return async () => mustRun(run, saveArgv(await (variant ??= detectVariant(run)), "nat"));
}

/** The container an event line is about; null for anything else. Never throws. */
export function parseEvent(line: string): DockerEvent | null {
  let e: unknown;
  try {
    e = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof e !== "object" || e === null) return null;
  const { Type, Action, Actor } = e as { Type?: unknown; Action?: unknown; Actor?: { ID?: unknown; Attributes?: { container?: unknown } } };
  if (typeof Action !== "string") return null;
  const id = Type === "network" ? Actor?.Attributes?.container : Type === "container" ? Actor?.ID : undefined;
  if (typeof id !== "string" || !/^[0-9a-f]{12,64}$/.test(id)) return null;
  const network = Type === "network" ? Actor?.ID : undefined;
  return typeof network === "string" && /^[0-9a-f]{12,64}$/.test(network) ? { id, action: Action, network } : { id, action: Action };
}
