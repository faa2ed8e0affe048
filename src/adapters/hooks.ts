/**
 * ON_OPEN / ON_CLOSE commands: an argv template with %IP%, %DOOR%, %PORTS% substituted inside each
 * argument, executed without a shell, with a timeout. Fire-and-forget: the grant never waits on it,
 * and the returned promise never rejects (a hook cannot take the daemon down).
 */
import { execFile } from "node:child_process";
import { portsText, type Door } from "../core/types.js";
import type { Logger } from "./log.js";
import { substituteArgv } from "../config/shellwords.js";

export type HookKind = "on_open" | "on_close";

/** Enough of a command's output to debug it, without letting a chatty one flood the log. */
const OUTPUT_LIMIT = 4096;

export interface HookReport {
  ok: boolean;
  code: number | null;
  error?: string;
  /** Never ran: the queue was full. */
  dropped?: true;
}

export interface HookRequest {
  kind: HookKind;
  template: readonly string[];
  ip: string;
  door: Door;
}

/** How the daemon runs a hook: for real, or (dry run) only logged. */
export type HookRunner = (request: HookRequest) => Promise<HookReport>;

export function hookRunner(timeoutMs: number, log: Logger): HookRunner {
  return (request) => runHook(request, timeoutMs, log);
}

/**
 * Hooks waiting for a free slot, per running slot: enough to ride out a burst of real grants,
 * small enough that a flood of completions (a leaked sequence, a replay) cannot pile up work.
 */
export const HOOK_QUEUE_PER_SLOT = 64;

/**
 * At most `concurrency` hooks run at once; up to `concurrency * HOOK_QUEUE_PER_SLOT` wait, oldest
 * first, and what comes beyond that is dropped (reported, never run): the process count stays
 * bounded whatever rate grants arrive at.
 */
export function boundedHooks(run: HookRunner, concurrency: number, log: Logger): HookRunner {
  const limit = concurrency * HOOK_QUEUE_PER_SLOT;
  const waiting: { request: HookRequest; resolve: (r: HookReport) => void }[] = [];
  let running = 0;
  // One warning per burst of drops: under a flood the log must not become the next thing to fill.
  let warned = false;
  const next = (): void => {
    const job = waiting.shift();
    if (!job) return;
    if (waiting.length < limit / 2) warned = false;
    running++;
    void run(job.request)
      .catch((err: unknown): HookReport => ({ ok: false, code: null, error: String(err) }))
      .then((report) => {
        running--;
        job.resolve(report);
        next();
      });
  };
  return (request) =>
    new Promise((resolve) => {
      if (waiting.length >= limit) {
        if (!warned) log.warn({ event: "hook_dropped", hook: request.kind, door: request.door.name, src: request.ip, code: "KNOCK_E_HOOK" }, `hooks are being dropped: ${limit} already waiting (knockgate_hook_dropped_total counts them)`);
        warned = true;
        resolve({ ok: false, code: null, error: "dropped: hook queue full", dropped: true });
        return;
      }
      waiting.push({ request, resolve });
      if (running < concurrency) next();
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

export function runHook(request: HookRequest, timeoutMs: number, log: Logger): Promise<HookReport> {
  const { kind, ip, door } = request;
  return new Promise((resolve) => {
    let argv: string[] = [];
    const fields = () => ({ event: "hook", hook: kind, door: door.name, src: ip, argv });
    const failed = (code: number | null, error: string, output?: { stdout: string; stderr: string }) => {
      log.warn({ ...fields(), code: "KNOCK_E_HOOK", exit_code: code, err: error, ...output }, `${kind} command failed: ${error}`);
      resolve({ ok: false, code, error });
    };
    try {
      argv = argvOf(request);
      const [file = "", ...args] = argv;
      execFile(file, args, { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
        const output = { stdout: stdout.slice(0, OUTPUT_LIMIT), stderr: stderr.slice(0, OUTPUT_LIMIT) };
        if (!err) {
          log.info({ ...fields(), exit_code: 0, ...output }, `${kind} command succeeded`);
          resolve({ ok: true, code: 0 });
          return;
        }
        const code = typeof err.code === "number" ? err.code : null;
        failed(code, err.killed === true ? `timed out after ${timeoutMs} ms` : code !== null ? `exit code ${code}` : err.message, output);
      });
    } catch (err) {
      // execFile throws at once for an argv it cannot even try (an empty program name, say).
      failed(null, `could not start: ${(err as Error).message}`);
    }
  });
}
