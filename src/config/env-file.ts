/** KEY=VALUE env files (the docker --env-file / compose format): comments, blank lines, optional quotes. */
import type { ConfigProblem } from "../core/errors.js";

export interface EnvFile {
  env: Record<string, string>;
  /** One per line that is not KEY=VALUE, named `<name>:<line number>`; the line itself is never shown (it may hold a secret). */
  problems: ConfigProblem[];
}

/** `name` is what problems call the file (its path). */
export function parseEnvFile(text: string, name: string): EnvFile {
  const env: Record<string, string> = {};
  const problems: ConfigProblem[] = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) {
      problems.push({ variable: `${name}:${index + 1}`, message: "not a KEY=VALUE line (a name of letters, digits and _, then =); the line is not shown, it may hold a secret" });
      continue;
    }
    const [, key = "", value = ""] = m;
    // A quoted value may be followed by an inline comment: A="x y" # note.
    const quoted = /^(["'])((?:(?!\1).)*)\1\s+#.*$/.exec(value) ?? /^(["'])(.*)\1$/.exec(value);
    env[key] = quoted ? (quoted[2] ?? "") : value.replace(/\s+#.*$/, "");
  }
  return { env, problems };
}
