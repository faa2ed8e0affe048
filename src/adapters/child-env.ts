/**
 * What the daemon's child processes get of its environment. Never the daemon's own variables:
 * they hold the doors' sequences, and keys when given inline.
 */

/** For a daemon started without PATH: where the usual programs are. */
export const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/**
 * A firewall tool's environment: PATH, and the C locale, whose messages ("File exists", "No such
 * file or directory") are what the backends read from the tools' stderr; then `extra`.
 */
export function toolEnv(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
  return { PATH: process.env["PATH"] ?? DEFAULT_PATH, LC_ALL: "C", ...extra };
}
