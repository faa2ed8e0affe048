/**
 * Secrets from files, the Docker and Kubernetes convention: `<VARIABLE>_FILE=/run/secrets/x` stands
 * for `<VARIABLE>` with the file's content. Resolved before anything is parsed, so every other rule
 * applies to the content as if it had been set directly; where a value came from is kept so that
 * messages can name the file instead of showing the secret.
 */
import type { ConfigProblem } from "../core/errors.js";

/** Settings that are secrets: each may be given as `<VARIABLE>_FILE`. */
const SECRET = /^KNOCK_DOOR_[A-Z0-9_]+?_(?:CLOSE_SEQUENCE|SEQUENCE|SPA_KEY|SPA_HMAC_KEY)$|^KNOCK_METRICS_TOKEN$/;
/** Secrets that only files may hold: a value set in the environment shows in `docker inspect`. */
export const FILE_ONLY = ["KNOCK_METRICS_TOKEN"] as const;

export type ReadFile = (path: string) => string;

export interface ResolvedEnv {
  /** The environment with every `_FILE` variable replaced by the variable it stands for. */
  env: Record<string, string | undefined>;
  /** Variable -> the file its value came from. */
  files: Map<string, string>;
  problems: ConfigProblem[];
}

export const isSecret = (variable: string): boolean => SECRET.test(variable);

export function resolveSecretFiles(env: Readonly<Record<string, string | undefined>>, readFile: ReadFile): ResolvedEnv {
  const resolved: Record<string, string | undefined> = { ...env };
  const files = new Map<string, string>();
  const problems: ConfigProblem[] = [];
  for (const [fileVariable, path] of Object.entries(env)) {
    if (!fileVariable.startsWith("KNOCK_") || !fileVariable.endsWith("_FILE") || path === undefined) continue;
    const variable = fileVariable.slice(0, -"_FILE".length);
    // Not a secret: left as it is, for the unknown-variable check to report.
    if (!isSecret(variable)) continue;
    delete resolved[fileVariable];
    if (env[variable] !== undefined) {
      problems.push({ variable: fileVariable, message: `${variable} is set too; give the secret one way, not both` });
      continue;
    }
    let content: string;
    try {
      content = readFile(path);
    } catch (err) {
      const reason = (err as NodeJS.ErrnoException).code ?? (err as Error).message;
      problems.push({ variable: fileVariable, message: `cannot read ${path} (${reason})` });
      continue;
    }
    // Files written by editors and `echo` end in a newline; it is not part of the secret.
    const value = content.trim();
    if (value === "") {
      problems.push({ variable: fileVariable, message: `${path} is empty` });
      continue;
    }
    resolved[variable] = value;
    files.set(variable, path);
  }
  for (const variable of FILE_ONLY) {
    if (env[variable] !== undefined && env[`${variable}_FILE`] === undefined) {
      delete resolved[variable];
      problems.push({ variable, message: `is a secret, read from a file only: put it in a file and set ${variable}_FILE to its path` });
    }
  }
  return { env: resolved, files, problems };
}
