/**
 * One shape for every long-running part of the daemon (capture and reconcile, the Docker watcher,
 * the protection writer, cluster sync, HTTP, hooks), and the lifecycle that starts them in order
 * and stops the started ones in reverse, on one path, whatever ended the run.
 */
import { EXIT_SOFTWARE, errorFields } from "../core/errors.js";
import type { Check } from "../adapters/http.js";
import type { Logger } from "../adapters/log.js";

export interface Service {
  /** Short and stable: the `service` field of its start_failed and stop_failed lines. */
  readonly name: string;
  /**
   * Resolves once it runs. A rejection means it undid whatever it began, so it is not stopped: the
   * services started before it are.
   */
  start(): Promise<void>;
  /** Ends what start began. A rejection says something was left undone; the other services still stop. */
  stop(): Promise<void>;
  /** Its part of /readyz. */
  checks?(): Check[] | Promise<Check[]>;
}

/** A stop failure its service has logged already (the daemon's remove_failed): counted, not logged twice. */
export class ReportedFailure extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ReportedFailure";
  }
}

/** Thrown by `start` once a stop was asked for: what is still to start never starts. */
export class StopRequested extends Error {
  constructor() {
    super("stop requested while starting");
    this.name = "StopRequested";
  }
}

/** A service's start that failed: which one, and why. */
class StartFailed extends Error {
  constructor(
    readonly service: string,
    readonly reason: unknown,
  ) {
    super(`cannot start ${service}`);
    this.name = "StartFailed";
  }
}

type Phase = "starting" | "running" | "stopping";

export class Lifecycle {
  private readonly started: Service[] = [];
  private phase: Phase = "starting";
  private stopAsked = false;
  private wake: () => void = () => undefined;
  /** Resolves when a stop is asked for: by a signal, or by a start that failed. */
  readonly stopRequested = new Promise<void>((resolve) => (this.wake = resolve));

  constructor(private readonly log: Logger) {}

  /** Starts `service` after those started before it; StopRequested if a stop was asked for meanwhile. */
  async start(service: Service): Promise<void> {
    if (this.stopAsked) throw new StopRequested();
    try {
      await service.start();
    } catch (err) {
      throw new StartFailed(service.name, err);
    }
    this.started.push(service);
    this.log.debug({ event: "service_started", service: service.name });
  }

  /** Every service is up: /readyz no longer says "starting". */
  running(): void {
    if (this.phase === "starting") this.phase = "running";
  }

  requestStop(): void {
    this.stopAsked = true;
    this.wake();
  }

  /**
   * The one teardown path: stops the started services in reverse order of their start, each one
   * even if another failed. Resolves false if any stop failed (logged as stop_failed unless its
   * service said so itself).
   */
  async stop(): Promise<boolean> {
    this.requestStop();
    this.phase = "stopping";
    let clean = true;
    for (let service = this.started.pop(); service !== undefined; service = this.started.pop()) {
      try {
        await service.stop();
        this.log.debug({ event: "service_stopped", service: service.name });
      } catch (err) {
        clean = false;
        if (err instanceof ReportedFailure) continue;
        const fields = errorFields(err);
        this.log.error({ event: "stop_failed", service: service.name, ...fields }, `${service.name} did not stop cleanly: ${fields.err}`);
      }
    }
    return clean;
  }

  /** The union of the started services' checks, and a failing one while starting or stopping. */
  async checks(): Promise<Check[]> {
    const all = await Promise.all(this.started.map(async (s) => (s.checks ? s.checks() : [])));
    const phase: Check[] = this.phase === "running" ? [] : [{ name: "lifecycle", ok: false, detail: this.phase === "starting" ? "still starting" : "stopping" }];
    return [...phase, ...all.flat()];
  }
}

/** Where the process's signals come from, and how it ends at once. */
export interface Signals {
  /** Calls `handler` for every SIGTERM and SIGINT from now on. */
  onSignal(handler: (signal: NodeJS.Signals) => void): void;
  exit(code: number): void;
}

/**
 * Runs the daemon's services: `compose` builds each and starts it on `up` before building the next,
 * so an order the daemon needs is the order of its lines. Then runs until the first signal; that
 * signal, or a start that failed, leads to the one teardown. A second signal exits at once: a stuck
 * teardown must never hang `docker stop`. Resolves 0, or EXIT_SOFTWARE when a start or a stop failed.
 * `stopping`: fields for the `stopping` line.
 */
export async function serve(compose: (up: Lifecycle) => Promise<void>, log: Logger, signals: Signals, stopping: Record<string, unknown> = {}): Promise<number> {
  const up = new Lifecycle(log);
  let signalled = false;
  signals.onSignal((signal) => {
    if (signalled) {
      log.warn({ event: "forced_exit", signal }, "second signal: exiting now");
      signals.exit(EXIT_SOFTWARE);
      return;
    }
    signalled = true;
    log.info({ event: "stopping", signal, ...stopping }, `got ${signal}`);
    up.requestStop();
  });
  let failed = false;
  try {
    await compose(up);
    up.running();
  } catch (err) {
    if (!(err instanceof StopRequested)) {
      failed = true;
      const service = err instanceof StartFailed ? { service: err.service } : {};
      const fields = errorFields(err instanceof StartFailed ? err.reason : err);
      log.fatal({ event: "start_failed", ...service, ...fields }, `${err instanceof StartFailed ? err.message : "cannot start"}: ${fields.err}`);
    }
  }
  if (!failed) await up.stopRequested;
  const clean = await up.stop();
  return failed || !clean ? EXIT_SOFTWARE : 0;
}
