/**
 * KNOCK_DOCKER and KNOCK_DOCKER_HOST: whether knockgate follows Docker's containers for
 * knockgate.door labels, and where it finds the engine. The host follows Docker's own DOCKER_HOST
 * convention, so a read-only socket proxy (tcp://) can sit in between.
 */
import type { ConfigProblem } from "../core/errors.js";
import type { DockerConfig, DockerMode, Door } from "../core/types.js";
import { parseEnum } from "./values.js";

export const DOCKER_VARIABLES = ["KNOCK_DOCKER", "KNOCK_DOCKER_HOST"] as const;
export const DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock";
/** KNOCK_DOOR_<NAME>_PORTS=none: the door protects only what Docker labels put behind it. */
export const NO_PORTS = "none";

const parseMode = parseEnum<DockerMode>(["auto", "on", "off"]);

/** "unix:///path" or "tcp://host:port"; an Error whose message completes "VARIABLE: ...". */
export function parseDockerHost(value: string): string {
  const text = value.trim();
  if (/^unix:\/\/\/\S+$/.test(text)) return text;
  const tcp = /^tcp:\/\/(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})\/?$/.exec(text);
  if (tcp && Number(tcp[2]) >= 1 && Number(tcp[2]) <= 65535) return text.replace(/\/$/, "");
  throw new Error(`"${value}" is not unix:///PATH or tcp://HOST:PORT (TLS endpoints are not supported; put a socket proxy on a private address)`);
}

export function parseDocker(env: Readonly<Record<string, string | undefined>>, problems: ConfigProblem[]): DockerConfig {
  let mode: DockerMode = "auto";
  try {
    mode = parseMode(env["KNOCK_DOCKER"] ?? "auto");
  } catch (err) {
    problems.push({ variable: "KNOCK_DOCKER", message: (err as Error).message });
  }
  const given = env["KNOCK_DOCKER_HOST"] !== undefined ? "KNOCK_DOCKER_HOST" : env["DOCKER_HOST"] ? "DOCKER_HOST" : "default";
  let host = DEFAULT_DOCKER_HOST;
  if (given !== "default") {
    try {
      host = parseDockerHost(env[given] ?? "");
    } catch (err) {
      problems.push({ variable: given, message: (err as Error).message });
    }
  }
  return { mode, host, hostFrom: given };
}

/** A door with no ports of its own protects nothing unless Docker labels can give it some. */
export function checkLabelOnlyDoors(doors: readonly Door[], docker: DockerConfig, problems: ConfigProblem[]): void {
  if (docker.mode !== "off") return;
  for (const door of doors.filter((d) => d.ports.length === 0)) {
    problems.push({
      variable: `KNOCK_DOOR_${door.name}_PORTS`,
      message: `"${NO_PORTS}" leaves the door only the ports Docker labels give it, but KNOCK_DOCKER=off; name ports or turn Docker on`,
    });
  }
}
