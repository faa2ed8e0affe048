#!/usr/bin/env node
/** Entry point: `knockgate [run] | check | knock | convert | cleanup | healthcheck | version | help`. */
import { readFileSync } from "node:fs";
import { CONVERT_USAGE, runConvert } from "./convert/command.js";
import { CHECK_OPTIONS, CHECK_USAGE, runCheck } from "./check.js";
import { command, type Command } from "./command.js";
import { EXIT_CONFIG, EXIT_SOFTWARE, EXIT_USAGE, ConfigError, UsageError } from "../core/errors.js";
import { createLogger, flushLogs } from "../adapters/log.js";
import { systemClock } from "../adapters/clock.js";
import { runDaemon } from "../app/run.js";
import { KNOCK_OPTIONS, KNOCK_USAGE, runKnock } from "./knock.js";
import { removeEverything } from "../adapters/firewall/index.js";
import { parseListenAddr } from "../config/values.js";
import { REVISION, VERSION } from "../app/version.js";

const USAGE = `usage: knockgate [-V | --version] [-h | --help] [COMMAND [ARGUMENTS]]

  run            run the daemon (the default), configured by KNOCK_* variables
  check          validate the KNOCK_* configuration and print what it amounts to; changes nothing
  knock          knock on a host
  convert FILE   print a knockgate env file for a knockd.conf or fwknopd access.conf
  cleanup        remove every firewall object knockgate made (chains, sets, table)
  healthcheck    exit 0 when the daemon's /healthz answers (for container HEALTHCHECK)
  version        print the version (also -V, --version)
  help [COMMAND] print this help, or a command's (also: knockgate COMMAND --help)
`;

/** Usage of a command whose only option is -h/--help. */
const usage = (synopsis: string, what: string) => `usage: knockgate ${synopsis}

${what}

  -h, --help   show this help
`;

function printVersion(): number {
  // The runtime too: in an image, Node.js comes with the base image, not with knockgate's version.
  process.stdout.write(`knockgate ${VERSION} (revision ${REVISION}, Node.js ${process.version})\n`);
  return 0;
}

async function healthcheck(): Promise<number> {
  const addr = parseListenAddr(process.env["KNOCK_HTTP_ADDR"] ?? "127.0.0.1:9180");
  const host = addr.host.includes(":") ? `[${addr.host}]` : addr.host === "0.0.0.0" ? "127.0.0.1" : addr.host;
  try {
    const res = await fetch(`http://${host}:${addr.port}/healthz`, { signal: AbortSignal.timeout(3000) });
    return res.ok ? 0 : 1;
  } catch {
    return 1;
  }
}

const COMMANDS = new Map<string, Command>([
  [
    "run",
    command(
      usage("[run]", "Runs the daemon, configured by the KNOCK_* environment variables.\nTry a configuration first with: knockgate check"),
      {},
      0,
      async () => {
        const code = await runDaemon(process.env);
        // Exit explicitly: a libpcap or child-process handle left behind must not keep a stopped daemon
        // alive. Logging is asynchronous, so write out what is queued first.
        await flushLogs(systemClock);
        return process.exit(code);
      },
    ),
  ],
  ["check", command(CHECK_USAGE, CHECK_OPTIONS, 0, ({ values }) => runCheck(values, process.env))],
  ["knock", command(KNOCK_USAGE, KNOCK_OPTIONS, Infinity, (args) => (args.values.version ? printVersion() : runKnock(args, process.env)))],
  [
    "convert",
    {
      // convert parses its own arguments (it answers --help and unknown options itself).
      usage: CONVERT_USAGE,
      invoke: (argv) =>
        runConvert(argv, {
          readFile: (path) => readFileSync(path, "utf8"),
          stdout: (text) => process.stdout.write(text),
          stderr: (text) => process.stderr.write(text),
        }),
    },
  ],
  [
    "cleanup",
    command(usage("cleanup", "Removes every firewall object knockgate made (chains, sets, table), in every backend present,\nwhatever the configuration says."), {}, 0, async () => {
      // Stdout is for the result line; retries of transient failures are logged on stderr.
      const removed = await removeEverything(createLogger({ logLevel: "warn", logFormat: "json" }, 2));
      process.stdout.write(`removed knockgate objects from: ${removed.join(", ") || "nothing (no firewall tools found)"}\n`);
      await flushLogs(systemClock);
      return 0;
    }),
  ],
  ["healthcheck", command(usage("healthcheck", "Exits 0 when the daemon's /healthz on KNOCK_HTTP_ADDR answers, 1 otherwise."), {}, 0, healthcheck)],
  ["version", command(usage("version", "Prints the version (also: knockgate -V, knockgate --version)."), {}, 0, printVersion)],
  [
    "help",
    command(usage("help [COMMAND]", "Prints the list of commands, or the usage of COMMAND."), {}, 1, ({ positionals: [name] }) => {
      process.stdout.write(name === undefined ? USAGE : commandNamed(name).usage);
      return 0;
    }),
  ],
]);

function commandNamed(name: string): Command {
  const found = COMMANDS.get(name);
  if (!found) throw new UsageError(`unknown command "${name}"`);
  return found;
}

/** Options before any command: -V/--version and -h/--help; `knockgate --` alone runs the daemon, like `knockgate`. */
const TOP_LEVEL = command(USAGE, { version: { type: "boolean", short: "V" } }, 0, ({ values }) =>
  values.version ? printVersion() : commandNamed("run").invoke([]),
);

async function main(argv: string[]): Promise<number> {
  const [name = "run", ...rest] = argv;
  const topLevel = name.startsWith("-");
  let target: Command | undefined;
  try {
    target = topLevel ? TOP_LEVEL : commandNamed(name);
    return await target.invoke(topLevel ? argv : rest);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    // The one place a usage error becomes output: the message, the usage it broke, exit 64.
    process.stderr.write(`knockgate${topLevel || !target ? "" : ` ${name}`}: ${err.message}\n${target?.usage ?? USAGE}`);
    return EXIT_USAGE;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof ConfigError) {
      process.exitCode = EXIT_CONFIG;
      return;
    }
    process.stderr.write(`knockgate: ${(err as Error).message ?? String(err)}\n`);
    process.exitCode = EXIT_SOFTWARE;
  },
);
