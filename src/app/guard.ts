/**
 * Timer callbacks and the steps after a kernel change run where a throw (a logger, metrics or hook
 * bug) would end the process, and with it the protection: each such step runs here instead.
 */
import { errorFields } from "../core/errors.js";
import type { Logger } from "../adapters/log.js";

/** Runs `step`; a throw is logged as `<event>_failed` with `fields`, and undefined returned. */
export function guard<T>(log: Logger, event: string, fields: Record<string, string>, step: () => T): T | undefined {
  try {
    return step();
  } catch (err) {
    logFailure(log, event, fields, err);
    return undefined;
  }
}

/** Logs `err` as `<event>_failed` with `fields`; a logger that throws is not let through. */
export function logFailure(log: Logger, event: string, fields: Record<string, string>, err: unknown): void {
  try {
    log.error({ event: `${event}_failed`, ...fields, ...errorFields(err) }, `${event}: ${String(err)}`);
  } catch {
    // Logging itself failed: nothing left to tell, and nothing may escape.
  }
}
