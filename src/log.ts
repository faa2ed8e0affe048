/** pino logger: JSON with stable fields (event, door, src) by default; pino-pretty when asked. */
import { pino, type Logger } from "pino";
import type { Config } from "./config.js";

export type { Logger } from "pino";

export function createLogger(config: Pick<Config, "logLevel" | "logFormat">): Logger {
  const options = { level: config.logLevel, base: { name: "knockgate" } };
  if (config.logFormat === "pretty") {
    return pino({ ...options, transport: { target: "pino-pretty", options: { destination: 1 } } });
  }
  return pino(options);
}
