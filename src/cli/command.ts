/**
 * A subcommand: its usage text and how it runs. Options are parsed before anything runs, so --help,
 * an unknown option or a stray argument never has a side effect.
 */
import { parseArgs, type ParseArgsConfig } from "node:util";
import { UsageError } from "../core/errors.js";

type Options = NonNullable<ParseArgsConfig["options"]>;

const HELP = { help: { type: "boolean", short: "h" } } as const;

/** What parseArgs gives for `options` (with -h/--help added). */
export type Parsed<O extends Options> = ReturnType<typeof parseArgs<{ args: string[]; options: O & typeof HELP; allowPositionals: true; strict: true }>>;

export interface Command {
  usage: string;
  /** Runs with the arguments after the command's name; resolves to the exit code. */
  invoke(argv: string[]): Promise<number> | number;
}

/** Parses `argv` strictly: an unknown option, a missing value or more than `maxPositionals` arguments is a UsageError. */
function parseCommandLine<O extends Options>(argv: string[], options: O, maxPositionals: number): Parsed<O> {
  const all = { ...options, ...HELP };
  let parsed: Parsed<O>;
  try {
    parsed = parseArgs({ args: argv, options: all, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError(unknownOption(argv, all) ?? (err as Error).message);
  }
  const stray = parsed.positionals[maxPositionals];
  if (stray !== undefined) throw new UsageError(`unexpected argument "${stray}"`);
  return parsed;
}

/** "unknown option --x" for the first undeclared option: parseArgs's own message suggests "--" even where no argument is taken. */
function unknownOption(argv: string[], options: Options): string | undefined {
  const { tokens } = parseArgs({ args: argv, options, allowPositionals: true, strict: false, tokens: true });
  const unknown = tokens.find((t) => t.kind === "option" && !Object.hasOwn(options, t.name));
  return unknown?.kind === "option" ? `unknown option ${unknown.rawName}` : undefined;
}

/** A command that answers -h/--help with `usage` and otherwise runs `run` with its parsed arguments. */
export function command<O extends Options>(
  usage: string,
  options: O,
  maxPositionals: number,
  run: (args: Parsed<O>) => Promise<number> | number,
): Command {
  return {
    usage,
    invoke(argv) {
      const args = parseCommandLine(argv, options, maxPositionals);
      // TypeScript cannot see `help` in the values of a generic O; it is there, from HELP.
      if ((args.values as { help?: boolean }).help) {
        process.stdout.write(usage);
        return 0;
      }
      return run(args);
    },
  };
}
