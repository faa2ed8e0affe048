/**
 * `knockgate run`, the composition root: configuration, then the services in the order the daemon
 * needs them (service.ts runs them, and stops what started in reverse on one path).
 */
import { interfaceState, openCapture, openNflog } from "../adapters/capture.js";
import { parseConfig } from "../config/config.js";
import type { Clock } from "../core/clock.js";
import { listenAddrText, type Config } from "../core/types.js";
import { Daemon, READ_CACHE_MS, type Deps } from "./daemon.js";
import { sharedRead } from "./shared-read.js";
import { ConfigError, EXIT_CONFIG, problemLines } from "../core/errors.js";
import { systemClock } from "../adapters/clock.js";
import { boundedHooks, dryRunHooks, hookRunner } from "../adapters/hooks.js";
import { chooseBackend, countPerDoor, createFirewall, readKept } from "../adapters/firewall/index.js";
import { parseKept } from "../core/firewall/kept.js";
import { defaultInterfaces, NO_DEFAULT_ROUTE } from "../adapters/interfaces.js";
import { createLogger, type Logger } from "../adapters/log.js";
import { Metrics } from "../adapters/metrics/metrics.js";
import { REVISION, VERSION } from "./version.js";
import { dockerEngine, type DockerEngine } from "../adapters/docker.js";
import { DockerWatch } from "./docker-watch.js";
import { ProtectionService } from "./protection.js";
import { clusterClient, clusterSync, type ClusterClient } from "./ways/cluster/cluster-start.js";
import { serve, type Lifecycle, type Signals } from "./service.js";
import { clusterService, daemonService, dockerService, hooksService, httpService, protectionService } from "./services.js";

/** What the daemon reaches the machine through: the real thing, or a test's stand-ins. */
export interface Platform extends Signals, Pick<Deps, "openCapture" | "openNflog" | "interfaceState"> {
  clock: Clock;
  logger(config: Pick<Config, "logLevel" | "logFormat">): Logger;
  /** The default routes' interfaces now. */
  defaultInterfaces(): Promise<string[]>;
  dockerEngine(host: string): DockerEngine;
  firewall: { choose: typeof chooseBackend; readKept: typeof readKept; create: typeof createFirewall };
}

export const systemPlatform: Platform = {
  clock: systemClock,
  logger: (config) => createLogger(config),
  defaultInterfaces,
  dockerEngine,
  openCapture,
  openNflog,
  interfaceState,
  firewall: { choose: chooseBackend, readKept, create: createFirewall },
  onSignal: (handler) => {
    process.on("SIGTERM", handler);
    process.on("SIGINT", handler);
  },
  exit: (code) => process.exit(code),
};

export async function runDaemon(env: Readonly<Record<string, string | undefined>>, platform: Platform = systemPlatform): Promise<number> {
  let config;
  try {
    config = parseConfig(env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    // Plain lines for a human at a terminal, one JSON line for log collectors; nothing was touched.
    process.stderr.write(`knockgate: invalid configuration, nothing was changed:\n${problemLines(err.problems)}`);
    platform.logger({ logLevel: "info", logFormat: "json" }).error(
      { event: "config_refused", code: err.code, problems: err.problems },
      `invalid configuration (${err.problems.length} problem${err.problems.length === 1 ? "" : "s"})`,
    );
    return EXIT_CONFIG;
  }
  const log = platform.logger(config);
  const interfaces = config.interfaces ?? (await platform.defaultInterfaces());
  if (interfaces.length === 0) {
    log.error({ event: "config_refused", code: "KNOCK_E_CONFIG" }, NO_DEFAULT_ROUTE);
    return EXIT_CONFIG;
  }
  // Found before anything starts: without credentials nothing is touched.
  const cluster = await clusterClient(config, log);
  if (cluster === "failed") return EXIT_CONFIG;
  return serve((up) => compose(up, config, interfaces, cluster, log, platform), log, platform, { on_exit: config.onExit });
}

/** Builds each service and starts it before building the next: the order below is the order the daemon needs. */
async function compose(up: Lifecycle, config: Config, interfaces: string[], cluster: ClusterClient | null, log: Logger, platform: Platform): Promise<void> {
  const { clock } = platform;
  // A dry run touches nothing, and that includes the hooks: they are logged, not run.
  const runHook = boundedHooks(config.dryRun ? dryRunHooks(log) : hookRunner(config.hookTimeoutMs, log, clock), config.hookConcurrency, log);
  await up.start(hooksService(runHook));

  // Labelled containers are read before the firewall is built, so that its first install covers them.
  const protection = new ProtectionService({ config, log, clock });
  const backend = await platform.firewall.choose(config);
  // What labels gave the previous run stays closed until Docker answers (fail closed across restarts).
  if (config.docker.mode !== "off") protection.keep(parseKept(await platform.firewall.readKept(backend), new Set(config.doors.map((d) => d.name))));
  const docker = new DockerWatch({ config, engine: platform.dockerEngine(config.docker.host), log, clock, protection });
  await up.start(dockerService(docker));

  const installed = protection.targets();
  const firewall = platform.firewall.create(config, backend, installed, log, clock);
  // The gauges read the daemon, which writes the counters: it is built next, and scraped only once HTTP starts.
  let daemon: Daemon | null = null;
  const metrics = new Metrics(
    config.doors,
    { version: VERSION, revision: REVISION, backend: firewall.backend },
    {
      tracked: () => daemon?.tracked ?? 0,
      grants: sharedRead(async () => countPerDoor(await firewall.grants()), READ_CACHE_MS, clock),
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
  // Built before the daemon, whose grants it publishes; given the daemon when it starts.
  const sync = cluster ? clusterSync(cluster, config, protection, log, metrics.cluster, clock) : null;
  // Without KNOCK_INTERFACE the watched set follows the default routes as they move.
  const follow = config.interfaces ? {} : { followDefaultRoutes: platform.defaultInterfaces };
  const { openCapture, openNflog, interfaceState } = platform;
  const nflog = openNflog ? { openNflog } : {};
  daemon = new Daemon({ config, interfaces, ...follow, firewall, protection, log, metrics, openCapture, ...nflog, interfaceState, clock, runHook, ...(sync ? { cluster: sync } : {}) });

  // Probes get answers (not ready) while the firewall is installed.
  await up.start(
    httpService(
      config.httpAddr,
      {
        readiness: () => up.checks(),
        details: () => ({ doors: protection.effective() }),
        metrics: { public: metrics.publicRegistry, full: metrics.registry, token: config.metricsToken },
      },
      clock,
      log,
    ),
  );
  log.info(
    { event: "starting", version: VERSION, revision: REVISION, doors: config.doors.map((d) => d.name), interfaces, http: listenAddrText(config.httpAddr) },
    "knockgate starting",
  );
  // Installs the firewall, then captures: nothing is let through before the rules are in place.
  await up.start(daemonService(daemon, firewall, log));
  await up.start(protectionService(protection, firewall, installed));
  if (sync) await up.start(clusterService(sync, daemon));
}
