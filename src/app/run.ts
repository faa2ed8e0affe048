/** `knockgate run`: configuration, then firewall, then capture and HTTP; signals and exit policy. */
import { interfaceLinkType, openCapture } from "../adapters/capture.js";
import { parseConfig } from "../config/config.js";
import { Daemon } from "./daemon.js";
import { ConfigError, EXIT_CONFIG, EXIT_SOFTWARE, problemLines } from "../core/errors.js";
import { createFirewall } from "../adapters/firewall/index.js";
import { startHttp } from "../adapters/http.js";
import { defaultInterfaces, NO_DEFAULT_ROUTE } from "../adapters/interfaces.js";
import { createLogger } from "../adapters/log.js";
import { Metrics } from "../adapters/metrics.js";
import { VERSION } from "./version.js";

export async function runDaemon(env: Readonly<Record<string, string | undefined>>): Promise<number> {
  let config;
  try {
    config = parseConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // Plain lines for a human at a terminal, one JSON line for log collectors; nothing was touched.
    process.stderr.write(`knockgate: invalid configuration, nothing was changed:\n${problemLines(err.problems)}`);
    createLogger({ logLevel: "info", logFormat: "json" }).error(
      { event: "config_refused", code: err.code, problems: err.problems },
      `invalid configuration (${err.problems.length} problem${err.problems.length === 1 ? "" : "s"})`,
    );
    return EXIT_CONFIG;
  }
  const log = createLogger(config);
  const interfaces = config.interfaces ?? (await defaultInterfaces());
  if (interfaces.length === 0) {
    log.error({ event: "config_refused" }, NO_DEFAULT_ROUTE);
    return EXIT_CONFIG;
  }
  const firewall = await createFirewall(config, log);
  let daemon: Daemon | null = null;
  const metrics = new Metrics(
    config.doors.map((d) => d.name),
    { version: VERSION, backend: firewall.backend },
    { tracked: () => daemon?.tracked ?? 0, grants: () => firewall.countGrants(), captureDropped: () => daemon?.captureDropped() ?? new Map() },
  );
  daemon = new Daemon({ config, interfaces, firewall, log, metrics, openCapture, interfaceLinkType });
  const running = daemon;
  const server = await startHttp(config.httpAddr, { readiness: () => running.readiness(), registry: metrics.registry });
  log.info(
    { event: "starting", version: VERSION, doors: config.doors.map((d) => d.name), interfaces, http: `${config.httpAddr.host}:${config.httpAddr.port}` },
    "knockgate starting",
  );
  try {
    await daemon.start();
  } catch (err) {
    log.fatal({ event: "start_failed", err: (err as Error).message }, `cannot install the firewall: ${(err as Error).message}`);
    server.close();
    firewall.close();
    return EXIT_SOFTWARE;
  }
  log.info({ event: "ready", backend: firewall.backend }, "knockgate is protecting");

  return new Promise<number>((resolve) => {
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (stopping) {
        // A stuck teardown must never hang `docker stop`: the second signal exits at once.
        log.warn({ event: "forced_exit", signal }, "second signal: exiting now");
        process.exit(EXIT_SOFTWARE);
      }
      stopping = true;
      log.info({ event: "stopping", signal, on_exit: config.onExit }, `got ${signal}`);
      server.close();
      running
        .stop()
        .then(
          () => 0,
          (err: Error) => {
            log.error({ event: "stop_failed", err: err.message }, err.message);
            return EXIT_SOFTWARE;
          },
        )
        .then(resolve);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
