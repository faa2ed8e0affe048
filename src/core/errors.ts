/** Error catalogue: a stable code per failure class, and messages that say what to change. */

export type ErrorCode =
  | "KNOCK_E_CONFIG"
  | "KNOCK_E_FIREWALL"
  | "KNOCK_E_CAPTURE"
  | "KNOCK_E_USAGE"
  | "KNOCK_E_HOOK"
  /** The Docker engine (KNOCK_DOCKER) cannot be reached or answered with an error. */
  | "KNOCK_E_DOCKER"
  /** Not one of ours: a bug, or a failure nothing above classified. */
  | "KNOCK_E_INTERNAL";

export class KnockError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = "KnockError";
  }
}

/** One problem with one variable; configuration reports all of them at once. */
export interface ConfigProblem {
  variable: string;
  message: string;
}

export class ConfigError extends KnockError {
  constructor(readonly problems: readonly ConfigProblem[]) {
    super("KNOCK_E_CONFIG", problems.map((p) => `${p.variable}: ${p.message}`).join("\n"));
    this.name = "ConfigError";
  }
}

/** The daemon's refusal format, shared by `knockgate check`: one indented "VARIABLE: message" line each. */
export const problemLines = (problems: readonly ConfigProblem[]): string => problems.map((p) => `  ${p.variable}: ${p.message}\n`).join("");

/** A command line that cannot be run as given: an unknown option, a stray or missing argument. */
export class UsageError extends KnockError {
  constructor(message: string) {
    super("KNOCK_E_USAGE", message);
    this.name = "UsageError";
  }
}

export class FirewallError extends KnockError {
  constructor(
    message: string,
    readonly command: readonly string[],
    readonly stderr: string,
  ) {
    super("KNOCK_E_FIREWALL", [message, command.join(" "), stderr.trim()].filter(Boolean).join(": "));
    this.name = "FirewallError";
  }
}

export class CaptureError extends KnockError {
  constructor(
    readonly iface: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super("KNOCK_E_CAPTURE", `capture on ${iface}: ${message}`, options);
    this.name = "CaptureError";
  }
}

/** The fields every error log line carries: the catalogue's code beside the message. */
export function errorFields(err: unknown, fallback: ErrorCode = "KNOCK_E_INTERNAL"): { code: ErrorCode; err: string } {
  if (err instanceof KnockError) return { code: err.code, err: err.message };
  return { code: fallback, err: err instanceof Error ? err.message : String(err) };
}

/** Exit codes from sysexits.h, so service managers can tell a config error from a crash. */
export const EXIT_CONFIG = 78;
export const EXIT_USAGE = 64;
export const EXIT_SOFTWARE = 70;
