/** KEY=VALUE env files (the docker --env-file / compose format): comments, blank lines, optional quotes. */
export function parseEnvFile(text: string): Record<string, string> {
  const env: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    const [, key = "", value = ""] = m;
    // A quoted value may be followed by an inline comment: A="x y" # note.
    const quoted = /^(["'])((?:(?!\1).)*)\1\s+#.*$/.exec(value) ?? /^(["'])(.*)\1$/.exec(value);
    env[key] = quoted ? (quoted[2] ?? "") : value.replace(/\s+#.*$/, "");
  }
  return env;
}
