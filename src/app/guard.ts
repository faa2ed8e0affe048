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
    try {
      log.error({ event: `${event}_failed`, ...fields, ...errorFields(err) }, `${event}: ${String(err)}`);
    } catch {
      // Logging itself failed: nothing left to tell, and nothing may escape.
    }
    return undefined;
  }
}
