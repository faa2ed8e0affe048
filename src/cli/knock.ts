/** `knockgate knock`: a drop-in for knockd's `knock` client, plus --door, --wait and --then-connect. */
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { parsePorts, parseSequence } from "../config/values.js";
import { parseEnvFile } from "../config/env-file.js";
import { UsageError } from "../core/errors.js";
import type { Parsed } from "./command.js";
import { knock, waitForPort } from "./knock-client.js";
import type { PortSpec } from "../core/types.js";

export const KNOCK_USAGE = `usage: knockgate knock [options] HOST [PORT[:PROTO] ...]

Knocks on HOST: one TCP SYN or UDP datagram per port, in order.

  -u, --udp               send UDP for ports without :PROTO
  -d, --delay MS          wait MS milliseconds between knocks (default 0)
  -4, --ipv4              resolve HOST to IPv4 only
  -6, --ipv6              resolve HOST to IPv6 only
  -v, --verbose           print each knock
      --door NAME         take the sequence from KNOCK_DOOR_NAME_SEQUENCE
      --config FILE       env file to read KNOCK_* from (default: the environment)
      --wait PORT         after knocking, wait until PORT accepts a connection
      --timeout MS        how long --wait and --then-connect wait (default 3000)
      --then-connect PORT knock, wait, then relay stdin/stdout to HOST:PORT (ssh ProxyCommand)
  -V, --version           print the version
  -h, --help              show this help
`;

function portArg(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const [spec] = parsePorts(value);
  if (!spec) throw new UsageError(`${name}: "${value}" is not a port`);
  return spec.port;
}

function sequenceFrom(positionals: string[], door: string | undefined, env: Record<string, string | undefined>, udp: boolean): PortSpec[] {
  if (door !== undefined) {
    if (positionals.length > 0) throw new UsageError("give either --door or ports, not both");
    const variable = `KNOCK_DOOR_${door.toUpperCase()}_SEQUENCE`;
    const value = env[variable];
    if (value === undefined) throw new UsageError(`${variable} is not set (in --config FILE or the environment)`);
    return parseSequence(value);
  }
  if (positionals.length === 0) throw new UsageError("no ports to knock on");
  return positionals.map((item) => {
    const [spec] = parseSequence(item.includes(":") || !udp ? item : `${item}:udp`);
    if (!spec) throw new UsageError(`"${item}" is not PORT[:PROTO]`);
    return spec;
  });
}

export const KNOCK_OPTIONS = {
  udp: { type: "boolean", short: "u" },
  delay: { type: "string", short: "d" },
  ipv4: { type: "boolean", short: "4" },
  ipv6: { type: "boolean", short: "6" },
  verbose: { type: "boolean", short: "v" },
  door: { type: "string" },
  config: { type: "string" },
  wait: { type: "string" },
  timeout: { type: "string" },
  "then-connect": { type: "string" },
  // knockd's knock has -V; main.ts answers it, since the version is the same for every command.
  version: { type: "boolean", short: "V" },
} as const;

/** Knocks as `values` and `positionals` say; a UsageError is for main.ts to report. */
export async function runKnock(
  { values, positionals }: Parsed<typeof KNOCK_OPTIONS>,
  processEnv: Record<string, string | undefined>,
): Promise<number> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  let host: string;
  let sequence: PortSpec[];
  let waitPort: number | undefined;
  let relayPort: number | undefined;
  let delayMs = 0;
  let timeoutMs = 3000;
  try {
    const [target, ...ports] = positionals;
    if (target === undefined) throw new UsageError("no HOST given");
    const env = values.config !== undefined ? parseEnvFile(readFileSync(values.config, "utf8")) : processEnv;
    sequence = sequenceFrom(ports, values.door, env, values.udp ?? false);
    if (values.delay !== undefined) delayMs = parseCount("--delay", values.delay);
    if (values.timeout !== undefined) timeoutMs = parseCount("--timeout", values.timeout);
    waitPort = portArg("--wait", values.wait);
    relayPort = portArg("--then-connect", values["then-connect"]);
    if (values.ipv4 && values.ipv6) throw new UsageError("-4 and -6 exclude each other");
    const family = values.ipv4 ? 4 : values.ipv6 ? 6 : 0;
    host = (await lookup(target, { family })).address;
  } catch (err) {
    if (err instanceof UsageError) throw err;
    process.stderr.write(`knockgate knock: ${(err as Error).message}\n`);
    return 1;
  }
  await knock({
    host,
    sequence,
    delayMs,
    onKnock: values.verbose ? (p) => log(`hitting ${p.proto} ${host}:${p.port}`) : undefined,
  });
  const connectPort = relayPort ?? waitPort;
  if (connectPort === undefined) return 0;
  const socket = await waitForPort(host, connectPort, { timeoutMs });
  if (!socket) {
    process.stderr.write(`knockgate knock: ${host}:${connectPort} did not accept a connection within ${timeoutMs} ms after knocking\n`);
    return 1;
  }
  if (values.verbose) log(`${host}:${connectPort} is open`);
  if (relayPort === undefined) {
    socket.destroy();
    return 0;
  }
  return new Promise((resolve) => {
    process.stdin.pipe(socket);
    socket.pipe(process.stdout);
    socket.on("close", () => resolve(0));
    socket.on("error", (err) => {
      process.stderr.write(`knockgate knock: ${err.message}\n`);
      resolve(1);
    });
  });
}

function parseCount(name: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${name}: "${value}" is not a whole number of milliseconds`);
  return Number(value);
}
