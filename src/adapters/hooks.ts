/**
 * ON_OPEN / ON_CLOSE commands: an argv template with %IP%, %DOOR%, %PORTS% substituted inside each
 * argument, executed without a shell, with a timeout. Fire-and-forget: the grant never waits on it.
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
}

export function runHook(
  template: readonly string[],
  vars: { ip: string; door: Door },
  timeoutMs: number,
  log: Logger,
  kind: HookKind,
): Promise<HookReport> {
  const argv = substituteArgv(template, {
    IP: vars.ip,
    DOOR: vars.door.name,
    PORTS: portsText(vars.door),
  });
  const [file = "", ...args] = argv;
  const fields = { event: "hook", hook: kind, door: vars.door.name, src: vars.ip, argv };
  return new Promise((resolve) => {
    execFile(file, args, { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 1024 * 1024 }, (err, stdout, stderr) => {
      const output = { stdout: stdout.slice(0, OUTPUT_LIMIT), stderr: stderr.slice(0, OUTPUT_LIMIT) };
      if (!err) {
        log.info({ ...fields, code: 0, ...output }, `${kind} command succeeded`);
        resolve({ ok: true, code: 0 });
        return;
      }
      const timedOut = err.killed === true;
      const code = typeof err.code === "number" ? err.code : null;
      const error = timedOut ? `timed out after ${timeoutMs} ms` : code !== null ? `exit code ${code}` : err.message;
      log.warn({ ...fields, code, err: error, ...output }, `${kind} command failed: ${error}`);
      resolve({ ok: false, code, error });
    });
  });
}
