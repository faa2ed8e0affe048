/** The env file of `--env-file FILE` / `--config FILE`, as `knockgate check` and `knockgate knock` read it. */
import { readFileSync } from "node:fs";
import { parseEnvFile, type EnvFile } from "../config/env-file.js";
import { KnockError } from "../core/errors.js";

/** "no such file or directory" rather than Node's "ENOENT: no such file or directory, open 'x'". */
function readFailure(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  return message.replace(/^E[A-Z]+: /, "").replace(/, \w+ '.*'$/, "");
}

/** Throws a KNOCK_E_CONFIG error naming the file when it cannot be read; lines it cannot parse are problems. */
export function readEnvFile(file: string, readFile: (path: string) => string = (path) => readFileSync(path, "utf8")): EnvFile {
  let text: string;
  try {
    text = readFile(file);
  } catch (err) {
    throw new KnockError("KNOCK_E_CONFIG", `cannot read ${file}: ${readFailure(err)}`, { cause: err });
  }
  return parseEnvFile(text, file);
}
