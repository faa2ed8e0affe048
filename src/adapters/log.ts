/** pino logger: JSON with stable fields (event, door, src) by default; pino-pretty when asked. */
import { pino, type Logger } from "pino";
import type { Config } from "../core/types.js";

export type { Logger } from "pino";

/**
 * Logs queued beyond this are dropped rather than held: with a stuck reader on stdout a synchronous
 * logger would block the event loop, and with it capture and grants.
 */
const MAX_QUEUED_LOG_BYTES = 16 * 1024 * 1024;

/** Every logger made here, so the process can write out what they queued before it exits. */
const loggers = new Set<Logger>();

/** Logs to stdout, or to stderr (fd 2) for a command whose stdout is its result. */
export function createLogger(config: Pick<Config, "logLevel" | "logFormat">, fd: 1 | 2 = 1): Logger {
  const options = { level: config.logLevel, base: { name: "knockgate" } };
  const log =
    config.logFormat === "pretty"
      ? pino({ ...options, transport: { target: "pino-pretty", options: { destination: fd } } })
      : pino(options, pino.destination({ dest: fd, sync: false, maxLength: MAX_QUEUED_LOG_BYTES }));
  loggers.add(log);
  return log;
}

/** Writes out every logger's queued lines, but never waits more than `timeoutMs` on a stuck reader. */
export function flushLogs(timeoutMs = 2000): Promise<void> {
  const flushed = [...loggers].map((log) => new Promise<void>((resolve) => log.flush(() => resolve())));
  return new Promise((resolve) => {
    const timer = setTimeout(resolve, timeoutMs);
    void Promise.all(flushed).then(() => {
      clearTimeout(timer);
      resolve();
    });
  });
}
