/** pino logger: JSON with stable fields (event, door, src) by default; pino-pretty when asked. */
import { pino, type Logger } from "pino";
import type { Clock } from "../core/clock.js";
import type { Config } from "../core/types.js";

export type { Logger } from "pino";

/**
 * Logs queued beyond this are dropped rather than held: with a stuck reader on stdout a synchronous
 * logger would block the event loop, and with it capture and grants.
 */
const MAX_QUEUED_LOG_BYTES = 16 * 1024 * 1024;

/** Every logger made here, so the process can write out what they queued before it exits. */
const loggers = new Set<Logger>();

// eslint-disable-next-line no-control-regex -- the control characters are what it finds
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/g;

/** `u001b` for ESC: a JSON escape without its backslash. */
const unicode = (c: string): string => `u${c.charCodeAt(0).toString(16).padStart(4, "0")}`;

/**
 * Control characters written as escapes (`\n`, `\u001b`), as JSON writes them: a value from outside
 * (a label, a username, an interface or object name) can then neither start a forged log line nor
 * send a terminal escape sequence.
 */
export function escapeControl(text: string): string {
  return text.replace(CONTROL, (c) => (c === "\n" ? "\\n" : c === "\r" ? "\\r" : c === "\t" ? "\\t" : `\\${unicode(c)}`));
}

/** DEL and the C1 controls, which pino writes raw; in its JSON lines they can only be inside strings. */
const RAW_IN_JSON = /[\u007f-\u009f]/g;

/** `\u009b` in JSON is the same string, safe on a terminal; `\\u009b` is the text `\u009b`, as pino-pretty shows it. */
const escapeRawInJson =
  (backslashes: string) =>
  (line: string): string =>
    line.replace(RAW_IN_JSON, (c) => backslashes + unicode(c));

/** Logs to stdout, or to stderr (fd 2) for a command whose stdout is its result. */
export function createLogger(config: Pick<Config, "logLevel" | "logFormat">, fd: 1 | 2 = 1): Logger {
  const options = { level: config.logLevel, base: { name: "knockgate" } };
  const log =
    config.logFormat === "pretty"
      ? pino({
          ...options,
          // pino-pretty writes the message as it is, newlines included, and fields through
          // JSON.stringify, which leaves DEL and C1 raw.
          hooks: {
            logMethod(args, method) {
              method.apply(this, args.map((a: unknown) => (typeof a === "string" ? escapeControl(a) : a)) as typeof args);
            },
            streamWrite: escapeRawInJson("\\\\"),
          },
          transport: { target: "pino-pretty", options: { destination: fd } },
        })
      : pino({ ...options, hooks: { streamWrite: escapeRawInJson("\\") } }, pino.destination({ dest: fd, sync: false, maxLength: MAX_QUEUED_LOG_BYTES }));
  loggers.add(log);
  return log;
}

/**
 * Writes out every logger's queued lines, but never waits more than `timeoutMs` on a stuck reader.
 * The clock's timer does not hold the process: a flush in progress does (pino's writes and retries).
 */
export function flushLogs(clock: Clock, timeoutMs = 2000): Promise<void> {
  const flushed = [...loggers].map((log) => new Promise<void>((resolve) => log.flush(() => resolve())));
  return new Promise((resolve) => {
    const cancel = clock.after(timeoutMs, resolve);
    void Promise.all(flushed).then(() => {
      cancel();
      resolve();
    });
  });
}
