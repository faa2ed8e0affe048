/**
 * `knockgate knock`: a drop-in for knockd's `knock` client, plus --door, --wait and --then-connect.
 * A signed door (one with SPA keys) gets one SPA datagram instead of a sequence, as `fwknop` sends.
 */
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { parsePorts, parseSequence } from "../config/values.js";
import { readEnvFile } from "./env-file.js";
import { resolveSecretFiles, type ReadFile } from "../config/secret-files.js";
import { ConfigError, UsageError } from "../core/errors.js";
import type { Parsed } from "./command.js";
import { knock, waitForPort } from "./knock-client.js";
import { hasPort, portsText, type PortSpec } from "../core/types.js";
import { readSignedDoor, type SignedDoor } from "./signed-door.js";
import { localAddressTowards, loginName, sendSpa, type SpaKnock } from "./spa-knock.js";

export const KNOCK_USAGE = `usage: knockgate knock [options] HOST [PORT[:PROTO] ...]

Knocks on HOST: one TCP SYN or UDP datagram per port, in order. With --door NAME and a signed
door (KNOCK_DOOR_NAME_SPA_KEY and _SPA_HMAC_KEY set), sends one SPA datagram instead, as fwknop does.

  -u, --udp               send UDP for ports without :PROTO
  -d, --delay MS          wait MS milliseconds between knocks (default 0)
  -4, --ipv4              resolve HOST to IPv4 only
  -6, --ipv6              resolve HOST to IPv6 only
  -v, --verbose           print each knock
      --door NAME         take the sequence from KNOCK_DOOR_NAME_SEQUENCE, or the SPA keys
                          from KNOCK_DOOR_NAME_SPA_KEY and _SPA_HMAC_KEY (or their _FILE)
      --config FILE       env file to read KNOCK_* from (default: the environment);
                          --env-file FILE is the same, as in knockgate check
      --wait PORT         after knocking, wait until PORT accepts a connection
      --timeout MS        how long --wait and --then-connect wait (default 3000)
      --then-connect PORT knock, wait, then relay stdin/stdout to HOST:PORT (ssh ProxyCommand)
  -V, --version           print the version
  -h, --help              show this help

Signed doors only (fwknop's options of the same letters):
  -a, --allow-ip ADDR     the address to open for (default: this machine's address towards HOST;
                          behind a NAT, give the address the server sees)
  -s, --source            ask the server to open for whatever address the datagram comes from
                          (0.0.0.0; refused by doors that require an address)
  -A, --access PORTS      ports to open, e.g. 22/tcp or tcp/22 (default: all of the door's _PORTS)
  -f, --fw-timeout S      ask for a grant of S seconds (the door caps it)
  -U, --user NAME         the username in the datagram (default: your login name)
`;

/** The variables of --config FILE; a line that is not KEY=VALUE may be the door's, so it is an error here too. */
function envOfFile(file: string, readFile: ReadFile): Record<string, string> {
  const { env, problems } = readEnvFile(file, readFile);
  if (problems.length > 0) throw new ConfigError(problems);
  return env;
}

function portArg(name: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const [spec] = parsePorts(value);
  if (!spec) throw new UsageError(`${name}: "${value}" is not a port`);
  return spec.port;
}

function sequenceFrom(positionals: string[], door: string | undefined, env: Record<string, string | undefined>, udp: boolean, readFile: ReadFile): PortSpec[] {
  if (door !== undefined) {
    if (positionals.length > 0) throw new UsageError("give either --door or ports, not both");
    const variable = `KNOCK_DOOR_${door.toUpperCase()}_SEQUENCE`;
    // The sequence as the daemon reads it: set directly, or from the file its _FILE names.
    const secret = resolveSecretFiles({ [variable]: env[variable], [`${variable}_FILE`]: env[`${variable}_FILE`] }, readFile);
    if (secret.problems.length > 0) throw new ConfigError(secret.problems);
    const value = secret.env[variable];
    if (value === undefined) throw new UsageError(`${variable} is not set (in --config FILE, the environment, or a file named by ${variable}_FILE)`);
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
  "env-file": { type: "string" },
  wait: { type: "string" },
  timeout: { type: "string" },
  "then-connect": { type: "string" },
  "allow-ip": { type: "string", short: "a" },
  source: { type: "boolean", short: "s" },
  access: { type: "string", short: "A" },
  "fw-timeout": { type: "string", short: "f" },
  user: { type: "string", short: "U" },
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
  let send: () => Promise<void>;
  let waitPort: number | undefined;
  let relayPort: number | undefined;
  let delayMs = 0;
  let timeoutMs = 3000;
  try {
    const [target, ...ports] = positionals;
    if (target === undefined) throw new UsageError("no HOST given");
    if (values["env-file"] !== undefined && values.config !== undefined) throw new UsageError("give --env-file or --config, not both");
    const readFile = (path: string) => readFileSync(path, "utf8");
    const file = values["env-file"] ?? values.config;
    const env = file !== undefined ? envOfFile(file, readFile) : processEnv;
    const signed = values.door !== undefined ? readSignedDoor(env, values.door.toUpperCase(), readFile) : null;
    const sequence = signed ? null : sequenceFrom(ports, values.door, env, values.udp ?? false, readFile);
    if (signed && ports.length > 0) throw new UsageError(`door ${values.door} is signed: give HOST only, not ports`);
    if (!signed) refuseSpaOptions(values);
    if (values.delay !== undefined) delayMs = parseCount("--delay", values.delay);
    if (values.timeout !== undefined) timeoutMs = parseCount("--timeout", values.timeout);
    waitPort = portArg("--wait", values.wait);
    relayPort = portArg("--then-connect", values["then-connect"]);
    if (values.ipv4 && values.ipv6) throw new UsageError("-4 and -6 exclude each other");
    const family = values.ipv4 ? 4 : values.ipv6 ? 6 : 0;
    const server = (await lookup(target, { family })).address;
    host = server;
    if (signed) {
      const spa = await spaKnockFrom(values, signed, server, processEnv);
      send = async () => {
        await sendSpa(spa);
        if (values.verbose) log(`sent an SPA datagram to udp ${server}:${spa.spaPort} for ${spa.address} (${portsText(spa)})`);
      };
    } else {
      send = () =>
        knock({
          host: server,
          sequence: sequence!,
          delayMs,
          onKnock: values.verbose ? (p) => log(`hitting ${p.proto} ${server}:${p.port}`) : undefined,
        });
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    const lines = err instanceof ConfigError ? err.problems.map((p) => `${p.variable}: ${p.message}`) : [(err as Error).message];
    process.stderr.write(lines.map((l) => `knockgate knock: ${l}\n`).join(""));
    return 1;
  }
  try {
    await send();
  } catch (err) {
    process.stderr.write(`knockgate knock: ${(err as Error).message}\n`);
    return 1;
  }
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

type KnockValues = Parsed<typeof KNOCK_OPTIONS>["values"];
const SPA_OPTIONS = ["allow-ip", "source", "access", "fw-timeout", "user"] as const;

function refuseSpaOptions(values: KnockValues): void {
  const given = SPA_OPTIONS.find((o) => values[o] !== undefined);
  if (given !== undefined) throw new UsageError(`--${given} is for signed doors: give --door NAME of a door with KNOCK_DOOR_NAME_SPA_KEY`);
}

/** The SPA datagram's contents from the options and the door: what fwknop's -a/-s/-A/-f/-U would send. */
async function spaKnockFrom(values: KnockValues, door: SignedDoor, host: string, processEnv: Record<string, string | undefined>): Promise<SpaKnock> {
  if (values["allow-ip"] !== undefined && values.source) throw new UsageError("-a and --source exclude each other");
  const allow = values["allow-ip"];
  if (allow !== undefined && isIP(allow) === 0) throw new UsageError(`-a: "${allow}" is not an IP address`);
  let ports = door.ports;
  if (values.access !== undefined) {
    // fwknop writes proto/port (tcp/22), knockgate port/proto (22/tcp): take both.
    ports = parsePortsArg("-A", values.access.replace(/\b(tcp|udp)\/(\d+)/gi, "$2/$1"));
    const outside = ports.filter((p) => !hasPort(door.ports, p));
    if (outside.length > 0) throw new UsageError(`-A: ${portsText({ ports: outside })} not among door ${values.door}'s ports (${portsText(door)}); the door would refuse the whole request`);
  }
  let clientTimeoutS: number | null = null;
  if (values["fw-timeout"] !== undefined) {
    if (!/^[1-9][0-9]{0,8}$/.test(values["fw-timeout"])) throw new UsageError(`-f: "${values["fw-timeout"]}" is not a whole number of seconds above 0`);
    clientTimeoutS = Number(values["fw-timeout"]);
  }
  const username = values.user ?? loginName(processEnv);
  if (!/^[\x20-\x7e]{1,64}$/.test(username)) throw new UsageError(`-U: the username must be 1-64 printable characters`);
  const address = values.source ? "0.0.0.0" : (allow ?? (await localAddressTowards(host, door.spa.port)));
  return { host, spaPort: door.spa.port, keys: door.spa.keys, address, ports, username, clientTimeoutS };
}

function parsePortsArg(name: string, value: string): PortSpec[] {
  try {
    return parsePorts(value);
  } catch (err) {
    throw new UsageError(`${name}: ${(err as Error).message}`);
  }
}

function parseCount(name: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${name}: "${value}" is not a whole number of milliseconds`);
  return Number(value);
}
