/**
 * ON_OPEN / ON_CLOSE commands: an argv template with %IP%, %DOOR%, %PORTS% substituted inside each
 * argument, executed without a shell, with a timeout, in a process group of its own and with an
 * environment of its own. Fire-and-forget: the grant never waits on it, and the returned promise
 * never rejects (a hook cannot take the daemon down).
 */
import { spawn } from "node:child_process";
import type { Clock } from "../core/clock.js";
import { portsText, type Door } from "../core/types.js";
import type { Logger } from "./log.js";
import { substituteArgv } from "../config/shellwords.js";
import { childPath } from "./child-env.js";

export type HookKind = "on_open" | "on_close";

/** Enough of a command's output to debug it, without letting a chatty one flood the log or the memory. */
const OUTPUT_LIMIT = 4096;

export interface HookReport {
  ok: boolean;
  code: number | null;
  error?: string;
  /** Never ran: the queue was full, or the daemon was stopping. */
  dropped?: true;
}

export interface HookRequest {
  kind: HookKind;
  template: readonly string[];
  ip: string;
  door: Door;
  /** An ON_CLOSE of a grant taken out to make room for another: the first to go under a flood. */
  replaced?: true;
}

/** How the daemon runs a hook: for real, or (dry run) only logged. */
export type HookRunner = (request: HookRequest) => Promise<HookReport>;

/** A runner the daemon's teardown waits for: `stop` starts nothing more and resolves once nothing runs. */
export interface StoppableHookRunner extends HookRunner {
  stop(): Promise<void>;
}

export function hookRunner(timeoutMs: number, log: Logger, clock: Clock): HookRunner {
  return (request) => runHook(request, timeoutMs, log, clock);
}

/**
 * Hooks waiting for a free slot, per running slot: enough to ride out a burst of real grants,
 * small enough that a flood of completions (a leaked sequence, a replay) cannot pile up work.
 */
export const HOOK_QUEUE_PER_SLOT = 64;

/**
 * At most `concurrency` hooks run at once; up to `concurrency * HOOK_QUEUE_PER_SLOT` wait, oldest
 * first, and what comes beyond that is dropped (reported, never run): the process count stays
 * bounded whatever rate grants arrive at. Under a flood every new grant replaces an old one, and
 * the ON_CLOSEs of those replaced grants would fill the queue: they may hold at most half of it,
 * and they are the first dropped, so the ON_OPENs and ordinary ON_CLOSEs of real clients always
 * find a place. The queue stays in order: a client's ON_CLOSE never overtakes its ON_OPEN.
 */
export function boundedHooks(run: HookRunner, concurrency: number, log: Logger): StoppableHookRunner {
  const limit = concurrency * HOOK_QUEUE_PER_SLOT;
  const replacedLimit = limit / 2;
  const waiting: { request: HookRequest; resolve: (r: HookReport) => void }[] = [];
  const running = new Set<Promise<unknown>>();
  let replacedWaiting = 0;
  let stopping = false;
  // One warning per burst of drops: under a flood the log must not become the next thing to fill.
  let warned = false;
  const drop = (request: HookRequest, resolve: (r: HookReport) => void, why: string): void => {
    if (!warned && !stopping) {
      log.warn({ event: "hook_dropped", hook: request.kind, door: request.door.name, src: request.ip, code: "KNOCK_E_HOOK" }, `hooks are being dropped: ${why} (knockgate_hook_dropped_total counts them)`);
      warned = true;
    }
    resolve({ ok: false, code: null, error: `dropped: ${why}`, dropped: true });
  };
  const next = (): void => {
    if (stopping) return;
    const job = waiting.shift();
    if (!job) return;
    if (job.request.replaced) replacedWaiting--;
    if (waiting.length < limit / 2) warned = false;
    const done = run(job.request)
      .catch((err: unknown): HookReport => ({ ok: false, code: null, error: String(err) }))
      .then((report) => {
        running.delete(done);
        job.resolve(report);
        next();
      });
    running.add(done);
  };
  /** The newest waiting ON_CLOSE of a replaced grant, taken out of the queue. */
  const takeNewestReplaced = (): (typeof waiting)[number] | undefined => {
    for (let i = waiting.length - 1; i >= 0; i--) {
      if (waiting[i]?.request.replaced) {
        replacedWaiting--;
        return waiting.splice(i, 1)[0];
      }
    }
    return undefined;
  };
  const submit = (request: HookRequest): Promise<HookReport> =>
    new Promise((resolve) => {
      if (stopping) return drop(request, resolve, "knockgate is stopping");
      if (request.replaced && (replacedWaiting >= replacedLimit || waiting.length >= limit)) {
        return drop(request, resolve, waiting.length >= limit ? `${limit} already waiting` : `${replacedWaiting} ON_CLOSEs of replaced grants already waiting`);
      }
      if (waiting.length >= limit) {
        const evicted = takeNewestReplaced();
        if (!evicted) return drop(request, resolve, `${limit} already waiting`);
        drop(evicted.request, evicted.resolve, "made room for a real client's hook");
      }
      waiting.push({ request, resolve });
      if (request.replaced) replacedWaiting++;
      if (running.size < concurrency) next();
    });
  return Object.assign(submit, {
    /** Hooks not started yet are dropped; those running end by themselves or at their timeout. */
    async stop(): Promise<void> {
      stopping = true;
      for (const job of waiting.splice(0)) drop(job.request, job.resolve, "knockgate is stopping");
      replacedWaiting = 0;
      await Promise.all(running);
    },
  });
}

/** KNOCK_DRY_RUN: says what would run and runs nothing. */
export function dryRunHooks(log: Logger): HookRunner {
  return (request) => {
    log.info({ event: "dry_run_hook", hook: request.kind, door: request.door.name, src: request.ip, argv: argvOf(request) }, `dry run: would run ${request.kind}`);
    return Promise.resolve({ ok: true, code: null });
  };
}

function argvOf({ template, ip, door }: HookRequest): string[] {
  return substituteArgv(template, { IP: ip, DOOR: door.name, PORTS: portsText(door) });
}

/**
 * What a hook is told, and all it is told: never the daemon's own variables, which hold the knock
 * sequences and keys. The same values as its %...% arguments.
 */
function hookEnv({ kind, ip, door }: HookRequest): Record<string, string> {
  return {
    PATH: childPath(),
    KNOCK_HOOK_EVENT: kind === "on_open" ? "open" : "close",
    KNOCK_HOOK_DOOR: door.name,
    KNOCK_HOOK_IP: ip,
    KNOCK_HOOK_PORTS: portsText(door),
  };
}

/** Process groups of hooks still running: killed if the daemon exits before they end. */
const liveGroups = new Set<number>();
let exitHandlerSet = false;

function killGroup(pid: number): void {
  try {
    process.kill(-pid, "SIGKILL");
  } catch {
    // Already gone.
  }
}

/** Keeps the first OUTPUT_LIMIT characters of a stream, and reads (and discards) the rest so the hook never blocks on a full pipe. */
function collect(stream: NodeJS.ReadableStream | null): () => string {
  let text = "";
  stream?.setEncoding("utf8");
  stream?.on("data", (chunk: string) => {
    if (text.length < OUTPUT_LIMIT) text += chunk.slice(0, OUTPUT_LIMIT - text.length);
  });
  return () => text.trim();
}

export function runHook(request: HookRequest, timeoutMs: number, log: Logger, clock: Clock): Promise<HookReport> {
  const { kind, ip, door } = request;
  return new Promise((resolve) => {
    let argv: string[] = [];
    const fields = () => ({ event: "hook", hook: kind, door: door.name, src: ip });
    const failed = (code: number | null, error: string) => {
      log.warn({ ...fields(), code: "KNOCK_E_HOOK", exit_code: code, err: error }, `${kind} command failed: ${error}`);
      resolve({ ok: false, code, error });
    };
    try {
      argv = argvOf(request);
      const [file = "", ...args] = argv;
      // A group of its own, so a timeout or the daemon's exit ends whatever the hook started too.
      const child = spawn(file, args, { env: hookEnv(request), detached: true, stdio: ["ignore", "pipe", "pipe"] });
      const stdout = collect(child.stdout);
      const stderr = collect(child.stderr);
      let timedOut = false;
      let settled = false;
      const pid = child.pid;
      if (pid !== undefined) {
        liveGroups.add(pid);
        if (!exitHandlerSet) {
          exitHandlerSet = true;
          process.on("exit", () => liveGroups.forEach(killGroup));
        }
      }
      const cancelTimeout = clock.after(timeoutMs, () => {
        timedOut = true;
        if (pid !== undefined) killGroup(pid);
      });
      const settle = (code: number | null, error: string | null) => {
        if (settled) return;
        settled = true;
        cancelTimeout();
        if (pid !== undefined) liveGroups.delete(pid);
        // What the hook printed, and how it was called, may hold anything: debug only, bounded.
        log.debug({ ...fields(), argv, stdout: stdout(), stderr: stderr() }, `${kind} command output`);
        // Something the hook left running may hold the pipes open: they are not waited for.
        child.stdout?.destroy();
        child.stderr?.destroy();
        if (error === null) {
          log.info({ ...fields(), exit_code: 0 }, `${kind} command succeeded`);
          resolve({ ok: true, code: 0 });
        } else failed(code, error);
      };
      child.once("error", (err) => settle(null, err.message));
      child.once("exit", (code, signal) => {
        if (timedOut) settle(code, `timed out after ${timeoutMs} ms`);
        else if (code === 0) settle(0, null);
        else settle(code, code !== null ? `exit code ${code}` : `killed by ${signal ?? "a signal"}`);
      });
    } catch (err) {
      // spawn throws at once for an argv it cannot even try (an empty program name, say).
      failed(null, `could not start: ${(err as Error).message}`);
    }
  });
}
