/**
 * What the daemon's child processes get of its environment. Never the daemon's own variables:
 * they hold the doors' sequences, and keys when given inline.
 */

/** For a daemon started without PATH: where the usual programs are. */
const DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/** The PATH every child gets: the daemon's own. */
export const childPath = (): string => process.env["PATH"] ?? DEFAULT_PATH;

/**
 * A firewall tool's environment: PATH, and the C locale, whose messages ("File exists", "No such
 * file or directory") are what the backends read from the tools' stderr; then `extra`.
 */
export function toolEnv(extra: Readonly<Record<string, string>> = {}): Record<string, string> {
  return { PATH: childPath(), LC_ALL: "C", ...extra };
}
