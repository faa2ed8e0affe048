/** `knockgate run`: configuration, then firewall, then capture and HTTP; signals and exit policy. */
import { interfaceState, openCapture } from "../adapters/capture.js";
import { parseConfig } from "../config/config.js";
import { listenAddrText } from "../core/types.js";
import { Daemon, READ_CACHE_MS } from "./daemon.js";
import { sharedRead } from "./shared-read.js";
import { ConfigError, EXIT_CONFIG, EXIT_SOFTWARE, errorFields, problemLines } from "../core/errors.js";
import { systemClock } from "../adapters/clock.js";
import { boundedHooks, dryRunHooks, hookRunner } from "../adapters/hooks.js";
import { chooseBackend, countPerDoor, createFirewall, readKept } from "../adapters/firewall/index.js";
import { parseKept } from "../core/firewall/kept.js";
import { startHttp } from "../adapters/http.js";
import { defaultInterfaces, NO_DEFAULT_ROUTE } from "../adapters/interfaces.js";
import { createLogger } from "../adapters/log.js";
import { Metrics } from "../adapters/metrics/metrics.js";
import { REVISION, VERSION } from "./version.js";
import { dockerEngine } from "../adapters/docker.js";
import { DockerWatch, INITIAL_LOOK_MS } from "./docker-watch.js";
import { ProtectionService } from "./protection.js";
import { startClusterSync } from "./cluster-start.js";

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
    log.error({ event: "config_refused", code: "KNOCK_E_CONFIG" }, NO_DEFAULT_ROUTE);
    return EXIT_CONFIG;
  }
  // Labelled containers are read before the firewall is installed, so its first install covers them.
  const protection = new ProtectionService({ config, log, clock: systemClock });
  const backend = await chooseBackend(config);
  // What labels gave the previous run stays closed until Docker answers (fail closed across restarts).
  if (config.docker.mode !== "off") protection.keep(parseKept(await readKept(backend), new Set(config.doors.map((d) => d.name))));
  const docker = new DockerWatch({ config, engine: dockerEngine(config.docker.host), log, clock: systemClock, protection });
  await docker.initial(INITIAL_LOOK_MS);
  const installed = protection.targets();
  const firewall = createFirewall(config, backend, installed, log, systemClock);
  let daemon: Daemon | null = null;
  const metrics = new Metrics(
    config.doors,
    { version: VERSION, revision: REVISION, backend: firewall.backend },
    {
      tracked: () => daemon?.tracked ?? 0,
      grants: sharedRead(async () => countPerDoor(await firewall.grants()), READ_CACHE_MS, systemClock),
      captureDropped: () => daemon?.captureDropped() ?? new Map(),
      docker: {
        enabled: docker.enabled,
        effective: () => protection.effective(),
        conflicts: () => protection.conflicts(),
        connected: () => docker.connected,
        reconnects: () => docker.reconnects,
      },
    },
  );
  // A dry run touches nothing, and that includes the hooks: they are logged, not run.
  const runHook = boundedHooks(config.dryRun ? dryRunHooks(log) : hookRunner(config.hookTimeoutMs, log, systemClock), config.hookConcurrency, log);
  const cluster = await startClusterSync(config, protection, log, metrics.cluster, () => running.grants);
  if (cluster === "failed") {
    docker.stop();
    await firewall.shutdown(false);
    return EXIT_CONFIG;
  }
  // Without KNOCK_INTERFACE the watched set follows the default routes as they move.
  const follow = config.interfaces ? {} : { followDefaultRoutes: defaultInterfaces };
  daemon = new Daemon({ config, interfaces, ...follow, firewall, protection, log, metrics, openCapture, interfaceState, clock: systemClock, runHook, ...(cluster ? { cluster } : {}) });
  const running = daemon;
  const server = await startHttp(
    config.httpAddr,
    {
      readiness: async () => [...(await running.readiness()), ...docker.checks(), ...protection.checks()],
      details: () => ({ doors: protection.effective() }),
      metrics: { public: metrics.publicRegistry, full: metrics.registry, token: config.metricsToken },
    },
    systemClock,
  );
  log.info(
    { event: "starting", version: VERSION, revision: REVISION, doors: config.doors.map((d) => d.name), interfaces, http: listenAddrText(config.httpAddr) },
    "knockgate starting",
  );
  try {
    await daemon.start();
  } catch (err) {
    const fields = errorFields(err, "KNOCK_E_FIREWALL");
    log.fatal({ event: "start_failed", ...fields }, `cannot install the firewall: ${fields.err}`);
    server.close();
    docker.stop();
    await firewall.shutdown(false);
    return EXIT_SOFTWARE;
  }
  void protection.follow(firewall, installed);
  docker.follow();
  cluster?.start();

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
      docker.stop();
      protection.stop();
      cluster?.stop();
      running
        .stop()
        .then(
          (removedAsAsked) => (removedAsAsked ? 0 : EXIT_SOFTWARE),
          (err: unknown) => {
            const fields = errorFields(err);
            log.error({ event: "stop_failed", ...fields }, fields.err);
            return EXIT_SOFTWARE;
          },
        )
        // Hooks still running get up to KNOCK_HOOK_TIMEOUT, then their process groups are killed.
        .then(async (code) => {
          await runHook.stop();
          return code;
        })
        .then(resolve);
    };
    process.on("SIGTERM", onSignal);
    process.on("SIGINT", onSignal);
  });
}
