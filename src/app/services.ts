/** Each part of the daemon as a Service (service.ts): what its start, stop and checks are. */
import type { Server } from "node:http";
import type { Clock } from "../core/clock.js";
import { errorFields, KnockError } from "../core/errors.js";
import { listenAddrText, type ListenAddr } from "../core/types.js";
import type { Firewall } from "../adapters/firewall/firewall.js";
import type { StoppableHookRunner } from "../adapters/hooks.js";
import { startHttp, type HttpSources } from "../adapters/http.js";
import type { Logger } from "../adapters/log.js";
import type { OwnedTarget } from "../core/protection/targets.js";
import type { ClusterSync } from "./ways/cluster/cluster-sync.js";
import type { Daemon } from "./daemon.js";
import { INITIAL_LOOK_MS, type DockerWatch } from "./docker-watch.js";
import type { ProtectionService } from "./protection.js";
import { ReportedFailure, type Service } from "./service.js";

/** Nothing to start; its stop waits for the hooks still running (up to KNOCK_HOOK_TIMEOUT, then their groups are killed). */
export function hooksService(runHook: StoppableHookRunner): Service {
  return { name: "hooks", start: () => Promise.resolve(), stop: () => runHook.stop() };
}

/**
 * One look at the labelled containers (bounded: an engine that does not answer must not hold up
 * the install), then follows the engine's events.
 */
export function dockerService(docker: DockerWatch): Service {
  return {
    name: "docker",
    async start() {
      await docker.initial(INITIAL_LOOK_MS);
      docker.follow();
    },
    stop: () => Promise.resolve(docker.stop()),
    checks: () => docker.checks(),
  };
}

export function httpService(addr: ListenAddr, sources: HttpSources, clock: Clock, log: Logger): Service {
  let server: Server | null = null;
  return {
    name: "http",
    async start() {
      try {
        server = await startHttp(addr, sources, clock, log);
      } catch (err) {
        throw new KnockError("KNOCK_E_CONFIG", `cannot listen on ${listenAddrText(addr)} (KNOCK_HTTP_ADDR): ${errorFields(err).err}`, { cause: err });
      }
    },
    stop: () =>
      new Promise<void>((resolve) => {
        if (server === null) return resolve();
        server.close(() => resolve());
        // A scrape or a kept-alive probe would hold the close for seconds: the process is ending.
        server.closeAllConnections();
      }),
  };
}

/**
 * The firewall install, grant adoption and capture (the daemon's start), and its removal or keeping
 * on exit (its stop, which says false when a removal failed: logged there as remove_failed).
 */
export function daemonService(daemon: Daemon, firewall: Firewall, log: Logger): Service {
  return {
    name: "daemon",
    async start() {
      try {
        await daemon.start();
      } catch (err) {
        // Its helper processes go; the objects stay for the next start to adopt, as KNOCK_ON_EXIT=keep does.
        await firewall.shutdown(false).catch((e: unknown) => log.error({ event: "stop_failed", service: "daemon", ...errorFields(e, "KNOCK_E_FIREWALL") }, `after the failed start: ${String(e)}`));
        const { code, err: message } = errorFields(err, "KNOCK_E_FIREWALL");
        throw new KnockError(code, `cannot install the firewall: ${message}`, { cause: err });
      }
    },
    async stop() {
      if (!(await daemon.stop())) throw new ReportedFailure("the firewall objects were not removed");
    },
    checks: () => daemon.readiness(),
  };
}

/** From the install on, protected targets as Docker labels change them are written to `firewall`, which was installed with `installed`. */
export function protectionService(protection: ProtectionService, firewall: Firewall, installed: readonly OwnedTarget[]): Service {
  return {
    name: "protection",
    start() {
      // Not waited for: a failed write is retried and reported by the protection itself.
      void protection.follow(firewall, installed);
      return Promise.resolve();
    },
    stop: () => Promise.resolve(protection.stop()),
    checks: () => protection.checks(),
  };
}

/**
 * Other nodes' grants go to the daemon's grant lifecycle once it protects; the sync's check is in
 * the daemon's readiness (the sync is its ClusterLink).
 */
export function clusterService(sync: ClusterSync, daemon: Daemon): Service {
  return {
    name: "cluster",
    start: () => Promise.resolve(sync.start(daemon.grants)),
    stop: () => Promise.resolve(sync.stop()),
  };
}
