/**
 * `knockgate check [--config FILE] [--json]`: validates the KNOCK_* variables with the daemon's own
 * parseConfig and prints the configuration they amount to. It only reads: no firewall change, no
 * capture, no listener, so it is safe on a live host and in CI.
 */
import { scryptSync } from "node:crypto";
import { chooseBackend, type BackendChoice } from "../adapters/firewall/index.js";
import { defaultInterfaces, NO_DEFAULT_ROUTE } from "../adapters/interfaces.js";
import { GLOBAL_VARIABLES, parseConfig } from "../config/config.js";
import { readEnvFile } from "./env-file.js";
import { ConfigError, EXIT_CONFIG, FirewallError, KnockError, UsageError, problemLines, type ConfigProblem } from "../core/errors.js";
import { listenAddrText, portsText, tcpFlagsText, type Config, type PortSpec } from "../core/types.js";
import type { Parsed } from "./command.js";
import { conflictText, decideDoors, effectiveDoors, type EffectiveDoor, type PortOrigin } from "../core/docker/desired.js";
import { dockerEngine } from "../adapters/docker.js";
import { ProtectionService } from "../app/protection.js";
import { DockerWatch } from "../app/docker-watch.js";
import { createLogger } from "../adapters/log.js";
import { systemClock } from "../adapters/clock.js";
import { describeProgram, type ProgramDescription } from "../adapters/firewall/nftables/knock.js";
import { compileDoors } from "../core/knock/compile.js";

export const CHECK_USAGE = `usage: knockgate check [--env-file FILE] [--json]

Validates the KNOCK_* variables exactly as \`knockgate run\` would and prints the configuration they
amount to, "(default)" where a default applies. Each knock sequence is shown as its length and a
fingerprint (a one-way hash: equal sequences have equal fingerprints), never as ports. Also shows
the interfaces and the firewall backend the daemon would use on this host. Changes nothing.

Exit status: 0 valid, 78 invalid (every problem listed, FILE's lines that are not KEY=VALUE
too) or FILE unreadable.

      --env-file FILE  read the variables from FILE, an env file (KEY=VALUE lines, the format of
                       docker --env-file), instead of the environment; --config FILE is the same.
                       (Node itself refuses a missing --env-file FILE, exit 9, before knockgate runs.)
      --json         print the result as JSON on stdout
  -h, --help         show this help
`;

// --env-file, as `docker run` calls it; --config as `knockgate knock` does. Node also looks at a
// script's --env-file argument and exits 9 when the file is missing (nodejs/node#54232), so the
// two names behave alike except for that message.
export const CHECK_OPTIONS = { "env-file": { type: "string" }, config: { type: "string" }, json: { type: "boolean" } } as const;

/** One variable's effective value, in the notation the variable is written in. */
export interface Setting {
  variable: string;
  value: string;
  /** The variable is not set, so the default applies. */
  default: boolean;
  /** What the value means on this host, where that is not plain from the value. */
  note?: string;
}

/** A sequence told apart from others without giving it away. */
export interface SequenceSummary {
  knocks: number;
  fingerprint: string;
  /** The file it was read from (KNOCK_..._FILE), if not the environment. */
  file?: string;
}

/** A signed door's settings; its keys only as set, and the file each came from. */
export interface SpaReport {
  keys: { variable: string; file?: string }[];
  settings: Setting[];
}

export interface DoorReport {
  name: string;
  /** null: opened by signed datagrams only. */
  sequence: SequenceSummary | null;
  closeSequence: SequenceSummary | null;
  settings: Setting[];
  /** The ports the door protects on this host and where each comes from (env, or a labelled container). */
  ports: PortOrigin[];
  /** Set or not only: a hook's command line may hold a token. */
  onOpen: boolean;
  onClose: boolean;
  /** null: not a signed door. */
  spa: SpaReport | null;
  /** KNOCK_ENGINE=kernel: what each sequence compiles to in the kernel (names and sizes, never ports). */
  kernel: ProgramDescription[];
}

export interface CheckReport {
  valid: true;
  source: string;
  doors: DoorReport[];
  settings: Setting[];
  /** Things on this host that `run` would stumble on, though the configuration itself is valid. */
  warnings: string[];
}

/** What the report asks of the host; both only read. */
export interface HostProbe {
  defaultInterfaces(): Promise<string[]>;
  chooseBackend(config: Config): Promise<BackendChoice>;
  /** Each door's ports with labelled containers counted, refused label claims, and what Docker looked like; absent: env only. */
  dockerDoors?(config: Config): Promise<DockerView>;
}

export interface DockerView {
  effective: EffectiveDoor[];
  /** Label claims refused because another door owns the port (conflictText). */
  conflicts: string[];
  state: string;
}

/** The doors' own ports only: Docker not asked, or not followed. */
const envOnly = (config: Config, state: string): DockerView => ({ effective: effectiveDoors(config.doors, decideDoors(config.doors, []), []), conflicts: [], state });

// A fast hash of a short port list is reversed by trying every sequence; scrypt makes each try
// costly. The salt is fixed so that the same sequence has the same fingerprint on every host.
const FINGERPRINT_SALT = "knockgate sequence fingerprint";

export function summarize(sequence: readonly PortSpec[]): SequenceSummary {
  const canonical = sequence.map((p) => `${p.port}:${p.proto}`).join(",");
  return { knocks: sequence.length, fingerprint: scryptSync(canonical, FINGERPRINT_SALT, 4).toString("hex") };
}

const fromFile = (config: Config, variable: string): { file?: string } => {
  const file = config.secretFiles[variable];
  return file === undefined ? {} : { file };
};

function describeBackend(choice: BackendChoice): string {
  switch (choice.backend) {
    case "dry-run":
      return `dry run: the ${choice.renders} plan is logged, the firewall is not touched`;
    case "iptables":
      return `iptables with ipset, ${choice.variant === "nft" ? "nf_tables" : "legacy"} variant, on this host`;
    case "nftables":
      return "nftables on this host";
  }
}

/** The report for a configuration parseConfig accepted from `env`. */
export async function checkReport(config: Config, env: Readonly<Record<string, string | undefined>>, source: string, host: HostProbe): Promise<CheckReport> {
  const setting = (variable: string, value: string, note?: string): Setting => ({
    variable,
    value,
    default: env[variable] === undefined,
    ...(note === undefined ? {} : { note }),
  });
  const warnings: string[] = [];
  const docker = (await host.dockerDoors?.(config)) ?? envOnly(config, "not asked");
  for (const conflict of docker.conflicts) warnings.push(`label conflict: ${conflict}`);
  const portsOf = (name: string) => docker.effective.find((d) => d.door === name)?.ports ?? [];

  const doors = config.doors.map((door): DoorReport => {
    const v = (field: string) => `KNOCK_DOOR_${door.name}_${field}`;
    const { spa } = door;
    return {
      name: door.name,
      sequence: door.sequence.length === 0 ? null : { ...summarize(door.sequence), ...fromFile(config, v("SEQUENCE")) },
      closeSequence: door.closeSequence && { ...summarize(door.closeSequence), ...fromFile(config, v("CLOSE_SEQUENCE")) },
      settings: [
        setting(v("PORTS"), portsText(door) || "none", door.ports.length === 0 ? "only ports that Docker labels give" : undefined),
        // A door opened by signed datagrams only has no sequence for these to time or filter.
        ...(door.sequence.length === 0 ? [] : [setting(v("SEQ_TIMEOUT"), String(door.seqTimeoutMs / 1000))]),
        setting(v("OPEN_FOR"), String(door.openForMs / 1000), door.openForMs === 0 ? "open until the close sequence" : undefined),
        ...(door.sequence.length === 0 ? [] : [setting(v("TCPFLAGS"), tcpFlagsText(door.tcpFlags))]),
      ],
      ports: portsOf(door.name),
      onOpen: door.onOpen !== null,
      onClose: door.onClose !== null,
      spa: spa && {
        keys: ["SPA_KEY", "SPA_HMAC_KEY"].map((field) => ({ variable: v(field), ...fromFile(config, v(field)) })),
        settings: [
          setting(v("SPA_PORT"), `${spa.port}/udp`),
          setting(v("SPA_HMAC_DIGEST"), spa.keys.hmacDigest),
          setting(v("SPA_MAX_AGE"), String(spa.maxAgeS)),
          setting(v("SPA_MAX_OPEN_FOR"), String(spa.maxOpenForS), "cap on the client's -f; without -f a grant lasts OPEN_FOR"),
          setting(v("SPA_REQUIRE_SOURCE_ADDRESS"), String(spa.requireSourceAddress), spa.requireSourceAddress ? "0.0.0.0 (fwknop -s) is refused" : undefined),
          setting(v("SPA_REQUIRE_USERNAME"), spa.username ?? "", spa.username === null ? "any username" : undefined),
        ],
      },
      kernel: config.engine === "kernel" ? compileDoors([door], config.maxTracked).map((p) => describeProgram(p, door.openForMs)) : [],
    };
  });

  let interfaceNote: string | undefined;
  let interfaces = config.interfaces;
  if (interfaces === null) {
    interfaces = await host.defaultInterfaces();
    interfaceNote = "the interfaces of this host's default routes";
    if (config.engine === "kernel") interfaceNote += ", for signed datagrams; the kernel engine's rules take knocks on every interface but loopback";
    if (interfaces.length === 0) warnings.push(`knockgate run would refuse to start here: ${NO_DEFAULT_ROUTE}`);
  }

  let backend: string;
  try {
    backend = describeBackend(await host.chooseBackend(config));
  } catch (err) {
    if (!(err instanceof FirewallError)) throw err;
    backend = "none usable on this host";
    warnings.push(`knockgate run would fail here: ${err.message}`);
  }

  const globals: Record<(typeof GLOBAL_VARIABLES)[number], Setting> = {
    KNOCK_INTERFACE: setting("KNOCK_INTERFACE", interfaces.join(","), interfaceNote),
    KNOCK_ALLOW: setting("KNOCK_ALLOW", config.allow.map((c) => c.text).join(",")),
    KNOCK_HTTP_ADDR: setting("KNOCK_HTTP_ADDR", listenAddrText(config.httpAddr)),
    KNOCK_FIREWALL: setting("KNOCK_FIREWALL", config.firewall, backend),
    KNOCK_ENGINE: setting("KNOCK_ENGINE", config.engine, config.engine === "kernel" ? "knocks recognised by nftables rules, which hold the sequences' ports" : undefined),
    KNOCK_ON_EXIT: setting("KNOCK_ON_EXIT", config.onExit),
    KNOCK_DRY_RUN: setting("KNOCK_DRY_RUN", String(config.dryRun)),
    KNOCK_MAX_TRACKED: setting("KNOCK_MAX_TRACKED", String(config.maxTracked)),
    KNOCK_MAX_TRACKED_PER_PREFIX: setting("KNOCK_MAX_TRACKED_PER_PREFIX", String(config.maxTrackedPerPrefix)),
    KNOCK_MAX_GRANTS: setting("KNOCK_MAX_GRANTS", String(config.maxGrants)),
    KNOCK_MAX_GRANTS_PER_PREFIX: setting("KNOCK_MAX_GRANTS_PER_PREFIX", String(config.maxGrantsPerPrefix)),
    KNOCK_SOURCE_PREFIX_V4: setting("KNOCK_SOURCE_PREFIX_V4", String(config.sourcePrefixes.v4)),
    KNOCK_SOURCE_PREFIX_V6: setting("KNOCK_SOURCE_PREFIX_V6", String(config.sourcePrefixes.v6)),
    KNOCK_RECONCILE_INTERVAL: setting("KNOCK_RECONCILE_INTERVAL", String(config.reconcileIntervalMs / 1000)),
    KNOCK_HOOK_TIMEOUT: setting("KNOCK_HOOK_TIMEOUT", String(config.hookTimeoutMs / 1000)),
    KNOCK_HOOK_CONCURRENCY: setting("KNOCK_HOOK_CONCURRENCY", String(config.hookConcurrency)),
    // The token itself is a secret: only whether there is one, and the file it came from.
    KNOCK_METRICS_TOKEN: {
      variable: "KNOCK_METRICS_TOKEN_FILE",
      value: config.secretFiles["KNOCK_METRICS_TOKEN"] ?? "",
      default: config.metricsToken === null,
      note: config.metricsToken === null ? "no token: /metrics serves the public set only" : "the full /metrics needs this bearer token",
    },
    KNOCK_LOG_LEVEL: setting("KNOCK_LOG_LEVEL", config.logLevel),
    KNOCK_LOG_FORMAT: setting("KNOCK_LOG_FORMAT", config.logFormat),
    KNOCK_DOCKER: setting("KNOCK_DOCKER", config.docker.mode, docker.state),
    KNOCK_DOCKER_HOST: setting("KNOCK_DOCKER_HOST", config.docker.host, config.docker.hostFrom === "DOCKER_HOST" ? "from DOCKER_HOST" : undefined),
    KNOCK_CLUSTER: setting("KNOCK_CLUSTER", config.cluster.mode),
    KNOCK_NODE_NAME: setting("KNOCK_NODE_NAME", config.cluster.mode === "kubernetes" ? config.cluster.nodeName : ""),
    KNOCK_CLUSTER_NAMESPACE: setting(
      "KNOCK_CLUSTER_NAMESPACE",
      config.cluster.mode === "kubernetes" ? config.cluster.namespace : "",
      config.cluster.mode === "kubernetes" && env["KNOCK_CLUSTER_NAMESPACE"] === undefined ? "the pod's own namespace" : undefined,
    ),
  };
  return { valid: true, source, doors, settings: GLOBAL_VARIABLES.map((v) => globals[v]), warnings };
}

function settingLine(s: Setting): string {
  const meaning = s.default ? ` (default${s.note === undefined ? "" : `: ${s.note}`})` : s.note === undefined ? "" : ` (${s.note})`;
  return `  ${s.variable}=${s.value}${meaning}\n`;
}

function sequenceLine(variable: string, summary: SequenceSummary | null): string {
  const origin = summary?.file === undefined ? "" : ` <from file ${summary.file}>`;
  return `  ${variable}: ${summary ? `${summary.knocks} knocks, fingerprint ${summary.fingerprint}${origin}` : "not set"}\n`;
}

export function reportText(report: CheckReport): string {
  const doors = report.doors.map((door) => {
    const v = (field: string) => `KNOCK_DOOR_${door.name}_${field}`;
    const hook = (field: string, set: boolean) => `  ${v(field)}: ${set ? "set" : "not set"}\n`;
    return (
      `\ndoor ${door.name}\n` +
      sequenceLine(v("SEQUENCE"), door.sequence) +
      sequenceLine(v("CLOSE_SEQUENCE"), door.closeSequence) +
      door.settings.map(settingLine).join("") +
      `  protected ports: ${door.ports.map((p) => `${p.port} (${p.from.join(", ")})`).join(", ") || "none"}\n` +
      hook("ON_OPEN", door.onOpen) +
      hook("ON_CLOSE", door.onClose) +
      (door.spa ? spaLines(door.spa) : "") +
      door.kernel.map(kernelLine).join("")
    );
  });
  return (
    `the configuration from ${report.source} is valid\n` +
    doors.join("") +
    `\nglobal settings\n${report.settings.map(settingLine).join("")}` +
    report.warnings.map((w) => `\nwarning: ${w}\n`).join("")
  );
}

function kernelLine(p: ProgramDescription): string {
  return (
    `  kernel rules of the ${p.sequence} sequence: chains ${p.chains.join(" and ")}, ${p.rules} rules each; ` +
    `sets ${p.sets.map((s) => `_${s}`).join(", ")} of each, at most ${p.setSize} sources each; a completion is ${p.completion}\n`
  );
}

function spaLines(spa: SpaReport): string {
  const keys = spa.keys.map((k) => `  ${k.variable}: set${k.file === undefined ? "" : ` <from file ${k.file}>`}\n`);
  return keys.join("") + spa.settings.map(settingLine).join("");
}

/** How long check waits for the Docker engine before reporting it out of reach. */
const CHECK_DOCKER_MS = 3000;

/** Lists labelled containers with the daemon's own watcher, once, and stops. */
async function dockerDoors(config: Config): Promise<DockerView> {
  if (config.docker.mode === "off") return envOnly(config, "labels are not followed");
  const log = createLogger({ logLevel: "silent", logFormat: "json" });
  const protection = new ProtectionService({ config, log, clock: systemClock });
  const watch = new DockerWatch({ config, engine: dockerEngine(config.docker.host, CHECK_DOCKER_MS), log, clock: systemClock, protection });
  await watch.initial(CHECK_DOCKER_MS);
  watch.stop();
  return { effective: protection.effective(), conflicts: protection.conflicts().map(conflictText), state: watch.checks()[0]?.detail ?? "" };
}

const realHost: HostProbe = { defaultInterfaces, chooseBackend: (config) => chooseBackend(config), dockerDoors };

export async function runCheck(values: Parsed<typeof CHECK_OPTIONS>["values"], processEnv: Readonly<Record<string, string | undefined>>): Promise<number> {
  if (values["env-file"] !== undefined && values.config !== undefined) throw new UsageError("give --env-file or --config, not both");
  const file = values["env-file"] ?? values.config;
  let env = processEnv;
  // Lines of the file that are not KEY=VALUE, reported with the configuration's own problems.
  let problems: ConfigProblem[] = [];
  if (file !== undefined) {
    try {
      ({ env, problems } = readEnvFile(file));
    } catch (err) {
      if (!(err instanceof KnockError)) throw err;
      process.stderr.write(`knockgate check: ${err.message}\n`);
      return EXIT_CONFIG;
    }
  }
  const source = file === undefined ? "the environment" : file;
  let config: Config | null = null;
  try {
    config = parseConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    problems = [...problems, ...err.problems];
  }
  if (config === null || problems.length > 0) {
    if (values.json) process.stdout.write(`${JSON.stringify({ valid: false, source, problems }, null, 2)}\n`);
    else process.stderr.write(`knockgate check: the configuration from ${source} is invalid:\n${problemLines(problems)}`);
    return EXIT_CONFIG;
  }
  const report = await checkReport(config, env, source, realHost);
  process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : reportText(report));
  return 0;
}
