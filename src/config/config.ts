/**
 * KNOCK_* environment -> validated Config. Pure: reads only the record it is given, and reports
 * every problem at once so a user fixes their env file in one go.
 */
import { readFileSync } from "node:fs";
import envVar from "env-var";
import { resolveSecretFiles, type ReadFile } from "./secret-files.js";
import { ConfigError, type ConfigProblem } from "../core/errors.js";
import { MAX_DOOR_NAME, type Config, type Door, type FirewallChoice, type LogLevel, type PortSpec } from "../core/types.js";
import { splitShellWords } from "./shellwords.js";
import { checkLabelOnlyDoors, DOCKER_VARIABLES, NO_PORTS, parseDocker } from "./docker.js";
import { checkSignedDoors, parseDoorSpa, SPA_FIELDS, type SpaField } from "./spa.js";
import { CLUSTER_VARIABLES, parseClusterConfig } from "./cluster.js";
import { DEFAULT_ENGINE, ENGINE_VARIABLES, parseEngine } from "./engine.js";
import {
  MAX_GRANT_SECONDS,
  MAX_TIMER_MS,
  parseBool,
  parseCidrList,
  parseCount,
  parseEnum,
  parseListenAddr,
  parsePorts,
  parseSecondsMs,
  parseSequence,
  parseTcpFlags,
} from "./values.js";

export const DOOR_FIELDS = ["CLOSE_SEQUENCE", "SEQ_TIMEOUT", "SEQUENCE", "OPEN_FOR", "PORTS", "TCPFLAGS", "ON_OPEN", "ON_CLOSE", ...SPA_FIELDS] as const;
/** Settings that only mean something with a knock sequence. */
const SEQUENCE_FIELDS: readonly DoorField[] = ["CLOSE_SEQUENCE", "SEQ_TIMEOUT", "TCPFLAGS"];
type DoorField = (typeof DOOR_FIELDS)[number];

export const GLOBAL_VARIABLES = [
  "KNOCK_INTERFACE",
  "KNOCK_ALLOW",
  "KNOCK_HTTP_ADDR",
  "KNOCK_FIREWALL",
  "KNOCK_ON_EXIT",
  "KNOCK_DRY_RUN",
  "KNOCK_MAX_TRACKED",
  "KNOCK_MAX_TRACKED_PER_PREFIX",
  "KNOCK_MAX_GRANTS",
  "KNOCK_MAX_GRANTS_PER_PREFIX",
  "KNOCK_SOURCE_PREFIX_V4",
  "KNOCK_SOURCE_PREFIX_V6",
  "KNOCK_RECONCILE_INTERVAL",
  "KNOCK_HOOK_TIMEOUT",
  "KNOCK_HOOK_CONCURRENCY",
  "KNOCK_METRICS_TOKEN",
  "KNOCK_LOG_LEVEL",
  "KNOCK_LOG_FORMAT",
  ...DOCKER_VARIABLES,
  ...CLUSTER_VARIABLES,
  ...ENGINE_VARIABLES,
] as const;

export const DEFAULTS = {
  KNOCK_HTTP_ADDR: "127.0.0.1:9180",
  KNOCK_FIREWALL: "auto",
  KNOCK_ENGINE: DEFAULT_ENGINE,
  KNOCK_ON_EXIT: "keep",
  KNOCK_DRY_RUN: "false",
  KNOCK_MAX_TRACKED: "65536",
  KNOCK_MAX_TRACKED_PER_PREFIX: "1024",
  KNOCK_MAX_GRANTS: "65536",
  KNOCK_MAX_GRANTS_PER_PREFIX: "256",
  KNOCK_SOURCE_PREFIX_V4: "24",
  KNOCK_SOURCE_PREFIX_V6: "64",
  KNOCK_RECONCILE_INTERVAL: "2",
  KNOCK_HOOK_TIMEOUT: "10",
  KNOCK_HOOK_CONCURRENCY: "4",
  KNOCK_LOG_LEVEL: "info",
  KNOCK_LOG_FORMAT: "json",
  PORTS: "22/tcp",
  SEQ_TIMEOUT: "5",
  OPEN_FOR: "30",
  TCPFLAGS: "syn,!ack",
} as const;

const DOOR_VAR = new RegExp(`^KNOCK_DOOR_([A-Z0-9_]+?)_(${DOOR_FIELDS.join("|")})$`);

const accessors = {
  asSequence: parseSequence,
  // "none": only the ports Docker labels give the door.
  asPorts: (value: string): PortSpec[] => (value.trim().toLowerCase() === NO_PORTS ? [] : parsePorts(value)),
  asSecondsMs: parseSecondsMs,
  asTcpFlags: parseTcpFlags,
  asCidrList: parseCidrList,
  asListenAddr: parseListenAddr,
  asFlag: parseBool,
  asFirewall: parseEnum<FirewallChoice>(["auto", "iptables", "nftables"]),
  asOnExit: parseEnum(["keep", "remove"] as const),
  asLogLevel: parseEnum<LogLevel>(["fatal", "error", "warn", "info", "debug", "trace", "silent"]),
  asLogFormat: parseEnum(["json", "pretty"] as const),
  asMaxTracked: parseCount(1, 10_000_000),
  asHookConcurrency: parseCount(1, 256),
  asMaxGrants: parseCount(1, 1_000_000),
  asPrefixV4: parseCount(8, 32),
  asPrefixV6: parseCount(16, 128),
  asArgv: (value: string): string[] => {
    const argv = splitShellWords(value);
    if (argv.length === 0) throw new Error("is empty; give a command like: /usr/local/bin/notify %DOOR% %IP%");
    const program = argv[0] ?? "";
    if (program === "") throw new Error("names no program (its first word is empty); give a command like: /usr/local/bin/notify %DOOR% %IP%");
    // The program is fixed by the operator: a knocker's address must never choose what runs.
    if (/%(IP|DOOR|PORTS)%/.test(program)) throw new Error(`the program "${program}" contains a %...% placeholder; placeholders go in its arguments`);
    return argv;
  },
  asInterfaces: (value: string): string[] => {
    const names = value.split(",").map((s) => s.trim()).filter(Boolean);
    const bad = names.find((n) => !/^[A-Za-z0-9_.:@-]{1,15}$/.test(n));
    if (names.length === 0 || bad !== undefined) {
      throw new Error(`"${bad ?? value}" is not an interface name; give a comma list like eth0,wg0 or "any"`);
    }
    return names;
  },
};

/** env-var prefixes its messages with the variable; we print "VARIABLE: message" ourselves. */
function problemText(variable: string, err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/^env-var: /, "").replace(`"${variable}" `, "");
}

/**
 * Reads the KNOCK_* variables of `env`, secrets given as `<VARIABLE>_FILE` through `readFile`.
 * Throws a ConfigError listing every problem.
 */
export function parseConfig(given: Readonly<Record<string, string | undefined>>, readFile: ReadFile = (path) => readFileSync(path, "utf8")): Config {
  const { env, files, problems } = resolveSecretFiles(given, readFile);
  const reader = envVar.from(env, accessors);
  const read = <T>(variable: string, parse: () => T, fallback: T): T => {
    try {
      return parse();
    } catch (err) {
      const file = files.get(variable);
      // A secret from a file is reported under the variable the user set, naming the file.
      problems.push(file === undefined ? { variable, message: problemText(variable, err) } : { variable: `${variable}_FILE`, message: `${file}: ${problemText(variable, err)}` });
      return fallback;
    }
  };
  const get = (variable: string) => reader.get(variable);
  const getOr = (variable: string, fallback: string) => reader.get(variable).default(fallback);

  const doorVars = new Map<string, Map<DoorField, string>>();
  const knockVars = Object.keys(env).filter((k) => k.startsWith("KNOCK_")).sort();
  for (const variable of knockVars) {
    const m = DOOR_VAR.exec(variable);
    if (m) {
      const [, name = "", field] = m;
      if (!doorVars.has(name)) doorVars.set(name, new Map());
      doorVars.get(name)?.set(field as DoorField, variable);
    } else if (!(GLOBAL_VARIABLES as readonly string[]).includes(variable)) {
      problems.push({ variable, message: unknownVariableMessage(variable, knockVars) });
    }
  }

  const doors: Door[] = [];
  for (const [name, fields] of doorVars) {
    const v = (field: DoorField) => `KNOCK_DOOR_${name}_${field}`;
    const signed = fields.has("SPA_KEY") && fields.has("SPA_HMAC_KEY");
    if (!fields.has("SEQUENCE") && !signed) {
      for (const [field, variable] of fields) problems.push({ variable, message: doorlessMessage(name, field, fields) });
      continue;
    }
    for (const [field, variable] of fields) {
      const orphan = SPA_FIELDS.includes(field as SpaField) ? !signed : SEQUENCE_FIELDS.includes(field) && !fields.has("SEQUENCE");
      if (orphan) problems.push({ variable, message: doorlessMessage(name, field, fields) });
    }
    if (name.length > MAX_DOOR_NAME) {
      problems.push({ variable: [...fields.values()][0] ?? v("SEQUENCE"), message: `door name ${name} is longer than ${MAX_DOOR_NAME} characters` });
    }
    const door: Door = {
      name,
      sequence: fields.has("SEQUENCE") ? read(v("SEQUENCE"), () => get(v("SEQUENCE")).required().asSequence(), []) : [],
      closeSequence: read(v("CLOSE_SEQUENCE"), () => get(v("CLOSE_SEQUENCE")).asSequence() ?? null, null),
      ports: read(v("PORTS"), () => getOr(v("PORTS"), DEFAULTS.PORTS).asPorts(), []),
      // Fallbacks are the defaults, so an unparsable value is reported once, not again as "0 seconds".
      seqTimeoutMs: read(
        v("SEQ_TIMEOUT"),
        () => getOr(v("SEQ_TIMEOUT"), DEFAULTS.SEQ_TIMEOUT).asSecondsMs(),
        Number(DEFAULTS.SEQ_TIMEOUT) * 1000,
      ),
      openForMs: read(v("OPEN_FOR"), () => getOr(v("OPEN_FOR"), DEFAULTS.OPEN_FOR).asSecondsMs(), Number(DEFAULTS.OPEN_FOR) * 1000),
      tcpFlags: read(v("TCPFLAGS"), () => getOr(v("TCPFLAGS"), DEFAULTS.TCPFLAGS).asTcpFlags(), { set: 0, clear: 0 }),
      onOpen: read(v("ON_OPEN"), () => get(v("ON_OPEN")).asArgv() ?? null, null),
      onClose: read(v("ON_CLOSE"), () => get(v("ON_CLOSE")).asArgv() ?? null, null),
      spa: parseDoorSpa(
        (field) => fields.has(field),
        (field, parse, fallback) => {
          const text = env[v(field)];
          return text === undefined ? undefined : read(v(field), () => parse(text), fallback);
        },
      ),
    };
    if (fields.has("SEQ_TIMEOUT") && door.seqTimeoutMs === 0) {
      problems.push({ variable: v("SEQ_TIMEOUT"), message: "must be more than 0 seconds" });
    }
    if (door.openForMs === 0 && fields.has("OPEN_FOR") && !fields.has("CLOSE_SEQUENCE")) {
      problems.push({
        variable: v("OPEN_FOR"),
        message: `0 means "until the close sequence", but ${v("CLOSE_SEQUENCE")} is not set`,
      });
    }
    if (door.openForMs > MAX_GRANT_SECONDS * 1000) {
      problems.push({ variable: v("OPEN_FOR"), message: `is more than ${MAX_GRANT_SECONDS} seconds, the longest timeout a kernel set entry holds` });
    }
    if (door.openForMs % 1000 !== 0) {
      problems.push({ variable: v("OPEN_FOR"), message: "the kernel expires grants in whole seconds; give a whole number" });
    }
    if (door.closeSequence && sameSequence(door.closeSequence, door.sequence)) {
      problems.push({ variable: v("CLOSE_SEQUENCE"), message: "is the same as the open sequence" });
    }
    doors.push(door);
  }
  if (doorVars.size === 0) {
    problems.push({
      variable: "KNOCK_DOOR_<NAME>_SEQUENCE",
      message: "no door is configured; set e.g. KNOCK_DOOR_SSH_SEQUENCE=7000,8000,9000, or KNOCK_DOOR_SSH_SPA_KEY and KNOCK_DOOR_SSH_SPA_HMAC_KEY for a signed door",
    });
  }
  checkSequenceClashes(doors, problems);
  const firewall = read("KNOCK_FIREWALL", () => getOr("KNOCK_FIREWALL", DEFAULTS.KNOCK_FIREWALL).asFirewall(), "auto");

  const config: Config = {
    interfaces: read("KNOCK_INTERFACE", () => get("KNOCK_INTERFACE").asInterfaces() ?? null, null),
    doors,
    allow: read("KNOCK_ALLOW", () => get("KNOCK_ALLOW").asCidrList() ?? [], []),
    httpAddr: read("KNOCK_HTTP_ADDR", () => getOr("KNOCK_HTTP_ADDR", DEFAULTS.KNOCK_HTTP_ADDR).asListenAddr(), {
      host: "127.0.0.1",
      port: 9180,
    }),
    ...parseEngine(env, firewall, doors, problems),
    onExit: read("KNOCK_ON_EXIT", () => getOr("KNOCK_ON_EXIT", DEFAULTS.KNOCK_ON_EXIT).asOnExit(), "keep"),
    dryRun: read("KNOCK_DRY_RUN", () => getOr("KNOCK_DRY_RUN", DEFAULTS.KNOCK_DRY_RUN).asFlag(), false),
    maxTracked: read("KNOCK_MAX_TRACKED", () => getOr("KNOCK_MAX_TRACKED", DEFAULTS.KNOCK_MAX_TRACKED).asMaxTracked(), 1),
    maxTrackedPerPrefix: read(
      "KNOCK_MAX_TRACKED_PER_PREFIX",
      () => getOr("KNOCK_MAX_TRACKED_PER_PREFIX", DEFAULTS.KNOCK_MAX_TRACKED_PER_PREFIX).asMaxTracked(),
      1,
    ),
    maxGrants: read("KNOCK_MAX_GRANTS", () => getOr("KNOCK_MAX_GRANTS", DEFAULTS.KNOCK_MAX_GRANTS).asMaxGrants(), 1),
    maxGrantsPerPrefix: read("KNOCK_MAX_GRANTS_PER_PREFIX", () => getOr("KNOCK_MAX_GRANTS_PER_PREFIX", DEFAULTS.KNOCK_MAX_GRANTS_PER_PREFIX).asMaxGrants(), 1),
    sourcePrefixes: {
      v4: read("KNOCK_SOURCE_PREFIX_V4", () => getOr("KNOCK_SOURCE_PREFIX_V4", DEFAULTS.KNOCK_SOURCE_PREFIX_V4).asPrefixV4(), 24),
      v6: read("KNOCK_SOURCE_PREFIX_V6", () => getOr("KNOCK_SOURCE_PREFIX_V6", DEFAULTS.KNOCK_SOURCE_PREFIX_V6).asPrefixV6(), 64),
    },
    hookConcurrency: read(
      "KNOCK_HOOK_CONCURRENCY",
      () => getOr("KNOCK_HOOK_CONCURRENCY", DEFAULTS.KNOCK_HOOK_CONCURRENCY).asHookConcurrency(),
      Number(DEFAULTS.KNOCK_HOOK_CONCURRENCY),
    ),
    hookTimeoutMs: read(
      "KNOCK_HOOK_TIMEOUT",
      () => getOr("KNOCK_HOOK_TIMEOUT", DEFAULTS.KNOCK_HOOK_TIMEOUT).asSecondsMs(),
      Number(DEFAULTS.KNOCK_HOOK_TIMEOUT) * 1000,
    ),
    reconcileIntervalMs: read(
      "KNOCK_RECONCILE_INTERVAL",
      () => getOr("KNOCK_RECONCILE_INTERVAL", DEFAULTS.KNOCK_RECONCILE_INTERVAL).asSecondsMs(),
      2000,
    ),
    metricsToken: env["KNOCK_METRICS_TOKEN"] ?? null,
    secretFiles: Object.fromEntries(files),
    logLevel: read("KNOCK_LOG_LEVEL", () => getOr("KNOCK_LOG_LEVEL", DEFAULTS.KNOCK_LOG_LEVEL).asLogLevel(), "info"),
    logFormat: read("KNOCK_LOG_FORMAT", () => getOr("KNOCK_LOG_FORMAT", DEFAULTS.KNOCK_LOG_FORMAT).asLogFormat(), "json"),
    docker: parseDocker(env, problems),
    cluster: parseClusterConfig(env, readFile, problems),
  };
  checkLabelOnlyDoors(doors, config.docker, problems);
  checkSignedDoors(doors, config.cluster, problems);
  if (config.reconcileIntervalMs < 100) {
    problems.push({ variable: "KNOCK_RECONCILE_INTERVAL", message: "must be at least 0.1 seconds" });
  }
  if (config.hookTimeoutMs === 0) {
    problems.push({ variable: "KNOCK_HOOK_TIMEOUT", message: "must be more than 0 seconds: a hook that hangs must be killed some time" });
  }
  for (const [variable, ms] of [["KNOCK_RECONCILE_INTERVAL", config.reconcileIntervalMs], ["KNOCK_HOOK_TIMEOUT", config.hookTimeoutMs]] as const) {
    if (ms > MAX_TIMER_MS) problems.push({ variable, message: `is more than ${Math.floor(MAX_TIMER_MS / 1000)} seconds, the longest a timer can wait` });
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}

export function sameSequence(a: readonly PortSpec[], b: readonly PortSpec[]): boolean {
  return a.length === b.length && a.every((p, i) => p.port === b[i]?.port && p.proto === b[i]?.proto);
}

/**
 * Each owner whose sequence repeats an earlier owner's, paired with that earlier owner (an empty
 * sequence owns nothing). Two doors on one sequence would both open on one knock: almost surely a
 * copy-paste slip.
 */
export function sequenceClashes<T>(owners: readonly T[], sequenceOf: (owner: T) => readonly PortSpec[]): [clash: T, first: T][] {
  const firstOwner = new Map<string, T>();
  const clashes: [T, T][] = [];
  for (const owner of owners) {
    const seq = sequenceOf(owner);
    if (seq.length === 0) continue;
    const key = seq.map((p) => `${p.port}:${p.proto}`).join(",");
    const first = firstOwner.get(key);
    if (first === undefined) firstOwner.set(key, owner);
    else clashes.push([owner, first]);
  }
  return clashes;
}

function checkSequenceClashes(doors: readonly Door[], problems: ConfigProblem[]): void {
  const sequences = doors.flatMap((door) => [
    { variable: `KNOCK_DOOR_${door.name}_SEQUENCE`, seq: door.sequence },
    { variable: `KNOCK_DOOR_${door.name}_CLOSE_SEQUENCE`, seq: door.closeSequence ?? [] },
  ]);
  for (const [clash, first] of sequenceClashes(sequences, (s) => s.seq)) {
    problems.push({ variable: clash.variable, message: `is the same sequence as ${first.variable}` });
  }
}

/** Why a door variable belongs to nothing: its door lacks the sequence or the keys it needs. */
function doorlessMessage(name: string, field: DoorField, fields: ReadonlyMap<DoorField, string>): string {
  const v = (f: string) => `KNOCK_DOOR_${name}_${f}`;
  if (field === "SPA_KEY" || field === "SPA_HMAC_KEY") {
    const other = field === "SPA_KEY" ? "SPA_HMAC_KEY" : "SPA_KEY";
    return `a signed door needs both keys, and ${v(other)} is not set (fwknop --key-gen prints KEY_BASE64 and HMAC_KEY_BASE64)`;
  }
  if (SPA_FIELDS.includes(field as SpaField)) return `door ${name} is not signed (that takes both ${v("SPA_KEY")} and ${v("SPA_HMAC_KEY")}), so this setting belongs to nothing`;
  if (fields.has("SPA_KEY") && fields.has("SPA_HMAC_KEY")) return `door ${name} is opened by signed datagrams only (no ${v("SEQUENCE")}), so this setting belongs to nothing`;
  // KNOCK_DOOR_X_CLOSE_SEQUENCE always reads as door X's close sequence, never as door X_CLOSE.
  const hint = field === "CLOSE_SEQUENCE" ? ` (a door name cannot end in _CLOSE: this is door ${name}'s close sequence)` : "";
  return `door ${name} has no ${v("SEQUENCE")}, so this setting belongs to nothing${hint}`;
}

function unknownVariableMessage(variable: string, present: readonly string[]): string {
  const doorNames = present.map((v) => DOOR_VAR.exec(v)?.[1]).filter((n): n is string => n !== undefined);
  const candidates = [
    ...GLOBAL_VARIABLES,
    ...new Set(doorNames.flatMap((n) => DOOR_FIELDS.map((f) => `KNOCK_DOOR_${n}_${f}`))),
  ];
  // A door variable with a misspelt field: suggest the field on the same door.
  const doorPrefix = /^KNOCK_DOOR_([A-Z0-9_]+)_[A-Z]+$/.exec(variable);
  if (doorPrefix) {
    const parts = variable.split("_");
    for (let i = 3; i < parts.length; i++) {
      const name = parts.slice(2, i).join("_");
      candidates.push(...DOOR_FIELDS.map((f) => `KNOCK_DOOR_${name}_${f}`));
    }
  }
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = editDistance(variable, c);
    if (d < bestDistance) [best, bestDistance] = [c, d];
  }
  const hint = best !== undefined && bestDistance <= Math.max(2, Math.floor(variable.length / 5)) ? `; did you mean ${best}?` : "";
  return `unknown variable${hint}`;
}

function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) {
      cur[j] = Math.min((prev[j] ?? 0) + 1, (cur[j - 1] ?? 0) + 1, (prev[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = cur;
  }
  return prev[b.length] ?? 0;
}
