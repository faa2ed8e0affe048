#!/usr/bin/env node
/** Entry point: `knockgate [run] | cleanup | knock | convert | healthcheck | version`. */
import { readFileSync } from "node:fs";
import { runConvert } from "./convert/command.js";
import { EXIT_CONFIG, EXIT_SOFTWARE, EXIT_USAGE, ConfigError } from "../core/errors.js";
import { createLogger, flushLogs } from "../adapters/log.js";
import { runDaemon } from "../app/run.js";
import { runKnock } from "./knock.js";
import { removeEverything } from "../adapters/firewall/index.js";
import { parseListenAddr } from "../config/values.js";
import { VERSION } from "../app/version.js";

const USAGE = `usage: knockgate [command]

  run            run the daemon (the default), configured by KNOCK_* variables
  knock          knock on a host: knockgate knock --help
  convert FILE   print a knockgate env file for a knockd.conf
  cleanup        remove every firewall object knockgate made (chains, sets, table)
  healthcheck    exit 0 when the daemon's /healthz answers (for container HEALTHCHECK)
  version        print the version
`;

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

async function main(argv: string[]): Promise<number> {
  const [command = "run", ...rest] = argv;
  switch (command) {
    case "run": {
      const code = await runDaemon(process.env);
      // Exit explicitly: a libpcap or child-process handle left behind must not keep a stopped daemon
      // alive. Logging is asynchronous, so write out what is queued first.
      await flushLogs();
      return process.exit(code);
    }
    case "knock":
      return runKnock(rest, process.env);
    case "convert":
      return runConvert(rest, {
        readFile: (path) => readFileSync(path, "utf8"),
        stdout: (text) => process.stdout.write(text),
        stderr: (text) => process.stderr.write(text),
      });
    case "cleanup": {
      // Stdout is for the result line; retries of transient failures are logged on stderr.
      const removed = await removeEverything(createLogger({ logLevel: "warn", logFormat: "json" }, 2));
      process.stdout.write(`removed knockgate objects from: ${removed.join(", ") || "nothing (no firewall tools found)"}\n`);
      await flushLogs();
      return 0;
    }
    case "healthcheck":
      return healthcheck();
    case "version":
    case "--version":
      process.stdout.write(`knockgate ${VERSION}\n`);
      return 0;
    case "help":
    case "--help":
    case "-h":
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`knockgate: unknown command "${command}"\n${USAGE}`);
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
