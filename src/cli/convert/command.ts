/**
 * `knockgate convert FILE [--force]`: print a knockgate env file for a knockd.conf or an fwknopd
 * access.conf, told apart by their content. I/O comes in through `io` so tests run it without
 * spawning a process or touching the disk.
 */
import { EXIT_USAGE } from "../../core/errors.js";
import { isAccessConf, parseAccessConf } from "./access-conf.js";
import { convertAccessConf } from "./access-to-env.js";
import { KnockdConfSyntaxError, parseKnockdConf, type ConfIssue } from "./knockd-conf.js";
import { convertKnockdConf } from "./to-env.js";

export interface ConvertIo {
  /** Whole file as UTF-8; throws like fs.readFileSync. */
  readFile(path: string): string;
  stdout(text: string): void;
  stderr(text: string): void;
}

/** Something of knockd.conf was left out (only without --force). */
export const EXIT_INCOMPLETE = 1;
/** sysexits.h EX_DATAERR: knockd.conf itself is malformed. */
export const EXIT_DATAERR = 65;
/** sysexits.h EX_NOINPUT: knockd.conf cannot be read. */
export const EXIT_NOINPUT = 66;

export const CONVERT_USAGE = `usage: knockgate convert [--force] FILE

Prints a knockgate env file (KNOCK_* variables) on standard output for FILE: a knockd.conf (its
doors become knock sequences) or an fwknopd access.conf (its SOURCE stanzas become signed doors that
fwknop clients open), told apart by content. Everything that cannot be expressed is listed on
standard error as FILE:LINE: what — why.

  -f, --force   exit 0 even when something was left out
  -h, --help    show this help
`;

const READ_ERRORS: Readonly<Record<string, string>> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EISDIR: "is a directory",
};

/** Runs the command for `argv` (the arguments after "convert"); returns the exit code. */
export function runConvert(argv: readonly string[], io: ConvertIo): number {
  let force = false;
  const files: string[] = [];
  let options = true;
  for (const arg of argv) {
    if (options && arg === "--") options = false;
    else if (options && (arg === "-f" || arg === "--force")) force = true;
    else if (options && (arg === "-h" || arg === "--help")) {
      io.stdout(CONVERT_USAGE);
      return 0;
    } else if (options && arg.startsWith("-")) {
      io.stderr(`knockgate convert: unknown option ${arg}\n${CONVERT_USAGE}`);
      return EXIT_USAGE;
    } else files.push(arg);
  }
  const file = files[0];
  if (file === undefined || files.length > 1) {
    io.stderr(`knockgate convert: give exactly one knockd.conf or access.conf file${files.length > 1 ? `, not ${files.length}` : ""}\n${CONVERT_USAGE}`);
    return EXIT_USAGE;
  }

  let text: string;
  try {
    text = io.readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const reason = (code !== undefined ? READ_ERRORS[code] : undefined) ?? (err instanceof Error ? err.message : String(err));
    io.stderr(`knockgate convert: cannot read ${file}: ${reason}\n`);
    return EXIT_NOINPUT;
  }

  let result;
  try {
    result = isAccessConf(text) ? convertAccessConf(parseAccessConf(text), file) : convertKnockdConf(parseKnockdConf(text), file);
  } catch (err) {
    if (!(err instanceof KnockdConfSyntaxError)) throw err;
    io.stderr(err.errors.map((e) => `${file}:${e.line}: syntax error: ${e.message}\n`).join(""));
    return EXIT_DATAERR;
  }

  io.stdout(result.env);
  const where = (i: ConfIssue): string => (i.line > 0 ? `${file}:${i.line}` : file);
  const report = [
    ...result.problems.map((p) => ({ line: p.line, text: `${where(p)}: ${p.message}` })),
    ...result.warnings.map((w) => ({ line: w.line, text: `${where(w)}: warning: ${w.message}` })),
    ...result.notes.map((n) => ({ line: n.line, text: `${where(n)}: note: ${n.message}` })),
  ].sort((a, b) => a.line - b.line);
  io.stderr(report.map((r) => `${r.text}\n`).join(""));

  const count = result.problems.length;
  if (count === 0) return 0;
  const things = `${count} thing${count === 1 ? "" : "s"}`;
  if (force) {
    io.stderr(`knockgate convert: ${things} left out (--force)\n`);
    return 0;
  }
  io.stderr(`knockgate convert: ${things} could not be converted; fix ${file}, or pass --force to accept the output without them\n`);
  return EXIT_INCOMPLETE;
}
